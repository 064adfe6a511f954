"""The one place where latents are normalised for the world model and denormalised for decoding, for every VAE.

It lives beside the row schema because a latent dataset stores normalised latents and records the statistics
(`info.LatentDatasetInfo.normalization`); the pipeline and the models import it from here
(`tekken_diffusers.models.autoencoders.latent_norm` re-exports it).

Three conventions exist in diffusers (diffusers 0.42) and this module reads all of them:

- SD / Flux / `AutoencoderDC`: config `scaling_factor` (and `shift_factor`): `(z - shift) * scaling`;
- LTX-Video: persistent buffers `latents_mean` / `latents_std` plus config `scaling_factor`:
  `(z - mean) * scaling / std`;
- Wan 2.1: config lists `latents_mean` / `latents_std`, no `scaling_factor`: `(z - mean) / std`;
- `TekkenAutoencoderDC`: config `latents_mean` / `latents_std` (measured by `training/train_vae.py`) with
  `scaling_factor` 1, or `scaling_factor` / `shift_factor` alone (a converted `AutoencoderDC`).

So: when per-channel statistics are present, `normalized = (z - mean) / std * scaling_factor`; otherwise
`normalized = (z - shift_factor) * scaling_factor`. A missing `scaling_factor` is 1 and a missing `shift_factor` is 0.
The arithmetic runs in float32 and the result has the input's dtype.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

__all__ = ["LatentStatistics", "latent_statistics", "normalize_latents", "denormalize_latents"]


@dataclass(frozen=True)
class LatentStatistics:
    """The numbers that map a VAE's raw latents to the world model's normalised latents.

    Args:
        scaling_factor: multiplies the centred (and, with per-channel statistics, whitened) latents.
        shift_factor: subtracted before scaling when there are no per-channel statistics.
        mean: per-channel means, or None.
        std: per-channel standard deviations, or None (present exactly when `mean` is).
    """

    scaling_factor: float = 1.0
    shift_factor: float = 0.0
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if (self.mean is None) != (self.std is None):
            raise ValueError(
                f"latents_mean and latents_std must be given together, got mean={self.mean} and std={self.std}"
            )
        if self.mean is not None and len(self.mean) != len(self.std):
            raise ValueError(f"latents_mean has {len(self.mean)} channels but latents_std has {len(self.std)}")
        if self.std is not None and min(self.std) <= 0:
            raise ValueError(f"latents_std must be positive, got {self.std}")
        if self.scaling_factor == 0:
            raise ValueError("scaling_factor must not be 0")

    @property
    def per_channel(self) -> bool:
        return self.mean is not None


def _as_floats(values: Any) -> tuple[float, ...] | None:
    if values is None:
        return None
    if isinstance(values, torch.Tensor):
        return tuple(float(v) for v in values.detach().flatten().cpu().tolist())
    return tuple(float(v) for v in values)


def latent_statistics(config_or_vae: Any) -> LatentStatistics:
    """Read the normalisation statistics of a VAE (module), its config (mapping) or pass `LatentStatistics` through.

    Args:
        config_or_vae: a diffusers VAE (LTX buffers are read from the module), a config mapping such as `vae.config`
            or a plain dict, or a `LatentStatistics`.
    """
    if isinstance(config_or_vae, LatentStatistics):
        return config_or_vae
    buffers: dict[str, torch.Tensor] = {}
    if isinstance(config_or_vae, torch.nn.Module):
        # LTX-Video keeps mean/std as persistent buffers, not in its config.
        buffers = dict(config_or_vae.named_buffers(recurse=False))
        config = getattr(config_or_vae, "config", {})
    elif isinstance(config_or_vae, Mapping):
        config = config_or_vae
    else:
        raise TypeError(
            f"expected a VAE module, a config mapping or LatentStatistics, got {type(config_or_vae).__name__}"
        )
    mean = buffers.get("latents_mean", config.get("latents_mean"))
    std = buffers.get("latents_std", config.get("latents_std"))
    scaling_factor = config.get("scaling_factor")
    shift_factor = config.get("shift_factor")
    return LatentStatistics(
        scaling_factor=1.0 if scaling_factor is None else float(scaling_factor),
        shift_factor=0.0 if shift_factor is None else float(shift_factor),
        mean=_as_floats(mean),
        std=_as_floats(std),
    )


def _per_channel(values: Sequence[float], latents: torch.Tensor, channel_dim: int) -> torch.Tensor:
    dim = channel_dim % latents.ndim
    if latents.shape[dim] != len(values):
        raise ValueError(
            f"latents have {latents.shape[dim]} channels at dim {channel_dim} (shape {tuple(latents.shape)}) "
            f"but the VAE's latents_mean/latents_std have {len(values)}"
        )
    shape = [1] * latents.ndim
    shape[dim] = len(values)
    return torch.tensor(values, dtype=torch.float32, device=latents.device).view(shape)


def normalize_latents(latents: torch.Tensor, config_or_vae: Any, channel_dim: int = 1) -> torch.Tensor:
    """Raw VAE latents → the normalised latents the world model sees.

    Args:
        latents: raw latents from `vae.encode(...).latent_dist`, any layout.
        config_or_vae: the VAE, its config, or `LatentStatistics` (see `latent_statistics`).
        channel_dim: the latent-channel axis of `latents` (1 for `[B, C, (T,) H, W]`, 2 for `[B, T, C, H, W]`).
    """
    stats = latent_statistics(config_or_vae)
    values = latents.float()
    if stats.per_channel:
        mean = _per_channel(stats.mean, latents, channel_dim)
        std = _per_channel(stats.std, latents, channel_dim)
        normalized = (values - mean) / std * stats.scaling_factor
    else:
        normalized = (values - stats.shift_factor) * stats.scaling_factor
    return normalized.to(latents.dtype)


def denormalize_latents(latents: torch.Tensor, config_or_vae: Any, channel_dim: int = 1) -> torch.Tensor:
    """Normalised latents → raw VAE latents ready for `vae.decode`; the inverse of `normalize_latents`.

    Args:
        latents: normalised latents, any layout.
        config_or_vae: the VAE, its config, or `LatentStatistics` (see `latent_statistics`).
        channel_dim: the latent-channel axis of `latents`.
    """
    stats = latent_statistics(config_or_vae)
    values = latents.float()
    if stats.per_channel:
        mean = _per_channel(stats.mean, latents, channel_dim)
        std = _per_channel(stats.std, latents, channel_dim)
        raw = values / stats.scaling_factor * std + mean
    else:
        raw = values / stats.scaling_factor + stats.shift_factor
    return raw.to(latents.dtype)
