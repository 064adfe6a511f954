"""Latent episodes: rounds encoded by a VAE, one row per round, as a Hugging Face `datasets.DatasetDict`.

One module per stage, imported in this order (each only from the ones above it):

| module            | holds                                                                                   |
|-------------------|-----------------------------------------------------------------------------------------|
| `schema`          | the row: `LATENT_FEATURES`, `latent_row` (write), `row_arrays` (the one read)           |
| `normalization`   | raw VAE latents ↔ the normalised latents a dataset stores and the world model sees      |
| `vae`             | which VAE made a dataset (`VAEInfo`, `describe_vae`), its temporal compression          |
| `info`            | `tekken_latents.json` (`LatentDatasetInfo`) and the `README.md` card                    |
| `encode`          | frames → latents (`encode_frames`), a round → a row (`encode_round`)                    |
| `storage`         | per-round row shards, the saved folder (`save_latent_dataset`), `load_latent_dataset`   |
| `hub`             | the Hub layout (`export_hub_folder`) and the upload (`push_latent_dataset_to_hub`)      |
| `windows`         | a training window, a batch of them, and reading a window from a row                     |
| `window_datasets` | `LatentWindowDataset` (map-style, zero-copy), `LatentWindowIterableDataset` (streaming) |

**Stored latents are normalised** (`normalization.normalize_latents` with the encoding VAE's statistics) unless the
dataset info says `normalized: false` (an import of the original system's raw cache without a VAE). The world model
reads them directly; `denormalize_latents` with the same statistics gives back what `vae.decode` takes.
"""

from .encode import encode_frames, encode_round
from .hub import export_hub_folder, push_latent_dataset_to_hub
from .info import LATENT_INFO_FILE, LatentDatasetInfo, SplitInfo, load_latent_info, render_dataset_card, write_metadata
from .normalization import LatentStatistics, denormalize_latents, latent_statistics, normalize_latents
from .schema import (
    LATENT_DTYPES,
    LATENT_FEATURES,
    SPLITS,
    STORAGE_DTYPES,
    check_row_arrays,
    latent_row,
    latents_from_row,
    latents_tensor,
    row_arrays,
)
from .storage import dataset_from_shards, load_latent_dataset, read_row_shard, save_latent_dataset, write_row_shard
from .vae import VAEInfo, describe_vae, vae_config_hash, vae_temporal_compression_ratio
from .window_datasets import LatentWindowDataset, LatentWindowIterableDataset
from .windows import (
    OPTIONAL_FIELDS,
    Episode,
    LatentWindow,
    WindowBatch,
    check_action_pooling,
    collate_windows,
    episode_from_arrays,
    read_window,
)

__all__ = [
    "LATENT_DTYPES",
    "LATENT_FEATURES",
    "LATENT_INFO_FILE",
    "OPTIONAL_FIELDS",
    "SPLITS",
    "STORAGE_DTYPES",
    "Episode",
    "LatentDatasetInfo",
    "LatentStatistics",
    "LatentWindow",
    "LatentWindowDataset",
    "LatentWindowIterableDataset",
    "SplitInfo",
    "VAEInfo",
    "WindowBatch",
    "check_action_pooling",
    "check_row_arrays",
    "collate_windows",
    "dataset_from_shards",
    "denormalize_latents",
    "describe_vae",
    "encode_frames",
    "encode_round",
    "episode_from_arrays",
    "export_hub_folder",
    "latent_row",
    "latent_statistics",
    "latents_from_row",
    "latents_tensor",
    "load_latent_dataset",
    "load_latent_info",
    "normalize_latents",
    "push_latent_dataset_to_hub",
    "read_row_shard",
    "read_window",
    "render_dataset_card",
    "row_arrays",
    "save_latent_dataset",
    "vae_config_hash",
    "vae_temporal_compression_ratio",
    "write_metadata",
    "write_row_shard",
]
