"""Benchmark the play app as its players see it: N headless-Chromium windows play at once, and each counts the frames
that reach its page. Results go to a JSON file and replace the "Play app" section of docs/benchmarks.md.

    tekken-benchmark-app --pipeline pipelines/boxing-world-model --rounds data/boxing-heldout/val --tabs 1 8

It starts the app's server itself (`tekken-play` on a free local port, with the given pipeline, rounds, steps and
threads), opens the windows of one headless Chromium, presses Start in each, holds forward + button 1, and after a
warm-up measures for a fixed number of seconds, per window: the on-screen rate (changes of the game picture counted in
the page), the frames the server generated for it, the stats line's model rate, and any refusal or error on the page.
Each row is the median over the windows. Without `--pipeline` it plays a random `--preset` pipeline on synthetic
rounds (the plumbing, not the model). Needs selenium, Chromium and chromedriver (`tekken_diffusers.benchmarking.app`).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import logging
import os
import shlex
import sys
import tempfile
from pathlib import Path

from ..benchmarking import machine_info, markdown_table
from ..benchmarking.app import BrowserMissing, find_browser, measure_app
from ..runtime import configure_threads
from ..utils import atomic_output, write_markdown_section
from . import setup_logging

logger = logging.getLogger("benchmark_app")

SECTION = "Play app"

FULL = dict(tabs=[1, 8], seconds=10.0, warmup=5.0)
QUICK = dict(tabs=[1, 2], seconds=2.0, warmup=1.0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tekken-benchmark-app",
        description=__doc__.split("\n\n")[0],
        epilog="Sizes in brackets are a full run's; --quick uses smaller ones; an option given replaces its size.",
    )
    parser.add_argument("--pipeline", default=None, help="pipeline folder (default: a random --preset pipeline)")
    parser.add_argument("--preset", default="tiny", help="transformer preset of the random pipeline (tiny)")
    parser.add_argument(
        "--rounds", default=None, help="folder of rounds for the starting contexts (default: synthetic rounds)"
    )
    parser.add_argument("--context-frames", type=int, default=8, help="frames of context (%(default)s)")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps per frame (the pipeline's default)")
    parser.add_argument("--dtype", default="auto", help="transformer dtype of the app (%(default)s)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of the app (as every command picks)")
    parser.add_argument("--tabs", type=int, nargs="+", help="browser windows playing at once, each a row [1 8]")
    parser.add_argument("--seconds", type=float, help="measured seconds per row, after the warm-up [10]")
    parser.add_argument("--warmup", type=float, help="seconds of play before the measurement [5]")
    parser.add_argument("--quick", action="store_true", help="small sizes that finish in seconds (tests)")
    parser.add_argument("--game-fps", type=float, default=15.0, help="frames/s of the game (15: Atari Boxing)")
    parser.add_argument("--out", default="docs/benchmarks.md", help="markdown file whose section is replaced")
    parser.add_argument("--json", default="outputs/benchmark_app.json", help="where the results go (%(default)s)")
    parser.add_argument("--no-write", action="store_true", help="write neither file, only log")
    return parser


def resolve_settings(args: argparse.Namespace) -> dict:
    """The sizes of this run: `QUICK` or `FULL`, with the options given replacing their entries."""
    settings = copy.deepcopy(QUICK if args.quick else FULL)
    for name in ("tabs", "seconds", "warmup"):
        if getattr(args, name) is not None:
            settings[name] = getattr(args, name)
    return settings


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace, settings: dict) -> None:
    if min(settings["tabs"]) < 1:
        parser.error(f"--tabs must be >= 1, got {settings['tabs']}")
    if settings["seconds"] <= 0 or settings["warmup"] < 0:
        parser.error(f"--seconds must be > 0 and --warmup >= 0, got {settings['seconds']} and {settings['warmup']}")
    if (args.steps is not None and args.steps < 1) or args.context_frames < 1:
        parser.error("--steps and --context-frames must be >= 1")
    if args.pipeline is not None and not Path(args.pipeline).is_dir():
        parser.error(f"--pipeline {args.pipeline}: no such folder")
    if args.rounds is not None and not Path(args.rounds).is_dir():
        parser.error(f"--rounds {args.rounds}: no such folder")


def default_steps(folder: str | os.PathLike) -> int:
    """The pipeline's `default_inference_steps` (what the app samples with when not told), read from its scheduler."""
    config = json.loads((Path(folder) / "scheduler" / "scheduler_config.json").read_text())
    return int(config.get("default_inference_steps", 8))


def synthetic_rounds(folder: Path, pipeline: str | os.PathLike, count: int, frames: int) -> Path:
    """`count` rounds of `frames` random frames at the pipeline's frame size: contexts for a random pipeline."""
    import numpy as np

    from ..data.rounds import Round, save_round
    from ..pipelines import TekkenWorldModelPipeline

    pipe = TekkenWorldModelPipeline.from_pretrained(pipeline)
    height, width = (side * pipe.vae_scale_factor for side in pipe.latent_size)
    rng = np.random.default_rng(0)
    for index in range(count):
        save_round(
            folder / f"round_{index:04d}.npz",
            Round(
                images=rng.integers(0, 256, (frames, 3, height, width), dtype=np.uint8),
                actions_p1=rng.integers(0, 256, frames, dtype=np.uint8),
                valid_frames=np.ones(frames, dtype=bool),
                fps=15.0,
                game="synthetic",
            ),
        )
    return folder


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(results: dict) -> str:
    machine, settings, app = results["machine"], results["settings"], results["app"]
    fps = settings["game_fps"]
    lines = [
        f"## {SECTION}",
        "",
        f"`{results['command']}` ({machine['date'][:10]}; {machine['cpu']}, {machine['machine']}, "
        f"{machine['logical_cpus']} logical CPUs; torch {machine['torch']}, {app['threads']} torch threads in the "
        f"app, "
        f"OMP_WAIT_POLICY={machine['omp_wait_policy']}; {results['browser']}, headless; load average "
        f"{fmt(machine['load_average'])} before and {fmt(results['load_average_after'])} after). Model: "
        f"{app['source']}, {app['steps']} steps per frame, `--dtype {app['dtype']}`. The app's server and the browser "
        "run on this machine. N windows of one headless Chromium play at once, each holding forward + button 1; after "
        f"{settings['warmup']:g} s of play, each window is measured for {settings['seconds']:g} s. **On screen**: "
        "changes of the game picture counted in the page (a `MutationObserver` on `#frame img`), per second of the "
        "page's clock; **generated**: the frames the stats line's counter advanced by, per second; **model**: the "
        "stats line's own rate (1 / the server's median time per frame, batch wait included). Medians over the "
        f"windows, and the slowest window's on-screen rate. The game runs at {fps:g} frames/s. Refused: windows that "
        "showed a refusal or an error; keys: windows whose held keys reached the model. Full results: "
        f"`{results['json']}`.",
        "",
        markdown_table(
            ("windows", "on screen frames/s", "slowest window", "generated frames/s", "model frames/s",
             "latency ms", "games per batch", "refused", "keys"),
            [(r["tabs"], fmt(r["on_screen_fps"]), fmt(r["on_screen_fps_min"]), fmt(r["generated_fps"]),
              fmt(r["model_fps"]), fmt(r["latency_ms"], 0), fmt(r["batch"], 0), r["refused"],
              f"{r['keys_reached']}/{r['tabs']}") for r in results["rows"]],
        ),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    settings = resolve_settings(args)
    check_args(parser, args, settings)
    try:
        find_browser()  # before anything heavy starts
    except BrowserMissing as error:
        parser.exit(2, f"{parser.prog}: {error}\n")
    setup_logging()
    wait_policy = os.environ.get("OMP_WAIT_POLICY", "unset")
    try:
        threads = configure_threads(args.threads)  # the app gets the same count, explicitly
    except ValueError as error:
        parser.error(str(error))
    command = shlex.join(["tekken-benchmark-app", *(sys.argv[1:] if argv is None else argv)])

    with contextlib.ExitStack() as stack:
        if args.pipeline is not None:
            folder, source = args.pipeline, f"`{args.pipeline}`"
        else:
            from ..pipelines import build_random_pipeline

            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-app-pipeline-"))
            build_random_pipeline(args.preset, seed=0).save_pretrained(folder)
            source = f"random `{args.preset}` preset"
        rounds = args.rounds
        if rounds is None:
            rounds = stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-app-rounds-"))
            synthetic_rounds(Path(rounds), folder, count=2, frames=args.context_frames + 8)
            source += ", synthetic rounds"
        else:
            source += f", contexts from `{rounds}`"
        steps = args.steps if args.steps is not None else default_steps(folder)
        app_arguments = [
            "--pipeline", str(folder), "--rounds", str(rounds), "--context-frames", str(args.context_frames),
            "--steps", str(steps), "--dtype", args.dtype, "--threads", str(threads),
            "--max-users", str(max(16, *settings["tabs"])),
        ]  # fmt: skip
        machine = machine_info(wait_policy)
        measured = measure_app(app_arguments, settings["tabs"], settings["seconds"], settings["warmup"])
    results = {
        "command": command,
        "json": args.json,
        "settings": {**settings, "game_fps": args.game_fps, "quick": args.quick},
        "machine": machine,
        "app": {"source": source, "steps": steps, "threads": threads, "dtype": args.dtype, "arguments": app_arguments},
        "browser": measured["browser"],
        "rows": measured["rows"],
        "load_average_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }
    if not args.no_write:
        with atomic_output(args.json) as tmp:
            tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        write_markdown_section(args.out, markdown(results), heading=f"## {SECTION}")
        logger.info("wrote %s and the %r section of %s", args.json, SECTION, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
