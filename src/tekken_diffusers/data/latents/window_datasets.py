"""Training windows: `T` consecutive latent frames of one round with their inputs, read zero-copy from Arrow.

`LatentWindowDataset` (map-style) indexes a `datasets.Dataset` of latent episodes (`schema.LATENT_FEATURES`):
each round of `n` valid latent frames contributes `ceil(n / T)` windows per epoch, so rounds are sampled in
proportion to their length. With `random_offset=True` each window's start is drawn uniformly from `[0, n - T]` by a
hash of `(seed, epoch, index)`: the same seed, epoch and index give the same window in any process or worker, and
`set_epoch` moves every offset. With `random_offset=False` the starts are the fixed tiling `0, T, 2T, …` plus a
last window ending at `n` (the original loader's windows), for evaluation.

Windows never cross the end of the valid frames. Rounds shorter than `T` are skipped (with a warning) unless
`pad_short=True`, which pads them at the end and marks the padding `valid = False`.

A window is read as a view of the memory-mapped Arrow buffer (`np.frombuffer` on the row's bytes): no row is
decoded, and only the window's frames are copied, once, into the output dtype (measured: 0.004 ms per 16-frame
window, against 0.5-5.7 ms through `with_format("numpy"/"torch")`; docs/benchmarks.md).

With a VAE that compresses time by `r` (LTX, Wan) a window is `T` latent frames; each latent frame's action is pooled
from the inputs of the frames it encodes by `action_pooling` (`or`, the default: a button pressed in any of them;
`first` or `last`: the input of the group's first or last frame; `tekken_diffusers.actions.pool_actions`) and its
state is the state of its last frame (`windows.episode_from_arrays`). A world model must be sampled with the
pooling it was trained with: the trainer saves it in the pipeline (`TekkenWorldModelPipeline.config.action_pooling`).

`LatentWindowIterableDataset` does the same over a stream of rows (a Hub dataset opened with `streaming=True`), with
a shuffle buffer of windows.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import replace
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset, get_worker_info

from .schema import LATENT_FEATURES, row_arrays
from .windows import (
    OPTIONAL_FIELDS,
    Episode,
    LatentWindow,
    check_action_pooling,
    episode_from_arrays,
    read_window,
)

logger = datasets.logging.get_logger(__name__)

__all__ = ["LatentWindowDataset", "LatentWindowIterableDataset"]

_MASK64 = (1 << 64) - 1


def _check_optional_fields(optional_fields: Collection[str] | None) -> tuple[str, ...] | None:
    if optional_fields is None:
        return None
    if isinstance(optional_fields, str):
        optional_fields = (optional_fields,)
    unknown = sorted(set(optional_fields) - set(OPTIONAL_FIELDS))
    if unknown:
        raise ValueError(f"optional_fields: unknown {unknown}; choose from {OPTIONAL_FIELDS}")
    return tuple(name for name in OPTIONAL_FIELDS if name in optional_fields)


def _available_fields(dataset: datasets.Dataset) -> tuple[str, ...]:
    """The optional fields that every row of a dataset has."""
    columns = dataset.with_format("arrow", columns=list(OPTIONAL_FIELDS))[:]
    available = tuple(name for name in OPTIONAL_FIELDS if columns.column(name).null_count == 0)
    for name in OPTIONAL_FIELDS:
        if name not in available and columns.column(name).null_count < len(dataset):
            logger.warning("only some rounds have %s: windows are returned without it", name)
    return available


def _select_fields(window: LatentWindow, fields: tuple[str, ...]) -> LatentWindow:
    """Keep exactly the optional `fields` of a window; a requested field the round lacks is an error."""
    for name in fields:
        if getattr(window, name) is None:
            raise ValueError(f"round {window.round_id} has no {name} (optional_fields={fields})")
    dropped = {name: None for name in OPTIONAL_FIELDS if name not in fields and getattr(window, name) is not None}
    return replace(window, **dropped) if dropped else window


def _check_args(window_length: int, dtype: torch.dtype) -> None:
    if not isinstance(window_length, int) or window_length < 1:
        raise ValueError(f"window_length must be a positive int, got {window_length!r}")
    if not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch dtype for the latents, got {dtype}")


def _hash_ints(*values: int) -> int:
    """splitmix64 over a few integers: a cheap, stateless, platform-independent random number."""
    state = 0
    for value in values:
        state = ((state ^ (value & _MASK64)) + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        state = z ^ (z >> 31)
    return state


# ---------------------------------------------------------------------------------------------------------------------
# Map-style
# ---------------------------------------------------------------------------------------------------------------------
class LatentWindowDataset(Dataset):
    """Random-offset windows of `window_length` latent frames from a latent-episode `datasets.Dataset`.

    Args:
        dataset: one split of a latent dataset (`load_latent_dataset(path, split="train")`).
        window_length: `T`, latent frames per window.
        random_offset: draw each window's start at random (training); else use the fixed tiling (evaluation).
        seed: seed of the offsets; with `set_epoch`, fully determines every window.
        dtype: dtype of the returned latents (`torch.float32`, `torch.bfloat16`, …).
        pad_short: keep rounds shorter than `T` as one zero-padded window (`valid` marks the padding) instead of
            skipping them.

        optional_fields: which of `states`, `actions_p2` to return; by default those that every round has (the
            others are None in every window, so any batch collates).
        action_pooling: with a VAE that compresses time, how a latent frame's input is pooled from its game frames'
            inputs: `or` (the default), `first` or `last`.

    Example:
        ```python
        windows = LatentWindowDataset(load_latent_dataset("data/boxing_latents", split="train"), window_length=16)
        loader = DataLoader(windows, batch_size=32, shuffle=True, collate_fn=collate_windows)
        ```
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        window_length: int,
        *,
        random_offset: bool = True,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        pad_short: bool = False,
        optional_fields: Collection[str] | None = None,
        action_pooling: str = "or",
    ) -> None:
        _check_args(window_length, dtype)
        optional_fields = _check_optional_fields(optional_fields)
        self.action_pooling = check_action_pooling(action_pooling)
        if isinstance(dataset, datasets.DatasetDict):
            raise ValueError(f"expected one split, got a DatasetDict with splits {sorted(dataset)}: pass split=...")
        if not isinstance(dataset, datasets.Dataset):
            raise TypeError(f"expected a datasets.Dataset of latent episodes, got {type(dataset).__name__}")
        missing = sorted(set(LATENT_FEATURES) - set(dataset.column_names))
        if missing:
            raise ValueError(f"not a latent-episode dataset: missing columns {missing} (has {dataset.column_names})")
        self.dataset = dataset
        self.window_length = window_length
        self.random_offset = random_offset
        self.seed = int(seed)
        self.dtype = dtype
        self.pad_short = pad_short
        self.epoch = 0
        self._arrow: datasets.Dataset | None = None
        self._episodes: dict[int, Episode] = {}

        # Index: valid latent frames per round, from three small columns (no latent bytes are touched).
        columns = dataset.with_format("arrow", columns=["num_valid", "latents_shape", "temporal_compression_ratio"])[:]
        num_valid = np.asarray(columns.column("num_valid").to_pylist(), dtype=np.int64)
        latent_frames = np.asarray([shape[0] for shape in columns.column("latents_shape").to_pylist()], dtype=np.int64)
        ratios = np.asarray(columns.column("temporal_compression_ratio").to_pylist(), dtype=np.int64)
        lengths = np.where(ratios == 1, num_valid, latent_frames)
        keep = lengths >= window_length if not pad_short else lengths >= 1
        if not keep.any():
            longest = int(lengths.max()) if lengths.size else 0
            raise ValueError(
                f"no round has {window_length} valid latent frames (longest: {longest} of {len(lengths)} rounds): "
                "use a shorter window_length or pad_short=True"
            )
        if not keep.all():
            logger.warning(
                "skipping %d of %d rounds shorter than window_length=%d", int((~keep).sum()), len(keep), window_length
            )
        self._rows = np.nonzero(keep)[0]  # dataset row of each kept round
        # Optional fields come with every window or with none, so that any batch collates.
        available = _available_fields(dataset)
        if optional_fields is not None and not set(optional_fields) <= set(available):
            lacking = sorted(set(optional_fields) - set(available))
            raise ValueError(f"optional_fields {optional_fields}: some rounds have no {lacking}")
        self.optional_fields = available if optional_fields is None else optional_fields
        self._lengths = lengths[self._rows]
        counts = np.maximum(1, -(-self._lengths // window_length))  # ceil(n / T) windows per round
        self._cumulative = np.cumsum(counts)

    def __len__(self) -> int:
        return int(self._cumulative[-1])

    def set_epoch(self, epoch: int) -> None:
        """Move every random offset (call once per epoch, before iterating; workers copy it at start-up)."""
        self.epoch = int(epoch)

    def __getstate__(self) -> dict[str, Any]:
        # Workers started with spawn get the Dataset (memory-mapped files, pickled by path) and rebuild the views.
        state = self.__dict__.copy()
        state["_arrow"] = None
        state["_episodes"] = {}
        return state

    def episode(self, row: int) -> Episode:
        """The views of dataset row `row` (latents, inputs and the optional fields), opened on first use and kept."""
        episode = self._episodes.get(row)
        if episode is None:
            if self._arrow is None:
                self._arrow = self.dataset.with_format("arrow", columns=list(LATENT_FEATURES))
            episode = episode_from_arrays(row_arrays(self._arrow[int(row)]), self.action_pooling)
            self._episodes[row] = episode
        return episode

    def window_start(self, index: int) -> tuple[int, int]:
        """`(dataset row, start frame)` of window `index` in the current epoch, without reading the latents."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"window index {index} out of range for {len(self)} windows")
        index %= len(self)
        position = int(np.searchsorted(self._cumulative, index, side="right"))
        within = index - (int(self._cumulative[position - 1]) if position else 0)
        length, window = int(self._lengths[position]), self.window_length
        if length <= window:
            start = 0
        elif self.random_offset:
            start = _hash_ints(self.seed, self.epoch, index) % (length - window + 1)
        else:
            start = min(within * window, length - window)
        return int(self._rows[position]), start

    def __getitem__(self, index: int) -> LatentWindow:
        row, start = self.window_start(index)
        return _select_fields(
            read_window(self.episode(row), start, self.window_length, self.dtype), self.optional_fields
        )


# ---------------------------------------------------------------------------------------------------------------------
# Streaming
# ---------------------------------------------------------------------------------------------------------------------
class LatentWindowIterableDataset(IterableDataset):
    """Windows from a stream of latent-episode rows (e.g. `load_latent_dataset(repo_id, split, streaming=True)`).

    Each round gives `ceil(n / T)` windows (random starts, or the fixed tiling), which pass through a shuffle
    buffer of `shuffle_buffer_size` windows. The order is deterministic given `seed`, the epoch (`set_epoch`), the
    worker and the order of the rows.

    With DataLoader workers, a `datasets.IterableDataset` source hands its shards to the workers itself (make it
    with at least as many shards as workers); other sources are split row by row. For several processes, split the
    source first (`datasets.distributed.split_dataset_by_node`) or let `accelerator.prepare` shard the batches.

    Args:
        source: a `datasets.IterableDataset`, a `datasets.Dataset`, or any iterable of rows (python format).
        window_length: `T`, latent frames per window.
        shuffle_buffer_size: windows held for shuffling; 1 keeps the stream's order.
        seed: seed of the offsets and the buffer.
        dtype: dtype of the returned latents.
        random_offset: random starts (training) or the fixed tiling (evaluation).
        pad_short: keep rounds shorter than `T` as one padded window instead of skipping them.
        optional_fields: which of `states`, `actions_p2` to return (a round without one is an error). By default:
            for a `datasets.Dataset`, those every round has; for a stream, whatever each row has (pass this when
            rounds differ, e.g. from `load_latent_info(...).has_actions_p2`, so that batches collate).
        action_pooling: with a VAE that compresses time, how a latent frame's input is pooled from its game frames'
            inputs: `or` (the default), `first` or `last`.
    """

    def __init__(
        self,
        source: datasets.IterableDataset | datasets.Dataset | Iterable[Mapping[str, Any]],
        window_length: int,
        *,
        shuffle_buffer_size: int = 256,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        random_offset: bool = True,
        pad_short: bool = False,
        optional_fields: Collection[str] | None = None,
        action_pooling: str = "or",
    ) -> None:
        _check_args(window_length, dtype)
        optional_fields = _check_optional_fields(optional_fields)
        self.action_pooling = check_action_pooling(action_pooling)
        if optional_fields is None and isinstance(source, datasets.Dataset):
            optional_fields = _available_fields(source)
        if shuffle_buffer_size < 1:
            raise ValueError(f"shuffle_buffer_size must be at least 1, got {shuffle_buffer_size}")
        if isinstance(source, (datasets.DatasetDict, datasets.IterableDatasetDict)):
            raise ValueError(f"expected one split, got a dataset dict with splits {sorted(source)}: pass split=...")
        self.source = source
        self.window_length = window_length
        self.shuffle_buffer_size = shuffle_buffer_size
        self.seed = int(seed)
        self.dtype = dtype
        self.random_offset = random_offset
        self.pad_short = pad_short
        self.optional_fields = optional_fields
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Change the offsets and the buffer order (and the source's shard order, if it has `set_epoch`)."""
        self.epoch = int(epoch)
        if hasattr(self.source, "set_epoch"):
            self.source.set_epoch(epoch)

    def _row_arrays(self, worker: int, num_workers: int) -> Iterator[dict[str, Any]]:
        if isinstance(self.source, datasets.Dataset):
            arrow = self.source.with_format("arrow", columns=list(LATENT_FEATURES))
            for index in range(worker, len(self.source), num_workers):
                yield row_arrays(arrow[index])
        elif isinstance(self.source, datasets.IterableDataset):
            for row in self.source:  # datasets assigns shards to DataLoader workers itself
                yield row_arrays(row)
        else:
            for index, row in enumerate(self.source):
                if index % num_workers == worker:
                    yield row_arrays(row)

    def __iter__(self) -> Iterator[LatentWindow]:
        info = get_worker_info()
        worker, num_workers = (0, 1) if info is None else (info.id, info.num_workers)
        rng = np.random.default_rng([self.seed, self.epoch, worker])
        buffer: list[LatentWindow] = []
        window = self.window_length
        for arrays in self._row_arrays(worker, num_workers):
            episode = episode_from_arrays(arrays, self.action_pooling)
            if episode.length < window and not self.pad_short:
                logger.debug("skipping round %s: %d < %d latent frames", episode.round_id, episode.length, window)
                continue
            last_start = max(episode.length - window, 0)
            for k in range(max(1, math.ceil(episode.length / window))):
                start = int(rng.integers(0, last_start + 1)) if self.random_offset else min(k * window, last_start)
                item = read_window(episode, start, window, self.dtype)
                if self.optional_fields is not None:
                    item = _select_fields(item, self.optional_fields)
                if len(buffer) < self.shuffle_buffer_size:
                    buffer.append(item)
                    continue
                slot = int(rng.integers(len(buffer)))
                yield buffer[slot]
                buffer[slot] = item
        rng.shuffle(buffer)
        yield from buffer
