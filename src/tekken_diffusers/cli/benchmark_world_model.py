"""Benchmark the world model on this machine: generation frames/s and latency (batch 1, KV cache), training tokens/s
and model-FLOPs utilisation, and the cache's memory over a long rollout. Medians of repeated runs, fp32 and bf16
measured side by side in one run; results replace the "World model" section of docs/benchmarks.md.

    tekken-benchmark --pipeline pipelines/boxing-world-model
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import time
from datetime import date
from pathlib import Path

import torch

from ..utils import write_markdown_section
from . import setup_logging

logger = logging.getLogger("benchmark_world_model")
BF16_CEILING = 400e9  # measured bf16 matmul FLOP/s of the 2-core Zen 4 machine (docs/benchmarks.md)
SECTION = "World model"


def median_seconds(function, repeats: int, warmup: int = 1) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def load_pipeline(args):
    from .. import TekkenWorldModelPipeline
    from ..pipelines import build_random_pipeline

    if args.pipeline:
        pipe = TekkenWorldModelPipeline.from_pretrained(args.pipeline)
        source = f"`{args.pipeline}`"
    else:
        pipe = build_random_pipeline(args.preset, vae=None, seed=0)
        source = f"random `{args.preset}` preset, no VAE"
    pipe.set_progress_bar_config(disable=True)
    return pipe, source


def generation_rows(pipe, steps_list: list[int], repeats: int) -> list[tuple[str, ...]]:
    """Per-frame latency of `session.step` (batch 1) in fp32 and under bf16 autocast."""
    config = pipe.transformer.config
    context = torch.randn(1, 8, config.in_channels, *config.sample_size)
    rows = []
    for autocast in (False, True):
        for steps in steps_list:
            session = pipe.start_session(
                context_latents=context, num_inference_steps=steps, output_type="latent",
                generator=torch.Generator().manual_seed(0),
            )  # fmt: skip
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                latent = median_seconds(lambda s=session: s.step(16), repeats, warmup=3)
                decode = 0.0
                if pipe.vae is not None:
                    frame_latents = torch.randn(1, 1, config.in_channels, *config.sample_size)
                    decode = median_seconds(lambda z=frame_latents: pipe.decode_latents(z), repeats, warmup=2)
            total = latent + decode
            rows.append((
                "bf16 autocast" if autocast else "fp32", str(steps), f"{latent * 1000:.1f}", f"{decode * 1000:.1f}",
                f"{total * 1000:.1f}", f"{1 / total:.1f}", f"{15 * total:.2f}",
            ))  # fmt: skip
    return rows


def training_rows(preset: str, batch: int, frames: int, repeats: int, in_channels: int, sample_size) -> list:
    """Forward + backward + AdamW step of one batch of windows: tokens/s and utilisation of the bf16 ceiling."""
    from .. import TekkenFlowMatchScheduler, TekkenWorldModelTransformer

    torch.manual_seed(0)
    model = TekkenWorldModelTransformer.from_preset(preset, in_channels=in_channels, sample_size=tuple(sample_size))
    model.train()
    scheduler = TekkenFlowMatchScheduler()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    config = model.config
    tokens_per_frame = (config.sample_size[0] // config.patch_size) * (config.sample_size[1] // config.patch_size)
    tokens = batch * frames * tokens_per_frame
    blocks = dict(model.transformer_blocks.named_parameters())
    per_frame = sum(p.numel() for name, p in blocks.items() if "adaLN_modulation" in name)  # once per frame
    per_token = sum(p.numel() for p in blocks.values()) - per_frame
    width = config.num_attention_heads * config.attention_head_dim
    # 6 FLOPs per parameter and token (forward 2, backward 4); the adaLN modulation runs once per frame, not per
    # token; attention scores and values over the causal context (on average half the window).
    context = min(frames, config.local_window) * tokens_per_frame / 2
    attention = 6 * 2 * config.num_layers * width * tokens * context
    flops = 6 * per_token * tokens + 6 * per_frame * batch * frames + attention
    latents = torch.randn(batch, frames, config.in_channels, *config.sample_size)
    actions = torch.randint(0, 2, (batch, frames, 8)).float()
    rows = []
    for autocast in (False, True):

        def step(autocast: bool = autocast) -> None:
            sigmas = scheduler.sample_training_sigmas(batch, frames)
            noise = torch.randn_like(latents)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
                prediction = model(scheduler.scale_noise(latents, sigmas, noise), sigmas, actions=actions).sample
            loss = (prediction.float() - (noise - latents)).pow(2).mean()
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        seconds = median_seconds(step, repeats, warmup=2)
        rows.append((
            "bf16 autocast" if autocast else "fp32", f"{batch}×{frames}", f"{seconds * 1000:.0f}",
            f"{tokens / seconds:,.0f}", f"{batch * frames / seconds:,.0f}",
            f"{batch * frames / seconds * 3600 / 1e3:,.0f} k",
            f"{flops / seconds / 1e9:.0f}", f"{100 * flops / seconds / BF16_CEILING:.0f} %",
        ))  # fmt: skip
    return rows


def cache_rows(pipe, frames: list[int]) -> list[tuple[str, ...]]:
    """Cache memory and step time stay flat however long the rollout."""
    config = pipe.transformer.config
    context = torch.randn(1, 4, config.in_channels, *config.sample_size)
    session = pipe.start_session(context_latents=context, num_inference_steps=1, output_type="latent")
    rows, done = [], 0
    for target in frames:
        while done < target:
            session.step(0)
            done += 1
        rows.append((str(target), f"{session.cache.memory_bytes() / 1e6:.2f}", str(session.cache.next_frame)))
    return rows


def table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if i else "---" for i in range(len(header))) + "|",
    ]
    return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in rows])


def write_section(path: Path, body: str) -> None:
    """Replace (or append) the `## World model` section of a markdown file, leaving the other sections alone."""
    write_markdown_section(path, f"## {SECTION}\n\n{body.strip()}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=None, help="pipeline folder (default: a random preset, no VAE)")
    parser.add_argument("--preset", default="small", help="preset for the random pipeline and the training rows")
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 2, 4, 8], help="denoising steps per frame")
    parser.add_argument("--repeats", type=int, default=15, help="timed repetitions (median reported)")
    parser.add_argument("--train-batch", type=int, default=16, help="training windows per step")
    parser.add_argument("--train-frames", type=int, default=16, help="frames per training window")
    parser.add_argument("--rollout", type=int, nargs="+", default=[50, 500, 2000], help="cache check lengths")
    parser.add_argument("--out", default="docs/benchmarks.md", help="markdown file whose section is replaced")
    args = parser.parse_args(argv)
    setup_logging()

    pipe, source = load_pipeline(args)
    config = pipe.transformer.config
    logger.info("generation (%s)", source)
    generation = generation_rows(pipe, args.steps, args.repeats)
    logger.info("training throughput")
    training = training_rows(
        args.preset, args.train_batch, args.train_frames, max(3, args.repeats // 3), config.in_channels,
        config.sample_size,
    )  # fmt: skip
    logger.info("long rollout")
    cache = cache_rows(pipe, args.rollout)

    load = os.getloadavg()[0]
    body = f"""`python scripts/benchmark_world_model.py{" --pipeline " + args.pipeline if args.pipeline else ""}` \
({date.today()}; {platform.machine()}, {os.cpu_count()} CPUs, {torch.get_num_threads()} torch threads, torch \
{torch.__version__}, load average {load:.1f} at the end: other jobs may share the CPU). Model: {source}; \
{sum(p.numel() for p in pipe.transformer.parameters()) / 1e6:.1f} M transformer parameters, latents \
{config.in_channels}×{config.sample_size[0]}×{config.sample_size[1]}, patch {config.patch_size}. Medians of \
{args.repeats} runs.

**Generation, batch 1, one frame per `session.step`** (KV cache; the context is 8 frames). Real time for Boxing is 15
frames/s: the last column is the time per frame divided by the 66.7 ms a frame lasts (≤ 1 plays in real time).

{
        table(
            ("precision", "steps", "transformer ms", "VAE decode ms", "total ms/frame", "frames/s", "× real time"),
            generation,
        )
    }

**Training** (forward + backward + AdamW, preset `{args.preset}`, no gradient checkpointing). Model FLOPs = 6 ×
(per-token block parameters × tokens + adaLN parameters × frames) + causal attention within the local window (a
lower bound: global layers see more); utilisation against the measured bf16 matmul ceiling of 400 GFLOP/s.

{
        table(
            ("precision", "batch × frames", "ms/step", "tokens/s", "frames/s", "frames/hour", "GFLOP/s", "MFU (bf16)"),
            training,
        )
    }

**Long rollout**: cache memory after N generated frames (1 step per frame); constant once the windows are full.

{table(("frames generated", "cache MB", "next frame index"), cache)}
"""
    write_section(Path(args.out), body)
    logger.info("wrote the %r section of %s", SECTION, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
