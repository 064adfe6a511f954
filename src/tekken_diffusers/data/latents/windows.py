"""A training window and a batch of them, and how a window is read from one row of a latent dataset.

A row becomes an `Episode`: per-latent-frame views of its arrays, no latent byte copied. With a VAE that compresses
time by `r` (LTX, Wan) the row stores one input per game frame, and each latent frame's action is pooled from the
inputs of the frames it encodes (`tekken_diffusers.actions.pool_actions`, mode `action_pooling`: `or` by default, or
`first` / `last`); its state is the state of its last frame. `read_window` then copies only the window's frames,
once, into the output dtype. The datasets that index windows are in `window_datasets`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch

from ...actions import ACTION_POOLING_MODES, ids_to_bits, pool_actions
from .schema import check_row_arrays, latents_tensor

__all__ = [
    "OPTIONAL_FIELDS",
    "Episode",
    "LatentWindow",
    "WindowBatch",
    "check_action_pooling",
    "collate_windows",
    "episode_from_arrays",
    "read_window",
]

# Bits of every action id, MSB first: indexing this table is ~10x faster than recomputing the bits per window.
_ACTION_BITS = ids_to_bits(torch.arange(256, dtype=torch.uint8))  # (256, 8) float32
OPTIONAL_FIELDS = ("states", "actions_p2")


@dataclass
class LatentWindow:
    """One training window.

    Args:
        latents: `[T, C, h, w]` latent frames (normalised as the dataset says), in the requested dtype.
        actions: `[T]` int64 action ids of player 1 (0, no input, on padding).
        action_bits: `[T, 8]` float32 bits of `actions`, MSB first (Up, Down, Left, Right, LP, RP, LK, RK).
        valid: `[T]` bool, False on padding (only with `pad_short=True`).
        round_id: the round the window comes from.
        start: index of the window's first latent frame in the round.
        states: `[T, S]` float32 game state, or None if the dataset has none.
        actions_p2: `[T]` int64 action ids of player 2, or None.
    """

    latents: torch.Tensor
    actions: torch.Tensor
    action_bits: torch.Tensor
    valid: torch.Tensor
    round_id: str
    start: int
    states: torch.Tensor | None = None
    actions_p2: torch.Tensor | None = None


@dataclass
class WindowBatch:
    """A batch of windows (`collate_windows`).

    Args:
        latents: `[B, T, C, h, w]`.
        actions: `[B, T]` int64.
        action_bits: `[B, T, 8]` float32.
        valid: `[B, T]` bool.
        round_ids: the `B` round ids.
        starts: `[B]` int64 window starts.
        states: `[B, T, S]` float32, or None.
        actions_p2: `[B, T]` int64, or None.
    """

    latents: torch.Tensor
    actions: torch.Tensor
    action_bits: torch.Tensor
    valid: torch.Tensor
    round_ids: list[str]
    starts: torch.Tensor
    states: torch.Tensor | None = None
    actions_p2: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.latents.shape[0])

    def player_action_bits(self, num_players: int = 1) -> torch.Tensor:
        """The inputs a world model with `num_players` players is conditioned on: player 1's bits `[B, T, 8]`, or
        both players' `[B, T, 2, 8]` (player 1 first), float32.

        Raises:
            ValueError: for two players when the windows carry no `actions_p2`, or an unknown `num_players`.
        """
        if num_players == 1:
            return self.action_bits
        if num_players != 2:
            raise ValueError(f"num_players must be 1 or 2, got {num_players!r}")
        if self.actions_p2 is None:
            raise ValueError(
                f"num_players=2: the windows of rounds {sorted(set(self.round_ids))[:3]} carry no player 2 inputs "
                "(actions_p2); record with --two-player and encode those rounds"
            )
        bits_p2 = _ACTION_BITS[self.actions_p2.cpu().long()].to(self.action_bits.device)  # [B, T, 8]
        return torch.stack([self.action_bits, bits_p2], dim=2)  # [B, T, 2, 8]

    @classmethod
    def collate(cls, windows: Sequence[LatentWindow]) -> WindowBatch:
        """Stack windows into a batch. Optional fields must be present in all windows or in none."""
        if not windows:
            raise ValueError("cannot collate an empty list of windows")
        optional = {}
        for name in OPTIONAL_FIELDS:
            present = [w.round_id for w in windows if getattr(w, name) is not None]
            if present and len(present) != len(windows):
                missing = [w.round_id for w in windows if getattr(w, name) is None]
                raise ValueError(f"{name} is present in rounds {present} but missing in rounds {missing}")
            optional[name] = torch.stack([getattr(w, name) for w in windows]) if present else None
        return cls(
            latents=torch.stack([w.latents for w in windows]),  # [B, T, C, h, w]
            actions=torch.stack([w.actions for w in windows]),  # [B, T]
            action_bits=torch.stack([w.action_bits for w in windows]),  # [B, T, 8]
            valid=torch.stack([w.valid for w in windows]),  # [B, T]
            round_ids=[w.round_id for w in windows],
            starts=torch.tensor([w.start for w in windows], dtype=torch.int64),
            **optional,
        )

    def to(
        self, device: torch.device | str | None = None, dtype: torch.dtype | None = None, non_blocking: bool = False
    ) -> WindowBatch:
        """Move the tensors to `device`; `dtype` applies to `latents` only (the other fields keep theirs)."""
        moved = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, torch.Tensor):
                value = value.to(device=device, non_blocking=non_blocking)
                if f.name == "latents" and dtype is not None:
                    value = value.to(dtype)
            moved[f.name] = value
        return replace(self, **moved)

    def pin_memory(self) -> WindowBatch:
        """Pinned copies of the tensors (called by `DataLoader(pin_memory=True)`)."""
        tensors = {f.name: getattr(self, f.name) for f in fields(self) if torch.is_tensor(getattr(self, f.name))}
        return replace(self, **{name: tensor.pin_memory() for name, tensor in tensors.items()})


def collate_windows(windows: Sequence[LatentWindow]) -> WindowBatch:
    """`collate_fn` for a `DataLoader` over a window dataset: `WindowBatch.collate`."""
    return WindowBatch.collate(windows)


# ---------------------------------------------------------------------------------------------------------------------
# Episodes: a row's arrays per latent frame
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class Episode:
    """One row's arrays per latent frame, as views of the stored data.

    Args:
        round_id: the round.
        latents: `(T', C, h, w)` in storage dtype (float16, or bf16 bits as uint16): a view, not a copy.
        latents_dtype: `float16` or `bfloat16`.
        actions: `(T',)` uint8, one per latent frame.
        actions_p2: `(T',)` uint8, or None.
        states: `(T', S)` float32, or None.
        length: valid latent frames (a prefix).
    """

    round_id: str
    latents: np.ndarray
    latents_dtype: str
    actions: np.ndarray
    actions_p2: np.ndarray | None
    states: np.ndarray | None
    length: int


def check_action_pooling(action_pooling: str, name: str = "action_pooling") -> str:
    """Return `action_pooling` if it is one of `ACTION_POOLING_MODES`, else raise a ValueError naming `name`."""
    if action_pooling not in ACTION_POOLING_MODES:
        raise ValueError(
            f"{name} must be one of {', '.join(ACTION_POOLING_MODES)} (how the inputs of the game frames behind a "
            f"latent frame become its one input), got {action_pooling!r}"
        )
    return action_pooling


def episode_from_arrays(arrays: Mapping[str, Any], action_pooling: str = "or") -> Episode:
    """Per-latent-frame views of a row's arrays (`schema.row_arrays`), checked with `schema.check_row_arrays`.

    Args:
        arrays: the row's arrays.
        action_pooling: with temporal compression `r > 1`, how each latent frame's input is pooled from its game
            frames' inputs (`or`, `first` or `last`; see `tekken_diffusers.actions`); ignored for `r = 1`.
    """
    check_action_pooling(action_pooling)
    check_row_arrays(arrays)
    shape, num_frames, r = arrays["latents_shape"], arrays["num_frames"], arrays["temporal_compression_ratio"]
    states = arrays["states"]
    if states is not None:
        states = states.reshape(num_frames, arrays["state_dim"])  # (T, S)
    actions, actions_p2 = arrays["actions"], arrays["actions_p2"]
    length = arrays["num_valid"]
    if r > 1:
        # Latent frame j encodes frames 1 + (j-1)·r … j·r (frame 0 alone): pool their inputs, keep the last's state.
        actions = pool_actions(actions.copy(), r, mode=action_pooling)  # copies: the views are read-only
        actions_p2 = None if actions_p2 is None else pool_actions(actions_p2.copy(), r, mode=action_pooling)
        states = None if states is None else states[np.arange(shape[0]) * r]
        length = shape[0]
    return Episode(
        round_id=arrays["round_id"],
        latents=arrays["latents"].reshape(shape),
        latents_dtype=arrays["latents_dtype"],
        actions=actions,
        actions_p2=actions_p2,
        states=states,
        length=int(length),
    )


def _ids_tensor(ids: np.ndarray, length: int) -> torch.Tensor:
    if ids.shape[0] == length:
        return torch.from_numpy(ids.astype(np.int64))
    out = torch.zeros(length, dtype=torch.int64)
    out[: ids.shape[0]] = torch.from_numpy(ids.astype(np.int64))
    return out


def read_window(episode: Episode, start: int, window_length: int, dtype: torch.dtype) -> LatentWindow:
    """Frames `[start, start + window_length)` of an episode, zero-padded past its valid frames."""
    stop = min(start + window_length, episode.length)
    count = stop - start
    latents = latents_tensor(episode.latents[start:stop], episode.latents_dtype, dtype)  # [n, C, h, w]
    if count < window_length:
        latents = torch.cat([latents, latents.new_zeros((window_length - count, *latents.shape[1:]))])
    actions = _ids_tensor(episode.actions[start:stop], window_length)  # [T]
    states = None
    if episode.states is not None:
        states = torch.from_numpy(episode.states[start:stop].astype(np.float32))  # [n, S]
        if count < window_length:
            states = torch.cat([states, states.new_zeros((window_length - count, states.shape[1]))])  # [T, S]
    return LatentWindow(
        latents=latents,
        actions=actions,
        action_bits=_ACTION_BITS[actions],  # [T, 8]
        valid=torch.arange(window_length) < count,
        round_id=episode.round_id,
        start=int(start),
        states=states,
        actions_p2=None if episode.actions_p2 is None else _ids_tensor(episode.actions_p2[start:stop], window_length),
    )
