"""Scoring a world model against real held-out frames, beside the baselines that cost nothing.

Every number here compares generated frames with the *recorded* frames (not the VAE's decoding of them), so the VAE's
own error is inside the score; its reconstruction PSNR is reported beside as the ceiling.

- Pooled PSNR, `10·log10(1 / mean squared error)` over every pixel of every frame compared: one number per set of
  frames, with no per-frame cap. Identical consecutive frames (4–6 % of Boxing) give copy-last an infinite per-frame
  PSNR that a per-frame mean has to cap; the pooled figure has no such artefact.
- Boxer positions (Atari Boxing): the centroids of the white and the black boxer, read by colour.
- Rollout health: over a long open-loop rollout, whether both boxers stay on screen, whether the picture freezes for
  longer than real play ever does, and whether the colours stay in the range of real frames.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..actions import ids_to_bits
from ..data.rounds import load_round

__all__ = [
    "HeldoutWindows",
    "boxer_positions",
    "load_heldout_windows",
    "longest_frozen_run",
    "pooled_psnr",
    "rollout_health",
]

# Boxer colours of ale-py's Boxing at any resize: the white boxer is the only near-white object inside the ring, the
# black boxer the only near-black one. A tenth of the frame is cut off on every side: the score digits above the ring
# and the console's black blanking bar (the 3 leftmost columns at 64x64).
_RING_MARGIN_FRACTION = 10


def pooled_psnr(prediction: torch.Tensor, target: torch.Tensor, frame_dim: int | None = None) -> float | np.ndarray:
    """`10·log10(1 / MSE)` with the MSE pooled over all pixels (images in [0, 1]).

    Args:
        prediction: images `(..., 3, H, W)` in [0, 1].
        target: images of the same shape.
        frame_dim: if given, pool over everything but this dimension and return one value per index along it (e.g.
            `frame_dim=1` of `(B, K, 3, H, W)` gives the pooled PSNR at every generated frame k).
    """
    if prediction.shape != target.shape:
        raise ValueError(f"prediction has shape {tuple(prediction.shape)} but target has {tuple(target.shape)}")
    squared = (prediction.double() - target.double()).pow(2)
    if frame_dim is None:
        return float(10 * torch.log10(1.0 / squared.mean().clamp_min(1e-20)))
    other = [d for d in range(squared.ndim) if d != frame_dim % squared.ndim]
    mse = squared.mean(dim=other)
    return (10 * torch.log10(1.0 / mse.clamp_min(1e-20))).numpy()


def boxer_positions(frames: np.ndarray | torch.Tensor) -> np.ndarray:
    """Centres (x, y) in pixels of the white and the black boxer in Boxing frames, NaN where one is not visible.

    Args:
        frames: `(..., 3, H, W)` RGB, uint8 or float in [0, 1].

    Returns:
        `(..., 2, 2)`: `[..., 0]` the white boxer (player 1), `[..., 1]` the black boxer, each `(x, y)`.
    """
    frames = torch.as_tensor(frames)
    frames = frames.float() / 255.0 if not frames.is_floating_point() else frames.float()
    height, width = frames.shape[-2:]
    margin = max(1, height // _RING_MARGIN_FRACTION)
    masks = torch.stack([frames.amin(dim=-3) > 0.7, frames.amax(dim=-3) < 0.15], dim=-3)  # (..., 2, H, W)
    side = max(1, width // _RING_MARGIN_FRACTION)
    masks[..., :margin, :] = False
    masks[..., height - margin :, :] = False
    masks[..., :, :side] = False
    masks[..., :, width - side :] = False
    count = masks.sum(dim=(-2, -1)).float()  # (..., 2)
    ys = torch.arange(height, dtype=torch.float32).view(-1, 1)
    xs = torch.arange(width, dtype=torch.float32).view(1, -1)
    position = torch.stack([(masks * xs).sum(dim=(-2, -1)) / count, (masks * ys).sum(dim=(-2, -1)) / count], dim=-1)
    # Present: at least a 1/400 of the frame and at most an eighth (a boxer is ~1/50; a frame washed out white or
    # black is not a boxer).
    visible = (count >= max(4, height * width // 400)) & (count <= height * width // 8)
    position[~visible] = float("nan")
    return position.numpy()


def longest_frozen_run(frames: torch.Tensor, tolerance: float = 1.0 / 255) -> int:
    """Longest run of consecutive frames `(T, 3, H, W)` in [0, 1] that repeat the frame before them (largest pixel
    change at most `tolerance`); 0 if every frame changes."""
    if frames.shape[0] < 2:
        return 0
    still = ((frames[1:] - frames[:-1]).abs().flatten(1).amax(dim=1) <= tolerance).tolist()
    longest = current = 0
    for frozen in still:
        current = current + 1 if frozen else 0
        longest = max(longest, current)
    return longest


@dataclass
class HeldoutWindows:
    """Windows cut from recorded rounds.

    Args:
        frames: uint8 `(B, L, 3, H, W)` recorded frames.
        action_bits: float `(B, L, 8)` player 1's buttons (`actions_p1[t]` produced frame t).
        sources: `"round_0003.npz@120"` per window.
        action_bits_p2: float `(B, L, 8)` player 2's buttons when every round has them (two-player recordings),
            else None.
    """

    frames: torch.Tensor
    action_bits: torch.Tensor
    sources: list[str]
    action_bits_p2: torch.Tensor | None = None

    def unit(self) -> torch.Tensor:
        """The frames as float in [0, 1]."""
        return self.frames.float() / 255.0


def _round_files(rounds: str | Path) -> list[Path]:
    root = Path(rounds)
    if root.is_file():
        return [root]
    files = sorted(root.rglob("*.npz"))
    if not files:
        raise FileNotFoundError(f"--rounds {root}: no round .npz files found (expected ROUNDS/val/round_NNNN.npz)")
    return files


def load_heldout_windows(rounds: str | Path, length: int, count: int) -> HeldoutWindows:
    """`count` windows of `length` frames spread evenly over the valid frames of every round under `rounds`.

    Args:
        rounds: a round file or a folder searched recursively for `*.npz`.
        length: frames per window.
        count: number of windows.
    """
    starts: list[tuple[Path, int]] = []
    loaded = {}
    for path in _round_files(rounds):
        round_ = load_round(path)
        valid = int(np.asarray(round_.valid_frames).sum())
        loaded[path] = round_
        starts.extend((path, start) for start in range(0, valid - length + 1, max(1, length // 2)))
    if not starts:
        raise ValueError(f"--rounds {rounds}: no round has {length} valid frames")
    picks = np.linspace(0, len(starts) - 1, min(count, len(starts))).round().astype(int)
    frames, bits, bits_p2, sources = [], [], [], []
    for index in picks:
        path, start = starts[index]
        round_ = loaded[path]
        frames.append(torch.from_numpy(np.asarray(round_.images[start : start + length])))
        bits.append(torch.from_numpy(ids_to_bits(np.asarray(round_.actions_p1[start : start + length]))).float())
        if round_.actions_p2 is not None:
            ids_p2 = np.asarray(round_.actions_p2[start : start + length])
            bits_p2.append(torch.from_numpy(ids_to_bits(ids_p2)).float())
        sources.append(f"{path.name}@{start}")
    both = torch.stack(bits_p2) if len(bits_p2) == len(bits) else None
    return HeldoutWindows(torch.stack(frames), torch.stack(bits), sources, action_bits_p2=both)


def rollout_health(generated: torch.Tensor, recorded: torch.Tensor) -> dict[str, float]:
    """Health of one long rollout `(T, 3, H, W)` in [0, 1], against recorded frames of the same game.

    Returns the frames where each boxer is missing, the longest frozen run beside the recorded one, and the share of
    frames whose mean colour leaves the recorded frames' range (widened by 2 %).
    """
    positions = boxer_positions(generated)  # (T, 2, 2)
    missing = np.isnan(positions).any(axis=-1)  # (T, 2)
    generated_colour = generated.mean(dim=(-2, -1))  # (T, 3)
    recorded_colour = recorded.mean(dim=(-2, -1))
    low, high = recorded_colour.amin(0) - 0.02, recorded_colour.amax(0) + 0.02
    outside = ((generated_colour < low) | (generated_colour > high)).any(dim=1)
    return {
        "frames": int(generated.shape[0]),
        "white_boxer_missing_frames": int(missing[:, 0].sum()),
        "black_boxer_missing_frames": int(missing[:, 1].sum()),
        "longest_frozen_run": longest_frozen_run(generated),
        "longest_frozen_run_recorded": longest_frozen_run(recorded),
        "frames_outside_colour_range": int(outside.sum()),
        "min_pixel": float(generated.min()),
        "max_pixel": float(generated.max()),
    }
