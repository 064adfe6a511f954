"""Frames with the inputs drawn under them, as videos and contact sheets, so a person can check that they line up.

Used by the round previewer, the generation CLI and the training script's validation videos.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .actions import BUTTON_NAMES, id_to_notation_safe
from .utils import atomic_output

__all__ = ["draw_input_panel", "compose_frames", "write_video", "write_contact_sheet"]

_PANEL_HEIGHT = 40
_ON = (255, 210, 40)
_OFF = (70, 70, 70)
_BACKGROUND = (20, 20, 20)
_TEXT = (235, 235, 235)


def _font(size: int) -> ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def draw_input_panel(action_id: int, width: int, label: str = "", height: int = _PANEL_HEIGHT) -> np.ndarray:
    """An `(height, width, 3)` uint8 panel: a d-pad and buttons 1–4 lit when pressed, and the input in notation."""
    panel = Image.new("RGB", (width, height), _BACKGROUND)
    draw = ImageDraw.Draw(panel)
    cell = max(4, (height - 8) // 3)
    x0, y0 = 4, (height - 3 * cell) // 2
    bits = [(int(action_id) >> shift) & 1 for shift in range(7, -1, -1)]  # Up, Down, Left, Right, LP, RP, LK, RK
    pressed = dict(zip(BUTTON_NAMES, bits))
    # The d-pad: a cross of squares around the centre cell.
    for name, (col, row) in {"Up": (1, 0), "Down": (1, 2), "Left": (0, 1), "Right": (2, 1)}.items():
        box = (x0 + col * cell, y0 + row * cell, x0 + (col + 1) * cell - 1, y0 + (row + 1) * cell - 1)
        draw.rectangle(box, fill=_ON if pressed[name] else _OFF)
    # Buttons laid out like a pad's face: 1 2 on top, 3 4 below.
    bx = x0 + 3 * cell + 6
    radius = max(2, cell // 2)
    for index, name in enumerate(("LP", "RP", "LK", "RK")):
        col, row = index % 2, index // 2
        cx, cy = bx + col * (2 * radius + 3) + radius, y0 + cell // 2 + row * (cell + 2) + radius // 2
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=_ON if pressed[name] else _OFF)
    text_x = bx + 2 * (2 * radius + 3) + 6
    font = _font(max(8, height // 3))
    draw.text((text_x, 2), id_to_notation_safe(int(action_id)), fill=_TEXT, font=font)
    if label:
        draw.text((text_x, height // 2), label, fill=_TEXT, font=font)
    return np.asarray(panel)


def _to_hwc(frame: np.ndarray, scale: int) -> np.ndarray:
    """`(3, H, W)` uint8 → `(H*scale, W*scale, 3)` by pixel repetition (keeps the low-resolution look honest)."""
    image = np.asarray(frame).transpose(1, 2, 0)  # (3, H, W) -> (H, W, 3)
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def compose_frames(
    streams: Sequence[np.ndarray],
    actions: np.ndarray,
    titles: Sequence[str] | None = None,
    actions_p2: np.ndarray | None = None,
    scale: int = 4,
    fps: float | None = None,
    first_frame: int = 0,
) -> np.ndarray:
    """Put frame streams side by side with the inputs drawn underneath.

    Args:
        streams: one or more uint8 `(T, 3, H, W)` clips of the same length and size (e.g. generated, ground truth).
        actions: uint8 `(T,)` player-1 input ids; frame t is drawn above input t.
        titles: a title per stream, drawn at its top.
        actions_p2: optional `(T,)` player-2 inputs, drawn as a second panel.
        scale: integer upscaling of the frames.
        fps: when given, each panel also shows the time in seconds.
        first_frame: index of the first frame in its clip (the panels count from it when a long clip is composed in
            chunks).

    Returns:
        uint8 `(T, H_out, W_out, 3)`, with `H_out` and `W_out` multiples of 16 (what video encoders want).
    """
    streams = [np.asarray(stream) for stream in streams]
    num_frames = streams[0].shape[0]
    for stream in streams:
        if stream.ndim != 4 or stream.shape[1] != 3 or stream.dtype != np.uint8:
            raise ValueError(f"streams: expected uint8 (T, 3, H, W) clips, got {stream.dtype} {stream.shape}")
        if stream.shape != streams[0].shape:
            raise ValueError(f"streams: all clips must have one shape, got {[s.shape for s in streams]}")
    actions = np.asarray(actions)
    if actions.shape != (num_frames,):
        raise ValueError(f"actions: expected shape ({num_frames},) to match the frames, got {actions.shape}")
    if titles is not None and len(titles) != len(streams):
        raise ValueError(f"titles: expected {len(streams)} titles, got {len(titles)}")
    height, width = streams[0].shape[2] * scale, streams[0].shape[3] * scale
    gap = 4
    title_height = 14 if titles else 0
    panels = 1 if actions_p2 is None else 2
    content_w = len(streams) * width + (len(streams) - 1) * gap
    content_h = title_height + height + panels * _PANEL_HEIGHT
    out_w, out_h = -(-content_w // 16) * 16, -(-content_h // 16) * 16
    canvas = np.zeros((num_frames, out_h, out_w, 3), dtype=np.uint8)
    canvas[:] = _BACKGROUND
    title_strip = None
    if titles:
        strip = Image.new("RGB", (out_w, title_height), _BACKGROUND)
        draw = ImageDraw.Draw(strip)
        for index, title in enumerate(titles):
            draw.text((index * (width + gap) + 2, 1), title, fill=_TEXT, font=_font(11))
        title_strip = np.asarray(strip)
    for t in range(num_frames):
        if title_strip is not None:
            canvas[t, :title_height] = title_strip
        for index, stream in enumerate(streams):
            x = index * (width + gap)
            canvas[t, title_height : title_height + height, x : x + width] = _to_hwc(stream[t], scale)
        index_in_clip = first_frame + t
        label = f"t={index_in_clip}" if fps is None else f"t={index_in_clip} {index_in_clip / fps:.2f}s"
        y = title_height + height
        canvas[t, y : y + _PANEL_HEIGHT, :content_w] = draw_input_panel(int(actions[t]), content_w, "P1 " + label)
        if actions_p2 is not None:
            y += _PANEL_HEIGHT
            canvas[t, y : y + _PANEL_HEIGHT, :content_w] = draw_input_panel(int(actions_p2[t]), content_w, "P2")
    return canvas


def write_video(path: str | os.PathLike, frames: Iterable[np.ndarray], fps: float) -> Path:
    """Write uint8 `(H, W, 3)` frames as an H.264 mp4 (through imageio-ffmpeg), atomically.

    `frames` is a `(T, H, W, 3)` array or any iterable of frames or of `(n, H, W, 3)` chunks: a generator streams a
    long video to disk without holding it in memory."""
    import imageio.v2 as imageio

    with atomic_output(path) as tmp:
        with imageio.get_writer(tmp, fps=fps, codec="libx264", quality=8, macro_block_size=16) as writer:
            for item in frames:
                for frame in item if np.ndim(item) == 4 else [item]:
                    writer.append_data(frame)
    return Path(path)


def write_contact_sheet(path: str | os.PathLike, frames: np.ndarray, columns: int = 8, every: int = 1) -> Path:
    """Tile `(T, H, W, 3)` frames (every `every`-th) into one PNG, atomically."""
    chosen = frames[::every]
    rows = -(-len(chosen) // columns)
    height, width = chosen.shape[1:3]
    sheet = np.zeros((rows * height, columns * width, 3), dtype=np.uint8)
    for index, frame in enumerate(chosen):
        row, col = divmod(index, columns)
        sheet[row * height : (row + 1) * height, col * width : (col + 1) * width] = frame
    with atomic_output(path) as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return Path(path)
