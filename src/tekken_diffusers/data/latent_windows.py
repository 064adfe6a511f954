"""The old import path of the training windows (`tekken_diffusers.data.latents.windows` and `.window_datasets`),
kept working."""

from .latents.window_datasets import LatentWindowDataset, LatentWindowIterableDataset
from .latents.windows import (
    OPTIONAL_FIELDS,
    Episode,
    LatentWindow,
    WindowBatch,
    collate_windows,
    episode_from_arrays,
    read_window,
)

# The old private names, now public in `latents.windows`.
_Episode = Episode
_episode = episode_from_arrays
_window = read_window

__all__ = [
    "OPTIONAL_FIELDS",
    "LatentWindow",
    "WindowBatch",
    "collate_windows",
    "LatentWindowDataset",
    "LatentWindowIterableDataset",
]
