"""Saved pipeline folders: the layout of their weights files, and checks that name a damaged folder.

`align_safetensors` lays a weights file out so that memory-mapped loading (diffusers' default) leaves every weight
where the CPU kernels expect it. diffusers reports a missing component from somewhere else, only warns when a config
and its weights describe different models, and loads NaN weights silently; `TekkenWorldModelPipeline.from_pretrained`
runs the checks here before and after loading instead.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import torch

from ..utils import atomic_output

__all__ = [
    "WEIGHT_ALIGNMENT",
    "align_safetensors",
    "check_finite_weights",
    "check_loaded_pipeline",
    "check_pipeline_folder",
    "check_pipeline_source",
    "check_weights_match",
]

# Byte alignment of every tensor in a weights file written by `save_pretrained` (a cache line, and the alignment of
# PyTorch's own CPU allocations).
WEIGHT_ALIGNMENT = 64


def align_safetensors(path: str | os.PathLike, alignment: int = WEIGHT_ALIGNMENT) -> bool:
    """Rewrite a safetensors file so that its tensors start at multiples of `alignment` bytes; return whether it
    changed.

    Loading maps the file into memory and uses the tensors where they lie. safetensors writes the tensors one after
    another behind a header of any length, so a weight could start at any multiple of 8 bytes, and the CPU matmul
    kernels take another path for such weights than for the aligned memory they were saved from: a loaded model
    differed from the saved one in the last bits (~1e-7). Here the header is padded with spaces (valid JSON) to a
    multiple of `alignment`, the tensors whose sizes are multiples of it come first, each then starting aligned, and
    the others (small odd-sized ones, largest first) after them; the file holds the same tensors, names and metadata.
    The format allows no gaps between tensors, so alignment comes from the order alone.
    """
    path = Path(path)
    with open(path, "rb") as source:
        (header_size,) = struct.unpack("<Q", source.read(8))
        header = json.loads(source.read(header_size))
    metadata = header.pop("__metadata__", None)
    sizes = {name: end - start for name, (start, end) in ((n, e["data_offsets"]) for n, e in header.items())}
    aligned = [name for name in header if sizes[name] % alignment == 0]
    rest = sorted((name for name in header if sizes[name] % alignment), key=lambda name: -sizes[name])
    layout, offset = {}, 0
    for name in aligned + rest:
        layout[name] = {**header[name], "data_offsets": [offset, offset + sizes[name]]}
        offset += sizes[name]
    if metadata is not None:
        layout["__metadata__"] = metadata
    text = json.dumps(layout, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % alignment)
    if (8 + header_size) % alignment == 0 and all(
        header[n]["data_offsets"] == layout[n]["data_offsets"] for n in header
    ):
        return False
    with atomic_output(path) as tmp, open(path, "rb") as source, open(tmp, "wb") as target:
        target.write(struct.pack("<Q", len(text)) + text)
        for name in aligned + rest:
            source.seek(8 + header_size + header[name]["data_offsets"][0])
            remaining = sizes[name]
            while remaining:  # in bounded chunks: a tensor may be gigabytes
                chunk = source.read(min(remaining, 1 << 26))
                target.write(chunk)
                remaining -= len(chunk)
    return True


def check_pipeline_source(source: str | os.PathLike) -> Path | None:
    """The local folder `source` names (checked with `check_pipeline_folder`), or None for a Hub repo id.

    A path that does not exist, but cannot be a Hub repo id (`owner/name`) either, raises `FileNotFoundError` here:
    diffusers would read it as a repo id and fail with an error about the Hub.
    """
    text = os.fspath(source)
    folder = Path(text)
    if folder.exists():
        check_pipeline_folder(folder)
        return folder
    if text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text:
        raise FileNotFoundError(f"{text}: no such pipeline folder (nor a Hub repo id of the form owner/name)")
    return None


def check_pipeline_folder(folder: Path) -> None:
    """Name what a local pipeline folder lacks before diffusers reports it from somewhere else."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder}: no model_index.json (not a pipeline folder saved with save_pretrained)")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{index_path}: not valid JSON ({error})") from None
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or None in entry:
            continue
        component = folder / name
        if not any((component / config).is_file() for config in ("config.json", "scheduler_config.json")):
            raise FileNotFoundError(
                f"{component}: missing or without its config (model_index.json lists a {entry[-1]} there)"
            )


def _saved_weight_names(component: Path, variant: str | None) -> set[str] | None:
    """The tensor names of a component's safetensors weights (from the file headers), or None if there are none."""
    from safetensors import safe_open

    stem = "diffusion_pytorch_model" + (f".{variant}" if variant else "")
    index = component / f"{stem}.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    single = component / f"{stem}.safetensors"
    if not single.is_file():
        return None
    with safe_open(str(single), framework="pt") as weights:
        return set(weights.keys())


def check_weights_match(source: Path, name: str, model: torch.nn.Module, variant: str | None) -> None:
    """Raise when a component's config and its weights describe different models (diffusers only warns)."""
    saved = _saved_weight_names(source / name, variant)
    if saved is None:
        return
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - saved), sorted(saved - expected)
    if missing or unexpected:
        details = "; ".join(
            f"{label} {len(keys)} ({', '.join(keys[:3])}{', …' if len(keys) > 3 else ''})"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        )
        raise ValueError(f"{source / name}: config.json and the weights describe different models: weights {details}")


@torch.no_grad()
def check_finite_weights(source: str | os.PathLike, name: str, model: torch.nn.Module) -> None:
    """Raise when a loaded component holds NaN or inf weights (a damaged weights file)."""
    for parameter_name, parameter in model.named_parameters():
        if not torch.isfinite(parameter).all():
            raise ValueError(
                f"{os.fspath(source)}: {name}/{parameter_name} holds NaN or inf weights: the weights file is damaged"
            )


def check_loaded_pipeline(pipe: Any, source: str, folder: Path | None, variant: str | None) -> None:
    """After loading from `source`: every model component's weight names match its config (for a local `folder`;
    `check_weights_match`) and every weight is finite (`check_finite_weights`)."""
    for name in ("transformer", "vae"):
        component = getattr(pipe, name, None)
        if component is None:
            continue
        if folder is not None:
            check_weights_match(folder, name, component, variant)
        check_finite_weights(source, name, component)
