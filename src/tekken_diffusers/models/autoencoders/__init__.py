"""Autoencoders: every VAE behaves like diffusers' `AutoencoderKL`, and latents are normalised in `latent_norm`."""

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
