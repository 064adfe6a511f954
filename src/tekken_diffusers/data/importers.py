"""Bring your own footage: a gameplay video plus a per-frame input log becomes rounds.

The input log is a CSV with a header. Column `frame` (0-based index into the video) and the inputs in ONE of these
forms (see docs/data_format.md):

- `action`: the 8-bit action id (0–255), MSB first (Up, Down, Left, Right, 1, 2, 3, 4);
- `notation`: Tekken notation for that frame (`n`, `d/f+2`, `1+2`; forward as seen by a player on `--side`);
- `up,down,left,right,lp,rp,lk,rk`: eight 0/1 columns.

Optional `action_p2` / `notation_p2` columns give player 2's inputs. A row's input holds from its frame until the
next row, so both a full per-frame log and a log of changes work. Frames before the first row are neutral.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from ..actions import DOWN, LEFT, RIGHT, UP, notation_to_id
from .rounds import Round, save_round

logger = logging.getLogger(__name__)

__all__ = ["read_input_log", "iter_video_frames", "video_to_rounds", "VideoImportConfig"]

_BIT_COLUMNS = ("up", "down", "left", "right", "lp", "rp", "lk", "rk")
_DIRECTIONS = UP | DOWN | LEFT | RIGHT


def _parse_player(row: dict[str, str], columns: set[str], suffix: str, side: str, where: str) -> int:
    action_key, notation_key = f"action{suffix}", f"notation{suffix}"
    if action_key in columns:
        text = row[action_key].strip()
        if not text.isdigit() or int(text) > 255:
            raise ValueError(f"{where}: {action_key}: expected an integer in [0, 255], found {text!r}")
        return int(text)
    if notation_key in columns:
        try:
            return notation_to_id(row[notation_key], side)
        except ValueError as error:
            raise ValueError(f"{where}: {notation_key}: {error}") from None
    action_id = 0
    for shift, name in zip(range(7, -1, -1), _BIT_COLUMNS):
        key = f"{name}{suffix}"
        text = row[key].strip()
        if text not in ("0", "1"):
            raise ValueError(f"{where}: {key}: expected 0 or 1, found {text!r}")
        action_id |= int(text) << shift
    return action_id


def read_input_log(
    path: str | os.PathLike, num_frames: int, side: str = "left"
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an input log CSV into per-frame uint8 action ids `(num_frames,)` for player 1 (and player 2 if given).

    Raises:
        ValueError: naming the file, the line and the column for every malformed entry.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = {name.strip().lower() for name in reader.fieldnames or []}
        reader.fieldnames = [name.strip().lower() for name in reader.fieldnames or []]
        if "frame" not in columns:
            raise ValueError(f"{path}: expected a header with a 'frame' column, found columns {sorted(columns)}")
        has_p1 = {"action", "notation"} & columns or set(_BIT_COLUMNS) <= columns
        if not has_p1:
            raise ValueError(
                f"{path}: expected an 'action', 'notation' or up,down,left,right,lp,rp,lk,rk columns, "
                f"found columns {sorted(columns)}"
            )
        has_p2 = bool({"action_p2", "notation_p2"} & columns) or {f"{c}_p2" for c in _BIT_COLUMNS} <= columns
        actions_p1 = np.zeros(num_frames, dtype=np.uint8)
        actions_p2 = np.zeros(num_frames, dtype=np.uint8) if has_p2 else None
        previous_frame = -1
        for line, row in enumerate(reader, start=2):
            where = f"{path}:{line}"
            frame_text = (row.get("frame") or "").strip()
            if not frame_text.isdigit():
                raise ValueError(f"{where}: frame: expected a non-negative integer, found {frame_text!r}")
            frame = int(frame_text)
            if frame <= previous_frame:
                raise ValueError(
                    f"{where}: frame: expected increasing frame indexes, found {frame} after {previous_frame}"
                )
            if frame >= num_frames:
                raise ValueError(f"{where}: frame: the video has {num_frames} frames, found frame index {frame}")
            actions_p1[frame:] = _parse_player(row, columns, "", side, where)
            if actions_p2 is not None:
                other_side = "right" if side == "left" else "left"
                actions_p2[frame:] = _parse_player(row, columns, "_p2", other_side, where)
            previous_frame = frame
    if previous_frame < 0:
        raise ValueError(f"{path}: the input log has no rows")
    return actions_p1, actions_p2


def _video_reader(path: Path):
    import imageio.v2 as imageio

    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such video file")
    try:
        return imageio.get_reader(path, format="FFMPEG")
    except Exception as error:  # imageio raises several unrelated types for unreadable files
        raise ValueError(f"{path}: cannot be read as a video ({error})") from error


def count_video_frames(path: str | os.PathLike) -> tuple[int, float]:
    """Number of frames (decoded, exact) and the frame rate of a video."""
    reader = _video_reader(Path(path))
    with reader:
        fps = float(reader.get_meta_data().get("fps", 0.0))
        count = reader.count_frames()
    return count, fps


def iter_video_frames(path: str | os.PathLike, size: tuple[int, int] | None) -> Iterator[np.ndarray]:
    """Decode a video frame by frame as uint8 `(3, H, W)`, resized to `size=(height, width)` unless it is None."""
    reader = _video_reader(Path(path))
    with reader:
        for frame in reader:
            frame = np.asarray(frame)[..., :3]
            if size is not None and frame.shape[:2] != tuple(size):
                frame = np.asarray(Image.fromarray(frame).resize((size[1], size[0]), Image.Resampling.BILINEAR))
            yield frame.transpose(2, 0, 1).copy()  # (H, W, 3) -> (3, H, W)


def pool_inputs(actions: np.ndarray, frame_skip: int) -> np.ndarray:
    """Per-frame inputs → inputs per kept frame when keeping every `frame_skip`-th frame.

    Kept frame k is source frame `k * frame_skip`; its input covers source frames `((k-1)*skip, k*skip]` (the inputs
    that led to it). Buttons pressed at any time in that span count (a one-frame jab is not lost), the stick takes its
    latest position (so opposite directions never combine).
    """
    if frame_skip == 1:
        return actions.copy()
    kept = np.arange(0, len(actions), frame_skip)
    pooled = np.empty(len(kept), dtype=np.uint8)
    pooled[0] = actions[0]
    for index, frame in enumerate(kept[1:], start=1):
        span = actions[frame - frame_skip + 1 : frame + 1]
        buttons = np.bitwise_or.reduce(span & ~np.uint8(_DIRECTIONS))
        pooled[index] = (int(span[-1]) & _DIRECTIONS) | int(buttons)
    return pooled


@dataclass
class VideoImportConfig:
    """How `video_to_rounds` cuts and scales a capture.

    Args:
        size: output `(height, width)`, or None to keep the video's size.
        frame_skip: keep every n-th frame (a 60 fps capture with 4 gives 15 fps).
        round_frames: longest round; the capture is cut into consecutive rounds of at most this many frames.
        side: where player 1 stands, for notation (forward = Right on the left side).
        game: the game name stored in each round.
        min_frames: a final piece shorter than this is not kept.
    """

    size: tuple[int, int] | None = (64, 64)
    frame_skip: int = 1
    round_frames: int = 1000
    side: str = "left"
    game: str | None = None
    min_frames: int = 16


def video_to_rounds(
    video: str | os.PathLike,
    input_log: str | os.PathLike,
    out_dir: str | os.PathLike,
    config: VideoImportConfig | None = None,
    prefix: str = "round",
    start_index: int = 0,
) -> list[Path]:
    """Import a capture as rounds `out_dir/{prefix}_{index:04d}.npz` (each written atomically; re-running rewrites
    the same files).

    Returns:
        The paths of the rounds written or already present.
    """
    from tqdm.auto import tqdm

    config = config or VideoImportConfig()
    if start_index < 0:
        raise ValueError(f"start_index must be >= 0, got {start_index}")
    if config.frame_skip < 1:
        raise ValueError(f"frame_skip must be >= 1, got {config.frame_skip}")
    if config.round_frames < 2:
        raise ValueError(f"round_frames must be >= 2, got {config.round_frames}")
    video, out_dir = Path(video), Path(out_dir)
    num_frames, video_fps = count_video_frames(video)
    actions_p1, actions_p2 = read_input_log(input_log, num_frames, config.side)
    actions_p1 = pool_inputs(actions_p1, config.frame_skip)
    actions_p2 = None if actions_p2 is None else pool_inputs(actions_p2, config.frame_skip)
    fps = video_fps / config.frame_skip if video_fps > 0 else None
    num_kept = len(actions_p1)

    paths: list[Path] = []
    frames: list[np.ndarray] = []
    start = 0
    with tqdm(total=num_kept, desc=f"importing {video.name}", unit="frame") as bar:
        for source_index, frame in enumerate(iter_video_frames(video, config.size)):
            if source_index % config.frame_skip:
                continue
            frames.append(frame)
            bar.update(1)
            end = start + len(frames)
            if len(frames) == config.round_frames or end == num_kept:
                if len(frames) >= min(config.min_frames, config.round_frames):
                    path = out_dir / f"{prefix}_{start_index + len(paths):04d}.npz"
                    save_round(
                        path,
                        Round(
                            images=np.stack(frames),
                            actions_p1=actions_p1[start:end],
                            valid_frames=np.ones(len(frames), dtype=bool),
                            actions_p2=None if actions_p2 is None else actions_p2[start:end],
                            fps=fps,
                            game=config.game,
                        ),
                    )
                    paths.append(path)
                start, frames = end, []
    logger.info("%s: %d frames -> %d rounds in %s", video, num_kept, len(paths), out_dir)
    return paths
