"""Does the world model follow the player's inputs? (The shipped model's results: docs/evaluation.md.)

- Δ-PSNR: open-loop rollouts under the true held-out inputs against rollouts of the same contexts under inputs
  shuffled between windows; a model that uses its inputs scores higher with the true ones.
- Boxer tracking (Boxing only): the white boxer's position read from the generated frames by colour, against its
  position in the recorded frames under the same inputs.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["white_boxer_position", "position_error"]


def white_boxer_position(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Centre (x, y) in pixels of the white boxer in Boxing frames, NaN where it is not visible.

    Args:
        frames: `(..., 3, H, W)` RGB, uint8 or float in [0, 1].

    The white boxer is the only large near-white object inside the ring (all channels above 70 % of the range); the
    score digits above the ring are excluded by ignoring the top and bottom tenth of the frame.
    """
    frames = torch.as_tensor(frames)
    frames = frames.float() / 255.0 if not frames.is_floating_point() else frames.float()
    height, width = frames.shape[-2:]
    margin = max(1, height // 10)
    mask = frames.amin(dim=-3) > 0.7  # (..., H, W)
    mask[..., :margin, :] = False
    mask[..., height - margin :, :] = False
    count = mask.sum(dim=(-2, -1)).float()
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, -1)
    x = (mask * xs).sum(dim=(-2, -1)) / count
    y = (mask * ys).sum(dim=(-2, -1)) / count
    visible = count >= max(4, height * width // 400)
    position = torch.stack([x, y], dim=-1)
    position[~visible] = float("nan")
    return position.numpy()


def position_error(generated: np.ndarray | torch.Tensor, recorded: np.ndarray | torch.Tensor) -> np.ndarray:
    """Per-frame Euclidean distance (pixels) between the white boxer in generated and recorded frames `(..., 3, H, W)`;
    NaN where it is missing in either."""
    difference = white_boxer_position(generated) - white_boxer_position(recorded)
    return np.sqrt((difference**2).sum(axis=-1))
