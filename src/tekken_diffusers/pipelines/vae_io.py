"""Between pixels and the normalised latents the world model works on, through a per-frame or a video VAE.

A per-frame VAE (`r = 1`, `TekkenAutoencoderDC`) encodes and decodes every frame on its own, so frames go through it
in bounded chunks of `VAE_CHUNK_FRAMES`. A video VAE that compresses time by `r` (`LTXVideoVAE` ×8, `WanVAE` ×4)
works on clips: `1 + k·r` frames encode to `1 + k` latent frames, and `1 + k` latent frames decode to `1 + k·r`
frames (the first latent frame to one frame, every later one to `r`). Each latent frame depends on the frames before
it (and, with a non-causal decoder such as LTX-Video's, after it), so every clip goes through the VAE in one call;
for long clips, `vae.enable_tiling()` (diffusers) bounds the memory of that call.
"""

from __future__ import annotations

from typing import Any

import torch

from ..actions import num_latent_frames
from ..data.latents.vae import vae_temporal_compression_ratio
from ..models.autoencoders.latent_norm import denormalize_latents, normalize_latents

__all__ = [
    "VAE_CHUNK_FRAMES",
    "decode_after",
    "decode_latents",
    "encode_frames",
    "spatial_compression_ratio",
    "temporal_compression_ratio",
    "vae_name",
]

# Frames per VAE call when encoding a context or decoding the output with a per-frame VAE: a batch of many clips is
# split into such calls.
VAE_CHUNK_FRAMES = 64


def temporal_compression_ratio(vae: Any) -> int:
    """Game frames per latent frame: the VAE's `temporal_compression_ratio` (1 for a per-frame VAE or no VAE)."""
    return 1 if vae is None else vae_temporal_compression_ratio(vae)


def spatial_compression_ratio(vae: Any) -> int:
    """Pixels per latent along each side: the VAE's `spatial_compression_ratio`, else one halving per down block of
    an `AutoencoderKL`-like config (8 with no VAE)."""
    if vae is None:
        return 8
    return int(getattr(vae, "spatial_compression_ratio", None) or 2 ** (len(vae.config.block_out_channels) - 1))


def vae_name(vae: Any) -> str:
    """The VAE's class name for messages ("none" without a VAE)."""
    return "none" if vae is None else type(vae).__name__


@torch.no_grad()
def encode_frames(vae: Any, frames: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Pixel frames `(B, T, 3, H, W)` in [-1, 1] → normalised latents `(B, T', C, h, w)` (the VAE's mode), on
    `device`: `T' = T` for a per-frame VAE, `T' = 1 + (T - 1) / r` for a video VAE (which needs `T = 1 + k·r`)."""
    batch, num_frames = frames.shape[:2]
    ratio = temporal_compression_ratio(vae)
    if ratio > 1:
        num_latent_frames(num_frames, ratio, name=type(vae).__name__)  # raises, naming the valid counts
        latents = []
        for clip in frames:  # one VAE call per clip: its latent frames depend on each other
            pixels = clip.permute(1, 0, 2, 3)[None].to(device, vae.dtype)  # (1, 3, T, H, W)
            encoded = vae.encode(pixels).latent_dist.mode().float()  # (1, C, T', h, w)
            latents.append(normalize_latents(encoded, vae, channel_dim=1).permute(0, 2, 1, 3, 4))
        return torch.cat(latents)  # (B, T', C, h, w)
    pixels = frames.flatten(0, 1)  # (B*T, 3, H, W)
    latents = []
    for chunk in pixels.split(VAE_CHUNK_FRAMES):  # bounded memory per VAE call, whatever the batch
        encoded = vae.encode(chunk.to(device, vae.dtype)).latent_dist.mode()
        latents.append(normalize_latents(encoded.float(), vae, channel_dim=1))
    return torch.cat(latents).unflatten(0, (batch, num_frames))


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Normalised latents `(B, T, C, h, w)` → frames `(B, 3, T', H, W)` in [-1, 1] (diffusers' video layout):
    `T' = T` for a per-frame VAE, `T' = 1 + (T - 1)·r` for a video VAE (each clip decoded as one). `dtype`: the VAE's
    (default: `vae.dtype`, which walks the VAE's modules)."""
    batch, num_frames = latents.shape[:2]
    dtype = dtype or vae.dtype
    if temporal_compression_ratio(vae) > 1:
        clips = []
        for clip in latents.float():  # (T, C, h, w)
            raw = denormalize_latents(clip.permute(1, 0, 2, 3)[None], vae, channel_dim=1)  # (1, C, T, h, w)
            clips.append(vae.decode(raw.to(dtype)).sample.float().clamp(-1, 1))  # (1, 3, 1 + (T-1)·r, H, W)
        return torch.cat(clips)
    raw = denormalize_latents(latents.flatten(0, 1).float(), vae, channel_dim=1)
    frames = torch.cat(
        [vae.decode(chunk.to(dtype)).sample.float().clamp(-1, 1) for chunk in raw.split(VAE_CHUNK_FRAMES)]
    )  # (B*T, 3, H, W)
    return frames.unflatten(0, (batch, num_frames)).permute(0, 2, 1, 3, 4)


@torch.no_grad()
def decode_after(vae: Any, context_latents: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """The frames of `latents` `(B, N, C, h, w)` as the continuation of `context_latents` `(B, T, C, h, w)`:
    `(B, 3, N·r, H, W)` in [-1, 1].

    A per-frame VAE decodes `latents` alone (N frames). A video VAE decodes the clip `[context, latents]` as one, so
    that the first latent frame of `latents` is not read as the start of a clip (which decodes to one frame), and
    keeps its last `N·r` frames: `r` game frames per latent frame.
    """
    ratio = temporal_compression_ratio(vae)
    if ratio == 1:
        return decode_latents(vae, latents)
    clip = torch.cat([context_latents.to(latents.device, latents.dtype), latents], dim=1)
    frames = decode_latents(vae, clip)  # (B, 3, 1 + (T + N - 1)·r, H, W)
    return frames[:, :, frames.shape[2] - latents.shape[1] * ratio :]
