"""The old import path of the dataset info (`tekken_diffusers.data.latents.info` and `.vae`), kept working."""

from .latents.info import (
    LATENT_INFO_FILE,
    LatentDatasetInfo,
    SplitInfo,
    load_latent_info,
    render_dataset_card,
)
from .latents.schema import LATENT_DTYPES
from .latents.vae import VAEInfo, describe_vae, vae_config_hash, vae_temporal_compression_ratio

__all__ = [
    "LATENT_INFO_FILE",
    "LATENT_DTYPES",
    "LatentDatasetInfo",
    "SplitInfo",
    "VAEInfo",
    "describe_vae",
    "vae_config_hash",
    "vae_temporal_compression_ratio",
    "render_dataset_card",
    "load_latent_info",
]
