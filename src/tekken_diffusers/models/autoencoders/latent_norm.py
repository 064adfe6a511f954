"""Latent normalisation for every VAE: `tekken_diffusers.data.latents.normalization`, re-exported at its old path.

It lives beside the latent dataset's schema (a dataset stores normalised latents and records the statistics), so
that the data layer does not import the models.
"""

from ...data.latents.normalization import LatentStatistics, denormalize_latents, latent_statistics, normalize_latents

__all__ = ["LatentStatistics", "latent_statistics", "normalize_latents", "denormalize_latents"]
