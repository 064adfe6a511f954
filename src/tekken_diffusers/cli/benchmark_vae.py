"""Benchmark the VAE: frames/s of encode and decode, fp32 and bf16 autocast, batch 1 and 64 (median of repetitions).

`python scripts/benchmark_vae.py` loads the shipped DC-AE (`pipelines/boxing-dcae`) and replaces the "VAE" section of
`docs/benchmarks.md` with a table; the other sections are left alone. The CPU is shared, so each number is the median
over `--reps` timed calls after a warm-up, repetitions are interleaved across the cases, and the load average is
written beside the table.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from ..utils import write_markdown_section
from . import setup_logging

logger = logging.getLogger(__name__)

SECTION = "## VAE"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="benchmark_vae.py",
        description="Measure encode/decode frames/s of a TekkenAutoencoderDC (fp32 and bf16 autocast) and write them "
        "into the 'VAE' section of a markdown file.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--vae", default="pipelines/boxing-dcae", help="a TekkenAutoencoderDC folder")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 64], metavar=("H", "W"), help="frame size")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64], help="frames per call")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--reps", type=int, default=7, help="timed calls per measurement (the median is reported)")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[1, 2], help="torch thread counts to measure (each is a table row)"
    )
    parser.add_argument("--output", default="docs/benchmarks.md", help="markdown file whose section is replaced")
    parser.add_argument("--no-write", action="store_true", help="only log the results")
    return parser


def measure(
    vae, size: tuple[int, int], batch_sizes: list[int], precisions: list[str], threads: list[int], reps: int
) -> list[dict[str, float | str | int]]:
    """One row per (operation, precision, batch size, threads): frames/s and ms per call (median over `reps`).

    The repetitions are interleaved (rep 1 of every case, then rep 2, …) so that a burst of load from other jobs on
    the shared CPU hits every case alike instead of spoiling one row.
    """
    import torch

    # 1. The cases: inputs and a call for each (operation, precision, batch size, threads).
    height, width = size
    channels, latent_channels = vae.config.in_channels, vae.config.latent_channels
    ratio = vae.spatial_compression_ratio
    generator = torch.Generator().manual_seed(0)
    cases: list[tuple[dict[str, str | int], Callable[[], object]]] = []
    for precision in precisions:
        for batch_size in batch_sizes:
            pixels = torch.rand(batch_size, channels, height, width, generator=generator) * 2 - 1
            latents = torch.randn(batch_size, latent_channels, height // ratio, width // ratio, generator=generator)
            calls = {
                "encode": lambda pixels=pixels: vae.encode(pixels).latent_dist.mode(),
                "decode": lambda latents=latents: vae.decode(latents).sample,
            }
            for operation, call in calls.items():
                for num_threads in threads:
                    case = {"operation": operation, "precision": precision, "batch_size": batch_size}
                    cases.append(({**case, "threads": num_threads}, call))

    # 2. One warm-up call per case, then `reps` interleaved timed rounds.
    times: list[list[float]] = [[] for _ in cases]
    with torch.no_grad():
        for round_index in range(reps + 1):
            for case_index, (case, call) in enumerate(cases):
                torch.set_num_threads(case["threads"])
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=case["precision"] == "bf16"):
                    start = time.perf_counter()
                    call()
                    elapsed = time.perf_counter() - start
                if round_index > 0:
                    times[case_index].append(elapsed)

    # 3. Medians.
    rows = []
    for (case, _), case_times in zip(cases, times):
        seconds = statistics.median(case_times)
        rows.append({**case, "frames_per_second": case["batch_size"] / seconds, "ms_per_call": seconds * 1e3})
        logger.info(
            "%s %s batch %d, %d threads: %.0f frames/s (%.2f ms per call)",
            case["operation"],
            case["precision"],
            case["batch_size"],
            case["threads"],
            case["batch_size"] / seconds,
            seconds * 1e3,
        )
    return rows


def section(args: argparse.Namespace, vae, rows: list[dict], load_before: float) -> str:
    import torch

    parameters = sum(p.numel() for p in vae.parameters())
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    height, width = args.size
    ratio = vae.spatial_compression_ratio
    latent = f"{vae.config.latent_channels}×{height // ratio}×{width // ratio}"
    lines = [
        SECTION,
        "",
        f"`python scripts/benchmark_vae.py` ({time.strftime('%Y-%m-%d')}; {platform.machine()}, "
        f"{os.cpu_count()} CPUs, torch {torch.__version__}, OMP_WAIT_POLICY={wait_policy}; "
        f"load average {load_before:.1f} before and {os.getloadavg()[0]:.1f} after: other jobs share the CPU, "
        "so compare rows of one run, not runs).",
        f"VAE `{args.vae}`: `TekkenAutoencoderDC`, {parameters / 1e6:.2f} M parameters, "
        f"{vae.config.in_channels}×{height}×{width} → {latent}. Median of {args.reps} interleaved calls after a "
        "warm-up; bf16 is `torch.autocast('cpu', torch.bfloat16)` over fp32 weights. "
        "Real time for Boxing is 15 frames/s. On a shared CPU, run with `OMP_WAIT_POLICY=PASSIVE` (or one thread): "
        "with spinning OpenMP threads, 2 threads ran 50-100× slower than 1 while another job used the CPU.",
        "",
        "| operation | precision | batch | torch threads | frames/s | ms per call |",
        "|---|---|---:|---:|---:|---:|",
        *[
            f"| {r['operation']} | {r['precision']} | {r['batch_size']} | {r['threads']} | "
            f"{r['frames_per_second']:,.0f} | {r['ms_per_call']:,.1f} |"
            for r in rows
        ],
        "",
    ]
    return "\n".join(lines)


def write_section(path: str | os.PathLike, text: str, heading: str = SECTION) -> None:
    """Replace (or append) the section that starts with `heading`, up to the next `## `, leaving the rest alone."""
    write_markdown_section(path, text, heading=heading)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()

    from ..models.autoencoders import TekkenAutoencoderDC

    if not Path(args.vae).is_dir():
        raise SystemExit(f"benchmark_vae.py: error: --vae {args.vae}: no such folder")
    vae = TekkenAutoencoderDC.from_pretrained(args.vae).eval()
    load_before = os.getloadavg()[0]
    rows = measure(vae, tuple(args.size), args.batch_sizes, args.precisions, args.threads, args.reps)
    if not args.no_write:
        write_section(args.output, section(args, vae, rows, load_before))
        logger.info("wrote the %r section of %s", SECTION, args.output)
    return 0
