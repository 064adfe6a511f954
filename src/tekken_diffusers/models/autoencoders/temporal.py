"""Frame bookkeeping for VAEs that compress time: which frames make each latent frame, and actions per latent frame.

Causal video VAEs (LTX-Video, Wan 2.1) encode the first frame alone and every later group of `r` frames (the temporal
compression ratio) into one latent frame, so a clip must have `1 + k·r` frames and gives `1 + k` latent frames:

    frames          0 | 1 … r | r+1 … 2r | …
    latent frame    0 |   1   |    2     | …

A per-frame VAE (`TekkenAutoencoderDC`) has `r = 1`: every frame is its own latent frame. Actions are pooled over the
same groups (`pool_actions`), so latent frame `j` is conditioned on the inputs of the frames it encodes.
"""

from __future__ import annotations

import numpy as np
import torch

from ...actions import bits_to_ids, ids_to_bits

__all__ = [
    "POOL_MODES",
    "TemporalCompressionMixin",
    "latent_frame_groups",
    "num_frames_for_latents",
    "num_latent_frames",
    "pool_actions",
]

POOL_MODES = ("or", "mean")


def _check_ratio(temporal_compression_ratio: int) -> None:
    if not isinstance(temporal_compression_ratio, int) or temporal_compression_ratio < 1:
        raise ValueError(f"temporal_compression_ratio must be a positive int, got {temporal_compression_ratio!r}")


def num_latent_frames(num_frames: int, temporal_compression_ratio: int, name: str = "this VAE") -> int:
    """The number of latent frames for a clip of `num_frames` frames: `1 + (num_frames - 1) / r`.

    Args:
        num_frames: frames in the clip.
        temporal_compression_ratio: `r`, frames per latent frame after the first.
        name: the VAE's name, for the error message.

    Raises:
        ValueError: if `num_frames` is not `1 + k·r`; the message names the nearest valid counts.
    """
    _check_ratio(temporal_compression_ratio)
    r = temporal_compression_ratio
    if num_frames < 1 or (num_frames - 1) % r != 0:
        below = 1 + max(num_frames - 1, 0) // r * r
        raise ValueError(
            f"{name} cannot encode a clip of {num_frames} frames: its temporal compression is {r}, so frame counts "
            f"must be 1 + k·{r} (1, {1 + r}, {1 + 2 * r}, …); the nearest valid counts are {below} and {below + r}"
        )
    return 1 + (num_frames - 1) // r


def num_frames_for_latents(num_latent: int, temporal_compression_ratio: int) -> int:
    """The number of frames that `num_latent` latent frames decode to: `1 + (num_latent - 1)·r`."""
    _check_ratio(temporal_compression_ratio)
    if num_latent < 1:
        raise ValueError(f"need at least one latent frame, got {num_latent}")
    return 1 + (num_latent - 1) * temporal_compression_ratio


def latent_frame_groups(num_frames: int, temporal_compression_ratio: int) -> list[range]:
    """The frames behind each latent frame: `[range(0, 1), range(1, 1 + r), range(1 + r, 1 + 2r), …]`."""
    num_latent = num_latent_frames(num_frames, temporal_compression_ratio)
    r = temporal_compression_ratio
    return [range(0, 1)] + [range(1 + (j - 1) * r, 1 + j * r) for j in range(1, num_latent)]


def pool_actions(
    actions: torch.Tensor | np.ndarray, temporal_compression_ratio: int, mode: str = "or"
) -> torch.Tensor | np.ndarray:
    """Per-frame action ids → one action per latent frame, over the groups of `latent_frame_groups`.

    Args:
        actions: uint8 action ids `(..., T)` with `T = 1 + k·r` (torch or numpy; the result has the same kind).
        temporal_compression_ratio: `r`.
        mode: `"or"`: a button counts as pressed for a latent frame if it is pressed in any of its frames; returns
            uint8 ids `(..., 1 + k)`, so the world model's action input is unchanged. `"mean"`: the fraction of the
            group's frames in which each button is pressed; returns float32 bits `(..., 1 + k, 8)`, MSB first.

    Raises:
        ValueError: on an invalid frame count or an unknown mode.
    """
    if mode not in POOL_MODES:
        raise ValueError(f"unknown action pooling mode {mode!r}; known modes: {', '.join(POOL_MODES)}")
    is_numpy = isinstance(actions, np.ndarray)
    ids = torch.as_tensor(actions)
    num_frames = ids.shape[-1]
    num_latent = num_latent_frames(num_frames, temporal_compression_ratio, name="pool_actions")
    r = temporal_compression_ratio

    bits = ids_to_bits(ids)  # (..., T, 8) float32
    first = bits[..., :1, :]  # (..., 1, 8)
    groups = bits[..., 1:, :].unflatten(-2, (num_latent - 1, r))  # (..., k, r, 8)
    if mode == "or":
        pooled = torch.cat([first, groups.amax(dim=-2)], dim=-2)  # (..., 1 + k, 8)
        result = bits_to_ids(pooled)  # (..., 1 + k) uint8
    else:
        result = torch.cat([first, groups.mean(dim=-2)], dim=-2)  # (..., 1 + k, 8)
    return result.numpy() if is_numpy else result


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
