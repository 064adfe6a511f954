"""Data: rounds of gameplay (`.npz`), game recorders, and latent episodes as Hugging Face datasets."""

from .latent_dataset import LatentDatasetInfo, encode_round, load_latent_dataset, load_latent_info, save_latent_dataset
from .latent_windows import (
    LatentWindow,
    LatentWindowDataset,
    LatentWindowIterableDataset,
    WindowBatch,
    collate_windows,
)
from .rounds import Round, RoundFormatError, list_rounds, load_round, save_round, validate_round
