"""What a latent dataset holds: `tekken_latents.json` (`LatentDatasetInfo`) and the `README.md` card.

Every latent dataset folder (and Hub repo) has `tekken_latents.json` next to its data: which VAE made the latents
(class, config hash, weights hash, where it was loaded from: `vae.VAEInfo`), the latent shape and storage dtype,
whether the latents are normalised and with which per-channel statistics, counts per split and the measured mean/std
of the stored latents. `LatentDatasetInfo.check_vae` compares a VAE (e.g. a pipeline's) with it;
`render_dataset_card` writes the same for people as the `README.md` card, with the YAML header the Hub reads to find
the data files; `write_metadata` writes both.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import torch

from .normalization import LatentStatistics, latent_statistics
from .schema import LATENT_DTYPES
from .vae import VAEInfo, describe_vae

logger = datasets.logging.get_logger(__name__)

__all__ = [
    "LATENT_INFO_FILE",
    "LatentDatasetInfo",
    "SplitInfo",
    "load_latent_info",
    "render_dataset_card",
    "write_metadata",
]

LATENT_INFO_FILE = "tekken_latents.json"
LATENT_FORMAT = "tekken-latents"
LATENT_FORMAT_VERSION = 1


# ---------------------------------------------------------------------------------------------------------------------
# Dataset info (tekken_latents.json)
# ---------------------------------------------------------------------------------------------------------------------
@dataclass
class SplitInfo:
    """Counts for one split.

    Args:
        rounds: rows (rounds).
        frames: game frames stored (`sum(num_frames)`).
        valid_frames: valid game frames (`sum(num_valid)`).
        latent_frames: latent frames stored (`sum(latents_shape[0])`).
    """

    rounds: int = 0
    frames: int = 0
    valid_frames: int = 0
    latent_frames: int = 0


@dataclass
class LatentDatasetInfo:
    """What a latent dataset holds, saved as `tekken_latents.json` next to the data so a pipeline can be checked.

    Args:
        latent_channels: `C`.
        latent_height: `h`.
        latent_width: `w`.
        latent_dtype: storage dtype, one of `LATENT_DTYPES`.
        normalized: whether the stored latents are normalised with `normalization`.
        normalization: the statistics `normalize_latents` used (or, if not normalised, those that would apply).
        vae: the VAE that made the latents, or None if unknown (an import of a raw cache).
        temporal_compression_ratio: game frames per latent frame.
        splits: counts per split.
        fps: frames per second of the recordings, if known.
        game: game name, if known.
        frame_size: `(H, W)` of the encoded frames, if known.
        state_dim: `S` of `states` (0 without states).
        has_actions_p2: whether rows carry player 2's inputs.
        pose: whether the VAE input had the pose channel.
        source: where the rounds came from (e.g. `rounds:data/boxing`, `seed-cache:/data/latents`).
        measured_mean: per-channel mean of the stored latents over the valid frames of the train split.
        measured_std: per-channel standard deviation, likewise.
        created: UTC time of writing (ISO 8601).
    """

    latent_channels: int
    latent_height: int
    latent_width: int
    latent_dtype: str = "float16"
    normalized: bool = True
    normalization: LatentStatistics = field(default_factory=LatentStatistics)
    vae: VAEInfo | None = None
    temporal_compression_ratio: int = 1
    splits: dict[str, SplitInfo] = field(default_factory=dict)
    fps: float | None = None
    game: str | None = None
    frame_size: tuple[int, int] | None = None
    state_dim: int = 0
    has_actions_p2: bool = False
    pose: bool = False
    source: str | None = None
    measured_mean: list[float] | None = None
    measured_std: list[float] | None = None
    created: str | None = None

    def __post_init__(self) -> None:
        if self.latent_dtype not in LATENT_DTYPES:
            raise ValueError(f"latent_dtype: expected one of {LATENT_DTYPES}, got {self.latent_dtype!r}")
        for name in ("latent_channels", "latent_height", "latent_width", "temporal_compression_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        stats = self.normalization
        if stats.per_channel and len(stats.mean) != self.latent_channels:
            raise ValueError(
                f"normalization: latents_mean has {len(stats.mean)} channels but latent_channels is "
                f"{self.latent_channels}"
            )

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """`(C, h, w)` of one latent frame."""
        return (self.latent_channels, self.latent_height, self.latent_width)

    # --- JSON ------------------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["normalization"] = {
            "scaling_factor": self.normalization.scaling_factor,
            "shift_factor": self.normalization.shift_factor,
            "latents_mean": None if self.normalization.mean is None else list(self.normalization.mean),
            "latents_std": None if self.normalization.std is None else list(self.normalization.std),
        }
        data["frame_size"] = None if self.frame_size is None else list(self.frame_size)
        return {"format": LATENT_FORMAT, "format_version": LATENT_FORMAT_VERSION, **data}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = LATENT_INFO_FILE) -> LatentDatasetInfo:
        """Parse the JSON written by `to_dict`.

        Raises:
            ValueError: naming `source` and the offending key, for another format, a newer version or unknown keys.
        """
        data = dict(data)
        fmt, version = data.pop("format", None), data.pop("format_version", None)
        if fmt != LATENT_FORMAT:
            raise ValueError(f"{source}: format: expected {LATENT_FORMAT!r}, found {fmt!r}")
        if not isinstance(version, int) or version > LATENT_FORMAT_VERSION:
            raise ValueError(
                f"{source}: format_version: expected at most {LATENT_FORMAT_VERSION}, found {version!r} "
                "(written by a newer tekken-diffusers?)"
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"{source}: unknown keys {unknown}; known keys: {sorted(known)}")
        try:
            norm = data.get("normalization") or {}
            data["normalization"] = LatentStatistics(
                scaling_factor=float(norm.get("scaling_factor", 1.0)),
                shift_factor=float(norm.get("shift_factor", 0.0)),
                mean=None if norm.get("latents_mean") is None else tuple(norm["latents_mean"]),
                std=None if norm.get("latents_std") is None else tuple(norm["latents_std"]),
            )
            if data.get("vae") is not None:
                data["vae"] = VAEInfo(**data["vae"])
            data["splits"] = {name: SplitInfo(**counts) for name, counts in (data.get("splits") or {}).items()}
            if data.get("frame_size") is not None:
                data["frame_size"] = tuple(data["frame_size"])
            return cls(**data)
        except (TypeError, ValueError) as error:
            raise ValueError(f"{source}: invalid dataset info ({error})") from error

    def save(self, folder: str | os.PathLike) -> Path:
        """Write `folder/tekken_latents.json`."""
        path = Path(folder) / LATENT_INFO_FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        return path

    # --- checks ----------------------------------------------------------------------------------------------------
    def check_vae(self, vae: torch.nn.Module, check_weights: bool = False) -> None:
        """Raise unless `vae` is the VAE that made this dataset (same config hash, latent shape and normalisation).

        Args:
            vae: e.g. `pipeline.vae`.
            check_weights: also compare the weights hash (reads every parameter once).

        Raises:
            ValueError: listing every mismatch.
        """
        found = describe_vae(vae, with_weights=check_weights)
        problems = []
        if found.latent_channels is not None and found.latent_channels != self.latent_channels:
            problems.append(f"latent_channels: dataset {self.latent_channels}, VAE {found.latent_channels}")
        if found.temporal_compression_ratio != self.temporal_compression_ratio:
            problems.append(
                f"temporal_compression_ratio: dataset {self.temporal_compression_ratio}, "
                f"VAE {found.temporal_compression_ratio}"
            )
        if self.vae is None:
            logger.warning("the dataset records no VAE (an import of a raw cache): only the latent shape is checked")
        else:
            if found.config_hash != self.vae.config_hash:
                problems.append(
                    f"config_hash: dataset {self.vae.config_hash[:12]}… ({self.vae.class_name}), "
                    f"VAE {found.config_hash[:12]}… ({found.class_name})"
                )
            if check_weights and self.vae.weights_hash and found.weights_hash != self.vae.weights_hash:
                problems.append(f"weights_hash: dataset {self.vae.weights_hash[:12]}…, VAE {found.weights_hash[:12]}…")
            if self.normalized and latent_statistics(vae) != self.normalization:
                problems.append(f"normalization: dataset {self.normalization}, VAE {latent_statistics(vae)}")
        if problems:
            raise ValueError("the VAE does not match the latent dataset:\n  " + "\n  ".join(problems))


# ---------------------------------------------------------------------------------------------------------------------
# Card, writing and loading
# ---------------------------------------------------------------------------------------------------------------------
def _format_floats(values: Iterable[float] | None) -> str:
    return "—" if values is None else "[" + ", ".join(f"{v:.4g}" for v in values) + "]"


def render_dataset_card(info: LatentDatasetInfo, splits: Iterable[str] | None = None) -> str:
    """The dataset card (`README.md`): YAML header for the Hub (data files per split) and a description.

    Args:
        info: the dataset info.
        splits: splits to list in the YAML `configs` (defaults to `info.splits`).
    """
    splits = list(info.splits if splits is None else splits)
    yaml_lines = ["---", "configs:", "- config_name: default", "  data_files:"]
    for split in splits:
        yaml_lines += [f"  - split: {split}", f"    path: data/{split}-*"]
    yaml_lines += ["tags:", "- tekken-diffusers", "- world-model", "- latents", "---", ""]

    vae = info.vae
    stats = info.normalization
    if stats.per_channel:
        rule = "`(z - latents_mean) / latents_std * scaling_factor`"
    else:
        rule = "`(z - shift_factor) * scaling_factor`"
    rows = [
        ("VAE", "unknown (imported raw cache)" if vae is None else f"`{vae.class_name}` from `{vae.source}`"),
        ("VAE config hash (sha256)", "—" if vae is None else f"`{vae.config_hash}`"),
        ("VAE weights hash (sha256)", "—" if vae is None or not vae.weights_hash else f"`{vae.weights_hash}`"),
        ("latent frame shape (C, h, w)", f"{info.latent_shape}"),
        ("storage dtype", info.latent_dtype + (" (bit pattern in uint16)" if info.latent_dtype == "bfloat16" else "")),
        ("temporal compression (frames per latent frame)", str(info.temporal_compression_ratio)),
        ("normalised", f"{'yes' if info.normalized else 'no (raw VAE latents)'}: {rule}"),
        ("scaling_factor / shift_factor", f"{stats.scaling_factor:.6g} / {stats.shift_factor:.6g}"),
        ("latents_mean (per channel)", _format_floats(stats.mean)),
        ("latents_std (per channel)", _format_floats(stats.std)),
        ("measured mean of the stored latents (train)", _format_floats(info.measured_mean)),
        ("measured std of the stored latents (train)", _format_floats(info.measured_std)),
        ("fps", "unknown" if info.fps is None else f"{info.fps:g}"),
        ("game", info.game or "unknown"),
        ("frame size (H, W)", "unknown" if info.frame_size is None else str(tuple(info.frame_size))),
        ("state size", str(info.state_dim)),
        ("player 2 inputs", "yes" if info.has_actions_p2 else "no"),
        ("pose channel", "yes" if info.pose else "no"),
        ("source", info.source or "unknown"),
    ]
    split_rows = [
        f"| {name} | {c.rounds} | {c.frames} | {c.valid_frames} | {c.latent_frames} |"
        for name, c in info.splits.items()
    ]
    lines = [
        "# Latent episodes (tekken-diffusers)",
        "",
        "Rounds of gameplay encoded by a VAE, one row per round, for training an action-conditioned world model with",
        "tekken-diffusers. Machine-readable copy of this card: `tekken_latents.json`",
        "(`tekken_diffusers.data.load_latent_info`).",
        "",
        "| property | value |",
        "|---|---|",
        *[f"| {key} | {value} |" for key, value in rows],
        "",
        "| split | rounds | frames | valid frames | latent frames |",
        "|---|---|---|---|---|",
        *split_rows,
        "",
        "## Columns",
        "",
        "`latents` holds the raw little-endian bytes of a `(T', C, h, w)` array (`latents_shape`, `latents_dtype`);",
        "`actions` (and `actions_p2`) one uint8 per game frame, MSB first (Up, Down, Left, Right, LP, RP, LK, RK);",
        "`states` the `(T, state_dim)` game state flattened; `num_valid` the valid prefix of the `num_frames` frames.",
        "",
        "```python",
        "from tekken_diffusers.data import LatentWindowDataset, collate_windows, load_latent_dataset",
        "train = load_latent_dataset(PATH_OR_REPO_ID, split='train')",
        "windows = LatentWindowDataset(train, window_length=16)  # zero-copy reads",
        "```",
        "",
    ]
    return "\n".join(yaml_lines + lines)


def load_latent_info(
    path_or_repo_id: str | os.PathLike, revision: str | None = None, token: str | bool | None = None
) -> LatentDatasetInfo:
    """Read `tekken_latents.json` from a dataset folder or a Hub dataset repo.

    Raises:
        FileNotFoundError: naming the folder when it has no such file.
        ValueError: when the file is not valid dataset info.
    """
    path = Path(path_or_repo_id)
    source = str(path_or_repo_id)
    if not path.exists() and (source.count("/") != 1 or source.startswith((".", "/", "~"))):
        raise FileNotFoundError(f"{source}: no such folder, and not a Hub repo id of the form user/name")
    if path.exists():
        info_path = path / LATENT_INFO_FILE
        if not info_path.is_file():
            raise FileNotFoundError(f"{path}: no {LATENT_INFO_FILE} (not a tekken-diffusers latent dataset?)")
    else:
        from huggingface_hub import hf_hub_download

        repo_id = str(path_or_repo_id)
        info_path = Path(
            hf_hub_download(repo_id, LATENT_INFO_FILE, repo_type="dataset", revision=revision, token=token)
        )
    try:
        data = json.loads(info_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{info_path}: not valid JSON ({error})") from error
    return LatentDatasetInfo.from_dict(data, source=str(info_path))


def write_metadata(folder: str | os.PathLike, info: LatentDatasetInfo) -> None:
    """Write `tekken_latents.json` and the `README.md` card of a dataset folder."""
    info.save(folder)
    (Path(folder) / "README.md").write_text(render_dataset_card(info), encoding="utf-8")
