"""Latent episodes: the rounds encoded by a VAE, one row per round, as a Hugging Face `datasets.DatasetDict`.

The world model trains on windows of these rows (`tekken_diffusers.data.latent_windows`).

Schema (`LATENT_FEATURES`), one row per round:

| column                       | type                 | content                                                      |
|------------------------------|----------------------|--------------------------------------------------------------|
| `round_id`                   | string               | the round's file stem (`round_0007`), unique within a split  |
| `split`                      | string               | `train` or `val`                                             |
| `game`, `fps`                | string, float32      | from the round file (null if unknown)                        |
| `num_frames`                 | int32                | `T`: game frames stored (length of `actions`)                |
| `num_valid`                  | int32                | valid frames, a prefix of the `T` (padding after it)         |
| `temporal_compression_ratio` | int32                | `r`: game frames per latent frame (1 for the per-frame DC-AE)|
| `latents`                    | large_binary         | raw little-endian bytes of the `(T', C, h, w)` latents       |
| `latents_shape`              | int32 × 4            | `(T', C, h, w)`; `T' = T` when `r = 1`, else `1 + (T - 1)/r` |
| `latents_dtype`              | string               | `float16`, or `bfloat16` stored as its uint16 bit pattern    |
| `actions`                    | list<uint8>          | player 1's 8-bit inputs `(T,)` (`tekken_diffusers.actions`)  |
| `actions_p2`                 | list<uint8> or null  | player 2's inputs `(T,)` when recorded                       |
| `states`                     | list<float32> or null| game state `(T, S)` flattened row-major                      |
| `state_dim`                  | int32                | `S` (0 without states)                                       |

Why raw bytes and not `Array4D`: a window is then a zero-copy view of the memory-mapped Arrow buffer (measured
0.004 ms per 16-frame window against 0.5-5.7 ms through `with_format("numpy"/"torch")`, which also upcast fp16 to
fp32; docs/benchmarks.md has this machine's numbers). `bfloat16` is no Arrow/numpy type, so its bits are kept as
uint16.

**Stored latents are normalised** (`latent_norm.normalize_latents` with the encoding VAE's statistics) unless the
dataset info says `normalized: false` (an import of the original system's raw cache without a VAE). The world model
reads them directly; `denormalize_latents` with the same statistics gives back what `vae.decode` takes.

Next to the Arrow data every dataset folder holds `tekken_latents.json` (`latent_info.LatentDatasetInfo`: the VAE
and its config hash, the latent shape and dtype, the normalisation, per-split counts, the measured per-channel
mean/std) and a `README.md` card saying the same for people. `LatentDatasetInfo.check_vae` compares a VAE (e.g. a
pipeline's) with it. The names of `latent_info` are re-exported here.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Features, List, Value

from ..actions import validate_action_ids
from ..models.autoencoders.latent_norm import normalize_latents
from .frames import frames_to_pixels
from .latent_info import (
    LATENT_DTYPES,
    LATENT_INFO_FILE,
    LatentDatasetInfo,
    SplitInfo,
    VAEInfo,
    describe_vae,
    load_latent_info,
    render_dataset_card,
    vae_config_hash,
    vae_temporal_compression_ratio,
)
from .rounds import Round

logger = datasets.logging.get_logger(__name__)

__all__ = [
    "LATENT_FEATURES",
    "LATENT_INFO_FILE",
    "LATENT_DTYPES",
    "SPLITS",
    "LatentDatasetInfo",
    "SplitInfo",
    "VAEInfo",
    "describe_vae",
    "vae_config_hash",
    "vae_temporal_compression_ratio",
    "encode_frames",
    "encode_round",
    "latent_row",
    "latents_from_row",
    "write_row_shard",
    "read_row_shard",
    "dataset_from_shards",
    "save_latent_dataset",
    "load_latent_dataset",
    "load_latent_info",
    "render_dataset_card",
    "export_hub_folder",
    "push_latent_dataset_to_hub",
]

SPLITS = ("train", "val")
# Arrow/numpy dtype of the stored bytes: bf16 is kept as its bit pattern.
_STORAGE_DTYPES = {"float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2")}
_FLOAT16_MAX = 65504.0

LATENT_FEATURES = Features(
    {
        "round_id": Value("string"),
        "split": Value("string"),
        "game": Value("string"),
        "fps": Value("float32"),
        "num_frames": Value("int32"),
        "num_valid": Value("int32"),
        "temporal_compression_ratio": Value("int32"),
        "latents": Value("large_binary"),
        "latents_shape": List(Value("int32"), length=4),
        "latents_dtype": Value("string"),
        "actions": List(Value("uint8")),
        "actions_p2": List(Value("uint8")),
        "states": List(Value("float32")),
        "state_dim": Value("int32"),
    }
)


# ---------------------------------------------------------------------------------------------------------------------
# VAEs
# ---------------------------------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------------------------------
# Rows
# ---------------------------------------------------------------------------------------------------------------------
def latent_row(
    round_id: str,
    split: str,
    latents: torch.Tensor | np.ndarray,
    actions: np.ndarray,
    *,
    latent_dtype: str = "float16",
    actions_p2: np.ndarray | None = None,
    states: np.ndarray | None = None,
    num_valid: int | None = None,
    fps: float | None = None,
    game: str | None = None,
    temporal_compression_ratio: int = 1,
) -> dict[str, Any]:
    """One dataset row (a dict matching `LATENT_FEATURES`) from latents and the round's per-frame arrays.

    Args:
        round_id: unique name of the round within its split.
        split: `train` or `val`.
        latents: `(T', C, h, w)` latents, float (normalised or raw: the dataset info says which).
        actions: player 1's action ids `(T,)`.
        latent_dtype: storage dtype, `float16` or `bfloat16`.
        actions_p2: player 2's action ids `(T,)`.
        states: game state `(T, S)`.
        num_valid: valid frames (a prefix of `T`); all of them if None.
        fps: frames per second.
        game: game name.
        temporal_compression_ratio: `r`; `T' = T` for `r = 1`, else `T = 1 + (T' - 1)·r`.

    Raises:
        ValueError: naming the round and the array, on inconsistent shapes, non-finite latents or fp16 overflow.
    """
    where = f"round {split}/{round_id}"
    if latent_dtype not in LATENT_DTYPES:
        raise ValueError(f"{where}: latent_dtype must be one of {LATENT_DTYPES}, got {latent_dtype!r}")
    latents = torch.as_tensor(latents)
    if latents.ndim != 4:
        raise ValueError(f"{where}: latents: expected (T, C, h, w), got shape {tuple(latents.shape)}")
    actions = np.asarray(actions)
    validate_action_ids(actions, name=f"{where}: actions")
    if actions.ndim != 1:
        raise ValueError(f"{where}: actions: expected (T,), got shape {actions.shape}")
    num_frames, r = int(actions.shape[0]), int(temporal_compression_ratio)
    expected_latent_frames = num_frames if r == 1 else 1 + (num_frames - 1) // r
    if r > 1 and (num_frames - 1) % r:
        raise ValueError(f"{where}: {num_frames} frames is not 1 + k·{r} (temporal_compression_ratio={r})")
    if latents.shape[0] != expected_latent_frames:
        raise ValueError(
            f"{where}: latents have {latents.shape[0]} frames but {num_frames} actions with temporal compression "
            f"{r} need {expected_latent_frames}"
        )
    num_valid = num_frames if num_valid is None else int(num_valid)
    if not 1 <= num_valid <= num_frames:
        raise ValueError(f"{where}: num_valid must lie in [1, {num_frames}], got {num_valid}")
    if r > 1 and num_valid != num_frames:
        raise ValueError(f"{where}: padding frames cannot be kept with temporal compression {r}")

    values = latents.detach().float()
    if not torch.isfinite(values).all():
        raise ValueError(f"{where}: latents contain NaN or infinity")
    if latent_dtype == "float16" and values.abs().max() > _FLOAT16_MAX:
        raise ValueError(
            f"{where}: latents reach {float(values.abs().max()):.4g}, beyond float16's range: "
            "store them as bfloat16 or normalise them"
        )
    if latent_dtype == "float16":
        latent_bytes = values.to(torch.float16).numpy().astype("<f2", copy=False).tobytes()
    else:
        latent_bytes = values.to(torch.bfloat16).view(torch.uint16).numpy().astype("<u2", copy=False).tobytes()

    if actions_p2 is not None:
        actions_p2 = np.asarray(actions_p2)
        validate_action_ids(actions_p2, name=f"{where}: actions_p2")
        if actions_p2.shape != actions.shape:
            raise ValueError(f"{where}: actions_p2 has shape {actions_p2.shape} but actions has {actions.shape}")
    state_dim = 0
    if states is not None:
        states = np.asarray(states, dtype=np.float32)
        if states.ndim != 2 or states.shape[0] != num_frames:
            raise ValueError(f"{where}: states: expected ({num_frames}, S), got shape {states.shape}")
        state_dim = int(states.shape[1])

    return {
        "round_id": str(round_id),
        "split": str(split),
        "game": game,
        "fps": None if fps is None else float(fps),
        "num_frames": num_frames,
        "num_valid": num_valid,
        "temporal_compression_ratio": r,
        "latents": latent_bytes,
        "latents_shape": [int(s) for s in latents.shape],
        "latents_dtype": latent_dtype,
        "actions": actions.astype(np.uint8),
        "actions_p2": None if actions_p2 is None else actions_p2.astype(np.uint8),
        "states": None if states is None else states.reshape(-1),
        "state_dim": state_dim,
    }


def latents_from_row(row: Mapping[str, Any], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The `(T', C, h, w)` latents of a row (python format: `latents` as bytes), as a new tensor of `dtype`."""
    shape = tuple(int(s) for s in row["latents_shape"])
    storage = _STORAGE_DTYPES.get(row["latents_dtype"])
    if storage is None:
        raise ValueError(f"round {row.get('round_id')}: latents_dtype {row['latents_dtype']!r} not in {LATENT_DTYPES}")
    array = np.frombuffer(row["latents"], dtype=storage)
    if array.size != math.prod(shape):
        raise ValueError(
            f"round {row.get('round_id')}: latents hold {array.size} values but latents_shape {shape} needs "
            f"{math.prod(shape)}"
        )
    tensor = torch.from_numpy(array.reshape(shape).copy())
    if row["latents_dtype"] == "bfloat16":
        tensor = tensor.view(torch.bfloat16)
    return tensor.to(dtype)


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


# ---------------------------------------------------------------------------------------------------------------------
# Per-round shards (the resumable work folder of scripts/encode_latents.py)
# ---------------------------------------------------------------------------------------------------------------------
def write_row_shard(path: str | os.PathLike, row: Mapping[str, Any]) -> Path:
    """Write one row as an Arrow IPC file, atomically (a temporary file renamed into place).

    The row is typed against `LATENT_FEATURES` here, so a bad row fails now and not at assembly.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist([dict(row)], schema=LATENT_FEATURES.arrow_schema)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle, pa.ipc.new_file(handle, table.schema) as writer:
            writer.write_table(table)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def read_row_shard(path: str | os.PathLike) -> dict[str, Any]:
    """Read a row written by `write_row_shard` (python values; `latents` as bytes)."""
    path = Path(path)
    try:
        with pa.memory_map(str(path)) as source:
            table = pa.ipc.open_file(source).read_all()
    except (OSError, pa.ArrowInvalid) as error:
        raise ValueError(f"{path}: not a readable row shard ({error}); delete it to encode the round again") from error
    if table.num_rows != 1 or set(table.column_names) != set(LATENT_FEATURES):
        raise ValueError(f"{path}: expected one row with columns {sorted(LATENT_FEATURES)}; delete it to redo it")
    return table.to_pylist()[0]


def _rows_from_shards(shard_paths: list[str]) -> Iterator[dict[str, Any]]:
    for path in shard_paths:
        yield read_row_shard(path)


def dataset_from_shards(shard_paths: Iterable[str | os.PathLike], cache_dir: str | os.PathLike) -> datasets.Dataset:
    """A `datasets.Dataset` of the rows in `shard_paths` (in that order), written through an Arrow cache.

    Args:
        shard_paths: files from `write_row_shard`.
        cache_dir: where `datasets` writes its Arrow cache; use a fresh folder, as the cache key does not see the
            files' content.
    """
    return datasets.Dataset.from_generator(
        _rows_from_shards,
        features=LATENT_FEATURES,
        gen_kwargs={"shard_paths": [str(p) for p in shard_paths]},
        cache_dir=str(cache_dir),
    )


# ---------------------------------------------------------------------------------------------------------------------
# Zero-copy access to rows of an Arrow table (shared with latent_windows)
# ---------------------------------------------------------------------------------------------------------------------
def _single_chunk(table: pa.Table, column: str) -> pa.Array:
    chunks = [chunk for chunk in table.column(column).chunks if len(chunk)]
    if len(chunks) != 1:
        raise ValueError(f"expected one row in column {column!r}, found {table.num_rows}")
    return chunks[0]


def _binary_view(array: pa.Array, dtype: np.dtype) -> np.ndarray:
    """The bytes of the one value of a `large_binary` array as a read-only numpy view (no copy)."""
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[array.offset : array.offset + 2]
    start, stop = int(offsets[0]), int(offsets[1])
    return np.frombuffer(data_buffer, dtype=dtype, count=(stop - start) // dtype.itemsize, offset=start)


def _list_view(array: pa.Array) -> np.ndarray | None:
    """The values of the one list of a list array as a read-only numpy view (no copy), None if null."""
    if array.is_null().to_pylist()[0]:
        return None
    return array.flatten().to_numpy(zero_copy_only=True)


def _row_arrays(table: pa.Table) -> dict[str, Any]:
    """The columns of a one-row Arrow table as numpy views and python scalars; latents stay in storage dtype."""
    scalars = {
        name: _single_chunk(table, name)[0].as_py()
        for name in ("round_id", "num_frames", "num_valid", "temporal_compression_ratio", "latents_dtype", "state_dim")
    }
    scalars["latents_shape"] = tuple(_single_chunk(table, "latents_shape")[0].as_py())
    storage = _STORAGE_DTYPES.get(scalars["latents_dtype"])
    if storage is None:
        dtype = scalars["latents_dtype"]
        raise ValueError(f"round {scalars['round_id']}: latents_dtype {dtype!r} not in {LATENT_DTYPES}")
    scalars["latents"] = _binary_view(_single_chunk(table, "latents"), storage)
    for name in ("actions", "actions_p2", "states"):
        scalars[name] = _list_view(_single_chunk(table, name)) if name in table.column_names else None
    return scalars


def _python_row_arrays(row: Mapping[str, Any]) -> dict[str, Any]:
    """Like `_row_arrays` for a row in python format (streaming): bytes and lists."""
    storage = _STORAGE_DTYPES.get(row["latents_dtype"])
    if storage is None:
        raise ValueError(f"round {row['round_id']}: latents_dtype {row['latents_dtype']!r} not in {LATENT_DTYPES}")
    arrays = {name: row[name] for name in ("round_id", "num_frames", "num_valid", "temporal_compression_ratio")}
    arrays.update(latents_dtype=row["latents_dtype"], state_dim=row["state_dim"])
    arrays["latents_shape"] = tuple(row["latents_shape"])
    arrays["latents"] = np.frombuffer(row["latents"], dtype=storage)
    arrays["actions"] = np.asarray(row["actions"], dtype=np.uint8)
    arrays["actions_p2"] = None if row.get("actions_p2") is None else np.asarray(row["actions_p2"], dtype=np.uint8)
    arrays["states"] = None if row.get("states") is None else np.asarray(row["states"], dtype=np.float32)
    return arrays


def _check_row_arrays(arrays: dict[str, Any]) -> None:
    """Raise a ValueError naming the round if the arrays of a row disagree with each other."""
    where = f"round {arrays['round_id']}"
    shape = arrays["latents_shape"]
    if len(shape) != 4 or arrays["latents"].size != math.prod(shape):
        raise ValueError(f"{where}: latents hold {arrays['latents'].size} values but latents_shape is {shape}")
    num_frames, r = arrays["num_frames"], arrays["temporal_compression_ratio"]
    if arrays["actions"] is None or arrays["actions"].shape[0] != num_frames:
        found = None if arrays["actions"] is None else arrays["actions"].shape[0]
        raise ValueError(f"{where}: actions has {found} frames but num_frames is {num_frames}")
    expected = num_frames if r == 1 else 1 + (num_frames - 1) // r
    if shape[0] != expected:
        raise ValueError(f"{where}: {shape[0]} latent frames for {num_frames} frames at temporal compression {r}")
    if not 1 <= arrays["num_valid"] <= num_frames:
        raise ValueError(f"{where}: num_valid {arrays['num_valid']} outside [1, {num_frames}]")
    if arrays["actions_p2"] is not None and arrays["actions_p2"].shape[0] != num_frames:
        raise ValueError(f"{where}: actions_p2 has {arrays['actions_p2'].shape[0]} frames, expected {num_frames}")
    if arrays["states"] is not None and arrays["states"].size != num_frames * arrays["state_dim"]:
        raise ValueError(
            f"{where}: states hold {arrays['states'].size} values, expected {num_frames} × {arrays['state_dim']}"
        )


def _as_float32(latents: np.ndarray, latents_dtype: str) -> np.ndarray:
    if latents_dtype == "bfloat16":
        return torch.from_numpy(latents.copy()).view(torch.bfloat16).float().numpy()
    return latents.astype(np.float32)


def _measure(dataset: datasets.Dataset, channels: int) -> tuple[list[float], list[float]] | None:
    """Per-channel mean and standard deviation of the stored latents over the valid latent frames (float64 sums)."""
    total = np.zeros(channels, dtype=np.float64)
    total_sq = np.zeros(channels, dtype=np.float64)
    count = 0
    arrow = dataset.with_format("arrow", columns=list(LATENT_FEATURES))
    for index in range(len(dataset)):
        arrays = _row_arrays(arrow[index])
        r = arrays["temporal_compression_ratio"]
        valid = arrays["num_valid"] if r == 1 else arrays["latents_shape"][0]
        latents = _as_float32(arrays["latents"].reshape(arrays["latents_shape"])[:valid], arrays["latents_dtype"])
        per_channel = latents.transpose(1, 0, 2, 3).reshape(channels, -1).astype(np.float64)  # (C, T*h*w)
        total += per_channel.sum(axis=1)
        total_sq += (per_channel**2).sum(axis=1)
        count += per_channel.shape[1]
    if count == 0:
        return None
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return [float(v) for v in mean], [float(v) for v in std]


# ---------------------------------------------------------------------------------------------------------------------
# Writing a dataset folder
# ---------------------------------------------------------------------------------------------------------------------
def _summarise(dataset_dict: datasets.DatasetDict, info: LatentDatasetInfo) -> LatentDatasetInfo:
    """Fill the split counts, the measured statistics and the per-round metadata of `info` from the data."""
    info = dataclasses.replace(info, splits={})
    fps_values, games, state_dims, has_p2 = set(), set(), set(), False
    for split, dataset in dataset_dict.items():
        counts = SplitInfo(rounds=len(dataset))
        names = ["num_frames", "num_valid", "latents_shape", "fps", "game", "state_dim", "actions_p2"]
        columns = dataset.with_format("arrow", columns=names)[:]
        counts.frames = int(pc.sum(columns.column("num_frames")).as_py() or 0)
        counts.valid_frames = int(pc.sum(columns.column("num_valid")).as_py() or 0)
        counts.latent_frames = int(sum(shape[0] for shape in columns.column("latents_shape").to_pylist()))
        info.splits[split] = counts
        fps_values.update(v for v in columns.column("fps").to_pylist() if v is not None)
        games.update(v for v in columns.column("game").to_pylist() if v is not None)
        state_dims.update(columns.column("state_dim").to_pylist())
        has_p2 = has_p2 or columns.column("actions_p2").null_count < len(dataset)
        shapes = {tuple(shape[1:]) for shape in columns.column("latents_shape").to_pylist()}
        if shapes and shapes != {info.latent_shape}:
            raise ValueError(f"split {split}: latent frame shapes {sorted(shapes)} differ from {info.latent_shape}")
    if len(fps_values) > 1:
        raise ValueError(f"rounds were recorded at different frame rates {sorted(fps_values)}; encode them separately")
    if len(state_dims) > 1:
        raise ValueError(f"rounds have different state sizes {sorted(state_dims)}; encode them separately")
    info.fps = next(iter(fps_values), info.fps)
    info.game = ", ".join(sorted(games)) if games else info.game
    info.state_dim = next(iter(state_dims), 0)
    info.has_actions_p2 = has_p2
    measure_split = "train" if "train" in dataset_dict else next(iter(dataset_dict), None)
    measured = None if measure_split is None else _measure(dataset_dict[measure_split], info.latent_channels)
    info.measured_mean, info.measured_std = measured if measured else (None, None)
    info.created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return info


def _write_metadata(folder: Path, info: LatentDatasetInfo) -> None:
    info.save(folder)
    (folder / "README.md").write_text(render_dataset_card(info), encoding="utf-8")


def save_latent_dataset(
    dataset_dict: datasets.DatasetDict | Mapping[str, datasets.Dataset],
    out_dir: str | os.PathLike,
    info: LatentDatasetInfo,
    *,
    max_shard_size: str | int = "500MB",
    overwrite: bool = False,
) -> LatentDatasetInfo:
    """Write a latent `DatasetDict` with `save_to_disk`, plus `tekken_latents.json` and `README.md`, atomically.

    Everything is written to a temporary sibling folder that is renamed to `out_dir` when complete.

    Args:
        dataset_dict: splits of rows (features `LATENT_FEATURES`).
        out_dir: the dataset folder to create.
        info: what the rows are; the split counts and measured statistics are filled in here.
        max_shard_size: Arrow shard size for `save_to_disk`.
        overwrite: replace an existing `out_dir`.

    Returns:
        The completed info, as written.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir}: already exists (pass overwrite=True / --overwrite to replace it)")
    dataset_dict = datasets.DatasetDict(dict(dataset_dict))
    for split, dataset in dataset_dict.items():
        if dataset.features != LATENT_FEATURES:
            raise ValueError(f"split {split}: features {dataset.features} differ from LATENT_FEATURES")
    info = _summarise(dataset_dict, info)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        dataset_dict.save_to_disk(str(tmp_dir), max_shard_size=max_shard_size)
        _write_metadata(tmp_dir, info)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    logger.info(
        "wrote %s: %s",
        out_dir,
        ", ".join(f"{s} {c.rounds} rounds / {c.latent_frames} latent frames" for s, c in info.splits.items()),
    )
    return info


# ---------------------------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------------------------
def _stream_shards(dataset: datasets.Dataset) -> int:
    return max(1, min(len(dataset), 64))


def _is_save_to_disk_folder(path: Path) -> bool:
    return (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()


def _load_hub_layout_folder(
    path: Path, split: str | None, streaming: bool
) -> datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict:
    """A local folder in the Hub layout (`data/{split}-00000-of-00001.parquet`), e.g. from `export_hub_folder`.

    The files are passed to the parquet builder by absolute path: its cache key then covers their paths and
    modification times, whereas `load_dataset(folder)` keys the cache on the folder's name only and would return
    stale data for another folder of the same name.
    """
    files: dict[str, list[str]] = {}
    for file in sorted(path.glob("data/*.parquet")):
        files.setdefault(file.name.split("-")[0], []).append(str(file.resolve()))
    if not files:
        raise FileNotFoundError(
            f"{path}: neither a save_to_disk folder (dataset_dict.json) nor a Hub-layout folder (data/*.parquet)"
        )
    if split is not None and split not in files:
        raise ValueError(f"{path}: no split {split!r}; splits: {sorted(files)}")
    return datasets.load_dataset(
        "parquet", data_files=files, split=split, streaming=streaming, features=LATENT_FEATURES
    )


def load_latent_dataset(
    path_or_repo_id: str | os.PathLike,
    split: str | None = None,
    streaming: bool = False,
    revision: str | None = None,
    token: str | bool | None = None,
) -> datasets.Dataset | datasets.DatasetDict | datasets.IterableDataset | datasets.IterableDatasetDict:
    """Open a latent dataset: a `save_to_disk` folder, a folder in the Hub layout (parquet), or a Hub repo id.

    Args:
        path_or_repo_id: a local folder, or `user/name` of a Hub dataset repo.
        split: one split (`train`, `val`), or None for all of them.
        streaming: return an `IterableDataset` (for a local `save_to_disk` folder: `to_iterable_dataset()`;
            for the Hub: `load_dataset(..., streaming=True)`, rows read as they are needed).
        revision: Hub revision (branch, tag or commit).
        token: Hub token.

    Raises:
        FileNotFoundError: for a local path that does not exist.
        ValueError: for an unknown split (naming the ones there are).
    """
    path = Path(path_or_repo_id)
    if path.exists():
        if not path.is_dir():
            raise ValueError(f"{path}: expected a dataset folder, found a file")
        if _is_save_to_disk_folder(path):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict) and split is not None:
                if split not in loaded:
                    raise ValueError(f"{path}: no split {split!r}; splits: {sorted(loaded)}")
                loaded = loaded[split]
            if not streaming:
                return loaded
            # Contiguous shards of rounds, so that DataLoader workers and processes can split the stream.
            if isinstance(loaded, datasets.DatasetDict):
                return datasets.IterableDatasetDict(
                    {name: ds.to_iterable_dataset(num_shards=_stream_shards(ds)) for name, ds in loaded.items()}
                )
            return loaded.to_iterable_dataset(num_shards=_stream_shards(loaded))
        return _load_hub_layout_folder(path, split, streaming)

    source = str(path_or_repo_id)
    if source.count("/") != 1 or source.startswith((".", "/", "~")):
        raise FileNotFoundError(f"{source}: no such folder, and not a Hub repo id of the form user/name")
    try:
        return datasets.load_dataset(source, split=split, streaming=streaming, revision=revision, token=token)
    except datasets.exceptions.DatasetNotFoundError as error:
        raise FileNotFoundError(f"{source}: no local folder of that name, nor a Hub dataset: {error}") from None
    except ValueError as error:
        if split is not None and "split" in str(error).lower():
            raise ValueError(f"{source}: no split {split!r} ({error})") from error
        raise


# ---------------------------------------------------------------------------------------------------------------------
# The Hub
# ---------------------------------------------------------------------------------------------------------------------
def _num_shards(dataset: datasets.Dataset, max_shard_size: int) -> int:
    return max(1, math.ceil(dataset.data.nbytes / max_shard_size))


def export_hub_folder(
    dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, max_shard_size: str | int = "500MB"
) -> Path:
    """Write a saved latent dataset in the Hub layout: `data/{split}-00000-of-00001.parquet`, `README.md`,
    `tekken_latents.json`. `load_dataset(out_dir)` (and so `load_latent_dataset`) reads it, like the Hub repo.

    Args:
        dataset_dir: a folder written by `save_latent_dataset`.
        out_dir: the folder to write (must not exist).
        max_shard_size: parquet shard size (`datasets`' default for `push_to_hub` is 500MB).
    """
    from datasets.utils.py_utils import convert_file_size_to_int

    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    info = load_latent_info(dataset_dir)
    loaded = load_latent_dataset(dataset_dir)
    if not isinstance(loaded, datasets.DatasetDict):
        raise ValueError(f"{dataset_dir}: expected a DatasetDict folder (dataset_dict.json)")
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: already exists")
    shard_bytes = convert_file_size_to_int(max_shard_size)
    (out_dir / "data").mkdir(parents=True)
    for split, dataset in loaded.items():
        num_shards = _num_shards(dataset, shard_bytes)
        for index in range(num_shards):
            shard = dataset.shard(num_shards, index, contiguous=True)
            shard.to_parquet(str(out_dir / "data" / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"))
    _write_metadata(out_dir, info)
    return out_dir


def push_latent_dataset_to_hub(
    dataset_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    max_shard_size: str | int = "500MB",
    commit_message: str = "Upload latent episodes (tekken-diffusers)",
    api: Any | None = None,
) -> str:
    """Upload a saved latent dataset to a Hub dataset repo in one commit: parquet shards, card and info.

    This does what `DatasetDict.push_to_hub` does for the data (same `data/{split}-*.parquet` layout) but commits
    our card and `tekken_latents.json` together with it, instead of a generated card in a second commit.

    Args:
        dataset_dir: a folder written by `save_latent_dataset`.
        repo_id: `user/name`; created if missing.
        private: visibility of a new repo.
        token: Hub token (else the logged-in one).
        revision: branch to commit to.
        max_shard_size: parquet shard size.
        commit_message: the commit message.
        api: an `huggingface_hub.HfApi` (e.g. with another `endpoint`); a new one by default.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = api if api is not None else HfApi()
    with tempfile.TemporaryDirectory(prefix="tekken-latents-hub-") as staging:
        folder = export_hub_folder(dataset_dir, Path(staging) / "repo", max_shard_size=max_shard_size)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
        commit = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            token=token,
            commit_message=commit_message,
        )
    url = getattr(commit, "commit_url", str(commit))
    logger.info("pushed %s to the Hub dataset %s (%s)", dataset_dir, repo_id, url)
    return url
