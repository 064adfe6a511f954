"""Which VAE made a latent dataset: its fingerprint (`VAEInfo`, `describe_vae`, `vae_config_hash`) and its temporal
compression, read the same way from any diffusers VAE (per-frame DC-AE, LTX-Video, Wan 2.1)."""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from .normalization import latent_statistics

__all__ = ["VAEInfo", "describe_vae", "vae_config_hash", "vae_temporal_compression_ratio"]


@dataclass
class VAEInfo:
    """Which VAE made a latent dataset.

    Args:
        class_name: the VAE's class (`TekkenAutoencoderDC`, `AutoencoderKLWan`, …).
        config_hash: `vae_config_hash` of its config and normalisation statistics.
        weights_hash: sha256 over its state dict (names, dtypes, shapes, bytes), or None if not computed.
        source: the path or Hub id it was loaded from, if known.
        in_channels: pixel channels it takes (4 = RGB + pose).
        latent_channels: `C` of its latents.
        spatial_compression_ratio: pixels per latent along height and width.
        temporal_compression_ratio: frames per latent frame.
    """

    class_name: str
    config_hash: str
    weights_hash: str | None = None
    source: str | None = None
    in_channels: int | None = None
    latent_channels: int | None = None
    spatial_compression_ratio: int | None = None
    temporal_compression_ratio: int = 1


def vae_temporal_compression_ratio(vae: torch.nn.Module) -> int:
    """Frames per latent frame: `temporal_compression_ratio`, Wan's `config.scale_factor_temporal`, else 1."""
    ratio = getattr(vae, "temporal_compression_ratio", None)
    if ratio is None:
        ratio = getattr(vae, "config", {}).get("scale_factor_temporal", None)
    return 1 if ratio is None else int(ratio)


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def vae_config_hash(vae: torch.nn.Module) -> str:
    """sha256 of the VAE's class, its constructor config and its normalisation statistics (LTX keeps those in buffers).

    Only keys that are arguments of the class's `__init__` count: bookkeeping such as `_name_or_path` or the EMA
    fields (`decay`, `optimization_step`, …) that an `EMAModel` checkpoint leaves in `config.json` would otherwise make
    the same VAE hash differently after a save/load round trip or at another training step.
    """
    init_keys = set(inspect.signature(type(vae).__init__).parameters) - {"self", "args", "kwargs"}
    config = {k: v for k, v in dict(getattr(vae, "config", {})).items() if k in init_keys}
    payload = {
        "class_name": type(vae).__name__,
        "config": config,
        "statistics": dataclasses.asdict(latent_statistics(vae)),
    }
    return hashlib.sha256(json.dumps(_jsonable(payload), sort_keys=True).encode()).hexdigest()


def _weights_hash(vae: torch.nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(vae.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)};".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def describe_vae(vae: torch.nn.Module, source: str | None = None, with_weights: bool = True) -> VAEInfo:
    """The `VAEInfo` of a VAE.

    Args:
        vae: any diffusers VAE.
        source: the path or Hub id it was loaded from.
        with_weights: compute the weights hash (one pass over the parameters).
    """
    config = getattr(vae, "config", {})
    latent_channels = config.get("latent_channels", config.get("z_dim"))
    spatial = getattr(vae, "spatial_compression_ratio", None) or config.get("scale_factor_spatial")
    return VAEInfo(
        class_name=type(vae).__name__,
        config_hash=vae_config_hash(vae),
        weights_hash=_weights_hash(vae) if with_weights else None,
        source=source,
        in_channels=config.get("in_channels"),
        latent_channels=None if latent_channels is None else int(latent_channels),
        spatial_compression_ratio=None if spatial is None else int(spatial),
        temporal_compression_ratio=vae_temporal_compression_ratio(vae),
    )
