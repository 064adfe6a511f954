"""Pose: the optional 4th VAE input channel, a blurred skeleton heat-map drawn by a pose estimator.

The original system (its `--pose-dir`) stores one file per round,
`{pose_dir}/{round_name}_two_player_poses.npz`, whose key `pose_images` is `(T, 3, H, W)` with values in 0..255 and the
frames' H×W. It is reduced to one channel by a max over the 3 channels, blurred with a 3×3 gaussian, and appended after
RGB; the 4 channels are then scaled to [-1, 1] together (`tekken_diffusers.data.frames.frames_to_pixels`). A VAE with
`in_channels=4` takes that input and reconstructs all 4 channels.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["POSE_FILE_SUFFIX", "pose_path_for_round", "load_pose_images", "pose_to_channel", "load_pose_channel"]

POSE_FILE_SUFFIX = "_two_player_poses.npz"
# torchvision's gaussian_blur(kernel_size=3) with no sigma uses 0.3 * ((3 - 1) * 0.5 - 1) + 0.8 = 0.8, reflect pad.
_BLUR_SIGMA = 0.8


def pose_path_for_round(round_path: str | os.PathLike, pose_dir: str | os.PathLike) -> Path:
    """`{pose_dir}/{round stem}_two_player_poses.npz` for a round file such as `train/round_0007.npz`."""
    return Path(pose_dir) / f"{Path(round_path).stem}{POSE_FILE_SUFFIX}"


def load_pose_images(path: str | os.PathLike, num_frames: int | None = None) -> np.ndarray:
    """Read `pose_images` `(T, 3, H, W)` from a pose file, validated.

    Args:
        path: the `*_two_player_poses.npz` file.
        num_frames: if given, the number of frames the matching round has; a different count is an error.

    Raises:
        FileNotFoundError: if the file is missing (nothing is silently skipped, unlike the original).
        ValueError: naming the file and what is wrong with `pose_images`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no pose file (a 4-channel VAE needs one per round)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "pose_images" not in npz.files:
                raise ValueError(f"{path}: pose_images: expected a (T, 3, H, W) array, found keys {npz.files}")
            pose_images = npz["pose_images"]
    except (OSError, zipfile.BadZipFile, EOFError) as error:
        raise ValueError(f"{path}: not a readable .npz file ({error})") from error
    if pose_images.ndim != 4 or pose_images.shape[1] != 3:
        raise ValueError(f"{path}: pose_images: expected shape (T, 3, H, W), found {pose_images.shape}")
    if not np.issubdtype(pose_images.dtype, np.number):
        raise ValueError(f"{path}: pose_images: expected numbers in 0..255, found dtype {pose_images.dtype}")
    if num_frames is not None and pose_images.shape[0] != num_frames:
        raise ValueError(f"{path}: pose_images has {pose_images.shape[0]} frames but the round has {num_frames}")
    return pose_images


def _gaussian_kernel_3x3(sigma: float) -> torch.Tensor:
    offsets = torch.tensor([-1.0, 0.0, 1.0])
    weights = torch.exp(-0.5 * (offsets / sigma) ** 2)
    weights = weights / weights.sum()
    return weights[:, None] * weights[None, :]  # (3, 3), separable, sums to 1


def pose_to_channel(pose_images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """`(T, 3, H, W)` pose images → the float32 `(T, 1, H, W)` pose channel in 0..255: max over channels, 3×3 blur.

    The blur matches torchvision's `gaussian_blur(kernel_size=3)` (sigma 0.8, reflect padding) but stays in float
    (torchvision rounds uint8 input back to uint8).
    """
    pose = torch.as_tensor(np.asarray(pose_images) if isinstance(pose_images, np.ndarray) else pose_images)
    if pose.ndim != 4 or pose.shape[1] != 3:
        raise ValueError(f"pose images: expected shape (T, 3, H, W), got {tuple(pose.shape)}")
    channel = pose.float().amax(dim=1, keepdim=True)  # (T, 1, H, W)
    kernel = _gaussian_kernel_3x3(_BLUR_SIGMA).to(channel.device).view(1, 1, 3, 3)
    padded = F.pad(channel, (1, 1, 1, 1), mode="reflect")  # (T, 1, H + 2, W + 2)
    return F.conv2d(padded, kernel)  # (T, 1, H, W)


def load_pose_channel(
    round_path: str | os.PathLike, pose_dir: str | os.PathLike, num_frames: int | None = None
) -> torch.Tensor:
    """The processed pose channel `(T, 1, H, W)` (float32, 0..255) for a round file, read from `pose_dir`."""
    return pose_to_channel(load_pose_images(pose_path_for_round(round_path, pose_dir), num_frames=num_frames))
