"""Encode rounds to a latent dataset: `python scripts/encode_latents.py --rounds data/boxing --vae VAE --out DIR`.

Steps: plan the rounds (DIR/train/*.npz, DIR/val/*.npz) → encode each one the work folder `OUT.partial/` lacks into a
per-round shard (written atomically, so an interrupted run resumes where it stopped) → assemble the shards into a
`DatasetDict` saved with `save_to_disk` plus its card and `tekken_latents.json` → rename into `OUT` → optionally push
to the Hub. Under `accelerate launch` the rounds are split between the processes and the main process assembles.

Each shard has a `.source.json` beside it with the size and sha256 of the inputs it was encoded from (the round, its
pose file, or a seed-cache round's files); a resumed run keeps a shard only while those still match, so a round
replaced between two runs is encoded again instead of keeping the old latents.

`--from-seed-cache DIR` imports the original system's cache of latents instead of encoding rounds.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..utils import atomic_output, file_digest, looks_like_local_path
from . import setup_logging

logger = logging.getLogger(__name__)

PROG = "encode_latents.py"
WORK_SUFFIX = ".partial"
_MANIFEST = "manifest.json"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Encode rounds (ROUNDS/train/*.npz, ROUNDS/val/*.npz) with a VAE into a latent-episode dataset: one\n"
            "row per round, saved with datasets' save_to_disk, plus a README.md card and tekken_latents.json.\n"
            "Stored latents are normalised with the VAE's statistics (latents_mean/std, scaling/shift factor)\n"
            "unless --no-normalize. Interrupted runs resume: finished rounds are kept in OUT.partial/ and skipped.\n"
            "Run under `accelerate launch` to split the rounds between several processes."
        ),
        epilog=(
            "examples:\n"
            "  python scripts/encode_latents.py --rounds data/boxing --vae checkpoints/vae --out data/boxing_latents\n"
            "  accelerate launch --num_processes 2 scripts/encode_latents.py --rounds DIR --vae VAE --out OUT\n"
            "  python scripts/encode_latents.py --from-seed-cache /data/latents_v4 --out data/tekken_latents\n"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--rounds", metavar="DIR", help="folder with train/ and/or val/ folders of round .npz files")
    source.add_argument(
        "--from-seed-cache",
        metavar="DIR",
        help="import the original system's cache instead: DIR/{train,val}/<round>/latents/<round>_latents.npy "
        "(fp16 C,T,h,w), .../actions/<round>_actions.npy, .../states/<round>_states.npy",
    )
    parser.add_argument(
        "--vae",
        metavar="PATH",
        help="diffusers VAE folder (config.json + weights), a pipeline folder with vae/, or a Hub id. Required with "
        "--rounds; with --from-seed-cache it only supplies the statistics that normalise the raw cache",
    )
    parser.add_argument("--out", required=True, metavar="DATASET_DIR", help="dataset folder to create")
    parser.add_argument("--batch-size", type=int, default=16, help="frames per VAE call (default: 16)")
    parser.add_argument(
        "--dtype",
        choices=["float16", "bfloat16"],
        default="float16",
        help="storage dtype of the latents; bfloat16 is stored as its uint16 bits (default: float16)",
    )
    parser.add_argument("--no-normalize", action="store_true", help="store raw VAE latents (the card says so)")
    parser.add_argument(
        "--keep-padding", action="store_true", help="also encode trailing padding frames (num_valid marks them)"
    )
    parser.add_argument(
        "--pose-dir",
        metavar="DIR",
        help="pose files DIR/<round>_two_player_poses.npz: the 4th input channel of a 4-channel VAE",
    )
    parser.add_argument("--max-shard-size", default="500MB", help="Arrow/parquet shard size (default: 500MB)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument(
        "--push-to-hub",
        metavar="REPO_ID",
        help="also upload to this Hub dataset repo (token from HF_TOKEN or `hf auth login`)",
    )
    parser.add_argument("--private", action="store_true", help="create the Hub repo as private")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--verbose", action="store_true", help="debug logging")
    return parser


@dataclass
class _Job:
    split: str
    round_id: str
    path: Path  # a round .npz, or a seed-cache round folder


def _fail(message: str) -> SystemExit:
    return SystemExit(f"{PROG}: error: {message}")


def _resume_hint(work: Path) -> str:
    """What to do with the work folder a failed run leaves behind."""
    if not work.is_dir():
        return ""
    return (
        f". The rounds encoded so far are kept in {work}: fix the input and re-run the same command to resume, or "
        "delete that folder to start over"
    )


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.rounds is not None and args.vae is None:
        parser.error("--vae is required with --rounds (the VAE that encodes the frames)")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.private and not args.push_to_hub:
        parser.error("--private only applies with --push-to-hub")
    if args.from_seed_cache is not None and (args.keep_padding or args.pose_dir):
        parser.error("--keep-padding and --pose-dir apply to --rounds, not to --from-seed-cache")
    if args.from_seed_cache is not None and args.no_normalize and args.vae:
        parser.error("--no-normalize with --from-seed-cache: leave out --vae (the cache is stored as it is)")
    if args.pose_dir is not None and not Path(args.pose_dir).is_dir():
        parser.error(f"--pose-dir {args.pose_dir}: no such folder")
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        parser.error(f"--out {out}: already exists (pass --overwrite to replace it)")
    source = Path(args.rounds or args.from_seed_cache)
    if out.resolve() == source.resolve():
        parser.error(f"--out {out} is the input folder")


def load_vae(path: str):
    """Load a diffusers VAE from a model folder, a pipeline folder (subfolder `vae`) or a Hub id.

    The class is the config's `_class_name`, looked up in `tekken_diffusers.models.autoencoders` and then in
    `diffusers`.

    Raises:
        FileNotFoundError: naming `path` when it holds no VAE config.
        ValueError: naming the class when it is unknown.
    """
    import diffusers

    from ..models import autoencoders

    folder, subfolder = Path(path), None
    if not folder.exists() and looks_like_local_path(path):
        raise FileNotFoundError(f"--vae {path}: no such folder (nor a Hub repo id of the form owner/name)")
    if folder.exists():
        if (folder / "config.json").is_file():
            pass
        elif (folder / "vae" / "config.json").is_file():
            subfolder = "vae"
        else:
            raise FileNotFoundError(f"--vae {path}: no config.json (nor vae/config.json): not a diffusers VAE folder")
    config = diffusers.AutoencoderKL.load_config(path, subfolder=subfolder)  # any ModelMixin reads config.json
    class_name = config.get("_class_name")
    cls = getattr(autoencoders, str(class_name), None) or getattr(diffusers, str(class_name), None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, diffusers.ModelMixin):
        known = sorted(n for n in dir(autoencoders) if isinstance(getattr(autoencoders, n), type))
        raise ValueError(
            f"--vae {path}: unknown VAE class {class_name!r} in config.json (known here: {', '.join(known)}, or any "
            "diffusers autoencoder)"
        )
    return cls.from_pretrained(path, subfolder=subfolder).eval()


def _plan(args: argparse.Namespace) -> list[_Job]:
    """Every round to encode, sorted by split and round id."""
    from ..data.rounds import list_rounds
    from ..data.seed_cache import list_seed_cache_rounds

    if args.from_seed_cache is not None:
        folders = list_seed_cache_rounds(args.from_seed_cache)
        return [_Job(split, d.name, d) for split, dirs in folders.items() for d in dirs]
    root = Path(args.rounds)
    if not root.is_dir():
        raise _fail(f"--rounds {root}: no such folder")
    jobs = []
    for split in ("train", "val"):
        if (root / split).is_dir():
            jobs += [_Job(split, p.stem, p) for p in list_rounds(root / split)]
    if not jobs:
        loose = len(list(root.glob("*.npz")))
        hint = f" ({loose} .npz files lie directly in it: move them into {root}/train)" if loose else ""
        raise _fail(f"--rounds {root}: no train/ or val/ folder of rounds{hint}")
    return jobs


def _manifest(args: argparse.Namespace, vae_info, mixed_precision: str) -> dict:
    """The settings that decide the content of a shard: a resumed run must use the same ones."""
    source = f"seed-cache:{args.from_seed_cache}" if args.from_seed_cache else f"rounds:{args.rounds}"
    return {
        "source": source,
        "vae_config_hash": None if vae_info is None else vae_info.config_hash,
        "vae_weights_hash": None if vae_info is None else vae_info.weights_hash,
        "latent_dtype": args.dtype,
        "normalize": not args.no_normalize and vae_info is not None,
        "keep_padding": args.keep_padding,
        "pose": args.pose_dir is not None,
        "mixed_precision": mixed_precision,
    }


def _prepare_work_folder(work: Path, manifest: dict) -> None:
    path = work / _MANIFEST
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        changed = sorted(k for k in set(found) | set(manifest) if found.get(k) != manifest.get(k))
        if changed:
            details = "; ".join(f"{k}: was {found.get(k)!r}, now {manifest.get(k)!r}" for k in changed)
            raise _fail(
                f"{work} holds rounds encoded with other settings ({details}). Re-run with the same arguments to "
                "resume, or delete that folder to start over"
            )
        logger.info("resuming from %s", work)
    else:
        work.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


def _shard_path(work: Path, job: _Job) -> Path:
    return work / "shards" / job.split / f"{job.round_id}.arrow"


def _source_path(work: Path, job: _Job) -> Path:
    """Where the fingerprint of the inputs a shard was encoded from is kept."""
    return work / "shards" / job.split / f"{job.round_id}.source.json"


def _input_digest(job: _Job, args: argparse.Namespace) -> dict:
    """Size and sha256 of every file a job reads: the round `.npz` (and its pose file), or a seed-cache round."""
    from ..data.pose import pose_path_for_round

    if job.path.is_dir():
        files = {str(p.relative_to(job.path)): p for p in sorted(job.path.rglob("*")) if p.is_file()}
    else:
        files = {job.path.name: job.path}
        if args.pose_dir is not None:
            pose = Path(pose_path_for_round(job.path, args.pose_dir))
            if pose.is_file():
                files[f"pose:{pose.name}"] = pose
    return {name: file_digest(path) for name, path in files.items()}


def _is_encoded(work: Path, job: _Job, args: argparse.Namespace) -> bool:
    """Whether the shard of `job` exists and was encoded from the inputs as they are now."""
    shard, source = _shard_path(work, job), _source_path(work, job)
    if not shard.is_file():
        return False
    try:
        recorded = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None  # a shard from before fingerprints, or one whose fingerprint was never written
    try:
        current = _input_digest(job, args)
    except OSError:
        return False  # the input is gone: encoding it fails and names it
    if recorded != current:
        logger.info("%s changed since %s was encoded (or was not recorded): encoding it again", job.path, shard.name)
        return False
    return True


def _frame_size(round_path: Path) -> tuple[int, int] | None:
    """`(H, W)` from the header of a round's `images.npy`, without decompressing the frames."""
    try:
        with zipfile.ZipFile(round_path) as archive, archive.open("images.npy") as member:
            major, _ = np.lib.format.read_magic(member)
            read_header = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, _, _ = read_header(member)
        return int(shape[-2]), int(shape[-1])
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def _encode_job(job: _Job, args: argparse.Namespace, vae) -> dict:
    from ..data.latents import encode_round, latent_row, normalize_latents, vae_temporal_compression_ratio
    from ..data.pose import load_pose_channel
    from ..data.rounds import load_round
    from ..data.seed_cache import read_seed_cache_round

    if args.from_seed_cache is not None:
        import torch

        cached = read_seed_cache_round(job.path)
        latents = torch.from_numpy(cached.latents).float()  # (T, C, h, w)
        if vae is not None and not args.no_normalize:
            if vae_temporal_compression_ratio(vae) != 1:
                raise _fail(f"--vae {args.vae}: the original cache is per frame, this VAE compresses time")
            latents = normalize_latents(latents, vae, channel_dim=1)
        return latent_row(
            job.round_id, job.split, latents, cached.actions, latent_dtype=args.dtype, states=cached.states
        )

    round_ = load_round(job.path)
    pose = None
    if args.pose_dir is not None:
        pose = load_pose_channel(job.path, args.pose_dir, num_frames=round_.num_frames)  # (T, 1, H, W)
    return encode_round(
        round_,
        vae,
        job.round_id,
        job.split,
        batch_size=args.batch_size,
        latent_dtype=args.dtype,
        normalize=not args.no_normalize,
        keep_padding=args.keep_padding,
        pose_channel=pose,
    )


def _assemble(args: argparse.Namespace, jobs: list[_Job], work: Path, vae, vae_info) -> None:
    import datasets

    from ..data.latents import (
        LatentDatasetInfo,
        LatentStatistics,
        dataset_from_shards,
        latent_statistics,
        read_row_shard,
        save_latent_dataset,
    )

    # 1. One Dataset per split, in the planned order, through a fresh Arrow cache inside the work folder.
    cache = work / "cache"
    shutil.rmtree(cache, ignore_errors=True)
    splits = {}
    for split in dict.fromkeys(job.split for job in jobs):
        shards = [_shard_path(work, job) for job in jobs if job.split == split]
        splits[split] = dataset_from_shards(shards, cache_dir=cache / split)

    # 2. What the rows are.
    first = read_row_shard(_shard_path(work, jobs[0]))
    _, channels, height, width = first["latents_shape"]
    normalized = vae is not None and not args.no_normalize
    info = LatentDatasetInfo(
        latent_channels=channels,
        latent_height=height,
        latent_width=width,
        latent_dtype=args.dtype,
        normalized=normalized,
        normalization=latent_statistics(vae) if vae is not None else LatentStatistics(),
        vae=vae_info,
        temporal_compression_ratio=first["temporal_compression_ratio"],
        frame_size=None if args.rounds is None else _frame_size(jobs[0].path),
        pose=args.pose_dir is not None,
        source=f"seed-cache:{args.from_seed_cache}" if args.from_seed_cache else f"rounds:{args.rounds}",
    )

    # 3. Write OUT atomically, then drop the work folder.
    info = save_latent_dataset(
        datasets.DatasetDict(splits), args.out, info, max_shard_size=args.max_shard_size, overwrite=args.overwrite
    )
    shutil.rmtree(work)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    setup_logging(args.verbose)

    import torch
    from accelerate import Accelerator
    from tqdm.auto import tqdm

    from ..data.latents import describe_vae, push_latent_dataset_to_hub, write_row_shard
    from ..data.rounds import RoundFormatError

    # 1. Processes, the VAE and the plan.
    accelerator = Accelerator()
    out = Path(args.out)
    work = out.with_name(out.name + WORK_SUFFIX)
    try:
        vae = None
        if args.vae is not None:
            vae = load_vae(args.vae).to(accelerator.device)
        vae_info = None if vae is None else describe_vae(vae, source=args.vae)
        jobs = _plan(args)
    except (FileNotFoundError, ValueError, OSError) as error:
        raise _fail(str(error)) from None

    # 2. The work folder (main process), then every process lists what is left before anyone writes.
    if accelerator.is_main_process:
        _prepare_work_folder(work, _manifest(args, vae_info, str(accelerator.mixed_precision)))
    accelerator.wait_for_everyone()
    todo = [job for job in jobs if not _is_encoded(work, job, args)]
    if accelerator.is_main_process and len(todo) < len(jobs):
        logger.info("%d of %d rounds already encoded in %s", len(jobs) - len(todo), len(jobs), work)
    accelerator.wait_for_everyone()

    # 3. Encode this process's share, one atomic shard per round.
    start, frames = time.perf_counter(), 0
    with accelerator.split_between_processes(todo) as mine:
        bar = tqdm(
            mine, unit="round", desc="encoding", disable=args.no_progress or not accelerator.is_local_main_process
        )
        for job in bar:
            # The fingerprint is read before the round, and the old one removed before the shard is replaced: an
            # input that changes during this run is at worst encoded once more, never kept stale.
            _source_path(work, job).unlink(missing_ok=True)
            try:
                fingerprint = _input_digest(job, args)
                with torch.no_grad(), accelerator.autocast():
                    row = _encode_job(job, args, vae)
            except (RoundFormatError, FileNotFoundError, ValueError) as error:
                message = f"{job.path}: {error}" if str(job.path) not in str(error) else str(error)
                raise _fail(message + _resume_hint(work)) from None
            write_row_shard(_shard_path(work, job), row)
            with atomic_output(_source_path(work, job)) as tmp:
                tmp.write_text(json.dumps(fingerprint, indent=1, sort_keys=True) + "\n", encoding="utf-8")
            frames += row["num_frames"]
            bar.set_postfix(frames_per_s=f"{frames / max(time.perf_counter() - start, 1e-9):.0f}")
    elapsed = time.perf_counter() - start
    if frames:
        logger.info(
            "process %d encoded %d frames in %.1f s (%.0f frames/s)",
            accelerator.process_index,
            frames,
            elapsed,
            frames / elapsed,
        )
    accelerator.wait_for_everyone()

    # 4. Assemble and publish (main process).
    if accelerator.is_main_process:
        try:
            _assemble(args, jobs, work, vae, vae_info)
        except (FileExistsError, ValueError) as error:
            raise _fail(str(error) + _resume_hint(work)) from None
        if args.push_to_hub:
            private = True if args.private else None
            try:
                push_latent_dataset_to_hub(
                    args.out, args.push_to_hub, private=private, max_shard_size=args.max_shard_size
                )
            except Exception as error:  # the Hub client raises several kinds; the dataset itself is safe on disk
                retry = (
                    'python -c "from tekken_diffusers.data.latent_dataset import push_latent_dataset_to_hub as push; '
                    f"push('{args.out}', '{args.push_to_hub}', private={private})\""
                )
                raise _fail(
                    f"{args.out} is saved, but pushing it to {args.push_to_hub} failed ({type(error).__name__}: "
                    f"{error}). Retry with: {retry}"
                ) from None
    accelerator.wait_for_everyone()
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
