"""Evaluate a world-model pipeline on recorded held-out rounds, in pixels against the real frames, beside baselines.

    tekken-evaluate --pipeline pipelines/boxing-world-model --rounds data/boxing-heldout

- teacher-forced next frame (the true previous frames in the cache) at 1, 2 and 4 denoising steps (1 step is the
  model's one-shot estimate of the frame from pure noise) against copying the last frame;
- open-loop rollouts under the recorded inputs and under inputs shuffled between windows, against holding the last
  context frame: pooled PSNR and both boxers' position error at every generated frame;
- a long rollout's health: both boxers on screen, no freezing longer than real play, colours in the real range.

A two-player pipeline (`num_players=2`, rounds recorded with `--two-player`) is rolled out under both players' recorded
inputs, under each player's inputs shuffled between windows (the other's kept), and with the two players' inputs
swapped (the action-binding test: a model that binds each input to its boxer moves the wrong boxer then); the report
gives each boxer's position error under each. A two-player pipeline with an opponent policy on one-player rounds has
the policy draw player 2's inputs frame by frame; `--opponent-oracle` adds rollouts with player 2's inputs read from
the recorded frames instead (what a perfect opponent policy would give), which separates the world model's errors
from the opponent policy's.

Pooled PSNR is `10·log10(1 / mean squared error)` over all compared pixels (no per-frame cap); per-frame means (capped
at 100 dB) are reported beside it. The VAE's own reconstruction PSNR is the ceiling. Writes a JSON file of every
number and replaces the pipeline's section of docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ..evaluation.heldout import boxer_positions, load_heldout_windows, pooled_psnr, rollout_health
from ..evaluation.metrics import psnr
from ..evaluation.world_model import rollout_latents, teacher_forced_next_frames
from ..utils import atomic_output, write_markdown_section
from . import setup_logging

logger = logging.getLogger("tekken_diffusers.evaluate")


def _cpu_name() -> str:
    """The CPU model and whether it has native bf16 (speed figures mean nothing without it)."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    native_bf16 = "avx512_bf16" in flags or "amx_bf16" in flags
    return f"{name}, {'native bf16 (avx512_bf16)' if native_bf16 else 'no native bf16'}"


def _to_unit(frames: torch.Tensor) -> torch.Tensor:
    """Decoded `(B, 3, T, H, W)` in [-1, 1] → `(B, T, 3, H, W)` in [0, 1]."""
    return (frames.permute(0, 2, 1, 3, 4) + 1) / 2


def _position_error(generated: torch.Tensor, recorded: torch.Tensor) -> np.ndarray:
    """`(B, K, 2)` pixel distance of each boxer (white, black), generated against recorded; NaN if one is missing."""
    difference = boxer_positions(generated) - boxer_positions(recorded)
    return np.sqrt((difference**2).sum(axis=-1))


def _open_loop_scores(frames: torch.Tensor, target: torch.Tensor, error: np.ndarray) -> dict:
    """Pooled PSNR and both boxers' position errors of rollouts `(B, K, 3, H, W)` against the recorded frames."""
    return {
        "pooled_psnr_at_k": pooled_psnr(frames, target, frame_dim=1).tolist(),
        "pooled_psnr": pooled_psnr(frames, target),
        "white_error_median_at_k": np.nanmedian(error[..., 0], axis=0).tolist(),
        "black_error_median_at_k": np.nanmedian(error[..., 1], axis=0).tolist(),
        "white_error_mean_at_k": np.nanmean(error[..., 0], axis=0).tolist(),
        "black_error_mean_at_k": np.nanmean(error[..., 1], axis=0).tolist(),
        "boxer_missing_share": float(np.isnan(boxer_positions(frames)).any(-1).mean()),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tekken-evaluate",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--pipeline", required=True, help="pipeline folder (with a VAE)")
    parser.add_argument(
        "--rounds", required=True, help="held-out rounds: a folder searched for *.npz, recorded with an unseen seed"
    )
    parser.add_argument("--context-frames", type=int, default=8, help="frames given before generation starts")
    parser.add_argument("--frames", type=int, default=16, help="frames generated per window (k = 1..frames)")
    parser.add_argument("--windows", type=int, default=32, help="held-out windows (evenly spread)")
    parser.add_argument(
        "--samples",
        type=int,
        default=1,
        help="samples per window: each window is generated this many times with different noise and every score "
        "pools them (the open-loop medians move by ~0.5 px between sampling seeds at 64 windows; compare models "
        "with 4)",
    )
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per frame of the open-loop rollouts")
    parser.add_argument(
        "--teacher-forced-steps", type=int, nargs="+", default=[1, 2, 4], help="step counts scored teacher-forced"
    )
    parser.add_argument("--context-noise", type=float, default=None, help="override the scheduler's context noise")
    parser.add_argument("--shift", type=float, default=None, help="override the sampling schedule's shift")
    parser.add_argument(
        "--guidance-scale",
        type=float,
        nargs="+",
        default=[1.0],
        help="classifier-free guidance on the inputs (1 disables it); two values for a two-player model: player 1, "
        "player 2",
    )
    parser.add_argument("--health-frames", type=int, default=1000, help="length of the long rollouts (0: skip)")
    parser.add_argument(
        "--health-rollouts",
        type=int,
        default=8,
        help="number of long rollouts, from evenly spread held-out starts (a boxer that fades in one rollout of "
        "eight goes unseen in two)",
    )
    parser.add_argument(
        "--opponent-oracle",
        action="store_true",
        help="with an opponent policy: also roll out with player 2's inputs read from the recorded frames (by the "
        "policy's inverse model) instead of drawn, under the recorded and the shuffled player-1 inputs: what a "
        "perfect opponent policy would score, i.e. how much of the gap is the opponent's prediction",
    )
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="the transformer's compute dtype (float32: the reference every figure in docs/evaluation.md uses)",
    )
    parser.add_argument("--out", default=None, help="JSON output (default: outputs/eval-<pipeline name>.json)")
    parser.add_argument("--docs", default="docs/evaluation.md", help="markdown file whose section is replaced")
    parser.add_argument("--no-docs", action="store_true", help="do not touch the markdown file")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    for name in ("context_frames", "frames", "windows", "samples", "steps", "health_rollouts"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.health_frames < 0:
        parser.error(f"--health-frames must be >= 0 (0 skips the long rollouts), got {args.health_frames}")
    if min(args.teacher_forced_steps) < 1:
        parser.error(f"--teacher-forced-steps must all be >= 1, got {args.teacher_forced_steps}")
    if args.context_noise is not None and not 0 <= args.context_noise < 1:
        parser.error(f"--context-noise must lie in [0, 1), got {args.context_noise}")
    if args.shift is not None and args.shift <= 0:
        parser.error(f"--shift must be > 0, got {args.shift}")
    if len(args.guidance_scale) > 2 or not all(scale >= 1 for scale in args.guidance_scale):
        parser.error(f"--guidance-scale takes one or two values >= 1 (1 disables guidance), got {args.guidance_scale}")
    from ..pipelines import TekkenWorldModelPipeline

    if not (Path(args.pipeline) / "model_index.json").is_file():
        parser.error(f"--pipeline {args.pipeline}: not a pipeline folder (no model_index.json)")
    import torch

    dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16}[args.dtype]
    pipe = TekkenWorldModelPipeline.from_pretrained(
        args.pipeline, dtype={"transformer": dtype, "default": torch.float32}
    )
    pipe.set_progress_bar_config(disable=True)
    if args.shift is not None:
        pipe.scheduler.set_shift(args.shift)
    if pipe.vae is None:
        parser.error(f"--pipeline {args.pipeline}: the evaluation compares frames and needs a pipeline with a VAE")
    two_player = pipe.num_players == 2
    if len(args.guidance_scale) == 2 and not two_player:
        parser.error(f"--guidance-scale: two values need a two-player model; {args.pipeline} has one player")
    guidance = tuple(args.guidance_scale) if len(args.guidance_scale) == 2 else args.guidance_scale[0]
    started = time.perf_counter()

    # 1. Held-out windows: real frames, their latents, the VAE's ceiling
    context, count = args.context_frames, args.frames
    try:
        windows = load_heldout_windows(args.rounds, context + count, args.windows)
    except (OSError, ValueError) as error:
        parser.error(str(error))
    real = windows.unit()  # (B, L, 3, H, W)
    bits = windows.action_bits
    latents = pipe.encode_frames(real * 2 - 1)  # (B, L, C, h, w)
    truth_bits = None
    # A two-player model with an opponent policy on one-player rounds: the policy plays player 2 (NaN inputs, drawn
    # frame by frame) and the report is a one-player one; the true frames enter the cache under the player-2 inputs
    # the policy's inverse model reads from them.
    opponent_plays = two_player and windows.action_bits_p2 is None and pipe.opponent is not None
    if opponent_plays:
        read = pipe.opponent.infer_inputs(latents.to(pipe.opponent.device, pipe.opponent.dtype)).cpu()  # (B, L, 8)
        drawn = torch.cat([read[:, :context], torch.full_like(read[:, context:], float("nan"))], dim=1)
        truth_bits = torch.stack([bits, read], dim=2)
        bits = torch.stack([bits, drawn], dim=2)  # (B, L, 2, 8)
        two_player = False
    elif args.opponent_oracle:
        parser.error(
            f"--opponent-oracle: needs a two-player pipeline with an opponent policy on one-player rounds; "
            f"{args.pipeline} has num_players={pipe.num_players} and "
            f"{'an' if pipe.opponent is not None else 'no'} opponent policy, the rounds "
            f"{'have' if windows.action_bits_p2 is not None else 'have no'} player-2 inputs"
        )
    elif two_player:
        if windows.action_bits_p2 is None:
            parser.error(
                f"--rounds {args.rounds}: the pipeline is a two-player model (num_players=2) and these rounds carry "
                "no player 2 inputs (actions_p2); record them with --two-player"
            )
        bits = torch.stack([windows.action_bits, windows.action_bits_p2], dim=2)  # (B, L, 2, 8)
    reconstruction = _to_unit(pipe.decode_latents(latents[:, context:]))
    window_count, stream_bits = len(real), bits
    if args.samples > 1:
        # Every window generated `samples` times, tiled along the batch (each row draws its own noise). Shuffling
        # rolls the batch by one, so a row still takes another window's inputs.
        def tile(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.repeat(args.samples, *[1] * (tensor.ndim - 1))

        real, latents, bits, reconstruction = tile(real), tile(latents), tile(bits), tile(reconstruction)
        truth_bits = None if truth_bits is None else tile(truth_bits)
    target = real[:, context:]  # the frames to predict, (B, K, 3, H, W)
    logger.info(
        "%d held-out windows (%d context + %d frames) from %s, %d sample(s) each",
        window_count, context, count, args.rounds, args.samples,
    )  # fmt: skip
    results: dict = {
        "pipeline": args.pipeline, "rounds": args.rounds, "windows": window_count,
        "samples_per_window": args.samples, "context_frames": context,
        "generated_frames": count, "steps": args.steps, "cpu": _cpu_name(), "torch_threads": torch.get_num_threads(),
        "dtype": args.dtype,
        "context_noise": args.context_noise if args.context_noise is not None else pipe.scheduler.config.context_noise,
        "shift": pipe.scheduler.shift,
        "guidance_scale": guidance,
        "opponent": "policy" if opponent_plays else None,
        "vae_reconstruction_pooled_psnr": pooled_psnr(reconstruction, target),
    }  # fmt: skip

    # 2. Teacher-forced next frame vs copying the last frame
    copy_last = real[:, context - 1 : -1]
    results["teacher_forced"] = {
        "copy_last": {
            "pooled_psnr": pooled_psnr(copy_last, target),
            "mean_psnr": float(psnr(copy_last, target).mean()),
        }
    }
    for steps in args.teacher_forced_steps:
        generator = torch.Generator().manual_seed(args.seed)
        predicted = teacher_forced_next_frames(
            pipe,
            latents,
            bits,
            context,
            steps,
            context_noise=args.context_noise,
            generator=generator,
            guidance_scale=guidance,
            truth_bits=truth_bits,
        )
        frames = _to_unit(pipe.decode_latents(predicted))
        results["teacher_forced"][f"steps_{steps}"] = {
            "pooled_psnr": pooled_psnr(frames, target),
            "mean_psnr": float(psnr(frames, target).mean()),
        }

    # 3. Open-loop rollouts under the recorded and under shuffled inputs, vs holding the last context frame
    def rollout(inputs: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)  # the same noise for both input streams
        generated = rollout_latents(
            pipe, latents, inputs, context, args.steps, generator, args.context_noise, guidance_scale=guidance
        )
        return _to_unit(pipe.decode_latents(generated))

    shuffled_bits = torch.cat([bits[:, :context], bits.roll(1, dims=0)[:, context:]], dim=1)
    # (with an opponent policy only player 1's inputs are shuffled: player 2's generated inputs are all NaN)
    if two_player:
        # One player's generated inputs shuffled between windows (the other's kept), or the two players' swapped;
        # the context keeps its recorded inputs.
        future = {
            "p1_shuffled_inputs": torch.stack([bits[:, :, 0].roll(1, dims=0), bits[:, :, 1]], dim=2),
            "p2_shuffled_inputs": torch.stack([bits[:, :, 0], bits[:, :, 1].roll(1, dims=0)], dim=2),
            "swapped_players": bits.flip(2),
        }
        rollouts = {"recorded_inputs": rollout(bits)}
        for name, inputs in future.items():
            rollouts[name] = rollout(torch.cat([bits[:, :context], inputs[:, context:]], dim=1))
        rollouts["hold_last_frame"] = real[:, context - 1 : context].expand_as(target)
    else:
        rollouts = {
            "recorded_inputs": rollout(bits),
            "shuffled_inputs": rollout(shuffled_bits),
            "hold_last_frame": real[:, context - 1 : context].expand_as(target),
        }
        if args.opponent_oracle:
            # Player 2's inputs as read from the recorded frames instead of drawn by the policy; shuffled: player
            # 1's shuffled between windows as above, player 2's read ones kept.
            read_shuffled = torch.stack([truth_bits[:, :, 0].roll(1, dims=0), truth_bits[:, :, 1]], dim=2)
            rollouts["recorded_inputs_read_opponent"] = rollout(truth_bits)
            rollouts["shuffled_inputs_read_opponent"] = rollout(
                torch.cat([truth_bits[:, :context], read_shuffled[:, context:]], dim=1)
            )
    open_loop = {}
    for name, frames in rollouts.items():
        error = _position_error(frames, target)  # (B, K, 2)
        with warnings.catch_warnings():  # a boxer missing in every window gives NaN, which the report shows
            warnings.simplefilter("ignore", RuntimeWarning)
            open_loop[name] = _open_loop_scores(frames, target, error)
    results["open_loop"] = open_loop
    last = count - 1
    if two_player:
        # Each boxer's median position error at the last k under each input stream (the action-binding test)
        results["players"] = 2
        results["action_binding_at_last_k"] = {
            boxer: {
                name: open_loop[name][f"{boxer}_error_median_at_k"][last]
                for name in ("recorded_inputs", "p1_shuffled_inputs", "p2_shuffled_inputs", "swapped_players")
            }
            for boxer in ("white", "black")
        }
    else:
        recorded, shuffled = open_loop["recorded_inputs"], open_loop["shuffled_inputs"]
        results["delta_pooled_psnr_at_last_k"] = (
            recorded["pooled_psnr_at_k"][last] - shuffled["pooled_psnr_at_k"][last]
        )
        results["delta_white_error_at_last_k"] = (
            shuffled["white_error_median_at_k"][last] - recorded["white_error_median_at_k"][last]
        )
        if args.opponent_oracle:
            recorded, shuffled = open_loop["recorded_inputs_read_opponent"], open_loop["shuffled_inputs_read_opponent"]
            results["delta_pooled_psnr_at_last_k_read_opponent"] = (
                recorded["pooled_psnr_at_k"][last] - shuffled["pooled_psnr_at_k"][last]
            )

    # 4. Long rollouts: both boxers present, no freezing, real colours
    if args.health_frames > 0:
        long_windows = load_heldout_windows(args.rounds, context + 1, args.health_rollouts)
        start = long_windows.unit()[:, :context]
        recorded_inputs = stream_bits[:, context:].flatten(0, 1)  # the held-out input stream, (N, [2,] 8)
        if opponent_plays:
            recorded_inputs = recorded_inputs[:, 0]  # player 1's; the opponent policy plays player 2
        repeats = (args.health_frames // len(recorded_inputs) + 1, *[1] * (recorded_inputs.ndim - 1))
        stream = recorded_inputs.repeat(*repeats)[: args.health_frames]
        offsets = [index * len(recorded_inputs) // args.health_rollouts for index in range(len(start))]
        inputs = torch.stack([stream.roll(-offset, dims=0) for offset in offsets])  # (R, N, [2,] 8)
        player_2 = {}
        if two_player:
            player_2 = {
                "context_actions_p2": list(long_windows.action_bits_p2[:, :context]),
                "actions_p2": list(inputs[:, :, 1]),
            }
            inputs = inputs[:, :, 0]
        generated = pipe(
            context=list((start * 255).round().to(torch.uint8).numpy()),
            context_actions=list(long_windows.action_bits[:, :context]),
            actions=list(inputs),
            **player_2,
            num_inference_steps=args.steps,
            context_noise=args.context_noise,
            guidance_scale=guidance,
            generator=torch.Generator().manual_seed(args.seed),
            output_type="pt",
        ).frames  # (R, N, 3, H, W) in [0, 1]
        health = [rollout_health(clip.float(), real.flatten(0, 1)) for clip in generated]
        results["long_rollouts"] = health
    results["seconds"] = round(time.perf_counter() - started, 1)

    # 5. Report
    out = Path(args.out or f"outputs/eval-{Path(args.pipeline).name}.json")
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    section = format_section(results)
    if not args.no_docs:
        write_markdown_section(args.docs, section, default_text="# World-model evaluation\n")
    logger.info("\n%s", section)
    logger.info("wrote %s%s", out, "" if args.no_docs else f" and the section of {args.docs}")
    return 0


def format_section(results: dict) -> str:
    """The markdown section of one evaluation (what docs/evaluation.md shows)."""
    name = Path(results["pipeline"]).name
    teacher = results["teacher_forced"]
    open_loop = results["open_loop"]
    count = results["generated_frames"]
    marks = [m for m in (1, 4, 8, 16, 32, 64) if m <= count]

    def at(values: list[float], unit: str = "") -> str:
        return " | ".join(f"{values[m - 1]:.2f}{unit}" for m in marks)

    teacher_rows = "\n".join(
        f"| model, {key.split('_')[1]} step{'s' if key != 'steps_1' else ''} | {value['pooled_psnr']:.2f} | "
        f"{value['mean_psnr']:.2f} |"
        for key, value in teacher.items()
        if key.startswith("steps_")
    )
    labels = {
        "recorded_inputs": "model, recorded inputs",
        "shuffled_inputs": "model, inputs shuffled between windows",
        "p1_shuffled_inputs": "model, player 1's inputs shuffled between windows",
        "p2_shuffled_inputs": "model, player 2's inputs shuffled between windows",
        "swapped_players": "model, the two players' inputs swapped",
        "recorded_inputs_read_opponent": "model, recorded inputs, player 2's read from the frames (oracle)",
        "shuffled_inputs_read_opponent": "model, player 1's inputs shuffled, player 2's read (oracle)",
        "hold_last_frame": "baseline: hold the last context frame",
    }
    psnr_rows = "\n".join(f"| {labels[k]} | {at(v['pooled_psnr_at_k'])} |" for k, v in open_loop.items())
    white_rows = "\n".join(f"| {labels[k]} | {at(v['white_error_median_at_k'])} |" for k, v in open_loop.items())
    black_rows = "\n".join(f"| {labels[k]} | {at(v['black_error_median_at_k'])} |" for k, v in open_loop.items())
    if "action_binding_at_last_k" in results:
        binding = results["action_binding_at_last_k"]
        summary = (
            f"**Action binding** (two players): each boxer's median position error at k={count} (pixels) under "
            f"the recorded inputs, one player's inputs shuffled, and the players' inputs swapped:\n\n"
            "| boxer | recorded | player 1 shuffled | player 2 shuffled | swapped |\n|---|---:|---:|---:|---:|\n"
            + "\n".join(
                f"| {boxer} (player {index + 1}) | "
                + " | ".join(f"{value:.2f}" for value in binding[boxer].values())
                + " |"
                for index, boxer in enumerate(("white", "black"))
            )
        )
    else:
        summary = (
            f"Δ pooled PSNR (recorded − shuffled inputs) at k={count}: {results['delta_pooled_psnr_at_last_k']:+.2f} "
            "dB."
        )
        if "delta_pooled_psnr_at_last_k_read_opponent" in results:
            summary += (
                f" With player 2's inputs read from the recorded frames instead of drawn by the opponent policy "
                f"(`--opponent-oracle`): {results['delta_pooled_psnr_at_last_k_read_opponent']:+.2f} dB."
            )
    header = " | ".join(f"k={m}" for m in marks)
    rule = "---:|" * len(marks)
    health = ""
    for index, item in enumerate(results.get("long_rollouts", [])):
        health += (
            f"| {index} | {item['frames']} | {item['white_boxer_missing_frames']} | "
            f"{item['black_boxer_missing_frames']} | {item['longest_frozen_run']} "
            f"({item['longest_frozen_run_recorded']}) | {item['frames_outside_colour_range']} |\n"
        )
    opponent = ""
    if results.get("opponent") == "policy":
        opponent = (
            "\nPlayer 2 is played by the pipeline's opponent policy throughout, its input drawn frame by frame (the "
            "rounds have no player-2 inputs); teacher-forced, the true frames enter the cache under the player-2 "
            "inputs its inverse model reads from them."
        )
    samples = results.get("samples_per_window", 1)
    samples = f" × {samples} samples each (pooled)" if samples > 1 else ""
    return f"""## {name}

`tekken-evaluate --pipeline {results["pipeline"]} --rounds {results["rounds"]}`:
{results["windows"]} held-out windows{samples}, {results["context_frames"]} context frames, {count} generated frames,
{results["steps"]} denoising steps per frame in the rollouts, context noise {results["context_noise"]}, guidance scale
{results.get("guidance_scale", 1.0)} on the inputs; scored in
pixels against the recorded frames (CPU: {results["cpu"]}, {results["torch_threads"]} threads,
{results["seconds"]} s). Ceiling: the VAE's own reconstruction,
{results["vae_reconstruction_pooled_psnr"]:.2f} dB pooled.{opponent}

**Teacher-forced next frame** (true previous frames in the cache), PSNR in dB:

| | pooled | per-frame mean (capped at 100 dB) |
|---|---:|---:|
| baseline: copy the last frame | {teacher["copy_last"]["pooled_psnr"]:.2f} | {teacher["copy_last"]["mean_psnr"]:.2f} |
{teacher_rows}

**Open-loop rollouts**, pooled PSNR (dB) at generated frame k:

| | {header} |
|---|{rule}
{psnr_rows}

{summary}

**White boxer (player 1) position error**, median over windows (pixels of the 64×64 frame):

| | {header} |
|---|{rule}
{white_rows}

**Black boxer position error**, median over windows:

| | {header} |
|---|{rule}
{black_rows}

**Long rollouts** under held-out input streams (frozen run in frames; the recorded frames' longest in brackets):

| rollout | frames | white boxer missing | black boxer missing | longest frozen run | frames outside colour range |
|---|---:|---:|---:|---:|---:|
{health}"""


if __name__ == "__main__":
    raise SystemExit(main())
