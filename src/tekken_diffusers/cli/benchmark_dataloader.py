"""Benchmark reading training windows from a latent dataset, and encoding frames with the default VAE.

`python scripts/benchmark_dataloader.py` builds a synthetic latent dataset (or reads `--dataset`), measures
`LatentWindowDataset` single-window reads, a `DataLoader` with batch 32, the streaming variant and, for reference,
`with_format("torch")` row reads; then the encoding speed of `TekkenAutoencoderDC()` (random weights) on 64×64 frames.
The results replace the "Latent windows" section of `docs/benchmarks.md`.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from ..utils import write_markdown_section
from . import setup_logging

logger = logging.getLogger(__name__)

SECTION = "## Latent windows"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark_dataloader.py",
        description="Measure LatentWindowDataset throughput (windows/s) and VAE encoding speed (frames/s), and write "
        "them into the 'Latent windows' section of a markdown file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--dataset", default=None, help="a latent dataset folder (default: a synthetic one)")
    parser.add_argument("--split", default="train", help="split of --dataset to read")
    parser.add_argument("--rounds", type=int, default=200, help="synthetic dataset: rounds")
    parser.add_argument("--frames", type=int, default=256, help="synthetic dataset: frames per round")
    parser.add_argument(
        "--latent-shape", type=int, nargs=3, default=(16, 8, 8), metavar=("C", "H", "W"), help="synthetic latents"
    )
    parser.add_argument("--window-length", type=int, default=16, help="latent frames per window")
    parser.add_argument("--batch-size", type=int, default=32, help="DataLoader batch size")
    parser.add_argument("--num-workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts to try")
    parser.add_argument("--windows", type=int, default=20000, help="windows per measurement")
    parser.add_argument("--encode-frames", type=int, default=256, help="frames to encode (0 skips the VAE)")
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file whose section is replaced")
    parser.add_argument("--no-write", action="store_true", help="only log the results")
    return parser


def synthetic_dataset(folder: Path, rounds: int, frames: int, shape: tuple[int, int, int]) -> Path:
    """Save a latent dataset of `rounds` random rounds (`frames` frames of `shape` latents each, random inputs) in
    `folder`, one "train" split, and return `folder`."""
    import datasets
    import torch

    from ..data.latents import LATENT_FEATURES, LatentDatasetInfo, latent_row, save_latent_dataset

    rng = np.random.default_rng(0)

    def rows():
        for index in range(rounds):
            latents = torch.from_numpy(rng.standard_normal((frames, *shape), dtype=np.float32))
            actions = rng.integers(0, 256, frames, dtype=np.uint8)
            states = rng.standard_normal((frames, 3), dtype=np.float32)
            yield latent_row(f"round_{index:04d}", "train", latents, actions, states=states, fps=15.0)

    train = datasets.Dataset.from_list(list(rows()), features=LATENT_FEATURES)
    info = LatentDatasetInfo(
        latent_channels=shape[0], latent_height=shape[1], latent_width=shape[2], source="synthetic"
    )
    save_latent_dataset({"train": train}, folder, info, max_shard_size="50MB")
    return folder


def _rate(count: int, seconds: float) -> tuple[float, float]:
    return count / seconds, seconds / count * 1e6  # per second, microseconds each


def measure_windows(args: argparse.Namespace, dataset) -> list[tuple[str, float, float]]:
    """`(label, windows/s, µs per window)` of each way of reading windows from `dataset`, with this command's options
    `window_length`, `windows`, `batch_size` and `num_workers` (`build_parser().parse_args([...])` makes them)."""
    import torch
    from torch.utils.data import DataLoader

    from ..data.latents import LatentWindowDataset, LatentWindowIterableDataset, collate_windows

    results = []
    windows = LatentWindowDataset(dataset, args.window_length, seed=0)
    order = np.random.default_rng(0).integers(0, len(windows), args.windows)

    # 1. The zero-copy view alone (the cost of the layout itself), then full single-window reads (random indices:
    #    start, view, one copy into the output dtype, action bits, states), after one pass that opens the row views.
    starts = [windows.window_start(int(index)) for index in order]
    for index in order[:1000]:
        windows[int(index)]
    episodes = {row: windows.episode(row) for row, _ in starts}
    start = time.perf_counter()
    for row, first in starts:
        episodes[row].latents[first : first + args.window_length]
    results.append(
        ("zero-copy view of a window's latents (no copy)", *_rate(len(starts), time.perf_counter() - start))
    )

    start = time.perf_counter()
    for index in order:
        windows[int(index)]
    results.append(("`dataset[i]`, one random window (float32)", *_rate(len(order), time.perf_counter() - start)))

    bf16 = LatentWindowDataset(dataset, args.window_length, seed=0, dtype=torch.bfloat16)
    start = time.perf_counter()
    for index in order:
        bf16[int(index)]
    results.append(("`dataset[i]`, one random window (bfloat16)", *_rate(len(order), time.perf_counter() - start)))

    # 2. DataLoader batches (shuffle, collate into WindowBatch).
    for workers in args.num_workers:
        loader = DataLoader(
            windows,
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=workers,
            collate_fn=collate_windows,
            generator=torch.Generator().manual_seed(0),
        )
        count, start = 0, time.perf_counter()
        while count < args.windows:
            for batch in loader:
                count += len(batch)
                if count >= args.windows:
                    break
        label = f"`DataLoader`, batch {args.batch_size}, {workers} workers (incl. start-up)"
        results.append((label, *_rate(count, time.perf_counter() - start)))

    # 3. Streaming: rows arrive in python format, windows pass a shuffle buffer of 256.
    stream = LatentWindowIterableDataset(dataset.to_iterable_dataset(), args.window_length, shuffle_buffer_size=256)
    count, start = 0, time.perf_counter()
    for _ in stream:
        count += 1
        if count >= args.windows:
            break
    results.append(
        ("`LatentWindowIterableDataset` over `to_iterable_dataset()`", *_rate(count, time.perf_counter() - start))
    )

    # 4. Reference: what the zero-copy path avoids (decodes the whole row, upcasts fp16 to fp32).
    torch_rows = dataset.with_format("torch")
    reads = min(200, args.windows)
    start = time.perf_counter()
    for index in order[:reads]:
        row = torch_rows[int(index) % len(dataset)]
        row["latents"]
    results.append(
        ('reference: `with_format("torch")[i]` row read (no window)', *_rate(reads, time.perf_counter() - start))
    )
    return results


def _measure_encoding(num_frames: int) -> list[tuple[str, float, float]]:
    import torch

    from ..data.latents import encode_frames
    from ..models.autoencoders import TekkenAutoencoderDC

    torch.manual_seed(0)
    vae = TekkenAutoencoderDC().eval()  # the shipped Boxing configuration: 64×64 RGB → 16×8×8
    images = np.random.default_rng(0).integers(0, 256, (num_frames, 3, 64, 64), dtype=np.uint8)
    results = []
    for batch_size in (16, 64):
        encode_frames(vae, images[:batch_size], batch_size=batch_size)  # warm-up
        start = time.perf_counter()
        encode_frames(vae, images, batch_size=batch_size)
        seconds = time.perf_counter() - start
        label = f"`encode_frames`, `TekkenAutoencoderDC()` fp32, 64×64 → 16×8×8, batch {batch_size}"
        results.append((label, num_frames / seconds, seconds / num_frames * 1e6))
    return results


def _section(args: argparse.Namespace, description: str, windows, encoding) -> str:
    import torch

    lines = [
        SECTION,
        "",
        f"`python scripts/benchmark_dataloader.py` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch {torch.__version__}, load average "
        f"{os.getloadavg()[0]:.1f} at the end: other jobs share the CPU). {description}",
        f"Windows of {args.window_length} latent frames; reads go through zero-copy views of the memory-mapped "
        "Arrow buffers (`tekken_diffusers.data.latent_windows`).",
        "",
        "| access | windows/s | µs per window |",
        "|---|---:|---:|",
        *[f"| {label} | {rate:,.0f} | {micro:,.1f} |" for label, rate, micro in windows],
        "",
    ]
    if encoding:
        lines += [
            "| encoding (random weights, CPU) | frames/s | µs per frame |",
            "|---|---:|---:|",
            *[f"| {label} | {rate:,.0f} | {micro:,.0f} |" for label, rate, micro in encoding],
            "",
        ]
    return "\n".join(lines)


def write_section(path: str | os.PathLike, section: str) -> None:
    """Replace (or append) the `## Latent windows` section of a markdown file, leaving the other sections alone."""
    write_markdown_section(path, section, heading=SECTION)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from ..data.latents import load_latent_dataset

    with tempfile.TemporaryDirectory(prefix="bench-latents-") as tmp:
        if args.dataset is None:
            folder = synthetic_dataset(Path(tmp) / "latents", args.rounds, args.frames, tuple(args.latent_shape))
            c, h, w = args.latent_shape
            description = f"Synthetic dataset: {args.rounds} rounds × {args.frames} frames × {c}×{h}×{w} float16."
        else:
            folder = Path(args.dataset)
            description = f"Dataset `{folder}` (split {args.split})."
        try:
            dataset = load_latent_dataset(folder, split=args.split)
        except (FileNotFoundError, ValueError) as error:
            raise SystemExit(f"benchmark_dataloader.py: error: --dataset {folder}: {error}") from None
        windows = measure_windows(args, dataset)
    encoding = _measure_encoding(args.encode_frames) if args.encode_frames > 0 else []
    for label, rate, micro in windows + encoding:
        logger.info("%s: %.0f/s (%.1f µs each)", label, rate, micro)
    if not args.no_write:
        write_section(args.output, _section(args, description, windows, encoding))
        logger.info("wrote the '%s' section of %s", SECTION[3:], args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
