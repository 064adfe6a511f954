"""Player 2's inputs where nobody recorded them: the console's boxer in one-player Atari Boxing.

In a one-player Boxing recording the black boxer is the console's AI, which presses no joystick, so the rounds carry
no `actions_p2`. A world model that must guess the opponent's next move from the frames alone averages the moves it
cannot tell apart and the black boxer fades (measured: 9–29 % of frames lost over 1,000-frame rollouts). Labelling the
opponent's observed moves as player-2 inputs lets the model factor that uncertainty out: a two-player world model
renders the move it is given, and a separate opponent policy (`TekkenOpponentPolicy`) learns which move the console
makes next and samples one.

The inferred input of frame t (the convention of `actions_p1[t]`: what moved the game from frame t−1 to frame t):
- a direction bit for each axis the black boxer moved along between frames t−1 and t (console RAM positions, the
  recorded `states` columns `p2_x`/`p2_y`; RAM y grows downwards);
- LP while the black boxer's arm is out at frame t: its silhouette inside the ring is at least `punch_width` pixels
  wide (a boxer is 4–8 pixels wide at 64×64, a punch 9–12).
On two-player recordings, where the real inputs are known, the direction bits agree with the held stick on 89–91 % of
frames (a boxer pushed back moves without the stick; one held against the rope does not move).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import datasets
import numpy as np
from tqdm.auto import tqdm

from ..actions import DOWN, LEFT, LP, RIGHT, UP
from .atari import BOXING_STATE_NAMES

logger = logging.getLogger(__name__)

__all__ = ["black_boxer_width", "infer_boxing_opponent_actions", "add_boxing_opponent_actions"]

DEFAULT_PUNCH_WIDTH = 10  # pixels at 64x64; scaled with the frame width


def black_boxer_width(images: np.ndarray) -> np.ndarray:
    """Width in pixels of the black boxer's silhouette inside the ring, per frame (0 where none is visible).

    Args:
        images: `(T, 3, H, W)` uint8 Boxing frames.
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images: expected (T, 3, H, W) frames, got shape {images.shape}")
    height, width = images.shape[-2:]
    margin_y, margin_x = max(1, height // 10), max(1, width // 10)
    dark = images.max(axis=1) < int(0.15 * 255)  # (T, H, W): near-black in every channel
    dark[:, :margin_y, :] = False
    dark[:, height - margin_y :, :] = False
    dark[:, :, :margin_x] = False
    dark[:, :, width - margin_x :] = False
    columns = dark.any(axis=1)  # (T, W)
    present = columns.any(axis=1)
    first = columns.argmax(axis=1)
    last = width - 1 - columns[:, ::-1].argmax(axis=1)
    return np.where(present, last - first + 1, 0).astype(np.int64)


def infer_boxing_opponent_actions(
    states: np.ndarray, images: np.ndarray, punch_width: int | None = None, state_names: tuple[str, ...] | None = None
) -> np.ndarray:
    """Player 2's inputs of a one-player Boxing round, as action ids `(T,)` uint8 (see the module docstring).

    Args:
        states: `(T, S)` recorded RAM states with columns `state_names` (default `BOXING_STATE_NAMES`).
        images: `(T, 3, H, W)` uint8 frames of the same round.
        punch_width: silhouette width (pixels) from which the black boxer counts as punching; default 10 at 64 pixels
            wide, scaled with the frame width.
        state_names: the states' column names.
    """
    names = tuple(state_names) if state_names is not None else BOXING_STATE_NAMES
    states = np.asarray(states, dtype=np.float32)
    if states.ndim != 2 or states.shape[1] != len(names):
        raise ValueError(f"states: expected (T, {len(names)}) with columns {names}, got shape {states.shape}")
    for needed in ("p2_x", "p2_y"):
        if needed not in names:
            raise ValueError(f"states: column {needed!r} is needed to infer player 2's moves; columns are {names}")
    images = np.asarray(images)
    if images.shape[0] != states.shape[0]:
        raise ValueError(f"images have {images.shape[0]} frames but states have {states.shape[0]}")
    x, y = states[:, names.index("p2_x")], states[:, names.index("p2_y")]
    dx = np.diff(x, prepend=x[:1])
    dy = np.diff(y, prepend=y[:1])
    ids = np.zeros(len(states), dtype=np.uint8)
    ids |= np.where(dx > 0, RIGHT, 0).astype(np.uint8) | np.where(dx < 0, LEFT, 0).astype(np.uint8)
    ids |= np.where(dy > 0, DOWN, 0).astype(np.uint8) | np.where(dy < 0, UP, 0).astype(np.uint8)
    if punch_width is None:
        punch_width = max(2, round(DEFAULT_PUNCH_WIDTH * images.shape[-1] / 64))
    ids |= np.where(black_boxer_width(images) >= punch_width, LP, 0).astype(np.uint8)
    return ids


def add_boxing_opponent_actions(
    latents_dir: str | os.PathLike,
    rounds_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    *,
    punch_width: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> Path:
    """Copy a one-player Boxing latent dataset with player 2's inferred inputs (`actions_p2`) added to every row.

    Args:
        latents_dir: a latent dataset folder (`tekken-encode-latents`) of one-player Boxing rounds.
        rounds_dir: the round folder it was encoded from (`<rounds_dir>/<split>/<round_id>.npz`).
        out_dir: the new dataset folder (written under a temporary name and renamed when complete).
        punch_width: see `infer_boxing_opponent_actions`.
        overwrite: replace an existing `out_dir`.
        progress: show a progress bar per split.

    Returns:
        `out_dir`.
    """
    from .latents import load_latent_info, save_latent_dataset
    from .rounds import load_round

    latents_dir, rounds_dir, out_dir = Path(latents_dir), Path(rounds_dir), Path(out_dir)
    info = load_latent_info(latents_dir)
    if info.has_actions_p2:
        raise ValueError(f"{latents_dir}: its rows already carry player 2's inputs (actions_p2); nothing to infer")
    if info.temporal_compression_ratio != 1:
        raise ValueError(
            f"{latents_dir}: temporal compression ratio {info.temporal_compression_ratio}; inferring player 2's "
            "inputs needs one latent frame per frame (a per-frame VAE)"
        )
    dataset_dict = datasets.load_from_disk(str(latents_dir))
    splits = {}
    for split, dataset in dataset_dict.items():
        rows = list(zip(dataset["round_id"], dataset["split"], dataset["num_frames"]))
        inferred = []
        for round_id, round_split, num_frames in tqdm(rows, desc=f"player 2 inputs ({split})", disable=not progress):
            path = rounds_dir / str(round_split or split) / f"{round_id}.npz"
            if not path.is_file():
                raise FileNotFoundError(
                    f"--rounds {rounds_dir}: {path.relative_to(rounds_dir)} not found; expected the rounds that "
                    f"{latents_dir} was encoded from"
                )
            round_ = load_round(path)
            if round_.actions_p2 is not None:
                raise ValueError(f"{path}: a two-player round already has player 2's inputs; nothing to infer")
            if round_.states is None:
                raise ValueError(f"{path}: no recorded states; player 2's moves are read from p2_x/p2_y")
            names = round_.extras.get("state_names")
            names = None if names is None else tuple(str(n) for n in names)
            ids = infer_boxing_opponent_actions(round_.states, round_.images, punch_width, names)
            if len(ids) < num_frames:
                raise ValueError(f"{path}: {len(ids)} frames, but its latent row has {num_frames}")
            inferred.append(ids[:num_frames].tolist())
        features = dataset.features
        dataset = dataset.remove_columns("actions_p2").add_column("actions_p2", inferred)
        splits[split] = dataset.select_columns(list(features)).cast(features)
    save_latent_dataset(splits, out_dir, info, overwrite=overwrite)
    return out_dir
