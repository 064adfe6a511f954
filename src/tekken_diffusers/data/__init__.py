"""Data: rounds of gameplay (`.npz`), game recorders, and latent episodes as Hugging Face datasets."""

from .rounds import Round, RoundFormatError, list_rounds, load_round, save_round, validate_round
