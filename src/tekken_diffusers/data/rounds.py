"""Rounds: the `.npz` file that holds one round of gameplay (frames + inputs); also in docs/data_format.md.

| key            | dtype, shape              | notes                                                       |
|----------------|---------------------------|-------------------------------------------------------------|
| `images`       | uint8 `(T, 3, H, W)` RGB  | channel-first, as in the original system                    |
| `actions_p1`   | uint8 `(T,)`              | 8-bit input field (`tekken_diffusers.actions`)              |
| `actions_p2`   | uint8 `(T,)`, optional    | the other player's inputs                                   |
| `states`       | float32 `(T, S)`, optional| game state per frame (positions, health, clock, …)          |
| `valid_frames` | bool `(T,)`               | `attention_mask` is the original's older name; both load    |
| `fps`, `game`  | scalars, optional         | e.g. 15.0 and "boxing"                                      |

`valid_frames` convention: the valid frames are a prefix. `valid_frames[t]` is True for every frame up to and
including the last real frame and False for trailing padding only; `Round.num_valid` is that count and
`Round.trimmed()` keeps exactly those frames. (The original sliced `[:last]` in some places and `[:last + 1]` in
others; we always keep the last valid frame.) A hole (a False followed by a True) is an error, not something to
guess about.

Loading validates everything and raises one `RoundFormatError` naming the file, the key, what was expected and what
was found. Writing is atomic (a temporary file renamed into place) and deterministic (fixed zip timestamps), so the
same content gives byte-identical files.
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ..utils import atomic_output

__all__ = ["Round", "RoundFormatError", "load_round", "save_round", "validate_round", "list_rounds"]

_KNOWN_KEYS = {"images", "actions_p1", "actions_p2", "states", "valid_frames", "attention_mask", "fps", "game"}
# A fixed timestamp for every zip member: numpy's own savez stamps the current time, which breaks byte-identity.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class RoundFormatError(ValueError):
    """A round file or array that does not follow the round format. The message names the file and the key."""


@dataclass
class Round:
    """One round of gameplay, validated.

    Args:
        images: uint8 `(T, 3, H, W)` RGB frames.
        actions_p1: uint8 `(T,)` action ids of player 1.
        valid_frames: bool `(T,)`, True for the valid prefix (see the module docstring).
        actions_p2: optional uint8 `(T,)` action ids of player 2.
        states: optional float32 `(T, S)` game state.
        fps: optional frame rate of the recording.
        game: optional game name.
        extras: other arrays found in the file, kept untouched so a round written back loses nothing.
    """

    images: np.ndarray
    actions_p1: np.ndarray
    valid_frames: np.ndarray
    actions_p2: np.ndarray | None = None
    states: np.ndarray | None = None
    fps: float | None = None
    game: str | None = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def num_valid(self) -> int:
        return int(self.valid_frames.sum())

    @property
    def frame_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def trimmed(self) -> Round:
        """The round without its trailing padding (frames `[:num_valid]`, all valid)."""
        n = self.num_valid
        return replace(
            self,
            images=self.images[:n],
            actions_p1=self.actions_p1[:n],
            valid_frames=self.valid_frames[:n],
            actions_p2=None if self.actions_p2 is None else self.actions_p2[:n],
            states=None if self.states is None else self.states[:n],
        )

    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {"images": self.images, "actions_p1": self.actions_p1, "valid_frames": self.valid_frames}
        if self.actions_p2 is not None:
            arrays["actions_p2"] = self.actions_p2
        if self.states is not None:
            arrays["states"] = self.states
        if self.fps is not None:
            arrays["fps"] = np.asarray(self.fps, dtype=np.float32)
        if self.game is not None:
            arrays["game"] = np.asarray(self.game)
        arrays.update(self.extras)
        return arrays


def _fail(source: str, key: str, expected: str, found: str) -> RoundFormatError:
    return RoundFormatError(f"{source}: {key}: expected {expected}, found {found}")


def _describe(array: np.ndarray) -> str:
    return f"dtype {array.dtype} shape {tuple(array.shape)}"


def _integer_ids(array: np.ndarray, source: str, key: str, num_frames: int) -> np.ndarray:
    if not np.issubdtype(array.dtype, np.integer):
        raise _fail(source, key, "integer action ids (uint8)", _describe(array))
    if array.ndim != 1:
        raise _fail(source, key, "rank 1 (T,)", _describe(array))
    if array.shape[0] != num_frames:
        raise _fail(source, key, f"{num_frames} frames like images", f"{array.shape[0]} frames")
    if array.size and (int(array.min()) < 0 or int(array.max()) > 255):
        raise _fail(source, key, "values in [0, 255]", f"range [{int(array.min())}, {int(array.max())}]")
    return array.astype(np.uint8, copy=False)


def validate_round(arrays: dict[str, np.ndarray], source: str = "<round>") -> Round:
    """Check a mapping of arrays against the round format and return a `Round`.

    Integer action arrays of any width (the original stored int64) are accepted when their values fit in uint8, and
    0/1 integer masks are accepted as `valid_frames`; everything else must match exactly.

    Raises:
        RoundFormatError: naming `source`, the key, what was expected and what was found.
    """
    # 1. Required keys.
    if "images" not in arrays:
        raise _fail(source, "images", "a uint8 (T, 3, H, W) array", f"no such key (keys: {sorted(arrays)})")
    if "actions_p1" not in arrays:
        raise _fail(source, "actions_p1", "a uint8 (T,) array", f"no such key (keys: {sorted(arrays)})")
    mask_key = "valid_frames" if "valid_frames" in arrays else "attention_mask" if "attention_mask" in arrays else None
    if mask_key is None:
        raise _fail(source, "valid_frames", "a bool (T,) array (or the older name attention_mask)", "no such key")

    # 2. Images: uint8, rank 4, channel-first RGB.
    images = np.asarray(arrays["images"])
    if images.ndim != 4:
        raise _fail(source, "images", "rank 4 (T, 3, H, W)", _describe(images))
    if images.dtype != np.uint8:
        raise _fail(source, "images", "dtype uint8 (0-255)", _describe(images))
    if images.shape[1] != 3:
        if images.shape[-1] == 3:
            raise _fail(source, "images", "channel-first (T, 3, H, W)", f"channel-last shape {images.shape}")
        raise _fail(source, "images", "3 RGB channels at axis 1 (T, 3, H, W)", f"shape {images.shape}")
    num_frames = images.shape[0]
    if num_frames == 0:
        raise _fail(source, "images", "at least one frame", "an empty round (T = 0)")

    # 3. Per-frame arrays line up with the frames.
    actions_p1 = _integer_ids(np.asarray(arrays["actions_p1"]), source, "actions_p1", num_frames)
    actions_p2 = None
    if "actions_p2" in arrays:
        actions_p2 = _integer_ids(np.asarray(arrays["actions_p2"]), source, "actions_p2", num_frames)

    mask = np.asarray(arrays[mask_key])
    if mask.dtype != np.bool_:
        if not np.issubdtype(mask.dtype, np.integer) or (mask.size and not np.isin(mask, (0, 1)).all()):
            raise _fail(source, mask_key, "bool (or 0/1 integers)", f"{_describe(mask)} values {np.unique(mask)[:5]}")
        mask = mask.astype(bool)
    if mask.ndim != 1:
        raise _fail(source, mask_key, "rank 1 (T,)", _describe(mask))
    if mask.shape[0] != num_frames:
        raise _fail(source, mask_key, f"{num_frames} frames like images", f"{mask.shape[0]} frames")
    num_valid = int(mask.sum())
    if num_valid == 0:
        raise _fail(source, mask_key, "at least one valid frame", "an empty round (no frame is valid)")
    if not mask[:num_valid].all():
        hole = int(np.argmin(mask))
        raise _fail(
            source,
            mask_key,
            "a valid prefix followed only by padding",
            f"a hole at frame {hole} before later valid frames",
        )

    states = None
    if "states" in arrays:
        states = np.asarray(arrays["states"])
        if not (np.issubdtype(states.dtype, np.floating) or np.issubdtype(states.dtype, np.integer)):
            raise _fail(source, "states", "float32 (T, S)", _describe(states))
        if states.ndim != 2:
            raise _fail(source, "states", "rank 2 (T, S)", _describe(states))
        if states.shape[0] != num_frames:
            raise _fail(source, "states", f"{num_frames} frames like images", f"{states.shape[0]} frames")
        states = states.astype(np.float32, copy=False)
        finite = np.isfinite(states)
        if not finite.all():
            frame, column = (int(i) for i in np.argwhere(~finite)[0])
            raise _fail(
                source,
                "states",
                "finite values",
                f"NaN or inf at frame {frame} (column {column}) and {int((~finite).sum()) - 1} more",
            )

    # 4. Scalar metadata.
    fps = None
    if "fps" in arrays:
        fps_array = np.asarray(arrays["fps"])
        if fps_array.ndim != 0 or not np.issubdtype(fps_array.dtype, np.number) or not 0 < float(fps_array) < np.inf:
            raise _fail(source, "fps", "a positive scalar", f"{_describe(fps_array)} value {fps_array!r}")
        fps = float(fps_array)
    game = None
    if "game" in arrays:
        game_array = np.asarray(arrays["game"])
        if game_array.ndim != 0 or game_array.dtype.kind != "U":
            raise _fail(source, "game", "a string scalar", _describe(game_array))
        game = str(game_array)

    extras = {key: np.asarray(value) for key, value in arrays.items() if key not in _KNOWN_KEYS}
    return Round(images, actions_p1, mask, actions_p2, states, fps, game, extras)


def load_round(path: str | os.PathLike) -> Round:
    """Read and validate a round `.npz`. Never unpickles (`allow_pickle=False`).

    Raises:
        FileNotFoundError: if the file does not exist.
        RoundFormatError: if it is not a valid round (the message names the file and the key).
    """
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as error:
        raise RoundFormatError(f"{path}: not a readable .npz file ({error})") from error
    return validate_round(arrays, source=str(path))


def save_round(path: str | os.PathLike, round_: Round, compress: bool = True) -> Path:
    """Validate and write a round atomically: a temporary file in the same folder is renamed into place.

    The output is deterministic (fixed zip timestamps), so equal rounds give byte-identical files.
    """
    path = Path(path)
    arrays = round_.to_arrays()
    validate_round(arrays, source=str(path))
    compression = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with atomic_output(path) as tmp, zipfile.ZipFile(tmp, "w", compression=compression) as archive:
        for key in sorted(arrays):
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=_ZIP_DATE)
            info.compress_type = compression
            info.external_attr = 0o644 << 16
            archive.writestr(info, buffer.getvalue())
    return path


def list_rounds(folder: str | os.PathLike) -> list[Path]:
    """The round files (`*.npz`) of a folder, sorted by name. Raises if the folder has none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder of rounds")
    paths = sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))
    if not paths:
        raise FileNotFoundError(f"{folder}: no round files (*.npz) found")
    return paths
