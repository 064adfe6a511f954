"""Between pixels and the normalised latents the world model works on: a per-frame VAE, called in bounded chunks."""

from __future__ import annotations

from typing import Any

import torch

from ..models.autoencoders.latent_norm import denormalize_latents, normalize_latents

__all__ = ["VAE_CHUNK_FRAMES", "check_per_frame_vae", "decode_latents", "encode_frames"]

# Frames per VAE call when encoding a context or decoding the output: a batch of many clips is split into such calls.
VAE_CHUNK_FRAMES = 64


def check_per_frame_vae(vae: Any) -> None:
    """Refuse a VAE that compresses time: the pipeline generates one latent per frame."""
    ratio = getattr(vae, "temporal_compression_ratio", 1) or 1
    if ratio != 1:
        raise ValueError(
            f"the pipeline generates one latent per frame, but {type(vae).__name__} compresses time by "
            f"{ratio}; encode clips yourself and pass `context_latents`, with output_type='latent'"
        )


@torch.no_grad()
def encode_frames(vae: Any, frames: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Pixel frames `(B, T, 3, H, W)` in [-1, 1] → normalised latents `(B, T, C, h, w)` (the VAE's mode), on
    `device`."""
    check_per_frame_vae(vae)
    batch, num_frames = frames.shape[:2]
    pixels = frames.flatten(0, 1)  # (B*T, 3, H, W)
    latents = []
    for chunk in pixels.split(VAE_CHUNK_FRAMES):  # bounded memory per VAE call, whatever the batch
        encoded = vae.encode(chunk.to(device, vae.dtype)).latent_dist.mode()
        latents.append(normalize_latents(encoded.float(), vae, channel_dim=1))
    return torch.cat(latents).unflatten(0, (batch, num_frames))


@torch.no_grad()
def decode_latents(vae: Any, latents: torch.Tensor) -> torch.Tensor:
    """Normalised latents `(B, T, C, h, w)` → frames `(B, 3, T, H, W)` in [-1, 1] (diffusers' video layout)."""
    check_per_frame_vae(vae)
    batch, num_frames = latents.shape[:2]
    raw = denormalize_latents(latents.flatten(0, 1).float(), vae, channel_dim=1)
    frames = torch.cat(
        [vae.decode(chunk.to(vae.dtype)).sample.float().clamp(-1, 1) for chunk in raw.split(VAE_CHUNK_FRAMES)]
    )  # (B*T, 3, H, W)
    return frames.unflatten(0, (batch, num_frames)).permute(0, 2, 1, 3, 4)
