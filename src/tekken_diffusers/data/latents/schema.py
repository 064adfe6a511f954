"""The row of a latent dataset: its columns (`LATENT_FEATURES`), the one encoder (`latent_row`) and the one decoder
(`row_arrays`) of a row.

Schema, one row per round:

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

A row is read in one way, whatever form it comes in (a one-row Arrow table from `with_format("arrow")`, or a python
mapping from a stream or `latent_row`): `row_arrays` gives numpy views of its columns, the latents still in storage
dtype, and `check_row_arrays` checks that they agree with each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from datasets import Features, List, Value

from ...actions import validate_action_ids

__all__ = [
    "LATENT_DTYPES",
    "LATENT_FEATURES",
    "SPLITS",
    "STORAGE_DTYPES",
    "check_row_arrays",
    "latent_row",
    "latents_from_row",
    "latents_tensor",
    "row_arrays",
]

SPLITS = ("train", "val")
LATENT_DTYPES = ("float16", "bfloat16")
# Arrow/numpy dtype of the stored bytes: bf16 is kept as its bit pattern.
STORAGE_DTYPES = {"float16": np.dtype("<f2"), "bfloat16": np.dtype("<u2")}
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
# Writing a row
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


# ---------------------------------------------------------------------------------------------------------------------
# Reading a row: numpy views of its columns, without copying the latents
# ---------------------------------------------------------------------------------------------------------------------
def _storage_dtype(round_id: Any, latents_dtype: str) -> np.dtype:
    storage = STORAGE_DTYPES.get(latents_dtype)
    if storage is None:
        raise ValueError(f"round {round_id}: latents_dtype {latents_dtype!r} not in {LATENT_DTYPES}")
    return storage


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


def _table_row_arrays(table: pa.Table) -> dict[str, Any]:
    scalars = {
        name: _single_chunk(table, name)[0].as_py()
        for name in ("round_id", "num_frames", "num_valid", "temporal_compression_ratio", "latents_dtype", "state_dim")
    }
    scalars["latents_shape"] = tuple(_single_chunk(table, "latents_shape")[0].as_py())
    storage = _storage_dtype(scalars["round_id"], scalars["latents_dtype"])
    scalars["latents"] = _binary_view(_single_chunk(table, "latents"), storage)
    for name in ("actions", "actions_p2", "states"):
        scalars[name] = _list_view(_single_chunk(table, name)) if name in table.column_names else None
    return scalars


def _python_row_arrays(row: Mapping[str, Any]) -> dict[str, Any]:
    storage = _storage_dtype(row.get("round_id"), row["latents_dtype"])
    arrays = {name: row[name] for name in ("round_id", "num_frames", "num_valid", "temporal_compression_ratio")}
    arrays.update(latents_dtype=row["latents_dtype"], state_dim=row["state_dim"])
    arrays["latents_shape"] = tuple(row["latents_shape"])
    arrays["latents"] = np.frombuffer(row["latents"], dtype=storage)
    arrays["actions"] = np.asarray(row["actions"], dtype=np.uint8)
    arrays["actions_p2"] = None if row.get("actions_p2") is None else np.asarray(row["actions_p2"], dtype=np.uint8)
    arrays["states"] = None if row.get("states") is None else np.asarray(row["states"], dtype=np.float32)
    return arrays


def row_arrays(row: pa.Table | Mapping[str, Any]) -> dict[str, Any]:
    """The columns of one row as numpy arrays and python scalars; the latents stay flat, in storage dtype.

    Args:
        row: a one-row Arrow table (`dataset.with_format("arrow")[i]`: every array is a read-only view of the
            memory-mapped buffer, nothing is copied), or a row in python format (a stream's row, `latent_row`'s dict).

    Returns:
        `round_id`, `num_frames`, `num_valid`, `temporal_compression_ratio`, `latents_dtype`, `state_dim`,
        `latents_shape` (a tuple), `latents` (flat, `STORAGE_DTYPES[latents_dtype]`), `actions` (uint8), and
        `actions_p2` (uint8) / `states` (float32, flat) or None.

    Raises:
        ValueError: naming the round, for an unknown `latents_dtype`.
    """
    return _table_row_arrays(row) if isinstance(row, pa.Table) else _python_row_arrays(row)


def check_row_arrays(arrays: Mapping[str, Any]) -> None:
    """Raise a ValueError naming the round if the arrays of a row (`row_arrays`) disagree with each other."""
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


def latents_tensor(latents: np.ndarray, latents_dtype: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A new tensor of `dtype` from latents in storage dtype (e.g. a read-only view from `row_arrays`): one copy.

    Args:
        latents: the stored values, `STORAGE_DTYPES[latents_dtype]`, any shape.
        latents_dtype: `float16` or `bfloat16` (then `latents` holds the bit patterns as uint16).
        dtype: the floating-point dtype of the result.
    """
    if latents_dtype == "bfloat16":
        return torch.from_numpy(latents.copy()).view(torch.bfloat16).to(dtype)
    if dtype == torch.float32:
        return torch.from_numpy(latents.astype(np.float32))
    return torch.from_numpy(latents.copy()).to(dtype)


def latents_from_row(row: pa.Table | Mapping[str, Any], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The `(T', C, h, w)` latents of a row (any form `row_arrays` reads), as a new tensor of `dtype`."""
    arrays = row_arrays(row)
    check_row_arrays(arrays)
    return latents_tensor(arrays["latents"].reshape(arrays["latents_shape"]), arrays["latents_dtype"], dtype)
