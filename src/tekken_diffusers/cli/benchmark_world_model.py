"""Benchmark the world model on this machine, the one benchmark command: generation at batch 1 through the session
API, the KV cache against recomputing the window, generation beside a busy neighbour process, several concurrent
sessions, training tokens/s with model-FLOPs utilisation, and the loader and VAE. Results go to a JSON file and replace
the "World model" section of docs/benchmarks.md.

    tekken-benchmark --pipeline pipelines/boxing-world-model

Every part is timed in rounds that alternate its configurations (a few frames of one, then of the next), so that a
change of load on the CPU hits all of them alike; the header records the machine (CPU model and flags, torch threads,
OpenMP wait policy) and its measured fp32 and bf16 matmul ceilings, against which utilisation is computed. `--parts`
chooses the parts, `--quick` shrinks every size to seconds (tests).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import math
import os
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..benchmarking import (
    NeighbourLoad,
    interleaved_times,
    machine_info,
    markdown_table,
    matmul_ceilings,
    percentile,
    timed,
)
from ..runtime import configure_threads, resolve_dtype, resolve_mixed_precision
from ..utils import atomic_output, write_markdown_section
from . import setup_logging, transformer_width

logger = logging.getLogger("benchmark_world_model")

SECTION = "World model"
PARTS = ("generation", "cache", "neighbour", "sessions", "training", "loader", "vae")
DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}

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
    parser.add_argument("--ceiling-size", type=int, help="side of the ceilings' square matmul [2048]")
    parser.add_argument("--game-fps", type=float, default=15.0, help="frames/s of the game (15: Atari Boxing)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: as every command picks)")
    parser.add_argument(
        "--out", default="docs/benchmarks.md", help="markdown file whose section is replaced (%(default)s)"
    )
    parser.add_argument(
        "--json", default="outputs/benchmark_world_model.json", help="where the results go (%(default)s)"
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
    return settings


def check_args(parser: argparse.ArgumentParser, settings: dict) -> None:
    for name in ("steps", "contexts", "sessions"):
        if min(settings[name]) < 1:
            parser.error(f"--{name} must be >= 1, got {settings[name]}")
    for name in ("frames", "reference_steps", "train_batch", "train_frames", "ceiling_size"):
        if settings[name] < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {settings[name]}")


# ---------------------------------------------------------------------------------------------------------------------
# Pipelines and inputs
# ---------------------------------------------------------------------------------------------------------------------
class Pipelines:
    """The pipeline under test, loaded once per transformer dtype as `tekken-generate` loads it (transformer in that
    dtype, VAE and the rest in fp32)."""

    def __init__(self, folder: str):
        self.folder = folder
        self._loaded: dict[torch.dtype, object] = {}

    def get(self, dtype: torch.dtype):
        from ..pipelines import TekkenWorldModelPipeline

        if dtype not in self._loaded:
            pipe = TekkenWorldModelPipeline.from_pretrained(
                self.folder, dtype={"transformer": dtype, "default": torch.float32}
            )
            pipe.set_progress_bar_config(disable=True)
            self._loaded[dtype] = pipe
        return self._loaded[dtype]


class Inputs:
    """A seeded stream of random action ids, one per player, as a session's `step` takes them."""

    def __init__(self, num_players: int, seed: int = 0):
        self.num_players = num_players
        self.rng = np.random.default_rng(seed)

    def ids(self, count: int) -> np.ndarray:
        return self.rng.integers(0, 256, (count, self.num_players))

    def next(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.ids(1)[0])


def start_session(pipe, context_frames: int, steps: int, decode: bool, seed: int = 0):
    """A session on `context_frames` random context latents (content does not change the cost), decoding each frame to
    an array when `decode` and the pipeline has a VAE, else returning latents."""
    config = pipe.transformer.config
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, context_frames, config.in_channels, *pipe.latent_size, generator=generator)
    ids = Inputs(pipe.num_players, seed).ids(context_frames)
    players = {"context_actions_p2": ids[:, 1]} if pipe.num_players == 2 else {}
    return pipe.start_session(
        context_latents=latents,
        context_actions=ids[:, 0],
        num_inference_steps=steps,
        generator=generator,
        output_type="np" if decode and pipe.vae is not None else "latent",
        **players,
    )


def stepper(session, inputs: Inputs, before: Callable[[], None] | None = None) -> Callable[[], float]:
    """A timed call of `session.step` under the next input (after `before`, untimed)."""

    def call() -> float:
        if before is not None:
            before()
        action = inputs.next()
        started = time.perf_counter()
        session.step(*action)
        return time.perf_counter() - started

    return call


def warmup_frames(pipe) -> int:
    """Frames after which every layer's cache window is full: from then on a step costs the same however long the
    game runs, and that steady state is what the timings measure."""
    return max(pipe.transformer.cache_layer_windows) + 1


def rate_row(seconds: list[float], game_fps: float) -> dict:
    p50 = statistics.median(seconds)
    return {
        "ms_p50": p50 * 1e3,
        "ms_p95": percentile(seconds, 95) * 1e3,
        "frames_per_second": 1 / p50,
        "x_real_time": p50 * game_fps,
        "frames": len(seconds),
    }


def require_times(part: str, times: dict[str, list[float]]) -> None:
    """Every configuration of a part was timed at least once."""
    empty = [str(name) for name, values in times.items() if not values]
    if not times or empty:
        raise RuntimeError(f"benchmark part {part!r} measured nothing for {', '.join(empty) or 'any configuration'}")


def require_positive(part: str, rows: list[dict], fields: tuple[str, ...]) -> None:
    """A part that measured nothing, or a rate that is zero or not finite, is an error, not a table row."""
    if not rows:
        raise RuntimeError(f"benchmark part {part!r} measured nothing")
    for row in rows:
        for field in fields:
            value = row[field]
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise RuntimeError(f"benchmark part {part!r}: {field} = {value!r} in {row}")


# ---------------------------------------------------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------------------------------------------------
def measure_generation(pipes: Pipelines, auto: torch.dtype, settings: dict, game_fps: float) -> dict:
    """ms/frame (p50, p95) and frames/s of `session.step` at batch 1, decode included, for each step count, in the
    dtype `auto` picks and in the other one; all configurations interleaved."""
    other = torch.bfloat16 if auto == torch.float32 else torch.float32
    cases, keys = {}, []
    for dtype in (auto, other):
        pipe = pipes.get(dtype)
        for steps in settings["steps"]:
            key = f"{DTYPE_NAMES[dtype]} {steps}"
            cases[key] = stepper(start_session(pipe, 8, steps, decode=True), Inputs(pipe.num_players))
            keys.append((key, dtype, steps))
    times = interleaved_times(
        cases,
        rounds=max(1, settings["frames"] // settings["round_frames"]),
        per_round=settings["round_frames"],
        warmup=warmup_frames(pipes.get(auto)),
        desc="generation",
    )
    require_times("generation", times)
    rows = [
        {"dtype": DTYPE_NAMES[dtype], "auto": dtype == auto, "steps": steps, **rate_row(times[key], game_fps)}
        for key, dtype, steps in keys
    ]
    for row in rows:
        logger.info(
            "generation %s, %d steps: %.1f ms p50, %.1f ms p95, %.1f frames/s",
            row["dtype"], row["steps"], row["ms_p50"], row["ms_p95"], row["frames_per_second"],
        )  # fmt: skip
    require_positive("generation", rows, ("ms_p50", "ms_p95", "frames_per_second"))
    return {
        "auto_dtype": DTYPE_NAMES[auto],
        "context_frames": 8,
        "decode": pipes.get(auto).vae is not None,
        "rows": rows,
    }


def measure_cache(pipe, settings: dict) -> dict:
    """One new frame with the KV cache (`session.step`, 1 step, latents out) against one forward pass of the whole
    window (context + new frame) without a cache, at each context length; interleaved."""
    from ..actions import ids_to_bits

    transformer = pipe.transformer
    config = transformer.config
    context_noise = pipe.scheduler.config.context_noise
    cases, memory = {}, {}
    for frames in settings["contexts"]:
        session = start_session(pipe, frames, 1, decode=False)
        inputs = Inputs(pipe.num_players, seed=frames)
        # The first step writes the context into the cache; every timed step then starts from this same state: the
        # context in the cache and the frame just generated queued (written by the step's own forward pass, as in
        # play), so each timed step is the next frame after exactly `frames` frames.
        session.step(*inputs.next())
        state = session.rollout.state()
        memory[frames] = state[0].memory_bytes()
        cases[f"cached {frames}"] = stepper(session, inputs, before=lambda s=session, st=state: s.rollout.restore(st))

        generator = torch.Generator().manual_seed(frames)
        window = torch.randn(1, frames + 1, config.in_channels, *pipe.latent_size, generator=generator)
        sigmas = torch.full((1, frames + 1), context_noise)
        sigmas[:, -1] = 1.0  # the new frame starts from pure noise
        ids = torch.from_numpy(inputs.ids(frames + 1))[None]  # (1, T, players)
        bits = ids_to_bits(ids if pipe.num_players == 2 else ids[..., 0])
        window, bits = window.to(transformer.dtype), bits.to(transformer.dtype)

        def full(window=window, sigmas=sigmas, bits=bits) -> None:
            with torch.no_grad():
                transformer(window, sigmas, actions=bits)

        cases[f"full {frames}"] = timed(full)
    times = interleaved_times(cases, rounds=settings["cache_repeats"], warmup=1, desc="cache")
    require_times("cache", times)
    rows = []
    for frames in settings["contexts"]:
        cached = statistics.median(times[f"cached {frames}"])
        full_seconds = statistics.median(times[f"full {frames}"])
        rows.append({
            "context_frames": frames, "cached_ms": cached * 1e3, "full_ms": full_seconds * 1e3,
            "speedup": full_seconds / cached, "cache_mb": memory[frames] / 1e6,
        })  # fmt: skip
        logger.info(
            "cache, %d context frames: %.1f ms cached, %.1f ms full window (%.1fx)",
            frames, cached * 1e3, full_seconds * 1e3, full_seconds / cached,
        )  # fmt: skip
    require_positive("cache", rows, ("cached_ms", "full_ms", "speedup", "cache_mb"))
    return {
        "dtype": DTYPE_NAMES[transformer.dtype],
        "steps": 1,
        "windows": transformer.cache_layer_windows,
        "rows": rows,
    }


def measure_neighbour(pipe, settings: dict, game_fps: float) -> dict:
    """Generation (reference steps, decode included) with and without a neighbour process that runs an fp32 matmul
    loop on the same number of threads. The neighbour is started here and stopped (and reaped) before returning,
    whatever happens; where it can be paused (SIGSTOP) loaded and unloaded rounds alternate."""
    threads = torch.get_num_threads()
    steps = settings["reference_steps"]
    session = start_session(pipe, 8, steps, decode=True)
    inputs = Inputs(pipe.num_players)
    rounds = max(1, settings["frames"] // settings["round_frames"])
    timing = dict(per_round=settings["round_frames"], warmup=warmup_frames(pipe), desc="neighbour")
    # The neighbour also stops by itself when this process exits, or after an hour (a safety net): the part takes
    # seconds to minutes.
    neighbour = NeighbourLoad(threads, size=settings["neighbour_size"], lifetime=3600.0)
    if NeighbourLoad.can_pause():
        with neighbour:
            cases = {
                "unloaded": stepper(session, inputs, before=neighbour.pause),
                "loaded": stepper(session, inputs, before=neighbour.resume),
            }
            times = interleaved_times(cases, rounds, **timing)
        method = "alternating rounds, the neighbour paused (SIGSTOP) in the rounds alone"
    else:  # no SIGSTOP (Windows): alone first, then beside the neighbour
        times = interleaved_times({"unloaded": stepper(session, inputs)}, rounds, **timing)
        with neighbour:
            times |= interleaved_times({"loaded": stepper(session, inputs)}, rounds, **timing)
        method = "alone first, then beside the neighbour (this system cannot pause a process)"
    require_times("neighbour", times)
    if neighbour.ended_early:
        raise RuntimeError("benchmark part 'neighbour': the neighbour process ended before the measurement did")
    loaded, unloaded = rate_row(times["loaded"], game_fps), rate_row(times["unloaded"], game_fps)
    result = {
        "dtype": DTYPE_NAMES[pipe.transformer.dtype],
        "steps": steps,
        "threads": threads,
        "neighbour": {"pid": neighbour.pid, "threads": threads, "matmul_size": neighbour.size,
                      "matmuls": neighbour.matmuls, "exit_code": neighbour.process.returncode},
        "method": method,
        "rows": [{"load": "alone", **unloaded}, {"load": "beside the neighbour", **loaded}],
        "ratio": loaded["frames_per_second"] / unloaded["frames_per_second"],
    }  # fmt: skip
    logger.info(
        "neighbour: %.1f frames/s alone, %.1f beside it (%.2fx); it did %s matmuls",
        unloaded["frames_per_second"], loaded["frames_per_second"], result["ratio"], neighbour.matmuls,
    )  # fmt: skip
    require_positive("neighbour", result["rows"], ("ms_p50", "frames_per_second"))
    require_positive("neighbour", [result], ("ratio",))
    if neighbour.matmuls == 0:  # None where the system cannot ask it to report (Windows)
        raise RuntimeError("benchmark part 'neighbour': the neighbour process did no work")
    return result


def measure_sessions(pipe, settings: dict) -> dict:
    """N sessions of one process stepped round-robin (one frame each per tick, decode included): per-session and
    aggregate frames/s for each N; interleaved across the values of N."""
    steps = settings["reference_steps"]
    cases = {}
    for count in settings["sessions"]:
        sessions = [start_session(pipe, 8, steps, decode=True, seed=index) for index in range(count)]
        inputs = [Inputs(pipe.num_players, seed=index) for index in range(count)]

        def tick(sessions=sessions, inputs=inputs) -> None:
            for session, stream in zip(sessions, inputs):
                session.step(*stream.next())

        cases[count] = timed(tick)
    per_round = max(1, settings["round_frames"] // 2)
    times = interleaved_times(
        cases,
        rounds=max(1, settings["session_ticks"] // per_round),
        per_round=per_round,
        warmup=warmup_frames(pipe),
        desc="sessions",
    )
    require_times("sessions", times)
    rows = []
    for count in settings["sessions"]:
        tick = statistics.median(times[count])
        rows.append({
            "sessions": count, "tick_ms_p50": tick * 1e3, "tick_ms_p95": percentile(times[count], 95) * 1e3,
            "per_session_fps": 1 / tick, "aggregate_fps": count / tick,
        })  # fmt: skip
        logger.info("%d sessions: %.1f frames/s each, %.1f in all", count, 1 / tick, count / tick)
    require_positive("sessions", rows, ("tick_ms_p50", "per_session_fps", "aggregate_fps"))
    # The demo app gives every browser tab its own session and steps them one by one (no batched stepper), which is
    # what is measured here.
    return {"dtype": DTYPE_NAMES[pipe.transformer.dtype], "steps": steps, "stepper": "round-robin", "rows": rows}


def training_flops(config, batch: int, frames: int, blocks: dict[str, torch.nn.Parameter]) -> float:
    """Model FLOPs of one forward + backward step: 6 per parameter and token (forward 2, backward 4), the adaLN
    modulation once per frame rather than per token, and causal attention scores and values within the local window
    (on average half of it: a lower bound, since global layers see more)."""
    tokens_per_frame = (config.sample_size[0] // config.patch_size) * (config.sample_size[1] // config.patch_size)
    tokens = batch * frames * tokens_per_frame
    per_frame = sum(p.numel() for name, p in blocks.items() if "adaLN_modulation" in name)
    per_token = sum(p.numel() for p in blocks.values()) - per_frame
    width = config.num_attention_heads * config.attention_head_dim
    context = min(frames, config.local_window) * tokens_per_frame / 2
    attention = 6 * 2 * config.num_layers * width * tokens * context
    return 6 * per_token * tokens + 6 * per_frame * batch * frames + attention


def measure_training(transformer, ceilings: dict[str, float], settings: dict) -> dict:
    """Forward + backward + AdamW on random windows (every frame at its own noise level), in fp32 and under bf16
    autocast, interleaved: tokens/s and utilisation of the measured matmul ceiling of the dtype used."""
    from ..actions import ids_to_bits
    from ..schedulers import TekkenFlowMatchScheduler

    model = copy.deepcopy(transformer).float().train().requires_grad_(True)
    config = model.config
    scheduler = TekkenFlowMatchScheduler()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
    batch, frames = settings["train_batch"], settings["train_frames"]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, frames, config.in_channels, *config.sample_size, generator=generator)
    ids = torch.randint(0, 256, (batch, frames, config.num_players), generator=generator)
    bits = ids_to_bits(ids if config.num_players == 2 else ids[..., 0]).float()
    flops = training_flops(config, batch, frames, dict(model.transformer_blocks.named_parameters()))
    tokens = (
        batch * frames * (config.sample_size[0] // config.patch_size) * (config.sample_size[1] // config.patch_size)
    )

    def step(autocast: bool) -> None:
        sigmas = scheduler.sample_training_sigmas(batch, frames, generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            prediction = model(scheduler.scale_noise(latents, sigmas, noise), sigmas, actions=bits, return_dict=False)
        loss = (prediction[0].float() - (noise - latents)).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    cases = {"fp32": timed(lambda: step(False)), "bf16": timed(lambda: step(True))}
    times = interleaved_times(cases, rounds=settings["train_repeats"], warmup=1, desc="training")
    require_times("training", times)
    auto = "bf16" if resolve_mixed_precision("auto", "cpu") == "bf16" else "fp32"
    rows = []
    for precision, values in times.items():
        seconds = statistics.median(values)
        gflops = flops / seconds / 1e9
        rows.append({
            "precision": precision, "auto": precision == auto, "batch": batch, "frames": frames,
            "ms_per_step": seconds * 1e3, "tokens_per_second": tokens / seconds,
            "frames_per_second": batch * frames / seconds, "gflops": gflops,
            "ceiling_gflops": ceilings[precision], "mfu": gflops / ceilings[precision],
        })  # fmt: skip
        logger.info("training %s: %.0f tokens/s, %.1f GFLOP/s, MFU %.0f %%", precision, tokens / seconds, gflops,
                    100 * gflops / ceilings[precision])  # fmt: skip
    require_positive("training", rows, ("ms_per_step", "tokens_per_second", "gflops", "mfu"))
    parameters = sum(p.numel() for p in model.parameters())
    return {"parameters": parameters, "tokens_per_window": tokens // batch, "rows": rows}


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


def markdown(results: dict) -> str:
    machine, model, parts, settings = results["machine"], results["model"], results["parts"], results["settings"]
    ceilings = machine["ceilings_gflops"]
    flags = ", ".join(f"{flag} {yes_no(present)}" for flag, present in machine["flags"].items())
    fps = settings["game_fps"]
    lines = [
        f"## {SECTION}",
        "",
        f"`{results['command']}` ({machine['date'][:10]}; {machine['cpu']}, {machine['machine']}, "
        f"{machine['logical_cpus']} logical CPUs; {flags}; torch {machine['torch']}, {machine['torch_threads']} torch "
        f"threads, OMP_WAIT_POLICY={machine['omp_wait_policy']}; load average {load(machine['load_average'])} "
        f"before and {load(results['load_average_after'])} after). Measured matmul ceilings ({ceilings['size']}² "
        f"square, median of {ceilings['repeats']}): fp32 {ceilings['fp32']:.0f} GFLOP/s, bf16 "
        f"{ceilings['bf16']:.0f} GFLOP/s. Model: "
        f"{model['source']}; {model['transformer_parameters'] / 1e6:.2f} M transformer parameters, width "
        f"{model['width']}, latents {'×'.join(map(str, model['latent_shape']))}, patch {model['patch_size']}, "
        f"{'a VAE' if model['vae'] else 'no VAE'}; `--dtype auto` picks {model['auto_dtype']} here. Configurations "
        "are timed in alternating rounds; the full results are in the JSON file "
        f"(`{results['json']}`).",
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
                ("precision", "steps", "ms/frame p50", "ms/frame p95", "frames/s", "× real time"),
                [(f"{r['dtype']}{' (auto)' if r['auto'] else ''}", r["steps"], f"{r['ms_p50']:.1f}",
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
                ("load", "ms/frame p50", "ms/frame p95", "frames/s", "× real time"),
                [(r["load"], f"{r['ms_p50']:.1f}", f"{r['ms_p95']:.1f}", f"{r['frames_per_second']:.1f}",
                  f"{r['x_real_time']:.2f}") for r in part["rows"]],
            ),
        ]  # fmt: skip
    if "sessions" in parts:
        part = parts["sessions"]
        lines += [
            "",
            f"**Concurrent sessions** ({part['dtype']}, {part['steps']} steps, decode included): N sessions in one "
            "process stepped round-robin, one frame each per tick, as the demo app steps its browser tabs (it has no "
            "batched multi-session stepper).",
            "",
            markdown_table(
                ("sessions", "ms/tick p50", "ms/tick p95", "frames/s per session", "frames/s in all"),
                [(r["sessions"], f"{r['tick_ms_p50']:.1f}", f"{r['tick_ms_p95']:.1f}", f"{r['per_session_fps']:.1f}",
                  f"{r['aggregate_fps']:.1f}") for r in part["rows"]],
            ),
        ]  # fmt: skip
    if "training" in parts:
        part = parts["training"]
        lines += [
            "",
            f"**Training** (forward + backward + AdamW on random windows, every frame at its own noise level, "
            f"{part['tokens_per_window']} tokens per window, no gradient checkpointing). Model FLOPs = 6 × "
            "(per-token block parameters × tokens + adaLN parameters × frames) + causal attention within the local "
            "window (a lower bound: global layers see more); MFU against the measured ceiling of the dtype used. "
            "`mixed_precision: auto` picks the row marked auto.",
            "",
            markdown_table(
                ("precision", "batch × frames", "ms/step", "tokens/s", "frames/s", "GFLOP/s", "ceiling GFLOP/s",
                 "MFU"),
                [(f"{r['precision']}{' (auto)' if r['auto'] else ''}", f"{r['batch']}×{r['frames']}",
                  f"{r['ms_per_step']:.0f}", f"{r['tokens_per_second']:,.0f}", f"{r['frames_per_second']:,.0f}",
                  f"{r['gflops']:.1f}", f"{r['ceiling_gflops']:.0f}", f"{100 * r['mfu']:.0f} %")
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


def write_section(path: str | os.PathLike, body: str) -> None:
    """Replace (or append) the `## World model` section of a markdown file, leaving the other sections alone."""
    write_markdown_section(path, body, heading=f"## {SECTION}")


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------
def run(args: argparse.Namespace, settings: dict, folder: str, source: str, command: str, wait_policy: str):
    pipes = Pipelines(folder)
    machine = machine_info(wait_policy)
    logger.info("matmul ceilings (%d² square)", settings["ceiling_size"])
    ceilings = matmul_ceilings(settings["ceiling_size"], settings["ceiling_repeats"])
    machine["ceilings_gflops"] = {**ceilings, "size": settings["ceiling_size"], "repeats": settings["ceiling_repeats"]}
    logger.info("ceilings: fp32 %.1f GFLOP/s, bf16 %.1f GFLOP/s", ceilings["fp32"], ceilings["bf16"])

    auto = resolve_dtype("auto", "cpu", model_width=transformer_width(folder))
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
            parts[name] = measure_generation(pipes, auto, settings, args.game_fps)
        elif name == "cache":
            parts[name] = measure_cache(pipe, settings)
        elif name == "neighbour":
            parts[name] = measure_neighbour(pipe, settings, args.game_fps)
        elif name == "sessions":
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
        "settings": {**settings, "game_fps": args.game_fps, "parts": list(args.parts), "quick": args.quick},
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
        write_section(args.out, markdown(results))
        logger.info("wrote %s and the %r section of %s", args.json, SECTION, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
