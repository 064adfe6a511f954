"""Data: rounds of gameplay (`.npz`), game recorders, and latent episodes as Hugging Face datasets (`latents`)."""

from .latents import (
    LatentDatasetInfo,
    LatentWindow,
    LatentWindowDataset,
    LatentWindowIterableDataset,
    WindowBatch,
    collate_windows,
    encode_round,
    load_latent_dataset,
    load_latent_info,
    save_latent_dataset,
)
from .rounds import Round, RoundFormatError, list_rounds, load_round, save_round, validate_round
