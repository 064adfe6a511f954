"""Latent datasets on the Hugging Face Hub: the Hub layout (`data/{split}-NNNNN-of-NNNNN.parquet` with the card and
`tekken_latents.json`, `export_hub_folder`) and the upload in one commit (`push_latent_dataset_to_hub`).
`storage.load_latent_dataset` opens both a Hub-layout folder and a Hub repo id."""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import datasets

from .info import load_latent_info, write_metadata
from .storage import load_latent_dataset

logger = datasets.logging.get_logger(__name__)

__all__ = ["export_hub_folder", "push_latent_dataset_to_hub"]


def _num_shards(dataset: datasets.Dataset, max_shard_size: int) -> int:
    return max(1, math.ceil(dataset.data.nbytes / max_shard_size))


def export_hub_folder(
    dataset_dir: str | os.PathLike, out_dir: str | os.PathLike, max_shard_size: str | int = "500MB"
) -> Path:
    """Write a saved latent dataset in the Hub layout: `data/{split}-00000-of-00001.parquet`, `README.md`,
    `tekken_latents.json`. `load_dataset(out_dir)` (and so `load_latent_dataset`) reads it, like the Hub repo.

    Args:
        dataset_dir: a folder written by `save_latent_dataset`.
        out_dir: the folder to write (must not exist).
        max_shard_size: parquet shard size (`datasets`' default for `push_to_hub` is 500MB).
    """
    from datasets.utils.py_utils import convert_file_size_to_int

    dataset_dir, out_dir = Path(dataset_dir), Path(out_dir)
    info = load_latent_info(dataset_dir)
    loaded = load_latent_dataset(dataset_dir)
    if not isinstance(loaded, datasets.DatasetDict):
        raise ValueError(f"{dataset_dir}: expected a DatasetDict folder (dataset_dict.json)")
    if out_dir.exists():
        raise FileExistsError(f"{out_dir}: already exists")
    shard_bytes = convert_file_size_to_int(max_shard_size)
    (out_dir / "data").mkdir(parents=True)
    for split, dataset in loaded.items():
        num_shards = _num_shards(dataset, shard_bytes)
        for index in range(num_shards):
            shard = dataset.shard(num_shards, index, contiguous=True)
            shard.to_parquet(str(out_dir / "data" / f"{split}-{index:05d}-of-{num_shards:05d}.parquet"))
    write_metadata(out_dir, info)
    return out_dir


def push_latent_dataset_to_hub(
    dataset_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool | None = None,
    token: str | bool | None = None,
    revision: str | None = None,
    max_shard_size: str | int = "500MB",
    commit_message: str = "Upload latent episodes (tekken-diffusers)",
    api: Any | None = None,
) -> str:
    """Upload a saved latent dataset to a Hub dataset repo in one commit: parquet shards, card and info.

    This does what `DatasetDict.push_to_hub` does for the data (same `data/{split}-*.parquet` layout) but commits
    our card and `tekken_latents.json` together with it, instead of a generated card in a second commit.

    Args:
        dataset_dir: a folder written by `save_latent_dataset`.
        repo_id: `user/name`; created if missing.
        private: visibility of a new repo.
        token: Hub token (else the logged-in one).
        revision: branch to commit to.
        max_shard_size: parquet shard size.
        commit_message: the commit message.
        api: an `huggingface_hub.HfApi` (e.g. with another `endpoint`); a new one by default.

    Returns:
        The URL of the commit.
    """
    from huggingface_hub import HfApi

    api = api if api is not None else HfApi()
    with tempfile.TemporaryDirectory(prefix="tekken-latents-hub-") as staging:
        folder = export_hub_folder(dataset_dir, Path(staging) / "repo", max_shard_size=max_shard_size)
        api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True, token=token)
        commit = api.upload_folder(
            folder_path=str(folder),
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            token=token,
            commit_message=commit_message,
        )
    url = getattr(commit, "commit_url", str(commit))
    logger.info("pushed %s to the Hub dataset %s (%s)", dataset_dir, repo_id, url)
    return url
