"""Read the original system's cache of DC-AE latents (written by its `prepare_latents_owl.py`).

Layout, one folder per round and split::

    <root>/{train,val}/<round>/latents/<round>_latents.npy   float16 (C, T, h, w): the encoder's mean, not normalised
    <root>/{train,val}/<round>/actions/<round>_actions.npy   integer (T,): actions_p1 of the valid frames
    <root>/{train,val}/<round>/states/<round>_states.npy     float (T, S): optional here

The files are read with `allow_pickle=False`. `scripts/encode_latents.py --from-seed-cache` turns them into a latent
dataset (`latents`). Only per-frame caches are accepted (latent and action frame counts equal): the LTX/Wan
caches of `prepare_data*.py` were encoded in independent chunks whose alignment with the actions is approximate.
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..actions import validate_action_ids

__all__ = ["SeedCacheRound", "list_seed_cache_rounds", "read_seed_cache_round", "seed_cache_paths"]


@dataclass
class SeedCacheRound:
    """One round of the original cache.

    Args:
        latents: float16 `(T, C, h, w)` (transposed from the file's `(C, T, h, w)`).
        actions: uint8 `(T,)`.
        states: float32 `(T, S)`, or None when the round has no states file.
    """

    latents: np.ndarray
    actions: np.ndarray
    states: np.ndarray | None


def seed_cache_paths(round_dir: str | os.PathLike) -> dict[str, Path]:
    """The three file paths of a round folder, by kind (`latents`, `actions`, `states`)."""
    round_dir = Path(round_dir)
    name = round_dir.name
    return {kind: round_dir / kind / f"{name}_{kind}.npy" for kind in ("latents", "actions", "states")}


def list_seed_cache_rounds(folder: str | os.PathLike) -> dict[str, list[Path]]:
    """The round folders of each split (`train`, `val`) of a cache, sorted by name.

    Raises:
        FileNotFoundError: naming the folder when it has no split folder with rounds.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder (expected the original cache with train/ and val/)")
    splits = {}
    for split in ("train", "val"):
        split_dir = folder / split
        if split_dir.is_dir():
            rounds = sorted(p for p in split_dir.iterdir() if p.is_dir() and (p / "latents").is_dir())
            if rounds:
                splits[split] = rounds
    if not splits:
        raise FileNotFoundError(
            f"{folder}: no rounds found: expected {folder}/train/<round>/latents/<round>_latents.npy (and val/)"
        )
    return splits


def _load_npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing")
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path}: not a readable .npy array without pickled objects ({error})") from error


def read_seed_cache_round(round_dir: str | os.PathLike) -> SeedCacheRound:
    """Read and check one round folder of the original cache.

    Raises:
        FileNotFoundError: naming a missing latents or actions file.
        ValueError: naming the file whose dtype, shape or length is wrong.
    """
    paths = seed_cache_paths(round_dir)
    # 1. Latents: (C, T, h, w) float → (T, C, h, w) float16.
    latents = _load_npy(paths["latents"])
    if latents.ndim != 4 or not np.issubdtype(latents.dtype, np.floating):
        raise ValueError(f"{paths['latents']}: expected float16 (C, T, h, w), found {latents.dtype} {latents.shape}")
    latents = np.ascontiguousarray(latents.transpose(1, 0, 2, 3)).astype(np.float16, copy=False)  # (T, C, h, w)
    num_frames = latents.shape[0]

    # 2. Actions: integer ids in [0, 255], one per latent frame.
    actions = _load_npy(paths["actions"])
    if actions.ndim != 1:
        raise ValueError(f"{paths['actions']}: expected (T,), found shape {actions.shape}")
    try:
        validate_action_ids(actions, name=str(paths["actions"]))
    except ValueError as error:
        raise ValueError(str(error)) from None
    if actions.shape[0] != num_frames:
        raise ValueError(
            f"{paths['actions']}: {actions.shape[0]} actions but {paths['latents'].name} has {num_frames} latent "
            "frames (only per-frame caches can be imported)"
        )

    # 3. States: optional (T, S).
    states = None
    if paths["states"].exists():
        states = _load_npy(paths["states"])
        if states.ndim == 1:
            states = states[:, None]
        if states.ndim != 2 or states.shape[0] != num_frames or not np.issubdtype(states.dtype, np.number):
            raise ValueError(
                f"{paths['states']}: expected ({num_frames}, S) numbers, found {states.dtype} {states.shape}"
            )
        states = states.astype(np.float32)
    return SeedCacheRound(latents=latents, actions=actions.astype(np.uint8), states=states)
