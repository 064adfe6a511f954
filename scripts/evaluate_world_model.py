#!/usr/bin/env python
"""Evaluate a world-model pipeline on held-out latent windows (DESIGN §7), always beside a baseline:

- teacher-forced next-frame PSNR/SSIM against the copy-last-frame baseline;
- open-loop rollout PSNR per frame under the recorded inputs, against holding the last context frame;
- action following: the same rollouts under inputs shuffled between windows (Δ-PSNR), and, for Boxing, the white
  boxer's position in generated vs recorded frames.

    python scripts/evaluate_world_model.py --pipeline pipelines/boxing-world-model --dataset data/boxing_latents

Writes a JSON file of every number and replaces the section of the pipeline's name in docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
from pathlib import Path

import numpy as np
import torch

from tekken_diffusers import TekkenWorldModelPipeline
from tekken_diffusers.cli import setup_logging
from tekken_diffusers.data import LatentWindowDataset, WindowBatch, load_latent_dataset, load_latent_info
from tekken_diffusers.evaluation.action_following import position_error
from tekken_diffusers.evaluation.metrics import psnr
from tekken_diffusers.evaluation.world_model import rollout_latents, score_frames, teacher_forced_next_frames
from tekken_diffusers.utils import atomic_output

logger = logging.getLogger("evaluate_world_model")


def to_unit(frames: torch.Tensor) -> torch.Tensor:
    """Decoded `(B, 3, T, H, W)` in [-1, 1] → `(B, T, 3, H, W)` in [0, 1]."""
    return (frames.permute(0, 2, 1, 3, 4) + 1) / 2


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--pipeline", required=True, help="pipeline folder")
    parser.add_argument("--dataset", required=True, help="latent dataset made with the pipeline's VAE")
    parser.add_argument("--split", default="val", help="held-out split")
    parser.add_argument("--context-frames", type=int, default=8, help="frames given before generation starts")
    parser.add_argument("--frames", type=int, default=32, help="frames generated per window")
    parser.add_argument("--windows", type=int, default=16, help="held-out windows (evenly spread)")
    parser.add_argument("--steps", type=int, default=4, help="denoising steps per frame")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--out", default=None, help="JSON output (default: outputs/eval-<pipeline name>.json)")
    parser.add_argument("--docs", default="docs/evaluation.md", help="markdown file whose section is replaced")
    args = parser.parse_args()
    setup_logging()

    # 1. Model and held-out windows
    pipe = TekkenWorldModelPipeline.from_pretrained(args.pipeline)
    pipe.set_progress_bar_config(disable=True)
    if pipe.vae is None:
        parser.error(f"--pipeline {args.pipeline}: the evaluation compares frames and needs a pipeline with a VAE")
    load_latent_info(args.dataset).check_vae(pipe.vae)
    length = args.context_frames + args.frames
    windows = LatentWindowDataset(load_latent_dataset(args.dataset, split=args.split), length, random_offset=False)
    count = min(args.windows, len(windows))
    indices = np.linspace(0, len(windows) - 1, count).round().astype(int).tolist()
    batch = WindowBatch.collate([windows[i] for i in indices])
    latents, bits, context = batch.latents.float(), batch.action_bits, args.context_frames
    logger.info("%d held-out windows of %d frames (%d context + %d generated)", count, length, context, args.frames)

    # 2. Teacher-forced next frame vs copy-last-frame
    generator = torch.Generator().manual_seed(args.seed)
    predicted = teacher_forced_next_frames(pipe, latents, bits, context, args.steps, generator=generator)
    teacher = score_frames(pipe, predicted, latents, context)

    # 3. Open-loop rollouts under the true and under shuffled inputs, vs holding the last context frame
    truth = to_unit(pipe.decode_latents(latents[:, context:]))  # (B, N, 3, H, W)
    last_context = to_unit(pipe.decode_latents(latents[:, context - 1 : context]))

    def rollout(inputs: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(args.seed)  # the same noise for both input streams
        return to_unit(pipe.decode_latents(rollout_latents(pipe, latents, inputs, context, args.steps, generator)))

    true_rollout = rollout(bits)
    shuffled_rollout = rollout(torch.cat([bits[:, :context], bits.roll(1, dims=0)[:, context:]], dim=1))
    curve_true = psnr(true_rollout, truth).mean(0).numpy()
    curve_shuffled = psnr(shuffled_rollout, truth).mean(0).numpy()
    curve_hold = psnr(last_context.expand_as(truth), truth).mean(0).numpy()
    error_true = np.nanmean(position_error(true_rollout, truth), axis=0)
    error_shuffled = np.nanmean(position_error(shuffled_rollout, truth), axis=0)
    error_hold = np.nanmean(position_error(last_context.expand_as(truth), truth), axis=0)

    # 4. Report
    results = {
        "pipeline": args.pipeline, "dataset": args.dataset, "split": args.split, "windows": count,
        "context_frames": context, "generated_frames": args.frames, "steps": args.steps,
        "teacher_forced": teacher.summary(),
        "rollout_psnr_true_inputs": curve_true.tolist(),
        "rollout_psnr_shuffled_inputs": curve_shuffled.tolist(),
        "rollout_psnr_hold_last_frame": curve_hold.tolist(),
        "boxer_error_px_true_inputs": error_true.tolist(),
        "boxer_error_px_shuffled_inputs": error_shuffled.tolist(),
        "boxer_error_px_hold_last_frame": error_hold.tolist(),
    }  # fmt: skip
    out = Path(args.out or f"outputs/eval-{Path(args.pipeline).name}.json")
    with atomic_output(out) as tmp:
        tmp.write_text(json.dumps(results, indent=2))
    marks = [m for m in (1, 4, 8, 16, 32, 64) if m <= args.frames]

    def row(name: str, values: np.ndarray, unit: str = "") -> str:
        return (
            f"| {name} | " + " | ".join(f"{values[m - 1]:.2f}{unit}" for m in marks) + f" | {np.nanmean(values):.2f} |"
        )

    summary = teacher.summary()
    section = f"""## {Path(args.pipeline).name}

`python scripts/evaluate_world_model.py --pipeline {args.pipeline} --dataset {args.dataset}`: {count} held-out
windows of split `{args.split}`, {context} context frames, {args.frames} generated frames, {args.steps} denoising steps
per frame. Pixel scores compare with the VAE's decoding of the true latents (the VAE's own error is not counted).

**Teacher-forced next frame** (true previous frames in the cache): PSNR {summary["psnr"]:.2f} dB (copy-last-frame
baseline {summary["psnr_copy_last"]:.2f} dB), SSIM {summary["ssim"]:.4f} (baseline {summary["ssim_copy_last"]:.4f}).

**Open-loop rollout**, PSNR (dB) at generated frame k and the mean over all {args.frames}:

| inputs | {" | ".join(f"k={m}" for m in marks)} | mean |
|---|{"---:|" * (len(marks) + 1)}
{row("recorded (held-out) inputs", curve_true)}
{row("inputs shuffled between windows", curve_shuffled)}
{row("baseline: hold the last context frame", curve_hold)}

**White boxer position error** (pixels of the {truth.shape[-1]}×{truth.shape[-2]} frame) in the same rollouts:

| inputs | {" | ".join(f"k={m}" for m in marks)} | mean |
|---|{"---:|" * (len(marks) + 1)}
{row("recorded (held-out) inputs", error_true)}
{row("inputs shuffled between windows", error_shuffled)}
{row("baseline: hold the last context frame", error_hold)}
"""
    docs = Path(args.docs)
    text = docs.read_text() if docs.exists() else "# World-model evaluation\n"
    pattern = re.compile(rf"\n## {re.escape(Path(args.pipeline).name)}\n.*?(?=\n## |\Z)", re.S)
    text = pattern.sub(lambda _: "\n" + section, text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    with atomic_output(docs) as tmp:
        tmp.write_text(text)
    logger.info("teacher-forced %s", {k: round(v, 3) for k, v in summary.items()})
    logger.info("rollout PSNR (dB): %s", {k: round(float(np.mean(v)), 2) for k, v in results.items() if "psnr_" in k})
    logger.info("boxer error (px): %s", {k: round(float(np.nanmean(v)), 2) for k, v in results.items() if "px" in k})
    logger.info("wrote %s and the %r section of %s", out, Path(args.pipeline).name, docs)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
