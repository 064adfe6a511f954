"""Autoencoders: every VAE behaves like diffusers' `AutoencoderKL`.

Latents are normalised by `tekken_diffusers.data.latents.normalization` and actions pooled to latent frames by
`tekken_diffusers.actions.pool_actions`; both are re-exported here (and at their old paths `latent_norm`, `temporal`).
"""

from .autoencoder_dc_tekken import TekkenAutoencoderDC
from .autoencoder_video import LTXVideoVAE, WanVAE
from .latent_norm import LatentStatistics, denormalize_latents, latent_statistics, normalize_latents
from .temporal import (
    TemporalCompressionMixin,
    latent_frame_groups,
    num_frames_for_latents,
    num_latent_frames,
    pool_actions,
)
