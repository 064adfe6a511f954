"""Generate gameplay from a recorded context and a list of inputs, as an mp4 with the inputs drawn under the frames.

`python pipelines/generate.py --pipeline pipelines/boxing-world-model --context data/boxing/val/round_0000.npz
--actions "f*8, 1, n*7" --out outputs/boxing.mp4`
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from ..runtime import DTYPE_CHOICES, add_runtime_arguments, configure_threads, generation_thread_tuner, resolve_dtype
from . import setup_logging, transformer_width

# Frames composed and written per chunk: the video streams to disk, so memory does not grow with --frames.
VIDEO_CHUNK = 64

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="generate.py",
        description=(
            "Play a list of inputs through a world-model pipeline, starting from frames of a recorded round, and "
            "write an mp4 (generated frames with the inputs drawn underneath; beside the recorded frames when the "
            "round continues past the context)."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pipeline", required=True, help="pipeline folder (or Hub id) for from_pretrained")
    parser.add_argument("--context", required=True, help="round .npz whose frames start the generation")
    parser.add_argument("--context-frames", type=int, default=8, help="number of context frames")
    parser.add_argument("--start", type=int, default=0, help="first context frame in the round")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--actions", help='inputs in Tekken notation, e.g. "f*8, d/f+2, 1+2, n"')
    source.add_argument("--actions-file", help="text file of inputs (notation, comma/space/newline separated)")
    source_p2 = parser.add_mutually_exclusive_group()
    source_p2.add_argument(
        "--actions-p2",
        help="a two-player pipeline's player-2 inputs in notation, read from player 2's side (default: the "
        "pipeline's opponent policy if it has one, else the round's recorded player-2 inputs after the context, else "
        "neutral)",
    )
    source_p2.add_argument("--actions-p2-file", help="text file of player-2 inputs")
    parser.add_argument(
        "--frames",
        type=int,
        default=None,
        help="frames to generate (default: one per input; without inputs the "
        "round's recorded inputs after the context are replayed)",
    )
    parser.add_argument("--out", default="outputs/generated.mp4", help="output video (.mp4)")
    parser.add_argument(
        "--steps",
        type=int,
        default=None,
        help="denoising steps per frame (default: the pipeline's default_inference_steps, from its scheduler config)",
    )
    parser.add_argument("--guidance-scale", type=float, default=1.0, help="action guidance (1 = off)")
    parser.add_argument("--context-noise", type=float, default=None, help="noise level of cached frames")
    parser.add_argument("--side", choices=["left", "right"], default="left", help="where player 1 stands")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--scale", type=int, default=4, help="integer upscaling in the video")
    parser.add_argument("--no-ground-truth", action="store_true", help="do not show the recorded frames beside")
    add_runtime_arguments(parser)
    parser.add_argument(
        "--max-frames",
        type=int,
        default=10_000,
        help="most frames one run may generate (a guard against typos such as --frames 10000000; raise it for longer "
        "videos: they stream to disk in chunks, so memory stays constant)",
    )
    return parser


def _check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """One clear error per bad value, before anything is loaded."""
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    if not (math.isfinite(args.guidance_scale) and args.guidance_scale >= 1):
        parser.error(f"--guidance-scale must be a finite number >= 1 (1 = off), got {args.guidance_scale}")
    if args.context_noise is not None and not 0 <= args.context_noise < 1:
        parser.error(f"--context-noise must lie in [0, 1), got {args.context_noise}")
    if args.max_frames < 1:
        parser.error(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.dtype not in DTYPE_CHOICES:
        try:
            resolve_dtype(args.dtype, "cpu")  # raises, with the reason, for float16 and unknown names
        except ValueError as error:
            parser.error(f"--dtype {args.dtype}: {error}")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.frames is not None and not 1 <= args.frames <= args.max_frames:
        parser.error(f"--frames must lie in [1, --max-frames = {args.max_frames}], got {args.frames}")
    if args.scale < 1:
        parser.error(f"--scale must be >= 1, got {args.scale}")
    if args.context_frames < 1:
        parser.error(f"--context-frames must be >= 1, got {args.context_frames}")
    if args.start < 0:
        parser.error(f"--start must be >= 0, got {args.start}")
    if args.actions is not None and not args.actions.strip(" ,\n"):
        parser.error("--actions is empty: give at least one input (e.g. 'n'), or leave it out to replay the round")
    if args.actions_p2 is not None and not args.actions_p2.strip(" ,\n"):
        parser.error("--actions-p2 is empty: give at least one input (e.g. 'n'), or leave it out to replay the round")
    out = Path(args.out)
    if out.is_dir():
        parser.error(f"--out {out}: is a folder (expected a video file name)")
    blocking = next((parent for parent in out.parents if parent.exists() and not parent.is_dir()), None)
    if blocking is not None:
        parser.error(f"--out {out}: {blocking} is a file (expected a folder)")
    pipeline = Path(args.pipeline)
    if not pipeline.exists() and (args.pipeline.startswith((".", "/", "~")) or args.pipeline.count("/") > 1):
        parser.error(f"--pipeline {args.pipeline}: no such folder (nor a Hub repo id of the form owner/name)")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_args(parser, args)
    setup_logging()
    try:
        # before the first heavy torch op starts the thread pool (generation then picks by timing, below)
        configure_threads(args.threads)
    except ValueError as error:
        parser.error(str(error))
    import torch

    from ..actions import parse_action_sequence
    from ..data.rounds import load_round
    from ..pipelines import TekkenWorldModelPipeline
    from ..visualization import compose_frames, write_video

    # 1. The context and the inputs
    try:
        round_ = load_round(args.context).trimmed()
    except (FileNotFoundError, ValueError) as error:
        parser.error(f"--context: {error}")
    end = args.start + args.context_frames
    if args.context_frames < 1 or args.start < 0 or end > round_.num_frames:
        parser.error(
            f"--start {args.start} --context-frames {args.context_frames}: {args.context} has {round_.num_frames} "
            "valid frames"
        )
    try:
        if args.actions is not None or args.actions_file is not None:
            text = args.actions if args.actions is not None else Path(args.actions_file).read_text()
            actions = parse_action_sequence(text.replace("\n", " "), args.side, max_inputs=args.max_frames)
            if args.frames is not None:
                if args.frames < len(actions):
                    actions = actions[: args.frames]
                else:  # hold the last input
                    actions = np.concatenate([actions, np.full(args.frames - len(actions), actions[-1], np.uint8)])
        else:
            available = round_.num_frames - end
            if available < 1:
                parser.error(f"{args.context} has no frames after the context to replay; pass --actions")
            actions = round_.actions_p1[end : end + (args.frames or available)]
    except (ValueError, OSError) as error:
        parser.error(f"--actions: {error}")
    actions_p2 = None
    if args.actions_p2 is not None or args.actions_p2_file is not None:
        flag = "--actions-p2" if args.actions_p2 is not None else "--actions-p2-file"
        try:
            text = args.actions_p2 if args.actions_p2 is not None else Path(args.actions_p2_file).read_text()
            side_p2 = "right" if args.side == "left" else "left"
            actions_p2 = parse_action_sequence(text.replace("\n", " "), side_p2, max_inputs=args.max_frames)
        except (ValueError, OSError) as error:
            parser.error(f"{flag}: {error}")

    # 2. The pipeline
    dtype = resolve_dtype(args.dtype, "cpu", model_width=transformer_width(args.pipeline))
    try:
        pipe = TekkenWorldModelPipeline.from_pretrained(
            args.pipeline, dtype={"transformer": dtype, "default": torch.float32}
        )
    except Exception as error:  # diffusers, safetensors and the Hub client raise many kinds; all mean "cannot load"
        parser.error(f"--pipeline {args.pipeline}: cannot load it ({type(error).__name__}: {error})")
    if pipe.vae is None:
        parser.error(f"--pipeline {args.pipeline}: has no VAE (vae/), which generate.py needs to decode frames")
    if pipe.temporal_compression_ratio > 1:
        parser.error(
            f"--pipeline {args.pipeline}: its VAE compresses time ({pipe.temporal_compression_ratio} frames per "
            "latent frame); generate.py plays one frame per input: use the pipeline from Python (README, Video-VAE "
            "latents)"
        )
    two_player = pipe.num_players == 2
    if actions_p2 is not None and not two_player:
        parser.error(
            f"--actions-p2: {args.pipeline} conditions on player 1 only (num_players=1); leave --actions-p2 out"
        )
    context_p2 = {}
    opponent_plays = two_player and actions_p2 is None and getattr(pipe, "opponent", None) is not None
    if opponent_plays:  # the pipeline's opponent policy plays player 2 (its context inputs: recorded, or read)
        logger.info("player 2: the pipeline's opponent policy")
        if round_.actions_p2 is not None:
            context_p2 = {"context_actions_p2": round_.actions_p2[args.start : end]}
    elif two_player:
        recorded_p2 = round_.actions_p2
        if recorded_p2 is None:
            logger.warning("%s has no player-2 inputs: player 2 is neutral in the context", args.context)
            recorded_p2 = np.zeros(round_.num_frames, np.uint8)
        context_p2 = {"context_actions_p2": recorded_p2[args.start : end]}
        if actions_p2 is None:  # replay player 2's recorded inputs after the context, then hold neutral
            actions_p2 = recorded_p2[end : end + len(actions)]
            if len(actions_p2) < len(actions):
                logger.info("player 2: %d recorded inputs after the context, then neutral", len(actions_p2))
        # one player-2 input per player-1 input: the shorter list holds its last input (neutral when empty)
        hold = actions_p2[-1] if len(actions_p2) else 0
        actions_p2 = np.concatenate([actions_p2, np.full(max(0, len(actions) - len(actions_p2)), hold, np.uint8)])
        actions_p2 = actions_p2[: len(actions)].astype(np.uint8)

    # 3. Generate through a session and stream the video to disk chunk by chunk: memory stays constant however many
    # frames are asked for (a batch call would hold every frame until the end).
    session = pipe.start_session(
        context=round_.images[args.start : end],
        context_actions=round_.actions_p1[args.start : end],
        **context_p2,
        num_inference_steps=args.steps,
        guidance_scale=args.guidance_scale,
        context_noise=args.context_noise,
        side=args.side,
        generator=torch.Generator().manual_seed(args.seed),
        output_type="np",
    )
    fps = round_.fps or 15.0
    show_recorded = not args.no_ground_truth and round_.num_frames >= end + len(actions)
    titles = ["generated", "recorded"] if show_recorded else ["generated"]
    started = time.perf_counter()
    # One thread or one per core, whichever makes frames faster now (runtime.ThreadTuner), unless the user chose.
    tuner = generation_thread_tuner(args.threads)
    step = session.step if tuner is None else tuner.wrap(session.step)

    def chunks():
        progress = tqdm(total=len(actions), unit="frame", desc="generating")
        for first in range(0, len(actions), VIDEO_CHUNK):
            inputs = actions[first : first + VIDEO_CHUNK]
            inputs_p2 = None if actions_p2 is None else actions_p2[first : first + VIDEO_CHUNK]
            if inputs_p2 is None:
                frames = np.stack([step(int(action)) for action in inputs])  # (n, H, W, 3) in [0, 1]
            else:
                frames = np.stack([step(int(a), int(b)) for a, b in zip(inputs, inputs_p2)])
            progress.update(len(inputs))
            streams = [(frames * 255).round().astype(np.uint8).transpose(0, 3, 1, 2)]  # (n, 3, H, W)
            if show_recorded:
                streams.append(round_.images[end + first : end + first + len(inputs)])
            yield compose_frames(
                streams, inputs, titles=titles, actions_p2=inputs_p2, scale=args.scale, fps=fps, first_frame=first
            )
        progress.close()

    path = write_video(args.out, chunks(), fps=fps)
    seconds = time.perf_counter() - started
    logger.info(
        "%d frames in %.1f s (%.2f frames/s, %d steps, video included%s)",
        len(actions), seconds, len(actions) / seconds, session.rollout.num_inference_steps,
        "" if tuner is None else f"; {tuner.chosen} torch thread(s) chosen by timing",
    )  # fmt: skip
    logger.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
