"""Frame bookkeeping for VAEs that compress time: which frames make each latent frame, and actions per latent frame.

Causal video VAEs (LTX-Video, Wan 2.1) encode the first frame alone and every later group of `r` frames (the temporal
compression ratio) into one latent frame, so a clip must have `1 + k·r` frames and gives `1 + k` latent frames:

    frames          0 | 1 … r | r+1 … 2r | …
    latent frame    0 |   1   |    2     | …

A per-frame VAE (`TekkenAutoencoderDC`) has `r = 1`: every frame is its own latent frame. Actions are pooled over the
same groups (`pool_actions`), so latent frame `j` is conditioned on the inputs of the frames it encodes.

The frame arithmetic and the pooling live in `tekken_diffusers.actions` (the data layer uses them without importing
the models) and are re-exported here; this module adds the VAE mixin.
"""

from __future__ import annotations

import numpy as np
import torch

from ...actions import (
    POOL_MODES,
    latent_frame_groups,
    num_frames_for_latents,
    num_latent_frames,
    pool_actions,
)

__all__ = [
    "POOL_MODES",
    "TemporalCompressionMixin",
    "latent_frame_groups",
    "num_frames_for_latents",
    "num_latent_frames",
    "pool_actions",
]


class TemporalCompressionMixin:
    """Frame bookkeeping methods for a VAE with a `temporal_compression_ratio` attribute (1 for per-frame VAEs)."""

    temporal_compression_ratio: int

    def num_latent_frames(self, num_frames: int) -> int:
        """Latent frames for a clip of `num_frames` frames (`1 + k·r` frames → `1 + k`); raises on other counts."""
        return num_latent_frames(num_frames, self.temporal_compression_ratio, name=type(self).__name__)

    def num_frames_for_latents(self, num_latent: int) -> int:
        """Frames that `num_latent` latent frames decode to (`1 + (num_latent - 1)·r`)."""
        return num_frames_for_latents(num_latent, self.temporal_compression_ratio)

    def latent_frame_groups(self, num_frames: int) -> list[range]:
        """The frames behind each latent frame (see `latent_frame_groups`)."""
        return latent_frame_groups(num_frames, self.temporal_compression_ratio)

    def pool_actions(self, actions: torch.Tensor | np.ndarray, mode: str = "or") -> torch.Tensor | np.ndarray:
        """Per-frame action ids `(..., T)` → one action per latent frame (see `pool_actions` for the modes)."""
        return pool_actions(actions, self.temporal_compression_ratio, mode=mode)
