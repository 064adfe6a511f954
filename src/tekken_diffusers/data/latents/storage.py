"""A latent dataset on disk: per-round row shards (the resumable work folder of `encode_latents`), the saved
`DatasetDict` folder with its info and card (`save_latent_dataset`), and opening any form of it
(`load_latent_dataset`: a `save_to_disk` folder, a Hub-layout folder, a Hub repo id)."""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...utils import atomic_output
from .info import LatentDatasetInfo, SplitInfo, write_metadata
from .schema import LATENT_FEATURES, latents_tensor, row_arrays

logger = datasets.logging.get_logger(__name__)

__all__ = ["dataset_from_shards", "load_latent_dataset", "read_row_shard", "save_latent_dataset", "write_row_shard"]


# ---------------------------------------------------------------------------------------------------------------------
# Per-round shards
# ---------------------------------------------------------------------------------------------------------------------
def write_row_shard(path: str | os.PathLike, row: Mapping[str, Any]) -> Path:
    """Write one row as an Arrow IPC file, atomically (a temporary file renamed into place).

    The row is typed against `LATENT_FEATURES` here, so a bad row fails now and not at assembly.
    """
    path = Path(path)
    table = pa.Table.from_pylist([dict(row)], schema=LATENT_FEATURES.arrow_schema)
    with atomic_output(path) as tmp, open(tmp, "wb") as handle, pa.ipc.new_file(handle, table.schema) as writer:
        writer.write_table(table)
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
# Writing a dataset folder
# ---------------------------------------------------------------------------------------------------------------------
def _measure(dataset: datasets.Dataset, channels: int) -> tuple[list[float], list[float]] | None:
    """Per-channel mean and standard deviation of the stored latents over the valid latent frames (float64 sums)."""
    total = np.zeros(channels, dtype=np.float64)
    total_sq = np.zeros(channels, dtype=np.float64)
    count = 0
    arrow = dataset.with_format("arrow", columns=list(LATENT_FEATURES))
    for index in range(len(dataset)):
        arrays = row_arrays(arrow[index])
        r = arrays["temporal_compression_ratio"]
        valid = arrays["num_valid"] if r == 1 else arrays["latents_shape"][0]
        stored = arrays["latents"].reshape(arrays["latents_shape"])[:valid]  # (T', C, h, w), storage dtype
        latents = latents_tensor(stored, arrays["latents_dtype"]).numpy()  # float32
        per_channel = latents.transpose(1, 0, 2, 3).reshape(channels, -1).astype(np.float64)  # (C, T*h*w)
        total += per_channel.sum(axis=1)
        total_sq += (per_channel**2).sum(axis=1)
        count += per_channel.shape[1]
    if count == 0:
        return None
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return [float(v) for v in mean], [float(v) for v in std]


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

    with atomic_output(out_dir, folder=True) as tmp_dir:
        dataset_dict.save_to_disk(str(tmp_dir), max_shard_size=max_shard_size)
        write_metadata(tmp_dir, info)
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
