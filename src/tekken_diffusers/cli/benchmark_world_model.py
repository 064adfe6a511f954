"""Benchmark the world model on this machine, the one benchmark command: generation at batch 1 through the session
API, the KV cache against recomputing the window, generation beside a busy neighbour process, several concurrent
sessions (round-robin and batched), training tokens/s with model-FLOPs utilisation, and the loader and VAE. Results
go to a JSON file and replace the "World model" section of docs/benchmarks.md.

    tekken-benchmark --pipeline pipelines/boxing-world-model

Every part is timed in rounds that alternate its configurations (a few frames of one, then of the next), so that a
change of load on the CPU hits all of them alike; the header records the machine (CPU model and flags, torch threads,
OpenMP wait policy) and its measured fp32 and bf16 matmul ceilings, against which utilisation is computed. `--parts`
chooses the parts, `--quick` shrinks every size to seconds (tests). `--cpu-isa avx2` measures, on this CPU, what a CPU
without AVX-512 runs: the benchmark restarts itself with torch, oneDNN and MKL limited to AVX2 (environment variables
read when torch starts) and writes its own JSON file and its own docs section. The measurements are in
`tekken_diffusers.benchmarking.world_model`; the loader and VAE parts reuse the measurements of
`tekken-benchmark-dataloader` and `tekken-benchmark-vae`.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ..benchmarking import machine_info, markdown_table, matmul_ceilings
from ..benchmarking.world_model import (
    DTYPE_NAMES,
    Pipelines,
    measure_cache,
    measure_generation,
    measure_neighbour,
    measure_sessions,
    measure_training,
    require_positive,
)
from ..runtime import (
    COMPILE_CHOICES,
    CPU_ISA_LIMITS,
    configure_threads,
    cpu_isa_limits,
    resolve_dtype,
    user_thread_count,
)
from ..utils import atomic_output, write_markdown_section
from . import setup_logging, transformer_width

logger = logging.getLogger("benchmark_world_model")

SECTION = "World model"
DEFAULT_JSON = "outputs/benchmark_world_model.json"
PARTS = ("generation", "cache", "neighbour", "sessions", "training", "loader", "vae")

# Sizes of a full run and of `--quick`; the options below replace single entries.
FULL = dict(
    steps=[1, 2, 4, 8],
    frames=96,  # timed frames per configuration (p95 needs a few dozen)
    round_frames=8,  # consecutive frames of one configuration per round
    contexts=[8, 32, 64],
    cache_repeats=15,
    reference_steps=4,
    sessions=[1, 2, 4, 8],
    session_ticks=48,
    train_batch=16,
    train_frames=16,
    train_repeats=5,
    train_compile="auto",  # a compiled training row too, as the trainer's torch_compile: auto runs
    ceiling_size=2048,
    ceiling_repeats=5,
    neighbour_size=512,
    loader_argv=["--rounds", "200", "--frames", "256", "--windows", "20000", "--num-workers", "0", "2"],
    vae_batch_sizes=[1, 64],
    vae_repeats=7,
)
QUICK = dict(
    steps=[1, 2],
    frames=8,
    round_frames=4,
    contexts=[4, 8],
    cache_repeats=3,
    reference_steps=2,
    sessions=[1, 2],
    session_ticks=4,
    train_batch=2,
    train_frames=4,
    train_repeats=2,
    train_compile="no",  # compiling takes longer than the whole quick run
    ceiling_size=128,
    ceiling_repeats=2,
    neighbour_size=128,
    loader_argv=["--rounds", "4", "--frames", "40", "--windows", "200", "--num-workers", "0"],
    vae_batch_sizes=[1, 4],
    vae_repeats=2,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tekken-benchmark",
        description=__doc__.split("\n\n")[0],
        epilog="Sizes in brackets are a full run's; --quick uses smaller ones; an option given replaces its size.",
    )
    parser.add_argument("--pipeline", default=None, help="pipeline folder (default: a random --preset, no VAE)")
    parser.add_argument("--preset", default="small", help="transformer preset of the random pipeline (small)")
    parser.add_argument("--parts", nargs="+", default=list(PARTS), choices=PARTS, help="parts to run (all)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes that finish in seconds (tests)")
    parser.add_argument("--steps", type=int, nargs="+", help="generation: denoising steps per frame [1 2 4 8]")
    parser.add_argument("--frames", type=int, help="timed frames per configuration [96]")
    parser.add_argument("--contexts", type=int, nargs="+", help="cache: context lengths in frames [8 32 64]")
    parser.add_argument("--reference-steps", type=int, help="neighbour and sessions: steps per frame [4]")
    parser.add_argument("--sessions", type=int, nargs="+", help="sessions: concurrent session counts [1 2 4 8]")
    parser.add_argument("--train-batch", type=int, help="training: windows per step [16]")
    parser.add_argument("--train-frames", type=int, help="training and loader: frames per window [16]")
    parser.add_argument(
        "--train-compile",
        choices=COMPILE_CHOICES,
        help="training: also time the blocks compiled as the trainer's torch_compile does [auto; --quick: no]",
    )
    parser.add_argument("--ceiling-size", type=int, help="side of the ceilings' square matmul [2048]")
    parser.add_argument("--game-fps", type=float, default=15.0, help="frames/s of the game (15: Atari Boxing)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as every command picks)")
    parser.add_argument(
        "--cpu-isa",
        choices=("native", *CPU_ISA_LIMITS),
        default="native",
        help="native: every instruction this CPU has; avx2: restart with torch, oneDNN and MKL limited to AVX2, to "
        "measure here what a CPU without AVX-512 (and its native bf16) runs; its own JSON (default "
        "outputs/benchmark_world_model_avx2.json) and docs section (%(default)s)",
    )
    parser.add_argument(
        "--out", default="docs/benchmarks.md", help="markdown file whose section is replaced (%(default)s)"
    )
    parser.add_argument(
        "--json",
        default=None,
        help=f"where the results go ({DEFAULT_JSON}; with --cpu-isa avx2: benchmark_world_model_avx2.json beside it)",
    )
    parser.add_argument("--no-write", action="store_true", help="write neither file, only log")
    return parser


def resolve_settings(args: argparse.Namespace) -> dict:
    """The sizes of this run: `QUICK` or `FULL`, with the options given replacing their entries."""
    settings = copy.deepcopy(QUICK if args.quick else FULL)
    for name in ("steps", "frames", "contexts", "reference_steps", "sessions", "train_batch", "train_frames"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    if args.ceiling_size is not None:
        settings["ceiling_size"] = args.ceiling_size
    if args.train_compile is not None:
        settings["train_compile"] = args.train_compile
    return settings


def check_args(parser: argparse.ArgumentParser, settings: dict) -> None:
    for name in ("steps", "contexts", "sessions"):
        if min(settings[name]) < 1:
            parser.error(f"--{name} must be >= 1, got {settings[name]}")
    for name in ("frames", "reference_steps", "train_batch", "train_frames", "ceiling_size"):
        if settings[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {settings[name]}")


# ---------------------------------------------------------------------------------------------------------------------
# The loader and the VAE, through the other benchmark commands' own measurements
# ---------------------------------------------------------------------------------------------------------------------
def measure_loader(transformer, settings: dict) -> dict:
    """Training windows/s read from a synthetic latent dataset of the model's latent shape, through
    `tekken-benchmark-dataloader`'s own measurements."""
    from ..data.latents import load_latent_dataset
    from . import benchmark_dataloader

    config = transformer.config
    shape = [config.in_channels, *config.sample_size]
    argv = [*settings["loader_argv"], "--latent-shape", *map(str, shape)]
    argv += ["--window-length", str(settings["train_frames"]), "--batch-size", str(settings["train_batch"])]
    loader_args = benchmark_dataloader.build_parser().parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-latents-") as tmp:
        folder = benchmark_dataloader.synthetic_dataset(
            Path(tmp) / "latents", loader_args.rounds, loader_args.frames, tuple(shape)
        )
        results = benchmark_dataloader.measure_windows(loader_args, load_latent_dataset(folder, split="train"))
    rows = [{"access": label, "windows_per_second": rate, "us_per_window": micro} for label, rate, micro in results]
    require_positive("loader", rows, ("windows_per_second", "us_per_window"))
    dataset = {"rounds": loader_args.rounds, "frames": loader_args.frames, "latent_shape": shape}
    return {"dataset": dataset, "window_length": loader_args.window_length, "rows": rows}


def measure_vae(pipe, settings: dict) -> dict:
    """Encode and decode frames/s of the pipeline's VAE, fp32 and bf16 autocast, through `tekken-benchmark-vae`'s own
    measurement, at this process's thread count."""
    from . import benchmark_vae

    size = tuple(side * pipe.vae_scale_factor for side in pipe.latent_size)
    threads = torch.get_num_threads()
    rows = benchmark_vae.measure(
        pipe.vae.eval(), size, settings["vae_batch_sizes"], ["fp32", "bf16"], [threads], settings["vae_repeats"]
    )
    torch.set_num_threads(threads)
    require_positive("vae", rows, ("frames_per_second", "ms_per_call"))
    return {"frame_size": list(size), "rows": rows}


# ---------------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------------
def yes_no(value: bool) -> str:
    return "yes" if value else "no"


def load(value: float | None) -> str:
    return "unknown" if value is None else f"{value:.1f}"


def rate(gflops: float) -> str:
    """A GFLOP/s figure: whole numbers, one decimal below 10 (an emulated dtype's ceiling is a fraction of one)."""
    return f"{gflops:.0f}" if gflops >= 10 else f"{gflops:.1f}"


def mfu_cell(row: dict) -> str:
    return "n/a (emulated)" if row.get("mfu") is None else f"{100 * row['mfu']:.0f} %"


def section_title(cpu_isa: str) -> str:
    """The docs section of a run: `World model`, or `World model, AVX2 only (emulated)` for `--cpu-isa avx2`."""
    return SECTION if cpu_isa == "native" else f"{SECTION}, {cpu_isa.upper()} only (emulated)"


def default_json(cpu_isa: str) -> str:
    return DEFAULT_JSON if cpu_isa == "native" else DEFAULT_JSON.replace(".json", f"_{cpu_isa}.json")


def isa_note(machine: dict) -> str:
    """A sentence on the instruction-set limits of a run, empty without any."""
    limits = machine.get("isa_limits") or {}
    if not limits:
        return ""
    named = ", ".join(f"{name}={value}" for name, value in limits.items())
    return (
        f" Instruction sets limited ({named}; torch dispatches to {machine.get('torch_cpu_capability', 'unknown')}): "
        "the kernels a CPU without AVX-512 runs, at this CPU's clock, caches and per-core FMA width, so the rates "
        "estimate such a CPU rather than measure one."
    )


def markdown(results: dict) -> str:
    machine, model, parts, settings = results["machine"], results["model"], results["parts"], results["settings"]
    ceilings = machine["ceilings_gflops"]
    flags = ", ".join(f"{flag} {yes_no(present)}" for flag, present in machine["flags"].items())
    fps = settings["game_fps"]
    lines = [
        f"## {section_title(settings.get('cpu_isa', 'native'))}",
        "",
        f"`{results['command']}` ({machine['date'][:10]}; {machine['cpu']}, {machine['machine']}, "
        f"{machine['logical_cpus']} logical CPUs; {flags}; torch {machine['torch']}, {machine['torch_threads']} torch "
        f"threads (in generation: {machine.get('generation_threads', machine['torch_threads'])}, as the "
        "generating commands pick), "
        f"OMP_WAIT_POLICY={machine['omp_wait_policy']}; load average {load(machine['load_average'])} "
        f"before and {load(results['load_average_after'])} after). Measured matmul ceilings ({ceilings['size']}² "
        f"square, median of {ceilings['repeats']}): fp32 {rate(ceilings['fp32'])} GFLOP/s, bf16 "
        f"{rate(ceilings['bf16'])} GFLOP/s. Model: "
        f"{model['source']}; {model['transformer_parameters'] / 1e6:.2f} M transformer parameters, width "
        f"{model['width']}, latents {'×'.join(map(str, model['latent_shape']))}, patch {model['patch_size']}, "
        f"{'a VAE' if model['vae'] else 'no VAE'}; `--dtype auto` picks {model['auto_dtype']} here. Configurations "
        "are timed in alternating rounds; the full results are in the JSON file "
        f"(`{results['json']}`).{isa_note(machine)}",
    ]
    if "generation" in parts:
        part = parts["generation"]
        decode = "decode included" if part["decode"] else "latents only (no VAE)"
        lines += [
            "",
            f"**Generation**, batch 1, one frame per `session.step` ({part['context_frames']} context frames, KV "
            f"cache full, {decode}). Real time is {fps:g} frames/s: the last column is the median time per frame "
            f"divided by the {1000 / fps:.1f} ms a frame lasts (≤ 1 plays in real time); frames/s is 1 / p50.",
            "",
            markdown_table(
                ("precision", "torch threads", "steps", "ms/frame p50", "ms/frame p95", "frames/s", "× real time"),
                [(f"{r['dtype']}{' (auto)' if r['auto'] else ''}", thread_label(r, machine), r["steps"],
                  f"{r['ms_p50']:.1f}",
                  f"{r['ms_p95']:.1f}", f"{r['frames_per_second']:.1f}", f"{r['x_real_time']:.2f}")
                 for r in part["rows"]],
            ),
        ]  # fmt: skip
    if "cache" in parts:
        part = parts["cache"]
        lines += [
            "",
            f"**KV cache against recomputation** ({part['dtype']}, {part['steps']} step, latents out): one new frame "
            "with the cache (`session.step`, whose pass also writes the previous frame into the cache) against one "
            "forward pass of the whole window, context + new frame, without a cache. Layers attend to at most "
            f"{max(part['windows'])} frames either way (cache windows {part['windows']}).",
            "",
            markdown_table(
                ("context frames", "with cache ms", "full window ms", "full / cached", "cache MB"),
                [(r["context_frames"], f"{r['cached_ms']:.1f}", f"{r['full_ms']:.1f}", f"{r['speedup']:.1f}×",
                  f"{r['cache_mb']:.2f}") for r in part["rows"]],
            ),
        ]  # fmt: skip
    if "neighbour" in parts:
        part = parts["neighbour"]
        neighbour = part["neighbour"]
        lines += [
            "",
            f"**Beside a busy neighbour** ({part['dtype']}, {part['steps']} steps, decode included): a second "
            f"process runs a {neighbour['threads']}-thread {neighbour['matmul_size']}² fp32 matmul loop (started and "
            f"stopped by the benchmark; {neighbour['matmuls']:,} matmuls); {part['method']}. Loaded / alone: "
            f"**{part['ratio']:.2f}×** the frames/s.",
            "",
            markdown_table(
                ("torch threads", "load", "ms/frame p50", "ms/frame p95", "frames/s", "× real time"),
                [(thread_label(r, machine), r["load"], f"{r['ms_p50']:.1f}", f"{r['ms_p95']:.1f}",
                  f"{r['frames_per_second']:.1f}", f"{r['x_real_time']:.2f}") for r in part["rows"]],
            ),
        ]  # fmt: skip
    if "sessions" in parts:
        part = parts["sessions"]
        lines += [
            "",
            f"**Concurrent sessions** ({part['dtype']}, {part['steps']} steps, "
            f"{part.get('threads', machine['torch_threads'])} torch thread(s), decode included): N sessions in one "
            "process, one frame each per tick, stepped two ways in the same run, interleaved: round-robin (one "
            "`session.step` after another: N forwards per denoising step) and batched (`step_sessions`: one forward "
            "of batch N per denoising step and one VAE call, as the demo app steps its players). Forwards per tick "
            "counted on one more tick; × round-robin compares ms/tick at the same N.",
            "",
            markdown_table(
                ("sessions", "stepper", "ms/tick p50", "ms/tick p95", "frames/s per session", "frames/s in all",
                 "forwards/tick", "× round-robin"),
                [(r["sessions"], r["stepper"], f"{r['tick_ms_p50']:.1f}", f"{r['tick_ms_p95']:.1f}",
                  f"{r['per_session_fps']:.1f}", f"{r['aggregate_fps']:.1f}", r["forwards_per_tick"],
                  f"{r['speedup']:.2f}") for r in part["rows"]],
                text_columns=2,
            ),
        ]  # fmt: skip
    if "training" in parts:
        part = parts["training"]
        lines += [
            "",
            f"**Training** (forward + backward + AdamW on random windows, every frame at its own noise level, "
            f"{part['tokens_per_window']} tokens per window, no gradient checkpointing). Model FLOPs = 6 × "
            "(per-token block parameters × tokens + adaLN parameters × frames) + causal attention within the local "
            "window (a lower bound: global layers see more); MFU against the measured ceiling of the dtype used (none "
            "for emulated bf16, whose fallback kernel runs the ceiling's large square far slower than the model's "
            "small matmuls). The trainer's defaults (`mixed_precision: auto`, `torch_compile: auto`: each block's "
            "training forward and backward compiled where torch.compile works) run the row marked auto.",
            "",
            markdown_table(
                ("precision", "torch.compile", "batch × frames", "ms/step", "tokens/s", "frames/s", "GFLOP/s",
                 "ceiling GFLOP/s", "MFU"),
                [(f"{r['precision']}{' (auto)' if r['auto'] else ''}", yes_no(r.get("compiled", False)),
                  f"{r['batch']}×{r['frames']}",
                  f"{r['ms_per_step']:.0f}", f"{r['tokens_per_second']:,.0f}", f"{r['frames_per_second']:,.0f}",
                  f"{r['gflops']:.1f}", rate(r['ceiling_gflops']), mfu_cell(r))
                 for r in part["rows"]],
            ),
        ]  # fmt: skip
    if "loader" in parts:
        part = parts["loader"]
        data = part["dataset"]
        lines += [
            "",
            f"**Loader**: windows of {part['window_length']} frames from a synthetic dataset of {data['rounds']} "
            f"rounds × {data['frames']} frames × {'×'.join(map(str, data['latent_shape']))} float16 latents "
            "(`tekken-benchmark-dataloader`'s measurements).",
            "",
            markdown_table(
                ("access", "windows/s", "µs per window"),
                [(r["access"], f"{r['windows_per_second']:,.0f}", f"{r['us_per_window']:,.1f}") for r in part["rows"]],
            ),
        ]  # fmt: skip
    if "vae" in parts:
        part = parts["vae"]
        if "skipped" in part:
            lines += ["", f"**VAE**: skipped ({part['skipped']})."]
        else:
            size = "×".join(map(str, part["frame_size"]))
            lines += [
                "",
                f"**VAE**, {size} frames, median of interleaved calls (`tekken-benchmark-vae`'s measurement; bf16 is "
                "autocast over fp32 weights).",
                "",
                markdown_table(
                    ("operation", "precision", "batch", "frames/s", "ms per call"),
                    [(r["operation"], r["precision"], r["batch_size"], f"{r['frames_per_second']:,.0f}",
                      f"{r['ms_per_call']:,.1f}") for r in part["rows"]],
                    text_columns=2,
                ),
            ]  # fmt: skip
    return "\n".join(lines) + "\n"


def write_section(path: str | os.PathLike, body: str, cpu_isa: str = "native") -> None:
    """Replace (or append) the run's `## World model` section of a markdown file (`section_title`), leaving the
    other sections alone."""
    write_markdown_section(path, body, heading=f"## {section_title(cpu_isa)}")


def restart_with_isa_limit(cpu_isa: str, argv: list[str]) -> int | None:
    """Run this benchmark again in a child process whose environment limits the instruction sets to `cpu_isa`
    (`runtime.CPU_ISA_LIMITS`), and return its exit status; None where this process already runs under them.

    The limits are read when torch, oneDNN and MKL start, so this process, which has imported torch, cannot take them.
    """
    wanted = CPU_ISA_LIMITS[cpu_isa]
    if all(cpu_isa_limits().get(name) == value for name, value in wanted.items()):
        return None
    logger.info("restarting with %s", " ".join(f"{name}={value}" for name, value in wanted.items()))
    command = [sys.executable, "-m", "tekken_diffusers.cli.benchmark_world_model", *argv]
    return subprocess.call(command, env={**os.environ, **wanted})


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------
def thread_label(row: dict, machine: dict) -> str:
    """A row's thread count for the tables: a number, or "tuned (kept N)" for a `ThreadTuner`'s."""
    threads = row.get("threads", machine["torch_threads"])
    if threads == "tuned" and "chosen_threads" in row:
        return f"tuned (kept {row['chosen_threads']})"
    return str(threads)


def run(args: argparse.Namespace, settings: dict, folder: str, source: str, command: str, wait_policy: str):
    pipes = Pipelines(folder)
    machine = machine_info(wait_policy)
    logger.info("matmul ceilings (%d² square)", settings["ceiling_size"])
    ceilings = matmul_ceilings(settings["ceiling_size"], settings["ceiling_repeats"])
    machine["ceilings_gflops"] = {**ceilings, "size": settings["ceiling_size"], "repeats": settings["ceiling_repeats"]}
    logger.info("ceilings: fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s", ceilings["fp32"], ceilings["bf16"])

    width = transformer_width(folder)
    auto = resolve_dtype("auto", "cpu", model_width=width)
    # Threads: training, the loader, the VAE and the cache parts run on the count every command picks
    # (`full_threads`). Unless the user chose a count, the generating commands pick among 1 thread, 2 and that count
    # by timing (`runtime.generation_thread_tuner`): generation and the neighbour part then run at each and tuned.
    full_threads = torch.get_num_threads()
    tune = args.threads is None and user_thread_count() is None and full_threads > 1
    generation_threads = sorted({1, min(2, full_threads), full_threads}) if tune else [full_threads]
    machine["generation_threads"] = "tuned" if tune else full_threads
    pipe = pipes.get(auto)
    config = pipe.transformer.config
    model = {
        "source": source,
        "transformer_parameters": sum(p.numel() for p in pipe.transformer.parameters()),
        "width": config.num_attention_heads * config.attention_head_dim,
        "latent_shape": [config.in_channels, *config.sample_size],
        "patch_size": config.patch_size,
        "vae": pipe.vae is not None,
        "auto_dtype": DTYPE_NAMES[auto],
    }
    parts: dict[str, dict] = {}
    for name in PARTS:
        if name not in args.parts:
            continue
        logger.info("part: %s", name)
        started = time.perf_counter()
        if name == "generation":
            parts[name] = measure_generation(
                pipes, auto, settings, args.game_fps, threads=generation_threads, tune=tune
            )
        elif name == "cache":
            parts[name] = measure_cache(pipe, settings)
        elif name == "neighbour":  # the neighbour takes every core the full count has
            parts[name] = measure_neighbour(
                pipe, settings, args.game_fps, full_threads, threads=generation_threads, tune=tune
            )
        elif name == "sessions":  # on every core: the app's tuner keeps that count where it is faster
            parts[name] = measure_sessions(pipe, settings)
        elif name == "training":
            parts[name] = measure_training(pipes.get(torch.float32).transformer, ceilings, settings)
        elif name == "loader":
            parts[name] = measure_loader(pipe.transformer, settings)
        elif pipe.vae is None:
            logger.warning("part vae: skipped, the pipeline has no VAE")
            parts[name] = {"skipped": "the pipeline has no VAE"}
        else:
            parts[name] = measure_vae(pipe, settings)
        parts[name]["seconds"] = time.perf_counter() - started
    return {
        "command": command,
        "json": args.json,
        "settings": {
            **settings,
            "game_fps": args.game_fps,
            "parts": list(args.parts),
            "quick": args.quick,
            "cpu_isa": args.cpu_isa,
        },
        "machine": machine,
        "model": model,
        "parts": parts,
        "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = resolve_settings(args)
    check_args(parser, settings)
    setup_logging()
    if args.json is None:
        args.json = default_json(args.cpu_isa)
    if args.cpu_isa != "native":
        status = restart_with_isa_limit(args.cpu_isa, sys.argv[1:] if argv is None else list(argv))
        if status is not None:
            return status
    # As torch's OpenMP read it at import, before configure_threads sets it for child processes.
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    try:
        configure_threads(args.threads)
    except ValueError as error:
        parser.error(str(error))
    command = shlex.join(["tekken-benchmark", *(sys.argv[1:] if argv is None else argv)])

    with contextlib.ExitStack() as stack:
        if args.pipeline is not None:
            if not Path(args.pipeline).is_dir():
                parser.error(f"--pipeline {args.pipeline}: no such folder")
            folder, source = args.pipeline, f"`{args.pipeline}`"
        else:
            from ..pipelines import build_random_pipeline

            # Saved and loaded like a trained pipeline, so that both dtypes load the one way `tekken-generate` does.
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-pipeline-"))
            vae = "tiny" if args.preset == "tiny" else None
            build_random_pipeline(args.preset, vae=vae, seed=0).save_pretrained(folder)
            source = f"random `{args.preset}` preset"
        results = run(args, settings, folder, source, command, wait_policy)

    if not args.no_write:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        write_section(args.out, markdown(results), args.cpu_isa)
        logger.info("wrote %s and the %r section of %s", args.json, section_title(args.cpu_isa), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
