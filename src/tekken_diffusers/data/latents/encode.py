"""Encoding: uint8 frames → latents with any diffusers VAE (`encode_frames`), and a round → a dataset row
(`encode_round`: the valid frames, the VAE's frame-count rule, normalisation, `schema.latent_row`)."""

from __future__ import annotations

from typing import Any

import datasets
import numpy as np
import torch

from ..frames import frames_to_pixels
from ..rounds import Round
from .normalization import normalize_latents
from .schema import latent_row
from .vae import vae_temporal_compression_ratio

logger = datasets.logging.get_logger(__name__)

__all__ = ["encode_frames", "encode_round"]


def _takes_clips(vae: torch.nn.Module) -> bool:
    """Whether the VAE's encoder is 3D (diffusers' video VAEs: LTX, Wan) and so needs `[B, C, T, H, W]` input."""
    config = getattr(vae, "config", {})
    video_keys = ("scale_factor_temporal", "patch_size_t", "temperal_downsample", "spatio_temporal_scaling")
    return vae_temporal_compression_ratio(vae) > 1 or any(key in config for key in video_keys)


def _latent_mode(output: Any, vae: torch.nn.Module) -> torch.Tensor:
    """The deterministic latents of an `encode` output: `latent_dist.mode()`, `EncoderOutput.latent`, or a tensor."""
    if hasattr(output, "latent_dist"):
        return output.latent_dist.mode()
    if hasattr(output, "latent"):
        return output.latent
    if isinstance(output, tuple) and output:
        first = output[0]
        return first.mode() if hasattr(first, "mode") else first
    if isinstance(output, torch.Tensor):
        return output
    raise TypeError(f"{type(vae).__name__}.encode returned {type(output).__name__}, not an AutoencoderKLOutput")


@torch.no_grad()
def encode_frames(
    vae: torch.nn.Module,
    images: np.ndarray | torch.Tensor,
    batch_size: int = 16,
    pose_channel: torch.Tensor | None = None,
) -> torch.Tensor:
    """Encode uint8 frames to raw (not normalised) latents: `latent_dist.mode()`, the deterministic mean.

    A per-frame VAE sees batches of `batch_size` frames `[b, 3|4, H, W]`. A video VAE (LTX, Wan) sees the whole clip
    `[1, 3|4, T, H, W]` at once, because its causal encoder makes each latent frame depend on the earlier ones; `T`
    must then be `1 + k·r`.

    Args:
        vae: a diffusers VAE; it runs on the device and dtype of its parameters.
        images: uint8 `(T, 3, H, W)` RGB frames.
        batch_size: frames per `encode` call for a per-frame VAE.
        pose_channel: optional float `(T, 1, H, W)` pose channel in 0..255 (`tekken_diffusers.data.pose`).

    Returns:
        float32 latents `(T', C, h, w)` on the CPU.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    parameter = next(vae.parameters())
    device, dtype = parameter.device, parameter.dtype
    images = torch.as_tensor(images)
    num_frames = images.shape[0]

    if _takes_clips(vae):
        pixels = frames_to_pixels(images, pose_channel)  # (T, C_in, H, W)
        clip = pixels.permute(1, 0, 2, 3).unsqueeze(0).to(device=device, dtype=dtype)  # (1, C_in, T, H, W)
        latents = _latent_mode(vae.encode(clip), vae)  # (1, C, T', h, w)
        return latents[0].permute(1, 0, 2, 3).float().cpu()  # (T', C, h, w)

    chunks = []
    for start in range(0, num_frames, batch_size):
        stop = min(start + batch_size, num_frames)
        # Every call gets exactly `batch_size` frames (the last batch repeats its last frame): a new batch shape costs
        # CPU backends a slow first call, and a frame's latents then never depend on the length of its round.
        index = torch.arange(start, start + batch_size).clamp(max=stop - 1)
        pose = None if pose_channel is None else pose_channel[index]
        pixels = frames_to_pixels(images[index], pose).to(device=device, dtype=dtype)  # (batch_size, C_in, H, W)
        latents = _latent_mode(vae.encode(pixels), vae).float().cpu()  # (batch_size, C, h, w)
        chunks.append(latents[: stop - start])
    return torch.cat(chunks)  # (T, C, h, w)


@torch.no_grad()
def encode_round(
    round_: Round,
    vae: torch.nn.Module,
    round_id: str,
    split: str,
    *,
    batch_size: int = 16,
    latent_dtype: str = "float16",
    normalize: bool = True,
    keep_padding: bool = False,
    pose_channel: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Encode one round to a dataset row.

    Args:
        round_: the round (`load_round`).
        vae: the VAE (any diffusers VAE; `latent_dist.mode()` is used).
        round_id: the row's `round_id` (the file stem).
        split: `train` or `val`.
        batch_size: frames per `encode` call.
        latent_dtype: storage dtype, `float16` or `bfloat16`.
        normalize: store `normalize_latents(latents, vae)` (the default) instead of raw latents.
        keep_padding: also encode the trailing padding frames (`num_valid` then marks where they start). Only for
            VAEs without temporal compression.
        pose_channel: the pose channel `(T, 1, H, W)` of the whole round for a 4-channel VAE.

    Raises:
        ValueError: naming the round on a pose/VAE channel mismatch or a bad option.
    """
    where = f"round {split}/{round_id}"
    # 1. Which frames: the valid prefix (or all), cut to 1 + k·r frames for a video VAE.
    r = vae_temporal_compression_ratio(vae)
    if keep_padding and r > 1:
        raise ValueError(f"{where}: keep_padding needs a VAE without temporal compression (this one has {r})")
    num_frames = round_.num_frames if keep_padding else round_.num_valid
    if r > 1:
        dropped = (num_frames - 1) % r
        num_frames -= dropped
        if dropped:
            logger.info("%s: dropped the last %d frames to get 1 + k·%d frames", where, dropped, r)

    # 2. The VAE's input channels must match RGB (+ pose).
    in_channels = getattr(vae, "config", {}).get("in_channels")
    given = 3 if pose_channel is None else 4
    if in_channels is not None and in_channels != given:
        hint = " (RGB + pose: pass a pose folder)" if in_channels == 4 else " (RGB: drop the pose folder)"
        raise ValueError(f"{where}: the VAE takes {in_channels} input channels{hint}, got {given}")
    if pose_channel is not None and pose_channel.shape[0] < num_frames:
        raise ValueError(f"{where}: pose channel has {pose_channel.shape[0]} frames, need {num_frames}")

    # 3. Encode, then normalise in float32.
    pose = None if pose_channel is None else pose_channel[:num_frames]
    latents = encode_frames(vae, round_.images[:num_frames], batch_size=batch_size, pose_channel=pose)  # (T',C,h,w)
    if normalize:
        latents = normalize_latents(latents, vae, channel_dim=1)

    # 4. The row.
    return latent_row(
        round_id,
        split,
        latents,
        round_.actions_p1[:num_frames],
        latent_dtype=latent_dtype,
        actions_p2=None if round_.actions_p2 is None else round_.actions_p2[:num_frames],
        states=None if round_.states is None else round_.states[:num_frames],
        num_valid=min(round_.num_valid, num_frames),
        fps=round_.fps,
        game=round_.game,
        temporal_compression_ratio=r,
    )
