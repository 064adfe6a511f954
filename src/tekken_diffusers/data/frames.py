"""Frames ↔ VAE pixels: uint8 RGB `(…, 3, H, W)` (plus an optional pose channel) ↔ float in [-1, 1].

Every VAE here takes and returns pixels scaled as `x / 255 * 2 - 1` (the original system's scaling).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["frames_to_pixels", "pixels_to_frames"]


def frames_to_pixels(
    images: np.ndarray | torch.Tensor, pose_channel: np.ndarray | torch.Tensor | None = None
) -> torch.Tensor:
    """uint8 frames `(…, 3, H, W)` (+ pose `(…, 1, H, W)` in 0..255) → float32 pixels `(…, 3 or 4, H, W)` in [-1, 1].

    Args:
        images: RGB frames, channel-first, 0..255.
        pose_channel: the processed pose channel (`tekken_diffusers.data.pose.pose_to_channel`), appended after RGB.
    """
    frames = torch.as_tensor(images)
    if frames.ndim < 3 or frames.shape[-3] != 3:
        raise ValueError(f"images: expected (…, 3, H, W) RGB, got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise ValueError(f"images: expected uint8 in 0..255, got {frames.dtype}")
    pixels = frames.float()
    if pose_channel is not None:
        pose = torch.as_tensor(pose_channel).float().to(pixels.device)
        if pose.shape[:-3] != pixels.shape[:-3] or pose.shape[-3:] != (1, *pixels.shape[-2:]):
            raise ValueError(
                f"pose channel: expected shape {(*pixels.shape[:-3], 1, *pixels.shape[-2:])} to match the frames, "
                f"got {tuple(pose.shape)}"
            )
        pixels = torch.cat([pixels, pose], dim=-3)  # (…, 4, H, W)
    return pixels / 255.0 * 2.0 - 1.0


def pixels_to_frames(pixels: torch.Tensor) -> torch.Tensor:
    """Float pixels in [-1, 1] (any layout) → uint8 0..255 (clamped, rounded)."""
    return ((pixels.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)
