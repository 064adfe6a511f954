"""The action space: one uint8 per frame, an 8-bit field of simultaneously pressed inputs.

Bit layout (MSB first, the original system's overlay and live-input convention; also in docs/data_format.md)::

    bit 7 (128) Up      bit 3 (8) LP  "1"
    bit 6  (64) Down    bit 2 (4) RP  "2"
    bit 5  (32) Left    bit 1 (2) LK  "3"
    bit 4  (16) Right   bit 0 (1) RK  "4"

The model sees the 8-vector of bits in that same order (index 0 = Up … index 7 = RK). Users write Tekken notation
(`f`, `b`, `d/f+2`, `1+2`, `n`), where *forward* is Right for the player standing on the left. Atari's 18 actions map
to the directions plus FIRE → LP.

For VAEs that compress time, `pool_actions` gives one action per latent frame (the frames behind each latent frame:
`latent_frame_groups`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import overload

import numpy as np
import torch

__all__ = [
    "BUTTON_NAMES",
    "NUM_BUTTONS",
    "MAX_ACTION_SEQUENCE",
    "UP",
    "DOWN",
    "LEFT",
    "RIGHT",
    "LP",
    "RP",
    "LK",
    "RK",
    "ATARI_ACTION_NAMES",
    "KEYBOARD_MAP",
    "ids_to_bits",
    "bits_to_ids",
    "validate_action_ids",
    "notation_to_id",
    "id_to_notation",
    "parse_action_sequence",
    "atari_to_id",
    "id_to_atari",
    "keys_to_id",
    "ACTION_POOLING_MODES",
    "POOL_MODES",
    "latent_frame_groups",
    "num_frames_for_latents",
    "num_latent_frames",
    "pool_action_bits",
    "pool_actions",
]

NUM_BUTTONS = 8
UP, DOWN, LEFT, RIGHT, LP, RP, LK, RK = 128, 64, 32, 16, 8, 4, 2, 1
# Index i of the bit vector holds bit (7 - i): the order of this tuple.
BUTTON_NAMES: tuple[str, ...] = ("Up", "Down", "Left", "Right", "LP", "RP", "LK", "RK")
_BIT_SHIFTS = tuple(range(NUM_BUTTONS - 1, -1, -1))  # (7, 6, ..., 0)
_DIRECTIONS = UP | DOWN | LEFT | RIGHT
_FACE_BUTTONS = {"1": LP, "2": RP, "3": LK, "4": RK}

# The ALE's full action set, in ALE order (ale_py.Action values 0..17).
ATARI_ACTION_NAMES: tuple[str, ...] = (
    "NOOP",
    "FIRE",
    "UP",
    "RIGHT",
    "LEFT",
    "DOWN",
    "UPRIGHT",
    "UPLEFT",
    "DOWNRIGHT",
    "DOWNLEFT",
    "UPFIRE",
    "RIGHTFIRE",
    "LEFTFIRE",
    "DOWNFIRE",
    "UPRIGHTFIRE",
    "UPLEFTFIRE",
    "DOWNRIGHTFIRE",
    "DOWNLEFTFIRE",
)


def _atari_name_to_id(name: str) -> int:
    action_id = LP if name.endswith("FIRE") else 0
    for word, bit in (("UP", UP), ("DOWN", DOWN), ("LEFT", LEFT), ("RIGHT", RIGHT)):
        if word in name:
            action_id |= bit
    return action_id


_ATARI_TO_ID = np.array([_atari_name_to_id(name) for name in ATARI_ACTION_NAMES], dtype=np.uint8)
_ID_TO_ATARI = {int(action_id): atari for atari, action_id in enumerate(_ATARI_TO_ID)}

# The demo's keyboard: W/A/S/D for the stick, U/I/J/K for LP/RP/LK/RK (the original's live-play client).
KEYBOARD_MAP: dict[str, int] = {"w": UP, "s": DOWN, "a": LEFT, "d": RIGHT, "u": LP, "i": RP, "j": LK, "k": RK}


# ---------------------------------------------------------------------------------------------------------------------
# ids <-> bit vectors
# ---------------------------------------------------------------------------------------------------------------------
def validate_action_ids(ids: np.ndarray | torch.Tensor, name: str = "actions") -> None:
    """Raise a `ValueError` naming `name` unless `ids` is an integer array with every value in [0, 255]."""
    if isinstance(ids, torch.Tensor):
        if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
            raise ValueError(f"{name}: expected integer action ids in [0, 255], got dtype {ids.dtype}")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) > 255):
            raise ValueError(f"{name}: action ids must lie in [0, 255], found [{int(ids.min())}, {int(ids.max())}]")
        return
    ids = np.asarray(ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"{name}: expected integer action ids in [0, 255], got dtype {ids.dtype}")
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) > 255):
        raise ValueError(f"{name}: action ids must lie in [0, 255], found [{int(ids.min())}, {int(ids.max())}]")


@overload
def ids_to_bits(ids: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor: ...
@overload
def ids_to_bits(ids: np.ndarray | Sequence[int] | int, dtype: np.dtype | None = None) -> np.ndarray: ...
def ids_to_bits(ids, dtype=None):
    """Action ids `(...)` → bit vectors `(..., 8)` in MSB-first order (index 0 = Up, index 7 = RK).

    Works on numpy arrays (default dtype uint8) and torch tensors (default dtype float32, on the tensor's device).
    """
    validate_action_ids(ids if isinstance(ids, torch.Tensor) else np.asarray(ids))
    if isinstance(ids, torch.Tensor):
        shifts = torch.tensor(_BIT_SHIFTS, device=ids.device, dtype=torch.int64)
        bits = (ids.to(torch.int64).unsqueeze(-1) >> shifts) & 1  # (..., 8)
        return bits.to(dtype or torch.float32)
    ids = np.asarray(ids, dtype=np.int64)
    bits = (ids[..., None] >> np.array(_BIT_SHIFTS)) & 1  # (..., 8)
    return bits.astype(dtype or np.uint8)


@overload
def bits_to_ids(bits: torch.Tensor) -> torch.Tensor: ...
@overload
def bits_to_ids(bits: np.ndarray | Sequence[Sequence[int]]) -> np.ndarray: ...
def bits_to_ids(bits):
    """Bit vectors `(..., 8)` (MSB first; any dtype, non-zero = pressed) → action ids `(...)` as uint8."""
    if isinstance(bits, torch.Tensor):
        if bits.shape[-1:] != (NUM_BUTTONS,):
            raise ValueError(f"bits: expected a last dimension of {NUM_BUTTONS}, got shape {tuple(bits.shape)}")
        weights = torch.tensor([1 << s for s in _BIT_SHIFTS], device=bits.device, dtype=torch.int64)
        return ((bits != 0).to(torch.int64) * weights).sum(-1).to(torch.uint8)
    bits = np.asarray(bits)
    if bits.shape[-1:] != (NUM_BUTTONS,):
        raise ValueError(f"bits: expected a last dimension of {NUM_BUTTONS}, got shape {bits.shape}")
    weights = np.array([1 << s for s in _BIT_SHIFTS], dtype=np.int64)
    return ((bits != 0).astype(np.int64) * weights).sum(-1).astype(np.uint8)


# ---------------------------------------------------------------------------------------------------------------------
# Actions per latent frame (VAEs that compress time)
# ---------------------------------------------------------------------------------------------------------------------
# Causal video VAEs (LTX-Video, Wan 2.1) encode the first frame alone and every later group of `r` frames (the temporal
# compression ratio) into one latent frame, so a clip must have `1 + k·r` frames and gives `1 + k` latent frames:
#
#     frames          0 | 1 … r | r+1 … 2r | …
#     latent frame    0 |   1   |    2     | …
#
# A per-frame VAE has `r = 1`. Actions are pooled over the same groups (`pool_actions`), so latent frame `j` is
# conditioned on the inputs of the frames it encodes. The modes:
#
#     or     a button is pressed for the latent frame if it is pressed in any of its frames (a one-frame tap counts)
#     first  the input of the group's first frame
#     last   the input of the group's last frame
#     mean   the fraction of the group's frames in which each button is pressed (float bits, not an action id)
#
# A world model trains and samples on one action id per latent frame, so it takes the first three
# (`ACTION_POOLING_MODES`); `mean` is there for analysis.
POOL_MODES = ("or", "mean", "first", "last")
ACTION_POOLING_MODES = ("or", "first", "last")


def _check_ratio(temporal_compression_ratio: int) -> None:
    if not isinstance(temporal_compression_ratio, int) or temporal_compression_ratio < 1:
        raise ValueError(f"temporal_compression_ratio must be a positive int, got {temporal_compression_ratio!r}")


def num_latent_frames(num_frames: int, temporal_compression_ratio: int, name: str = "this VAE") -> int:
    """The number of latent frames for a clip of `num_frames` frames: `1 + (num_frames - 1) / r`.

    Args:
        num_frames: frames in the clip.
        temporal_compression_ratio: `r`, frames per latent frame after the first.
        name: the VAE's name, for the error message.

    Raises:
        ValueError: if `num_frames` is not `1 + k·r`; the message names the nearest valid counts.
    """
    _check_ratio(temporal_compression_ratio)
    r = temporal_compression_ratio
    if num_frames < 1 or (num_frames - 1) % r != 0:
        below = 1 + max(num_frames - 1, 0) // r * r
        raise ValueError(
            f"{name} cannot encode a clip of {num_frames} frames: its temporal compression is {r}, so frame counts "
            f"must be 1 + k·{r} (1, {1 + r}, {1 + 2 * r}, …); the nearest valid counts are {below} and {below + r}"
        )
    return 1 + (num_frames - 1) // r


def num_frames_for_latents(num_latent: int, temporal_compression_ratio: int) -> int:
    """The number of frames that `num_latent` latent frames decode to: `1 + (num_latent - 1)·r`."""
    _check_ratio(temporal_compression_ratio)
    if num_latent < 1:
        raise ValueError(f"need at least one latent frame, got {num_latent}")
    return 1 + (num_latent - 1) * temporal_compression_ratio


def latent_frame_groups(num_frames: int, temporal_compression_ratio: int) -> list[range]:
    """The frames behind each latent frame: `[range(0, 1), range(1, 1 + r), range(1 + r, 1 + 2r), …]`."""
    num_latent = num_latent_frames(num_frames, temporal_compression_ratio)
    r = temporal_compression_ratio
    return [range(0, 1)] + [range(1 + (j - 1) * r, 1 + j * r) for j in range(1, num_latent)]


def _check_mode(mode: str) -> None:
    if mode not in POOL_MODES:
        raise ValueError(f"unknown action pooling mode {mode!r}; known modes: {', '.join(POOL_MODES)}")


def pool_action_bits(
    bits: torch.Tensor, temporal_compression_ratio: int, mode: str = "or", starts_clip: bool = True
) -> torch.Tensor:
    """Per-frame input bits `(..., T, 8)` → one bit vector per latent frame `(..., T', 8)`, pooled by `mode`.

    Args:
        bits: float bits in [0, 1], MSB first (`ids_to_bits`); a non-zero bit counts as pressed for `"or"`.
        temporal_compression_ratio: `r`.
        mode: one of `POOL_MODES` (see above); `"or"` takes each bit's maximum over the group (for 0/1 bits: pressed
            in any of its frames).
        starts_clip: the frames start a clip (`T = 1 + k·r`: frame 0 is latent frame 0 on its own, `T' = 1 + k`), or
            continue one (`T = k·r`: every latent frame covers `r` frames, `T' = k`), as the inputs of frames
            generated after a context do.

    Raises:
        ValueError: on an unknown mode or a frame count that does not fit.
    """
    _check_mode(mode)
    _check_ratio(temporal_compression_ratio)
    r = temporal_compression_ratio
    num_frames = bits.shape[-2]
    if starts_clip:
        num_latent_frames(num_frames, r, name="pool_action_bits")
        lone, rest = bits[..., :1, :], bits[..., 1:, :]  # frame 0 is a latent frame of its own
    else:
        if num_frames < 1 or num_frames % r:
            raise ValueError(
                f"pool_action_bits: {num_frames} frames after the start of a clip must be a multiple of {r} "
                "(one latent frame per group of frames)"
            )
        lone, rest = bits[..., :0, :], bits
    groups = rest.unflatten(-2, (rest.shape[-2] // r, r))  # (..., k, r, 8)
    if mode == "or":
        pooled = groups.amax(dim=-2)
    elif mode == "mean":
        pooled = groups.mean(dim=-2)
    elif mode == "first":
        pooled = groups[..., 0, :]
    else:  # last
        pooled = groups[..., -1, :]
    return torch.cat([lone, pooled], dim=-2)


def pool_actions(
    actions: torch.Tensor | np.ndarray, temporal_compression_ratio: int, mode: str = "or"
) -> torch.Tensor | np.ndarray:
    """Per-frame action ids → one action per latent frame, over the groups of `latent_frame_groups`.

    Args:
        actions: uint8 action ids `(..., T)` with `T = 1 + k·r` (torch or numpy; the result has the same kind).
        temporal_compression_ratio: `r`.
        mode: `"or"`: a button counts as pressed for a latent frame if it is pressed in any of its frames;
            `"first"` / `"last"`: the input of the group's first / last frame; these return uint8 ids `(..., 1 + k)`,
            so the world model's action input is unchanged. `"mean"`: the fraction of the group's frames in which
            each button is pressed; returns float32 bits `(..., 1 + k, 8)`, MSB first.

    Raises:
        ValueError: on an invalid frame count or an unknown mode.
    """
    _check_mode(mode)
    is_numpy = isinstance(actions, np.ndarray)
    ids = torch.as_tensor(actions)
    pooled = pool_action_bits(ids_to_bits(ids), temporal_compression_ratio, mode=mode)  # (..., 1 + k, 8) float32
    result = pooled if mode == "mean" else bits_to_ids(pooled)  # (..., 1 + k, 8) or (..., 1 + k) uint8
    return result.numpy() if is_numpy else result


# ---------------------------------------------------------------------------------------------------------------------
# Tekken notation
# ---------------------------------------------------------------------------------------------------------------------
def _check_side(side: str) -> None:
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right' (where the player stands), got {side!r}")


def _direction_bits(token: str, side: str) -> int:
    """One direction token (`n`, `f`, `b`, `u`, `d`, `u/f`, `df`, …) → its bits for a player on `side`."""
    forward, back = (RIGHT, LEFT) if side == "left" else (LEFT, RIGHT)
    letters = {"u": UP, "d": DOWN, "f": forward, "b": back}
    token = token.replace("/", "")
    if token == "n":
        return 0
    if len(token) == 1 and token in letters:
        return letters[token]
    if len(token) == 2 and token[0] in "ud" and token[1] in "fb":
        return letters[token[0]] | letters[token[1]]
    raise KeyError(token)


def notation_to_id(notation: str, side: str = "left") -> int:
    """Tekken notation for one frame → action id.

    Accepts a direction (`n`, `f`, `b`, `u`, `d`, `u/f`, `u/b`, `d/f`, `d/b`; also written without the slash),
    face buttons `1`–`4`, or a combination joined by `+` (`1+2`, `d/f+2`, `f+1+4`). Case is ignored (Tekken's
    upper case means *hold*, which for one frame is the same input). `side` is where the player stands: forward is
    Right for `"left"` and Left for `"right"`.

    Raises:
        ValueError: for an unknown token, two directions in one input, a repeated button, or an empty string.
    """
    _check_side(side)
    text = notation.strip().lower()
    if not text:
        raise ValueError("notation: empty input; use 'n' for neutral")
    action_id = 0
    has_direction = False
    for token in (part.strip() for part in text.split("+")):
        if token in _FACE_BUTTONS:
            if action_id & _FACE_BUTTONS[token]:
                raise ValueError(f"notation {notation!r}: button {token} appears twice")
            action_id |= _FACE_BUTTONS[token]
            continue
        try:
            bits = _direction_bits(token, side)
        except KeyError:
            raise ValueError(
                f"notation {notation!r}: unknown token {token!r}; expected n, f, b, u, d, u/f, u/b, d/f, d/b "
                "or a button 1-4, joined by '+'"
            ) from None
        if has_direction:
            raise ValueError(f"notation {notation!r}: more than one direction in one input")
        has_direction = True
        action_id |= bits
    return action_id


def id_to_notation(action_id: int, side: str = "left") -> str:
    """Action id → canonical Tekken notation (`n`, `d/f+2`, `1+2`, …) for a player on `side`.

    Raises:
        ValueError: for an id outside [0, 255], or one that presses opposite directions (Up+Down, Left+Right).
    """
    _check_side(side)
    action_id = int(action_id)
    if not 0 <= action_id <= 255:
        raise ValueError(f"action id must lie in [0, 255], got {action_id}")
    if action_id & UP and action_id & DOWN:
        raise ValueError(f"action id {action_id}: Up and Down pressed together cannot be written in notation")
    if action_id & LEFT and action_id & RIGHT:
        raise ValueError(f"action id {action_id}: Left and Right pressed together cannot be written in notation")
    forward, back = (RIGHT, LEFT) if side == "left" else (LEFT, RIGHT)
    vertical = "u" if action_id & UP else "d" if action_id & DOWN else ""
    horizontal = "f" if action_id & forward else "b" if action_id & back else ""
    parts = []
    if vertical and horizontal:
        parts.append(f"{vertical}/{horizontal}")
    elif vertical or horizontal:
        parts.append(vertical or horizontal)
    parts += [key for key, bit in _FACE_BUTTONS.items() if action_id & bit]
    return "+".join(parts) if parts else "n"


MAX_ACTION_SEQUENCE = 1_000_000  # inputs one sequence may expand to (a day of play at 15 Hz): "f*10**9" is a typo


def parse_action_sequence(
    text: str | Iterable[str], side: str = "left", max_inputs: int = MAX_ACTION_SEQUENCE
) -> np.ndarray:
    """A comma- or whitespace-separated list of notation (`"f,f,1+2,n"`; `"f*8"` repeats 8 times) → uint8 ids.

    Raises:
        ValueError: for bad notation, no inputs, or more than `max_inputs` inputs (checked before expanding).
    """
    tokens = text.replace(",", " ").split() if isinstance(text, str) else list(text)
    pieces: list[tuple[int, int]] = []
    total = 0
    for token in tokens:
        notation, star, count = token.partition("*")
        repeat = 1
        if star:
            if not count.isdigit() or int(count) < 1:
                raise ValueError(f"actions: {token!r} has a bad repeat count; write e.g. 'f*8'")
            repeat = int(count)
        total += repeat
        if total > max_inputs:
            raise ValueError(
                f"actions: more than {max_inputs} inputs (at {token!r}); the limit is there to catch typos"
            )
        pieces.append((notation_to_id(notation, side), repeat))
    if not pieces:
        raise ValueError("actions: no inputs given")
    return np.repeat(np.array([i for i, _ in pieces], dtype=np.uint8), [r for _, r in pieces])


# ---------------------------------------------------------------------------------------------------------------------
# Atari and keyboard
# ---------------------------------------------------------------------------------------------------------------------
def atari_to_id(atari_actions: np.ndarray | Sequence[int] | int) -> np.ndarray:
    """ALE full-action-set indices (0..17) → action ids (uint8): directions plus FIRE → LP."""
    atari_actions = np.asarray(atari_actions)
    if not np.issubdtype(atari_actions.dtype, np.integer):
        raise ValueError(f"atari actions: expected integers in [0, 17], got dtype {atari_actions.dtype}")
    if atari_actions.size and (atari_actions.min() < 0 or atari_actions.max() >= len(ATARI_ACTION_NAMES)):
        raise ValueError(
            f"atari actions: expected values in [0, 17], found [{atari_actions.min()}, {atari_actions.max()}]"
        )
    return _ATARI_TO_ID[atari_actions]


def id_to_atari(ids: np.ndarray | Sequence[int] | int) -> np.ndarray:
    """Action ids → ALE full-action-set indices. Only directions and LP exist on the Atari stick.

    Raises:
        ValueError: for an id that presses RP/LK/RK or opposite directions, naming the id.
    """
    ids = np.asarray(ids)
    validate_action_ids(ids, "ids")
    out = np.empty(ids.shape, dtype=np.int64)
    for index, action_id in np.ndenumerate(ids):
        if int(action_id) not in _ID_TO_ATARI:
            raise ValueError(
                f"action id {int(action_id)} ({id_to_notation_safe(int(action_id))}) has no Atari equivalent: "
                "the Atari stick has 8 directions and one button (LP)"
            )
        out[index] = _ID_TO_ATARI[int(action_id)]
    return out


def id_to_notation_safe(action_id: int) -> str:
    """Like `id_to_notation` (player on the left) but never raises: opposite directions are shown as `U+D`/`L+R`."""
    try:
        return id_to_notation(action_id)
    except ValueError:
        names = [name for name, shift in zip(BUTTON_NAMES, _BIT_SHIFTS) if (int(action_id) >> shift) & 1]
        return "+".join(names)


def keys_to_id(keys: Iterable[str]) -> int:
    """Currently held keyboard keys → action id, using `KEYBOARD_MAP` (W/A/S/D stick, U/I/J/K buttons).

    Opposite directions held together cancel out (a stick cannot point both ways; fighting-game controllers call this
    SOCD cleaning), so the result is always a valid input. Unmapped keys are ignored.
    """
    action_id = 0
    for key in keys:
        action_id |= KEYBOARD_MAP.get(key.lower(), 0)
    if action_id & UP and action_id & DOWN:
        action_id &= ~(UP | DOWN)
    if action_id & LEFT and action_id & RIGHT:
        action_id &= ~(LEFT | RIGHT)
    return action_id
