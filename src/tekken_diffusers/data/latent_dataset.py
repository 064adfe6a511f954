"""The old import path of the latent dataset (`tekken_diffusers.data.latents`, one module per stage), kept working.

New code imports from `tekken_diffusers.data.latents` (or its modules `schema`, `encode`, `storage`, `hub`, `info`).
"""

from .latents.encode import encode_frames, encode_round
from .latents.hub import export_hub_folder, push_latent_dataset_to_hub
from .latents.info import LATENT_INFO_FILE, LatentDatasetInfo, SplitInfo, load_latent_info, render_dataset_card
from .latents.schema import (
    LATENT_DTYPES,
    LATENT_FEATURES,
    SPLITS,
    STORAGE_DTYPES,
    check_row_arrays,
    latent_row,
    latents_from_row,
    row_arrays,
)
from .latents.storage import (
    dataset_from_shards,
    load_latent_dataset,
    read_row_shard,
    save_latent_dataset,
    write_row_shard,
)
from .latents.vae import VAEInfo, describe_vae, vae_config_hash, vae_temporal_compression_ratio

# The old private names of the row decoder, now `schema.row_arrays` / `schema.check_row_arrays`.
_row_arrays = _python_row_arrays = row_arrays
_check_row_arrays = check_row_arrays
_STORAGE_DTYPES = STORAGE_DTYPES

__all__ = [
    "LATENT_FEATURES",
    "LATENT_INFO_FILE",
    "LATENT_DTYPES",
    "SPLITS",
    "LatentDatasetInfo",
    "SplitInfo",
    "VAEInfo",
    "describe_vae",
    "vae_config_hash",
    "vae_temporal_compression_ratio",
    "encode_frames",
    "encode_round",
    "latent_row",
    "latents_from_row",
    "write_row_shard",
    "read_row_shard",
    "dataset_from_shards",
    "save_latent_dataset",
    "load_latent_dataset",
    "load_latent_info",
    "render_dataset_card",
    "export_hub_folder",
    "push_latent_dataset_to_hub",
]
