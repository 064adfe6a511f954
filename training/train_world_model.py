#!/usr/bin/env python
"""Train the action-conditioned world model on a latent dataset, with accelerate.

    accelerate launch training/train_world_model.py --config training/configs/boxing_small.yaml \
        --dataset data/boxing_latents --output_dir outputs/boxing-world-model

One CPU or GPU up to multi-node: the hardware is the accelerate config's business (accelerate_configs/). The
experiment is one YAML file that `TrainWorldModelConfig` fully describes (an unknown key is an error); every field
can be overridden on the command line (`--learning_rate 1e-4`).

Objective (the original system's): every frame of a window gets its own logit-normal noise level (diffusion forcing),
the model predicts the flow velocity `noise - latents`, the loss is the MSE over valid frames. Whole samples lose
their inputs with probability `action_dropout` (classifier-free guidance on the actions). A two-player model
(`model_overrides: {num_players: 2}`, on a dataset recorded with `--two-player`) sees both players' inputs, and each
player's inputs are also dropped on their own with probability `player_action_dropout` (guidance per player).

Video VAEs (a dataset whose `temporal_compression_ratio` r > 1, encoded with `LTXVideoVAE` or `WanVAE`): one model
frame is one latent frame, r game frames; `window_length` and the validation frame counts count latent frames. The
dataset stores one input per game frame, and each latent frame's input is pooled from the inputs of its game frames
by `action_pooling` (`or`, `first` or `last`), which is saved in the pipeline so that generation pools the same way.
Validation decodes latent clips with the video VAE (`1 + k` latent frames → `1 + k·r` frames).

State: EMA weights; `checkpoint-N` folders written through accelerate's hooks as diffusers folders (never pickled
models), under a temporary name renamed when complete, at most `checkpoints_total_limit` kept.
`--resume_from_checkpoint latest` restores model, EMA, optimizer, LR schedule and the data position; the noise of
step N is a function of (seed, N, rank), so a resumed run continues exactly as an uninterrupted one. SIGTERM/SIGINT
write a checkpoint first. At the end, the EMA transformer, the VAE and the scheduler are saved as a pipeline in
`output_dir` (loadable with `TekkenWorldModelPipeline.from_pretrained(output_dir)`).
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# GNU OpenMP reads its wait policy once, when torch loads it: idle threads sleep rather than spin against a neighbour
# process (tekken_diffusers.runtime.configure_threads). A value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import DistributedDataParallelKwargs, ProjectConfiguration
from diffusers.optimization import SchedulerType, get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from tekken_diffusers import TekkenAutoencoderDC, TekkenFlowMatchScheduler, TekkenWorldModelPipeline
from tekken_diffusers.actions import ACTION_POOLING_MODES
from tekken_diffusers.data import LatentWindowDataset, WindowBatch, load_latent_dataset, load_latent_info
from tekken_diffusers.data.latents import check_action_pooling
from tekken_diffusers.evaluation.world_model import rollout_latents, score_frames, teacher_forced_next_frames
from tekken_diffusers.models import TRANSFORMER_PRESETS, TekkenWorldModelTransformer
from tekken_diffusers.models.growth import grow_transformer
from tekken_diffusers.models.transformer_tekken import prev_frame_prior
from tekken_diffusers.runtime import (
    COMPILE_CHOICES,
    compile_for_training,
    configure_threads,
    resolve_mixed_precision,
)
from tekken_diffusers.training_utils import (
    ConfigError,
    StopSignal,
    add_config_arguments,
    config_overrides,
    load_config,
    register_checkpoint_hooks,
    resolve_resume,
    resolve_trackers,
    resume_from_checkpoint,
    save_checkpoint,
    trim_loss_history,
)
from tekken_diffusers.utils import looks_like_local_path, move_into_place
from tekken_diffusers.visualization import compose_frames, write_contact_sheet, write_video

logger = logging.getLogger("train_world_model")

SIGMA_BUCKETS = (0.0, 0.25, 0.5, 0.75, 1.0)


@dataclass
class TrainWorldModelConfig:
    """Everything an experiment sets. YAML files in training/configs/ set a subset; the rest keep these defaults."""

    # Data
    dataset: str | None = field(default=None, metadata={"help": "latent dataset folder or Hub id (encode_latents.py)"})
    train_split: str = "train"
    val_split: str = "val"
    window_length: int = field(
        default=16, metadata={"help": "frames per training window (latent frames, for a video-VAE dataset)"}
    )
    action_pooling: str = field(
        default="or",
        metadata={
            "help": "video-VAE datasets (temporal compression r > 1): how the inputs of the r game frames behind a "
            f"latent frame become its input, one of {', '.join(ACTION_POOLING_MODES)} (or: a button pressed in any "
            "of them; first/last: the first or last frame's input); saved in the pipeline for generation"
        },
    )
    # Model
    preset: str = field(default="small", metadata={"help": f"transformer size: {', '.join(TRANSFORMER_PRESETS)}"})
    model_overrides: dict = field(default_factory=dict, metadata={"help": "transformer config values over the preset"})
    pretrained_transformer: str | None = field(default=None, metadata={"help": "start from these weights"})
    grow_num_layers: int | None = field(
        default=None,
        metadata={
            "help": "with pretrained_transformer: grow it to this many layers first (new blocks start as the "
            "identity, tekken_diffusers.models.growth)"
        },
    )
    grow_mlp_ratio: float | None = field(
        default=None,
        metadata={
            "help": "with pretrained_transformer: widen its MLPs to this multiple of the width first (new units "
            "start with zero output weights)"
        },
    )
    vae: str | None = field(
        default=None,
        metadata={"help": "VAE folder for validation frames and the final pipeline (default: the dataset's)"},
    )
    allow_vae_mismatch: bool = field(
        default=False,
        metadata={
            "help": "pair the transformer with a VAE whose weights differ from the one that encoded the dataset "
            "(same config); without it such a VAE is refused"
        },
    )
    # Objective
    logit_mean: float = 0.0
    logit_std: float = 1.0
    action_dropout: float = field(default=0.1, metadata={"help": "probability a sample trains without inputs (CFG)"})
    player_action_dropout: float = field(
        default=0.1,
        metadata={
            "help": "two-player models: probability that one player's inputs are dropped, each player on its own "
            "(per-player guidance); one-player models ignore it"
        },
    )
    context_prefix_prob: float = field(
        default=0.0, metadata={"help": "probability a sample's first frames sit at context_noise, as when sampling"}
    )
    teacher_forcing_prob: float = field(
        default=0.0,
        metadata={
            "help": "probability a step trains teacher-forced: every frame is a target seen against a low-noise copy "
            "of the frames before it, as when sampling (else the diffusion-forcing draw)"
        },
    )
    teacher_forcing_context_noise: float = field(
        default=0.2, metadata={"help": "teacher-forced context frames draw their noise level from U[0, this]"}
    )
    self_context_prob: float = field(
        default=0.0,
        metadata={
            "help": "teacher-forced steps: probability that a window's context frames are the model's own one-step "
            "predictions of them (from pure noise against the recorded frames before, no gradient) instead of the "
            "recorded frames, so it learns to correct its own errors (a fading boxer) as rollouts need"
        },
    )
    self_target_prob: float = field(
        default=0.0,
        metadata={
            "help": "teacher-forced steps: probability that a window's noisy targets are built around the model's own "
            "one-step estimate of each frame, (1 - sigma) * estimate + sigma * noise, with the noise it was estimated "
            "from (no gradient), as the later steps of multistep sampling see them; the loss still grades against the "
            "recorded frame, so those steps learn to correct the first estimate"
        },
    )
    target_sigma_shift: float = field(
        default=3.0,
        metadata={"help": "teacher-forced targets draw sigma = shift*u/(1+(shift-1)*u), u ~ U[0, 1], up to 1"},
    )
    context_frame_prob: float = field(
        default=0.0,
        metadata={
            "help": "diffusion-forcing steps: each frame is independently a context frame at a low noise level, "
            "U[0, teacher_forcing_context_noise], with this probability (a cheap middle ground to teacher forcing)"
        },
    )
    diffusion_forcing_sigmas: str = field(
        default="logit_normal",
        metadata={
            "help": "diffusion-forcing noise levels: logit_normal (the original's) or shifted_uniform (as targets)"
        },
    )
    shift: float = field(default=3.0, metadata={"help": "sampling schedule shift saved in the scheduler"})
    sigma_grid_shift: float | None = field(
        default=None,
        metadata={
            "help": "pins the scheduler's sigma grid (TekkenFlowMatchScheduler.sigma_grid_shift; None: diffusers' "
            "grid, built with `shift`): with shift 16, 3 ends 4 steps at sigma 0.046 instead of 0.204"
        },
    )
    context_noise: float = field(default=0.2, metadata={"help": "noise level of cached frames when sampling"})
    # Optimisation
    train_batch_size: int = field(default=16, metadata={"help": "windows per process and micro-step"})
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-4
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    adam_weight_decay: float = 0.01
    adam_epsilon: float = 1e-8
    lr_scheduler: str = "constant_with_warmup"
    lr_warmup_steps: int = 100
    max_grad_norm: float = 1.0
    max_train_steps: int = 1000
    max_train_minutes: float | None = field(
        default=None, metadata={"help": "also stop (and save the pipeline) after this much training time"}
    )
    mixed_precision: str = field(
        default="bf16",
        metadata={"help": "auto (bf16 where the CPU or GPU computes it natively, else no), no or bf16; never fp16"},
    )
    gradient_checkpointing: bool = False
    torch_compile: str = field(
        default="auto",
        metadata={
            "help": "compile each transformer block's training forward and backward with torch.compile: auto (where "
            "it works here: a C++ compiler on a CPU, Triton on a GPU; else eager), yes, or no"
        },
    )
    use_ema: bool = True
    ema_decay: float = 0.999
    seed: int = 0
    # Checkpoints and output
    output_dir: str = "outputs/world-model"
    checkpointing_steps: int = 500
    checkpoints_total_limit: int | None = 3
    resume_from_checkpoint: str | None = field(default=None, metadata={"help": "'latest' or a checkpoint-N folder"})
    push_to_hub: bool = False
    hub_model_id: str | None = None
    # Logging and validation
    report_to: str = field(default="tensorboard", metadata={"help": "tensorboard, wandb, all, auto or none"})
    tracker_project_name: str = "tekken-diffusers"
    logging_steps: int = 10
    validation_steps: int = field(default=250, metadata={"help": "validate every N steps (0: only at the end)"})
    num_validation_windows: int = 4
    validation_context_frames: int = 4
    validation_inference_steps: int = 4
    validation_video_frames: int = field(
        default=48, metadata={"help": "generated frames in the validation video (latent frames, for a video VAE)"}
    )

    def __post_init__(self) -> None:
        if self.preset not in TRANSFORMER_PRESETS:
            raise ValueError(f"preset {self.preset!r} is unknown; known presets: {', '.join(TRANSFORMER_PRESETS)}")
        if self.mixed_precision not in ("auto", "no", "bf16"):
            raise ValueError(
                "mixed_precision must be 'auto', 'no' or 'bf16' (fp16 is ~200x slower on CPU), got "
                f"{self.mixed_precision!r}"
            )
        if self.torch_compile not in COMPILE_CHOICES:
            raise ValueError(f"torch_compile must be one of {', '.join(COMPILE_CHOICES)}; got {self.torch_compile!r}")
        for name in ("window_length", "train_batch_size", "gradient_accumulation_steps", "max_train_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.window_length < 2:
            raise ValueError(f"window_length must be >= 2, got {self.window_length}")
        check_action_pooling(self.action_pooling)
        if self.diffusion_forcing_sigmas not in ("logit_normal", "shifted_uniform"):
            raise ValueError(
                "diffusion_forcing_sigmas must be 'logit_normal' or 'shifted_uniform', got "
                f"{self.diffusion_forcing_sigmas!r}"
            )
        for name in ("action_dropout", "player_action_dropout", "context_prefix_prob", "teacher_forcing_prob",
                     "context_frame_prob", "self_context_prob", "self_target_prob"):  # fmt: skip
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 0 <= self.teacher_forcing_context_noise < 1:
            raise ValueError(
                f"teacher_forcing_context_noise must lie in [0, 1), got {self.teacher_forcing_context_noise}"
            )
        if self.target_sigma_shift <= 0:
            raise ValueError(f"target_sigma_shift must be > 0, got {self.target_sigma_shift}")
        if not 1 <= self.validation_context_frames < self.window_length:
            raise ValueError(
                f"validation_context_frames must lie in [1, window_length - 1 = {self.window_length - 1}], "
                f"got {self.validation_context_frames}"
            )
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"checkpoints_total_limit must be >= 1 or null, got {self.checkpoints_total_limit}")
        for name in ("checkpointing_steps", "logging_steps", "num_validation_windows", "validation_inference_steps",
                     "validation_video_frames"):  # fmt: skip
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("validation_steps", "lr_warmup_steps"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("learning_rate", "adam_epsilon", "max_grad_norm", "shift", "logit_std"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        if not (np.isfinite(self.adam_weight_decay) and self.adam_weight_decay >= 0):
            raise ValueError(f"adam_weight_decay must be a finite number >= 0, got {self.adam_weight_decay}")
        for name in ("adam_beta1", "adam_beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}")
        if not 0 <= self.ema_decay <= 1:
            raise ValueError(f"ema_decay must lie in [0, 1], got {self.ema_decay}")
        if not 0 <= self.context_noise < 1:
            raise ValueError(f"context_noise must lie in [0, 1), got {self.context_noise}")
        if self.sigma_grid_shift is not None and not self.sigma_grid_shift > 0:
            raise ValueError(f"sigma_grid_shift must be > 0 or null, got {self.sigma_grid_shift}")
        if self.max_train_minutes is not None and not self.max_train_minutes > 0:
            raise ValueError(f"max_train_minutes must be > 0 or null, got {self.max_train_minutes}")
        if self.report_to not in ("tensorboard", "wandb", "all", "auto", "none"):
            raise ValueError(f"report_to must be one of tensorboard, wandb, all, auto, none; got {self.report_to!r}")
        schedulers = [kind.value for kind in SchedulerType]
        if self.lr_scheduler not in schedulers:
            raise ValueError(f"lr_scheduler {self.lr_scheduler!r} is unknown; known: {', '.join(schedulers)}")
        if (self.grow_num_layers is not None or self.grow_mlp_ratio is not None) and not self.pretrained_transformer:
            raise ValueError(
                "grow_num_layers / grow_mlp_ratio grow a trained model: they need pretrained_transformer (for a fresh "
                "model set num_layers / mlp_ratio in model_overrides)"
            )
        if self.grow_num_layers is not None and self.grow_num_layers < 1:
            raise ValueError(f"grow_num_layers must be >= 1 or null, got {self.grow_num_layers}")
        if self.grow_mlp_ratio is not None and not (np.isfinite(self.grow_mlp_ratio) and self.grow_mlp_ratio > 0):
            raise ValueError(f"grow_mlp_ratio must be a finite number > 0 or null, got {self.grow_mlp_ratio}")
        known = set(inspect.signature(TekkenWorldModelTransformer.__init__).parameters) - {"self"}
        unknown = sorted(set(self.model_overrides) - known)
        if unknown:
            raise ValueError(
                f"model_overrides: unknown transformer settings {unknown}; known: {', '.join(sorted(known))}"
            )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_world_model.py",
        description=__doc__.split("\n\n")[0] + " Settings come from --config and then from the options below.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default=None, help="YAML file of settings (training/configs/*.yaml)")
    add_config_arguments(parser, TrainWorldModelConfig)
    return parser


def parse_args(argv: list[str] | None = None) -> TrainWorldModelConfig:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(TrainWorldModelConfig, args.config, config_overrides(args, TrainWorldModelConfig))
    except ConfigError as error:
        parser.error(str(error))
    if config.dataset is None:
        parser.error("--dataset (or `dataset:` in the config) is required")
    if not Path(config.dataset).exists() and looks_like_local_path(config.dataset):
        parser.error(f"--dataset {config.dataset}: no such folder (nor a Hub dataset id of the form owner/name)")
    if config.vae is not None and not Path(config.vae).exists():
        parser.error(f"--vae {config.vae}: no such folder")
    if config.pretrained_transformer is not None and not Path(config.pretrained_transformer).exists():
        if looks_like_local_path(config.pretrained_transformer):
            parser.error(f"--pretrained_transformer {config.pretrained_transformer}: no such folder")
    output_dir = Path(config.output_dir)
    if any(parent.exists() and not parent.is_dir() for parent in (output_dir, *output_dir.parents)):
        parser.error(f"--output_dir {output_dir}: a file is in the way (expected a folder or nothing)")
    return config


def usage_error(message: str) -> SystemExit:
    """A user mistake found after parsing: one line on stderr and exit code 2, as argparse does."""
    build_parser().print_usage(sys.stderr)
    sys.stderr.write(f"train_world_model.py: error: {message}\n")
    return SystemExit(2)


# ---------------------------------------------------------------------------------------------------------------------
# Data: batches of window indices that depend only on (seed, epoch, position), so the data position can be restored.
# ---------------------------------------------------------------------------------------------------------------------
def window_batches(dataset: LatentWindowDataset, batch_size: int, seed: int, rank: int, world: int, start: int):
    """Yield this process's batches of window indices from micro-batch `start` on, forever.

    Epoch e shuffles all windows with a generator seeded by (seed, e); each process takes every `world`-th batch.
    """
    per_epoch = len(dataset) // (batch_size * world)
    if per_epoch == 0:
        raise ValueError(
            f"the training split has {len(dataset)} windows: fewer than one batch of {batch_size} per process "
            f"({world} processes); lower train_batch_size or window_length, or add rounds"
        )
    micro_batch = start
    while True:
        epoch, position = divmod(micro_batch, per_epoch)
        dataset.set_epoch(epoch)
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(seed * 1_000_003 + epoch))
        first = (position * world + rank) * batch_size
        yield order[first : first + batch_size].tolist()
        micro_batch += 1


def load_batch(dataset: LatentWindowDataset, indices: list[int]) -> WindowBatch:
    return WindowBatch.collate([dataset[index] for index in indices])


def step_generator(seed: int, step: int, rank: int, micro: int = 0) -> torch.Generator:
    """The noise of optimisation step `step`: a function of (seed, step, rank, micro-step) only."""
    return torch.Generator().manual_seed(((seed * 1_000_003 + step) * 1_009 + rank) * 101 + micro)


# ---------------------------------------------------------------------------------------------------------------------
# The training step
# ---------------------------------------------------------------------------------------------------------------------
def training_step(
    model: torch.nn.Module,
    scheduler: TekkenFlowMatchScheduler,
    batch: WindowBatch,
    config: TrainWorldModelConfig,
    generator: torch.Generator,
    device: torch.device,
    teacher_forcing: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Flow-matching loss of one batch, diffusion-forced or teacher-forced.

    - Diffusion forcing: every frame of the window gets its own logit-normal noise level (optionally a context prefix
      at `context_noise`), and the model sees the noisy window causally.
    - Teacher forcing (`teacher_forcing`, default: drawn with `teacher_forcing_prob`): every frame is a target at a
      noise level drawn over all of [0, 1] (shifted uniform, as the sampling schedule spends its steps), predicted from
      a copy of the frames before it at a low noise level, U[0, teacher_forcing_context_noise]: what the model sees
      when it denoises the next frame against its KV cache. With `self_context_prob`, a share of the windows take as
      context the model's own one-step predictions of their frames instead ([`own_predictions`]). With
      `self_target_prob`, a share of the windows noise their targets around the model's own one-step estimate made
      from the same noise, `(1 - sigma) * estimate + sigma * noise`: exactly what the second and later Euler steps of
      sampling feed the model (their input is the first estimate re-noised with the noise it came from), graded
      against the recorded frame; since the estimate's error does not vanish as sigma -> 0, those windows' x0 errors
      are weighed as at sigma = 1 (divided by `c_out(1)`) at every noise level.

    The loss: for `prediction_type="flow"` the MSE of the velocity `noise - latents`; for `"prev_frame_residual"` the
    MSE of the network's own output against its unit-variance target, i.e. the x0 error divided by `c_out(sigma)`
    (EDM's weighting), so every noise level weighs alike and none dominates through the target's scale.

    Returns:
        `(loss, per_frame_loss (B, T), sigmas (B, T))`; `loss` is the mean over valid frames.
    """
    latents = batch.latents.to(device, torch.float32)  # (B, T, C, h, w)
    batch_size, num_frames = latents.shape[:2]
    if teacher_forcing is None:
        teacher_forcing = bool(torch.rand(1, generator=generator) < config.teacher_forcing_prob)
    model_kwargs = {}
    # 1. Noise levels per frame
    if teacher_forcing:
        sigmas = target_sigmas(batch_size, num_frames, config.target_sigma_shift, generator).to(device)
        context_sigmas = torch.rand(batch_size, num_frames, generator=generator) * config.teacher_forcing_context_noise
        context_noise = torch.randn(latents.shape, generator=generator).to(device)
        context_sigmas = context_sigmas.to(device)
        context = scheduler.scale_noise(latents, context_sigmas, context_noise)
        if config.self_context_prob > 0:
            own = (torch.rand(batch_size, generator=generator) < config.self_context_prob).to(device)
            if own.any():
                predicted = own_predictions(
                    model, scheduler, context[own], context_sigmas[own], batch, own, generator, device
                )
                context = context.clone()
                context[own] = scheduler.scale_noise(predicted, context_sigmas[own], context_noise[own])
        model_kwargs["context_latents"] = context
        model_kwargs["context_sigmas"] = context_sigmas
    else:
        if config.diffusion_forcing_sigmas == "shifted_uniform":
            sigmas = target_sigmas(batch_size, num_frames, config.target_sigma_shift, generator).to(device)
        else:
            sigmas = scheduler.sample_training_sigmas(batch_size, num_frames, generator=generator).to(device)
        if config.context_frame_prob > 0:
            is_context = torch.rand(batch_size, num_frames, generator=generator) < config.context_frame_prob
            low = torch.rand(batch_size, num_frames, generator=generator) * config.teacher_forcing_context_noise
            sigmas = torch.where(is_context.to(device), low.to(device), sigmas)
        if config.context_prefix_prob > 0:
            use_prefix = torch.rand(batch_size, generator=generator) < config.context_prefix_prob
            prefix = torch.randint(1, num_frames, (batch_size,), generator=generator)
            in_prefix = (torch.arange(num_frames)[None] < prefix[:, None]) & use_prefix[:, None]
            sigmas = torch.where(in_prefix.to(device), torch.full_like(sigmas, config.context_noise), sigmas)
    # 2. Noise the latents
    noise = torch.randn(latents.shape, generator=generator).to(device)
    noisy = scheduler.scale_noise(latents, sigmas, noise)
    mine = torch.zeros(batch_size, dtype=torch.bool, device=device)  # windows whose targets sit around own estimates
    if teacher_forcing and config.self_target_prob > 0:
        mine = (torch.rand(batch_size, generator=generator) < config.self_target_prob).to(device)
        if mine.any():
            rows = (context[mine], context_sigmas[mine], batch, mine, generator, device)
            estimate = own_predictions(model, scheduler, *rows, noise=noise[mine])
            noisy = noisy.clone()
            noisy[mine] = scheduler.scale_noise(estimate, sigmas[mine], noise[mine])
    # 3. Classifier-free guidance: whole samples lose their inputs
    keep_actions = (torch.rand(batch_size, generator=generator) >= config.action_dropout).to(device)
    actions = batch.action_bits.to(device)
    # 3b. Two-player models only (one-player models skip this and draw nothing more): both players' bits (B, T, 2, 8),
    #     and each player's inputs also dropped on their own, so that guidance can act on one player (B, 2).
    if getattr(model_config(model), "num_players", 1) == 2:
        actions = batch.player_action_bits(2).to(device)
        keep_player = torch.rand(batch_size, 2, generator=generator) >= config.player_action_dropout
        keep_actions = keep_actions[:, None] & keep_player.to(device)
    outputs = model(
        noisy,
        sigmas,
        actions=actions,
        action_mask=keep_actions,
        return_dict=False,
        **model_kwargs,
    )
    # 4. Per-frame MSE in the parameterisation's own units, averaged over the valid frames
    if len(outputs) > 1:  # prev_frame_residual: x0 error / c_out
        _, c_out = prev_frame_prior(sigmas, model_config(model).prev_frame_variance)
        # Around an own estimate the clean frame is not recoverable as sigma -> 0 (the estimate's error stays), so
        # those windows weigh every noise level as sigma = 1 does: the x0 error / c_out(1), not / c_out(sigma) -> 0.
        _, c_out_one = prev_frame_prior(torch.ones_like(sigmas), model_config(model).prev_frame_variance)
        c_out = torch.where(mine[:, None], c_out_one, c_out)
        error = (outputs[1].float() - latents) / c_out.clamp_min(1e-4)[:, :, None, None, None]
    else:
        error = outputs[0].float() - scheduler.get_velocity_target(latents, noise).float()
    per_frame = error.square().mean(dim=(2, 3, 4))  # (B, T)
    valid = batch.valid.to(device).float()
    loss = (per_frame * valid).sum() / valid.sum().clamp_min(1.0)
    return loss, per_frame.detach(), sigmas.detach()


@torch.no_grad()
def own_predictions(
    model: torch.nn.Module,
    scheduler: TekkenFlowMatchScheduler,
    context: torch.Tensor,
    context_sigmas: torch.Tensor,
    batch: WindowBatch,
    rows: torch.Tensor,
    generator: torch.Generator,
    device: torch.device,
    noise: torch.Tensor | None = None,
) -> torch.Tensor:
    """The model's one-step, teacher-forced predictions of every frame of some windows `(n, T, C, h, w)`: each frame
    denoised from pure noise (sigma 1, what 1-step sampling does) against the noised recorded frames before it, under
    the recorded inputs. No gradient flows through them: they stand in for the frames a rollout feeds back, or for
    the first estimate that multistep sampling refines.

    Args:
        context: the noised recorded latents of the chosen windows `(n, T, C, h, w)`, at `context_sigmas` `(n, T)`.
        batch: the whole batch; `rows` `(B,)` bool picks the chosen windows' inputs.
        noise: the pure noise to start from (drawn from `generator` when not given).
    """
    if noise is None:
        noise = torch.randn(context.shape, generator=generator).to(device)
    sigmas = torch.ones(context.shape[:2], device=device)
    actions = batch.action_bits.to(device)
    if getattr(model_config(model), "num_players", 1) == 2:
        actions = batch.player_action_bits(2).to(device)
    outputs = model(
        noise, sigmas, actions=actions[rows], context_latents=context, context_sigmas=context_sigmas, return_dict=False
    )
    if len(outputs) > 1:  # prev_frame_residual: the clean estimate comes with the output
        return outputs[1].float()
    return scheduler.step_per_frame(outputs[0].float(), sigmas, noise, torch.zeros_like(sigmas)).prev_sample


def target_sigmas(batch_size: int, num_frames: int, shift: float, generator: torch.Generator) -> torch.Tensor:
    """Noise levels of frames to predict, `(B, T)`: `shift * u / (1 + (shift - 1) * u)`, `u ~ U[0, 1]`, the density of
    the sampling schedule with the same shift (with shift 3, a quarter of the draws lie above 0.9)."""
    uniform = torch.rand(batch_size, num_frames, generator=generator)
    return shift * uniform / (1 + (shift - 1) * uniform)


def model_config(model: torch.nn.Module):
    """The transformer's config, through a DDP/compile wrapper if there is one."""
    return getattr(model, "module", model).config


def sigma_bucket_losses(per_frame: torch.Tensor, sigmas: torch.Tensor) -> dict[str, float]:
    """Mean loss per noise-level bucket (how well the model denoises at each level)."""
    out = {}
    for low, high in zip(SIGMA_BUCKETS[:-1], SIGMA_BUCKETS[1:]):
        inside = (sigmas >= low) & (sigmas < high if high < 1 else sigmas <= high)
        if inside.any():
            out[f"loss_sigma_{low:.2f}-{high:.2f}"] = float(per_frame[inside].mean())
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------------------------------
@torch.no_grad()
def validate(
    pipe: TekkenWorldModelPipeline,
    val_windows: LatentWindowDataset,
    video_windows: LatentWindowDataset | None,
    config: TrainWorldModelConfig,
    step: int,
) -> tuple[dict[str, float], Path | None]:
    """Held-out loss, teacher-forced next-frame PSNR/SSIM against copy-last-frame, and a rollout video under held-out
    inputs. Deterministic: the same weights give the same numbers at every call."""
    transformer = pipe.transformer
    transformer.eval()
    num_players = pipe.num_players
    count = min(config.num_validation_windows, len(val_windows))
    indices = np.linspace(0, len(val_windows) - 1, count).round().astype(int).tolist()
    batch = load_batch(val_windows, indices)
    metrics: dict[str, float] = {}
    # 1. Held-out loss at fixed noise
    fixed = dataclasses.replace(config, action_dropout=0.0, context_prefix_prob=0.0)
    loss, per_frame, sigmas = training_step(
        transformer, pipe.scheduler, batch, fixed, torch.Generator().manual_seed(1234), pipe._execution_device,
        teacher_forcing=config.teacher_forcing_prob >= 0.5,
    )  # fmt: skip
    metrics["val_loss"] = float(loss)
    metrics.update({f"val_{k}": v for k, v in sigma_bucket_losses(per_frame, sigmas).items()})
    video_path = None
    if pipe.vae is not None:
        # 2. Teacher-forced next frame, beside the copy-last-frame baseline
        predicted = teacher_forced_next_frames(
            pipe, batch.latents, batch.player_action_bits(num_players), config.validation_context_frames,
            config.validation_inference_steps, generator=torch.Generator().manual_seed(4321),
        )  # fmt: skip
        scores = score_frames(pipe, predicted, batch.latents.float(), config.validation_context_frames)
        metrics.update({f"teacher_forced_{k}": v for k, v in scores.summary().items()})
        # 3. Open-loop rollout under the held-out inputs, written as a video beside the truth
        if video_windows is not None:
            window = load_batch(video_windows, [0])
            context = config.validation_context_frames
            actions_p2 = None if window.actions_p2 is None else window.actions_p2[0, context:].numpy()
            actions = window.actions[0, context:].numpy()
            generated = rollout_latents(
                pipe, window.latents.float(), window.player_action_bits(num_players), context,
                config.validation_inference_steps,
                generator=torch.Generator().manual_seed(99),
            )  # fmt: skip
            # Decoded after the context: a video VAE decodes a latent frame in the light of the ones before it, to r
            # game frames (r = 1 for a per-frame VAE), so each latent frame's input is drawn under its r frames.
            ratio = pipe.temporal_compression_ratio
            context_latents = window.latents[:, :context].float()
            truth = pipe.decode_after(context_latents, window.latents[:, context:].float())[0].permute(1, 0, 2, 3)
            frames = pipe.decode_after(context_latents, generated)[0].permute(1, 0, 2, 3)  # (N·r, 3, H, W)
            to_uint8 = lambda x: ((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).cpu().numpy()  # noqa: E731
            canvas = compose_frames(
                [to_uint8(frames), to_uint8(truth)], np.repeat(actions, ratio).astype(np.uint8),
                titles=["generated", "recorded"], scale=3,
                actions_p2=None if actions_p2 is None else np.repeat(actions_p2, ratio).astype(np.uint8),
            )  # fmt: skip
            folder = Path(config.output_dir) / "validation"
            video_path = write_video(folder / f"step-{step:07d}.mp4", canvas, fps=15)
            write_contact_sheet(folder / f"step-{step:07d}.png", canvas, columns=8, every=max(1, len(canvas) // 16))
    transformer.train()
    return metrics, video_path


def log_video(accelerator: Accelerator, path: Path, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "wandb":
            import wandb

            tracker.log({"rollout": wandb.Video(str(path), format="mp4")}, step=step)
        elif tracker.name == "tensorboard":
            from PIL import Image

            sheet = np.asarray(Image.open(path.with_suffix(".png")))
            tracker.writer.add_image("rollout", sheet, step, dataformats="HWC")


# ---------------------------------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------------------------------
def build_transformer(
    config: TrainWorldModelConfig, latent_shape: tuple[int, int, int]
) -> TekkenWorldModelTransformer:
    channels, height, width = latent_shape
    if config.pretrained_transformer:
        model = TekkenWorldModelTransformer.from_pretrained(config.pretrained_transformer, low_cpu_mem_usage=True)
        if config.grow_num_layers is not None or config.grow_mlp_ratio is not None:
            model = grow_transformer(model, num_layers=config.grow_num_layers, mlp_ratio=config.grow_mlp_ratio)
    else:
        overrides = {"in_channels": channels, "sample_size": (height, width), **config.model_overrides}
        torch.manual_seed(config.seed)
        model = TekkenWorldModelTransformer.from_preset(config.preset, **overrides)
    if (model.config.in_channels, *model.config.sample_size) != (channels, height, width):
        raise ValueError(
            f"the transformer takes {model.config.in_channels}x{tuple(model.config.sample_size)} latents but the "
            f"dataset has {channels}x{(height, width)}"
        )
    return model


def resolve_vae(config: TrainWorldModelConfig, info) -> TekkenAutoencoderDC | None:
    """The VAE saved with the pipeline: `config.vae`, else the one the dataset records if it is still there.

    Raises:
        ValueError: when it is not the VAE that encoded the dataset (config, normalisation, or weights unless
            `allow_vae_mismatch`), or `config.vae` is not a loadable VAE folder.
    """
    source = config.vae or (info.vae.source if info.vae is not None else None)
    if source is None or (config.vae is None and not Path(source).exists()):
        logger.warning(
            "no VAE found (vae=%s): validation reports losses only and the pipeline works on latents", source
        )
        return None
    from tekken_diffusers.cli.encode_latents import load_vae

    try:
        vae = load_vae(source)
    except (OSError, ValueError) as error:
        raise ValueError(f"--vae {source}: not a loadable VAE ({error})") from None
    try:
        info.check_vae(vae, check_weights=True)  # the latents must come from this VAE with this normalisation
    except ValueError as error:
        weights_only = info.vae is not None and "weights_hash" in str(error)
        weights_only = weights_only and str(error).count("\n") == 1
        if not (weights_only and config.allow_vae_mismatch):
            hint = " (pass --allow_vae_mismatch to pair them anyway)" if weights_only else ""
            raise ValueError(f"--vae {source}: {error}{hint}".replace("\n  ", " ")) from None
        logger.warning("%s; kept because of allow_vae_mismatch", str(error).replace("\n  ", " "))
    return vae.eval()


def checkpoint_mismatch(checkpoint: Path, model: TekkenWorldModelTransformer) -> str | None:
    """Why `checkpoint` cannot resume this run (another architecture, or not a checkpoint), or None."""
    path = checkpoint / "transformer" / "config.json"
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        return f"{path} is missing or unreadable ({error}): not a checkpoint of this script"
    current = json.loads(model.to_json_string())
    differing = sorted(k for k in current if not k.startswith("_") and k in saved and saved[k] != current[k])
    if differing:
        details = "; ".join(f"{k}: checkpoint {saved[k]!r}, this run {current[k]!r}" for k in differing)
        return f"it holds another transformer ({details}); resume with the settings it was trained with"
    return None


def main(argv: list[str] | None = None) -> dict[str, float]:
    config = parse_args(argv)
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO, datefmt="%H:%M:%S"
    )
    output_dir = Path(config.output_dir)
    try:
        resume_path = resolve_resume(config.resume_from_checkpoint, output_dir)
        trackers = resolve_trackers(config.report_to)
    except (FileNotFoundError, ValueError, ImportError) as error:
        raise usage_error(str(error)) from None

    # 1. Threads and precision for this machine (before the first heavy torch op), accelerator, trackers
    try:
        configure_threads()
        mixed_precision = resolve_mixed_precision(config.mixed_precision)
    except ValueError as error:
        raise usage_error(str(error)) from None
    logger.info("mixed_precision %s -> %s", config.mixed_precision, mixed_precision)
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=mixed_precision,
        log_with=trackers or None,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=False)],
    )
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched != accelerator.num_processes:
        raise RuntimeError(
            f"{launched} processes were launched but each trains alone (accelerate sees {accelerator.num_processes}): "
            "for DDP on CPUs launch with `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes N` "
            "(see accelerate_configs/cpu_2proc.yaml)"
        )
    if accelerator.is_main_process:
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / "train_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))

    # 2. Data, and the VAE that encoded it
    try:
        info = load_latent_info(config.dataset)
        train_windows = LatentWindowDataset(
            load_latent_dataset(config.dataset, split=config.train_split), config.window_length, seed=config.seed,
            action_pooling=config.action_pooling,
        )  # fmt: skip
    except (FileNotFoundError, ValueError) as error:
        raise usage_error(f"--dataset {config.dataset}: {error}") from None
    if info.temporal_compression_ratio > 1:
        logger.info(
            "the dataset's VAE compresses time by %d: one model frame is one latent frame of %d game frames, whose "
            "inputs are pooled with action_pooling=%s",
            info.temporal_compression_ratio, info.temporal_compression_ratio, config.action_pooling,
        )  # fmt: skip
    needed = config.train_batch_size * accelerator.num_processes
    if len(train_windows) < needed:
        raise usage_error(
            f"--train_batch_size {config.train_batch_size}: the {config.train_split} split has {len(train_windows)} "
            f"windows of {config.window_length} frames, fewer than one batch ({needed} over "
            f"{accelerator.num_processes} processes); lower train_batch_size or window_length, or add rounds"
        )
    try:
        vae = resolve_vae(config, info) if accelerator.is_main_process else None
    except ValueError as error:
        raise usage_error(str(error)) from None
    val_windows = video_windows = None
    try:
        val_split = load_latent_dataset(config.dataset, split=config.val_split)
    except ValueError as error:
        logger.warning("no validation split (%s): validation is skipped", error)
    else:
        pooling = config.action_pooling
        val_windows = LatentWindowDataset(val_split, config.window_length, random_offset=False, action_pooling=pooling)
        video_length = config.validation_context_frames + config.validation_video_frames
        try:
            video_windows = LatentWindowDataset(val_split, video_length, random_offset=False, action_pooling=pooling)
        except ValueError:
            video_windows = val_windows  # rounds shorter than the video: use the validation window itself

    # 3. Model, EMA, optimizer, LR schedule, scheduler
    try:
        model = build_transformer(config, info.latent_shape)
    except (OSError, TypeError, ValueError) as error:
        raise usage_error(
            f"the transformer (preset {config.preset}, model_overrides {config.model_overrides}): {error}"
        ) from None
    if model.config.num_players == 2 and not info.has_actions_p2:
        raise usage_error(
            f"--dataset {config.dataset}: a two-player model (num_players=2) needs player 2's inputs (actions_p2), "
            "and this dataset has none: record with --two-player and encode those rounds"
        )
    if config.gradient_checkpointing:
        model.enable_gradient_checkpointing()
    model.train()
    try:
        compiled = compile_for_training(model.transformer_blocks, config.torch_compile, accelerator.device)
    except RuntimeError as error:
        raise usage_error(f"torch_compile: {error}") from None
    logger.info("transformer blocks %s", "compiled (torch.compile) for training steps" if compiled else "eager")
    ema = None
    if config.use_ema:
        ema = EMAModel(
            model.parameters(),
            decay=config.ema_decay,
            model_cls=TekkenWorldModelTransformer,
            model_config=model.config,
        )
    noise_scheduler = TekkenFlowMatchScheduler(
        shift=config.shift,
        logit_mean=config.logit_mean,
        logit_std=config.logit_std,
        context_noise=config.context_noise,
        # The saved pipeline samples, by default, with the step count it was validated with.
        default_inference_steps=config.validation_inference_steps,
        sigma_grid_shift=config.sigma_grid_shift,
    )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay, eps=config.adam_epsilon,
    )  # fmt: skip
    lr_scheduler = get_scheduler(
        config.lr_scheduler, optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_train_steps * accelerator.num_processes,
    )  # fmt: skip

    # 4. Checkpoints are diffusers folders: transformer/, and transformer_ema/ with the EMA weights
    register_checkpoint_hooks(accelerator, TekkenWorldModelTransformer, "transformer", ema)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)

    # 5. Resume: weights, EMA, optimizer and LR schedule from the checkpoint; the data position from its step
    if resume_path is not None:
        problem = checkpoint_mismatch(resume_path, accelerator.unwrap_model(model))
        if problem:
            raise usage_error(f"--resume_from_checkpoint {resume_path}: {problem}")
    global_step = resume_from_checkpoint(accelerator, resume_path)
    if resume_path is not None and accelerator.is_main_process:
        trim_loss_history(output_dir / "loss_history.jsonl", global_step)  # the steps after it are run again
    if trackers:
        tracker_config = {k: v if isinstance(v, (int, float, str, bool)) else str(v)
                          for k, v in dataclasses.asdict(config).items()}  # fmt: skip
        accelerator.init_trackers(config.tracker_project_name, config=tracker_config)

    batches: Iterator[list[int]] = window_batches(
        train_windows, config.train_batch_size, config.seed, accelerator.process_index, accelerator.num_processes,
        start=global_step * config.gradient_accumulation_steps,
    )  # fmt: skip
    unwrapped = accelerator.unwrap_model(model)
    patch = unwrapped.config.patch_size
    tokens_per_frame = (unwrapped.config.sample_size[0] // patch) * (unwrapped.config.sample_size[1] // patch)
    tokens_per_step = (
        tokens_per_frame * config.window_length * config.train_batch_size
        * config.gradient_accumulation_steps * accelerator.num_processes
    )  # fmt: skip
    logger.info(
        "training %s (%.1f M parameters) on %d windows of %d frames, %d tokens/frame, %d processes",
        config.preset, sum(p.numel() for p in unwrapped.parameters()) / 1e6, len(train_windows),
        config.window_length, tokens_per_frame, accelerator.num_processes,
    )  # fmt: skip

    def make_pipeline(vae) -> TekkenWorldModelPipeline:
        pipe = TekkenWorldModelPipeline(
            transformer=unwrapped, scheduler=noise_scheduler, vae=vae, action_pooling=config.action_pooling
        )
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def run_validation(step: int) -> dict[str, float]:
        if val_windows is None or not accelerator.is_main_process:
            return {}
        if ema is not None:
            ema.store(unwrapped.parameters())
            ema.copy_to(unwrapped.parameters())
        metrics, video = validate(make_pipeline(vae), val_windows, video_windows, config, step)
        if ema is not None:
            ema.restore(unwrapped.parameters())
        accelerator.log(metrics, step=step)
        if video is not None:
            log_video(accelerator, video, step)
        logger.info("step %d validation: %s", step, ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
        return metrics

    # 6. Train
    stop = StopSignal()
    progress = tqdm(
        total=config.max_train_steps, initial=global_step, desc="steps", disable=not accelerator.is_local_main_process
    )
    interval_start, interval_losses, last_metrics = time.perf_counter(), [], {}
    deadline = None if config.max_train_minutes is None else time.monotonic() + 60 * config.max_train_minutes
    bucket_sums: dict[str, list[float]] = {}
    while global_step < config.max_train_steps:
        step_losses = []
        for micro in range(config.gradient_accumulation_steps):
            batch = load_batch(train_windows, next(batches))
            generator = step_generator(config.seed, global_step, accelerator.process_index, micro)
            with accelerator.accumulate(model):
                loss, per_frame, sigmas = training_step(
                    model, noise_scheduler, batch, config, generator, accelerator.device
                )
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            step_losses.append(float(loss.detach()))
            for key, value in sigma_bucket_losses(per_frame, sigmas).items():
                bucket_sums.setdefault(key, []).append(value)
        # The logged loss is the mean over micro-steps and processes (not the sum: the original's loss was inflated).
        step_loss = float(accelerator.reduce(torch.tensor(np.mean(step_losses), device=accelerator.device), "mean"))
        if ema is not None:
            ema.step(unwrapped.parameters())
        global_step += 1
        progress.update(1)
        interval_losses.append(step_loss)
        if accelerator.is_main_process:
            with open(output_dir / "loss_history.jsonl", "a") as handle:
                handle.write(json.dumps({"step": global_step, "loss": step_loss}) + "\n")

        if global_step % config.logging_steps == 0 or global_step == config.max_train_steps:
            elapsed = time.perf_counter() - interval_start
            logs = {
                "loss": float(np.mean(interval_losses)),
                "lr": lr_scheduler.get_last_lr()[0],
                "grad_norm": float(grad_norm),
                "tokens_per_second": tokens_per_step * len(interval_losses) / elapsed,
                "frames_per_second": tokens_per_step / tokens_per_frame * len(interval_losses) / elapsed,
            }
            logs.update({key: float(np.mean(values)) for key, values in bucket_sums.items()})
            accelerator.log(logs, step=global_step)
            progress.set_postfix(loss=f"{logs['loss']:.4f}", tok_s=f"{logs['tokens_per_second']:.0f}")
            interval_start, interval_losses, bucket_sums = time.perf_counter(), [], {}

        if config.validation_steps and global_step % config.validation_steps == 0:
            last_metrics = run_validation(global_step) or last_metrics
            accelerator.wait_for_everyone()
        stopping = stop.received is not None
        if global_step % config.checkpointing_steps == 0 or stopping:
            save_checkpoint(accelerator, output_dir, global_step, config.checkpoints_total_limit)
        if stopping:
            logger.warning("stopped by signal at step %d; resume with --resume_from_checkpoint latest", global_step)
            accelerator.end_training()
            return {"stopped_at": global_step}
        # The time budget ends training on every process at the same step (the main process decides).
        out_of_time = torch.tensor(float(deadline is not None and time.monotonic() > deadline))
        if float(accelerator.reduce(out_of_time.to(accelerator.device), "max")) > 0:
            logger.info("max_train_minutes=%s reached at step %d", config.max_train_minutes, global_step)
            break
    progress.close()
    stop.restore()

    # 7. Check that every process ended with the same weights (DDP keeps them in sync; a mismatch is a bug)
    checksum = torch.stack([sum(p.detach().double().sum() for p in unwrapped.parameters()),
                            sum(p.detach().double().pow(2).sum() for p in unwrapped.parameters())])  # fmt: skip
    checksums = accelerator.gather(checksum.to(accelerator.device)[None]).cpu()  # (processes, 2)
    if not torch.equal(checksums, checksums[:1].expand_as(checksums)):
        raise RuntimeError(f"the processes' weights diverged: checksums {checksums.tolist()}")

    # 8. Save the final pipeline: EMA transformer + VAE + scheduler, with a model card
    accelerator.wait_for_everyone()
    if global_step % config.checkpointing_steps:
        save_checkpoint(accelerator, output_dir, global_step, config.checkpoints_total_limit)
    if accelerator.is_main_process:
        if not config.validation_steps or global_step % config.validation_steps:
            last_metrics = run_validation(global_step) or last_metrics
        if ema is not None:
            ema.copy_to(unwrapped.parameters())
        pipe = make_pipeline(vae)
        save_final_pipeline(pipe, output_dir, config, global_step, last_metrics, info)
        summary = {"steps": global_step, "num_processes": accelerator.num_processes,
                   "weight_checksums": checksums.tolist(), "validation": last_metrics}  # fmt: skip
        (output_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    accelerator.end_training()
    return last_metrics


def save_final_pipeline(pipe, output_dir: Path, config, global_step: int, metrics: dict[str, float], info) -> None:
    """Write the pipeline's folders into `output_dir` (each component atomically) with a model card."""
    card = pipe.default_model_card() + MODEL_CARD_TRAINING.format(
        dataset=config.dataset, steps=global_step, preset=config.preset, window=config.window_length,
        batch=config.train_batch_size * config.gradient_accumulation_steps, lr=config.learning_rate,
        metrics="\n".join(f"| {k} | {v:.4f} |" for k, v in sorted(metrics.items())) or "| (no validation split) | |",
        rounds=info.splits[config.train_split].rounds if config.train_split in info.splits else "?",
    )  # fmt: skip
    # The folder also holds checkpoints and logs, so the pipeline is staged beside them and each of its files and
    # component folders is then moved into place, replacing the previous one.
    with tempfile.TemporaryDirectory(prefix=".pipeline.", suffix=".tmp", dir=output_dir) as staging:
        pipe.save_pretrained(staging, model_card=card)
        for item in sorted(Path(staging).iterdir()):
            move_into_place(item, output_dir / item.name)
    logger.info("saved the pipeline to %s", output_dir)
    if config.push_to_hub:
        pipe.save_pretrained(output_dir, push_to_hub=True, repo_id=config.hub_model_id or output_dir.name,
                             model_card=card)  # fmt: skip


MODEL_CARD_TRAINING = """
## Training

Trained with `training/train_world_model.py` on `{dataset}` ({rounds} training rounds): preset `{preset}`,
{steps} steps, windows of {window} frames, global batch {batch}, learning rate {lr}. The transformer holds the EMA
weights.

| held-out metric (last validation) | value |
|---|---|
{metrics}
"""


if __name__ == "__main__":
    main()
