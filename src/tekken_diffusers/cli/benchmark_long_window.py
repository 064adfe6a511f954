"""Time and peak memory of one fp32 training step at long windows, dense-mask attention against chunked attention.

The model is the `tekken-large` layout (128 latent channels, 14x23 latents, patch 1 = 322 tokens per frame, local
window 16, global window 128, every 4th layer global) at a reduced width and depth (`--width`, `--heads`,
`--layers`), so that the attention, whose cost and memory are what the two paths differ in, is a large share of the
step on a CPU. For each window length (`--frames`) and each attention path, a fresh child process builds the model,
runs `--steps` forward + backward steps on random inputs and reports the seconds per step and its peak resident
memory (the kernel's high-water mark, `VmHWM`, which sees torch's allocator; `tracemalloc` does not). One process per
measurement keeps each peak its own, and a path that runs out of memory kills only its child (the row says so).

The dense path builds one boolean token-by-token mask per distinct window (41,216 x 41,216 = 1.7 GB at 128 frames);
the chunked one attends frame-chunk by frame-chunk (`tekken_diffusers.models.attention_tekken`). Results go to
`<output-dir>/long_window.json` and a markdown table `<output-dir>/long_window.md`.

Full size (minutes per row on a laptop CPU; the dense 128-frame rows need tens of GB):

    tekken-benchmark-long-window --frames 16 32 64 128 --width 128 --heads 1 --layers 4
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import setup_logging

logger = logging.getLogger(__name__)

ATTENTION_PATHS = ("dense", "chunked")
# The child process: reads its case as JSON on stdin, prints its result as the last line of stdout.
CHILD_CODE = "from tekken_diffusers.cli.benchmark_long_window import child_main; child_main()"
RESULT_PREFIX = "RESULT "


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tekken-benchmark-long-window",
        description="Seconds and peak memory of one fp32 forward + backward step of a reduced tekken-large layout at "
        "long windows, with dense-mask and with chunked attention (one child process per measurement).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 32, 64, 128], help="window lengths to measure")
    parser.add_argument("--latent-size", type=int, nargs=2, default=[14, 23], metavar=("H", "W"), help="latent size")
    parser.add_argument("--width", type=int, default=128, help="model width (tekken-large: 2048)")
    parser.add_argument("--heads", type=int, default=1, help="attention heads (head dim = width / heads)")
    parser.add_argument("--layers", type=int, default=4, help="transformer layers (layer 0 of every 4 is global)")
    parser.add_argument("--batch-size", type=int, default=1, help="windows per step")
    parser.add_argument(
        "--attention", nargs="+", default=list(ATTENTION_PATHS), choices=ATTENTION_PATHS, help="paths to measure"
    )
    parser.add_argument(
        "--chunk-tokens", type=int, default=None, help="query tokens per chunk (default: the model's default)"
    )
    parser.add_argument(
        "--teacher-forcing", action="store_true", help="teacher-forced windows (context + targets: twice the tokens)"
    )
    parser.add_argument("--steps", type=int, default=1, help="timed steps per measurement (the fastest is reported)")
    parser.add_argument("--threads", type=int, default=0, help="torch threads in each child (0: torch's default)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds before a child is stopped")
    parser.add_argument(
        "--output-dir", default="outputs/benchmark_long_window", help="where long_window.json and .md go"
    )
    return parser


def read_proc_status_kib(field: str) -> int | None:
    """A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`) in KiB, or `None` off Linux."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def peak_rss_kib() -> int:
    """This process's peak resident memory in KiB (`VmHWM`, else `ru_maxrss`, which macOS gives in bytes)."""
    peak = read_proc_status_kib("VmHWM")
    if peak is not None:
        return peak
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss // 1024 if sys.platform == "darwin" else maxrss


def run_case(case: dict) -> dict:
    """
    One measurement, in the current process: build the model, run `steps` fp32 forward + backward steps, and return
    the seconds per step and the memory (MiB): resident before the first step, peak, and the difference.

    Args:
        case (`dict`): `frames`, `latent_size`, `width`, `heads`, `layers`, `batch_size`, `attention` (`"dense"` or
            `"chunked"`), `chunk_tokens` (or `None`), `teacher_forcing`, `steps`, `threads` (0: torch's default).
    """
    import torch

    from ..models.transformer_tekken import TekkenWorldModelTransformer

    if case["threads"]:
        torch.set_num_threads(case["threads"])
    torch.manual_seed(0)
    model = TekkenWorldModelTransformer.from_preset(
        "tekken-large",
        sample_size=tuple(case["latent_size"]),
        num_layers=case["layers"],
        num_attention_heads=case["heads"],
        attention_head_dim=case["width"] // case["heads"],
    ).train()
    # Force the path: the dense mask at any length, or chunks at any length.
    model.attention_dense_max_tokens = sys.maxsize if case["attention"] == "dense" else 0
    if case["chunk_tokens"] is not None:
        model.attention_chunk_tokens = case["chunk_tokens"]

    height, width = case["latent_size"]
    shape = (case["batch_size"], case["frames"], model.config.in_channels, height, width)
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(shape, generator=generator)
    sigmas = torch.rand(shape[:2], generator=generator)
    actions = torch.randint(0, 2, (*shape[:2], model.config.num_actions), generator=generator).bool()
    target = torch.randn(shape, generator=generator)
    extra = {}
    if case["teacher_forcing"]:
        extra = {
            "context_latents": torch.randn(shape, generator=generator),
            "context_sigmas": 0.2 * torch.rand(shape[:2], generator=generator),
        }

    rss_before = read_proc_status_kib("VmRSS") or peak_rss_kib()
    seconds = []
    for _ in range(case["steps"]):
        start = time.perf_counter()
        loss = (model(latents, sigmas, actions, **extra).sample - target).square().mean()
        loss.backward()
        seconds.append(time.perf_counter() - start)
        model.zero_grad(set_to_none=True)
    peak = peak_rss_kib()
    return {
        "seconds": min(seconds),
        "seconds_all": seconds,
        "rss_before_mib": rss_before / 1024,
        "peak_rss_mib": peak / 1024,
        "step_memory_mib": (peak - rss_before) / 1024,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }


def child_main() -> None:
    """Entry point of a measurement's child process: the case as JSON on stdin, the result as JSON on stdout."""
    case = json.loads(sys.stdin.read())
    result = run_case(case)
    sys.stdout.write(RESULT_PREFIX + json.dumps(result) + "\n")


def measure_in_child(case: dict, timeout: float) -> dict:
    """Run [`run_case`] in a fresh Python process; a child that fails, is killed or times out gives a status row."""
    try:
        completed = subprocess.run(
            [sys.executable, "-c", CHILD_CODE],
            input=json.dumps(case),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        return {"status": f"timed out after {timeout:.0f} s"}
    results = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode == 0 and results:
        return {"status": "ok", **json.loads(results[-1][len(RESULT_PREFIX) :])}
    if completed.returncode < 0:
        # -9 is what the kernel's out-of-memory killer leaves.
        return {"status": f"killed by signal {-completed.returncode}"}
    last_error = (completed.stderr.strip().splitlines() or ["no output"])[-1]
    return {"status": f"failed (exit {completed.returncode}): {last_error}"}


def benchmark_long_window(
    frames: Sequence[int] = (16, 32, 64, 128),
    latent_size: tuple[int, int] = (14, 23),
    width: int = 128,
    heads: int = 1,
    layers: int = 4,
    batch_size: int = 1,
    attention: Sequence[str] = ATTENTION_PATHS,
    chunk_tokens: int | None = None,
    teacher_forcing: bool = False,
    steps: int = 1,
    threads: int = 0,
    timeout: float = 3600.0,
) -> list[dict]:
    """
    One row per (window length, attention path): the case, its status, seconds per step and memory in MiB.

    Args:
        frames (`Sequence[int]`): Window lengths in frames (with teacher forcing: target frames; the step sees twice
            as many).
        latent_size (`tuple[int, int]`): Latent height and width (patch size 1: one token per latent position).
        width (`int`): Model width.
        heads (`int`): Attention heads (`width` must be a multiple).
        layers (`int`): Transformer layers.
        batch_size (`int`): Windows per step.
        attention (`Sequence[str]`): Paths to measure, `"dense"` and/or `"chunked"`.
        chunk_tokens (`int`, *optional*): Query tokens per chunk; the model's default if `None`.
        teacher_forcing (`bool`): Teacher-forced windows.
        steps (`int`): Timed steps per measurement.
        threads (`int`): Torch threads per child, 0 for torch's default.
        timeout (`float`): Seconds before a child is stopped.
    """
    if width % heads:
        raise ValueError(f"--width {width} is not a multiple of --heads {heads}")
    height, latent_width = latent_size
    rows = []
    for num_frames in frames:
        for path in attention:
            case = {
                "frames": num_frames,
                "latent_size": [height, latent_width],
                "width": width,
                "heads": heads,
                "layers": layers,
                "batch_size": batch_size,
                "attention": path,
                "chunk_tokens": chunk_tokens,
                "teacher_forcing": teacher_forcing,
                "steps": steps,
                "threads": threads,
            }
            tokens = num_frames * height * latent_width * (2 if teacher_forcing else 1)
            logger.info("%d frames (%d tokens), %s attention ...", num_frames, tokens, path)
            result = measure_in_child(case, timeout)
            row = {**case, "tokens": tokens, **result}
            if row["status"] == "ok":
                logger.info(
                    "%d frames, %s: %.2f s, peak %.0f MiB (+%.0f MiB in the step)",
                    num_frames,
                    path,
                    row["seconds"],
                    row["peak_rss_mib"],
                    row["step_memory_mib"],
                )
            else:
                logger.warning("%d frames, %s: %s", num_frames, path, row["status"])
            rows.append(row)
    return rows


def format_markdown(rows: Sequence[dict], environment: dict) -> str:
    """The rows as a markdown table, under a line that says what was measured and where."""
    first = rows[0]
    height, width = first["latent_size"]
    layout = "teacher-forced (context + targets)" if first["teacher_forcing"] else "diffusion-forcing"
    lines = [
        f"`tekken-benchmark-long-window` ({environment['date']}; {environment['machine']}, {environment['cpus']} "
        f"CPUs, torch {environment['torch']}, load average {environment['load_before']:.1f} before and "
        f"{environment['load_after']:.1f} after). `tekken-large` layout at width {first['width']}, "
        f"{first['heads']} head(s), {first['layers']} layers; {height}×{width} latents, patch 1; batch "
        f"{first['batch_size']}, {layout} windows; one fp32 forward + backward step, fastest of {first['steps']}; "
        "peak = the child process's resident high-water mark, step = peak minus resident before the step.",
        "",
        "| frames | tokens | attention | step (s) | peak RSS (MiB) | step memory (MiB) | status |",
        "|---:|---:|---|---:|---:|---:|---|",
    ]
    for row in rows:
        if row["status"] == "ok":
            numbers = f"{row['seconds']:.3g} | {row['peak_rss_mib']:,.0f} | {row['step_memory_mib']:,.0f}"
        else:
            numbers = "– | – | –"
        lines.append(f"| {row['frames']} | {row['tokens']:,} | {row['attention']} | {numbers} | {row['status']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    import torch

    load_before = os.getloadavg()[0]
    rows = benchmark_long_window(
        frames=args.frames,
        latent_size=tuple(args.latent_size),
        width=args.width,
        heads=args.heads,
        layers=args.layers,
        batch_size=args.batch_size,
        attention=args.attention,
        chunk_tokens=args.chunk_tokens,
        teacher_forcing=args.teacher_forcing,
        steps=args.steps,
        threads=args.threads,
        timeout=args.timeout,
    )
    environment = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "load_before": load_before,
        "load_after": os.getloadavg()[0],
    }
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, markdown_path = output_dir / "long_window.json", output_dir / "long_window.md"
    json_path.write_text(json.dumps({"environment": environment, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    markdown = format_markdown(rows, environment)
    markdown_path.write_text(markdown, encoding="utf-8")
    logger.info("wrote %s and %s\n%s", json_path, markdown_path, markdown)
    # A path that runs out of memory at some length is a result (its row says so), not a failure of the program.
    return 0 if any(row["status"] == "ok" for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
