#!/usr/bin/env python
"""Train the per-frame DC-AE (`TekkenAutoencoderDC`) on the frames of recorded rounds.

    accelerate launch training/train_vae.py --data_dir data/boxing --output_dir outputs/boxing-dcae
    python training/train_vae.py --data_dir data/boxing --output_dir outputs/boxing-dcae --max_train_steps 2000

`--data_dir` holds `train/` and `val/` folders of round `.npz` files (`scripts/record_atari.py` writes them). Every
valid frame of every training round is held in memory as uint8 and batches are drawn at random. The loss is MSE (plus
optional L1 and an image-gradient L1 that sharpens edges) on pixels in [-1, 1]; the original's LPIPS needs downloaded
weights and is left out.

Outputs in `--output_dir`:
- `checkpoint-N/`: accelerate state with the model as diffusers folders (`vae/`, `vae_ema/`); written under a
  temporary name and renamed when complete. `--resume_from_checkpoint latest` continues from the newest one, and the
  run is then identical to an uninterrupted one (batches are a function of the seed and the step).
- `vae/`: the final model (EMA weights) with the per-channel latent statistics measured on the training frames
  written into its config (`latents_mean`, `latents_std`), loadable with `TekkenAutoencoderDC.from_pretrained`.
- `final_metrics.json`: held-out PSNR / SSIM (uint8 RGB frames of `val/`), step count, wall time.
- `reconstructions.png`: held-out frames (top) and their reconstructions (bottom).
- `logs/`: tensorboard or wandb (offline unless WANDB_MODE says otherwise) with losses and reconstruction images.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import ProjectConfiguration, set_seed
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from PIL import Image
from tqdm.auto import tqdm

from tekken_diffusers.data.frames import frames_to_pixels, pixels_to_frames
from tekken_diffusers.data.pose import load_pose_channel
from tekken_diffusers.data.rounds import list_rounds, load_round
from tekken_diffusers.evaluation.metrics import psnr, ssim
from tekken_diffusers.models.autoencoders import TekkenAutoencoderDC
from tekken_diffusers.training_utils import (
    ConfigError,
    add_config_arguments,
    config_overrides,
    load_config,
    register_checkpoint_hooks,
    resolve_resume,
    resolve_trackers,
    resume_from_checkpoint,
    save_checkpoint,
    save_pretrained_atomically,
)

logger = get_logger(__name__)

REPORT_TO_CHOICES = ("auto", "tensorboard", "wandb", "all", "none")


@dataclass
class TrainVAEConfig:
    """Everything one `train_vae.py` run depends on (the command line, or a YAML file with these keys)."""

    # Data
    data_dir: str | None = field(default=None, metadata={"help": "folder with train/ and val/ round .npz files"})
    output_dir: str = field(default="outputs/dcae", metadata={"help": "checkpoints, logs and the final vae/ folder"})
    pose_dir: str | None = field(
        default=None, metadata={"help": "folder of {round}_two_player_poses.npz: train a 4-channel RGB + pose VAE"}
    )
    # Model: a pretrained folder / Hub id (TekkenAutoencoderDC or diffusers AutoencoderDC), or a new one from these
    pretrained_model_name_or_path: str | None = field(
        default=None, metadata={"help": "start from this TekkenAutoencoderDC / AutoencoderDC"}
    )
    latent_channels: int = field(default=16, metadata={"help": "latent channels of a new model"})
    block_out_channels: list[int] = field(
        default_factory=lambda: [16, 32, 64, 128], metadata={"help": "stage widths; each stage halves H and W"}
    )
    encoder_layers_per_block: list[int] = field(
        default_factory=lambda: [1, 1, 2, 2], metadata={"help": "residual blocks per encoder stage"}
    )
    decoder_layers_per_block: list[int] = field(
        default_factory=lambda: [1, 2, 2, 2], metadata={"help": "residual blocks per decoder stage"}
    )
    # Optimisation
    max_train_steps: int = field(default=5000, metadata={"help": "optimizer steps in total (a resumed run counts on)"})
    train_batch_size: int = field(default=32, metadata={"help": "frames per process per micro-step"})
    gradient_accumulation_steps: int = field(default=1, metadata={"help": "micro-steps per optimizer step"})
    learning_rate: float = field(default=1e-3, metadata={"help": "peak AdamW learning rate"})
    lr_scheduler: str = field(
        default="cosine", metadata={"help": "diffusers scheduler name: constant, cosine, linear, ..."}
    )
    lr_warmup_steps: int = field(default=200, metadata={"help": "linear warmup steps"})
    adam_beta1: float = 0.9
    adam_beta2: float = 0.99
    adam_weight_decay: float = 1e-4
    max_grad_norm: float = field(default=1.0, metadata={"help": "gradient clipping norm"})
    mse_weight: float = field(default=1.0, metadata={"help": "weight of the pixel MSE"})
    l1_weight: float = field(default=0.0, metadata={"help": "weight of the pixel L1"})
    gradient_weight: float = field(default=0.0, metadata={"help": "weight of the L1 between image gradients (edges)"})
    use_ema: bool = field(default=True, metadata={"help": "keep an EMA of the weights"})
    ema_max_decay: float = field(default=0.999, metadata={"help": "EMA decay ceiling (the decay warms up to it)"})
    mixed_precision: str = field(default="no", metadata={"help": "no, bf16 or fp16 (never fp16 on a CPU)"})
    seed: int = field(default=0, metadata={"help": "seeds the weights and the batch order"})
    # Checkpoints, validation, logging
    checkpointing_steps: int = field(default=1000, metadata={"help": "save checkpoint-N every this many steps"})
    checkpoints_total_limit: int | None = field(default=2, metadata={"help": "keep at most this many checkpoints"})
    resume_from_checkpoint: str | None = field(
        default=None, metadata={"help": "a checkpoint-N folder, or 'latest' in --output_dir"}
    )
    validation_steps: int = field(
        default=500, metadata={"help": "log held-out PSNR/SSIM and images every this many steps"}
    )
    num_validation_frames: int = field(default=256, metadata={"help": "held-out frames scored at each validation"})
    num_image_frames: int = field(default=8, metadata={"help": "frames in the logged reconstruction image"})
    eval_batch_size: int = field(default=256, metadata={"help": "frames per forward pass when scoring"})
    stats_max_frames: int = field(default=20000, metadata={"help": "training frames used to measure latent mean/std"})
    eval_max_frames: int | None = field(
        default=None, metadata={"help": "held-out frames in the final score (default: all)"}
    )
    report_to: str = field(
        default="auto",
        metadata={"help": f"{', '.join(REPORT_TO_CHOICES)}; auto: wandb if installed, else tensorboard"},
    )
    tracker_project_name: str = field(default="tekken-dcae", metadata={"help": "tracker project / run group"})
    show_progress: bool = field(default=True, metadata={"help": "progress bar"})

    def __post_init__(self) -> None:
        positive = ("max_train_steps", "train_batch_size", "gradient_accumulation_steps", "checkpointing_steps")
        for name in (*positive, "validation_steps", "eval_batch_size", "latent_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ValueError(f"mixed_precision must be one of no, bf16, fp16; got {self.mixed_precision!r}")
        if self.report_to not in REPORT_TO_CHOICES:
            raise ValueError(f"report_to must be one of {', '.join(REPORT_TO_CHOICES)}; got {self.report_to!r}")
        stages = {len(self.block_out_channels), len(self.encoder_layers_per_block), len(self.decoder_layers_per_block)}
        if len(stages) != 1:
            raise ValueError(
                f"block_out_channels {self.block_out_channels}, encoder_layers_per_block "
                f"{self.encoder_layers_per_block} and decoder_layers_per_block {self.decoder_layers_per_block} "
                "must have one entry per stage"
            )
        if min(self.mse_weight, self.l1_weight, self.gradient_weight) < 0 or not (
            self.mse_weight or self.l1_weight or self.gradient_weight
        ):
            raise ValueError("loss weights must be non-negative and at least one must be positive")
        if self.checkpoints_total_limit is not None and self.checkpoints_total_limit < 1:
            raise ValueError(f"checkpoints_total_limit must be at least 1 or None, got {self.checkpoints_total_limit}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_vae.py",
        description=__doc__.split("\n\n")[0] + " Checkpoints are diffusers folders and resume exactly. Settings come "
        "from --config and then from the options below.",
    )
    parser.add_argument("--config", help="YAML file whose keys are any of the options below (command line wins)")
    add_config_arguments(parser, TrainVAEConfig)
    return parser


def parse_args(argv: list[str] | None = None) -> TrainVAEConfig:
    """Command line (optionally on top of `--config file.yaml`) → `TrainVAEConfig`.

    Raises:
        ValueError: for a setting the config does not have, or a value it refuses (`ConfigError`).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = load_config(TrainVAEConfig, args.config, config_overrides(args, TrainVAEConfig))
    except ConfigError as error:
        if error.unknown and args.config is not None:  # how this script has always named unknown YAML keys
            known = sorted(f.name for f in dataclasses.fields(TrainVAEConfig))
            raise ConfigError(
                f"{args.config}: unknown keys {error.unknown}; known keys: {known}", error.unknown
            ) from None
        raise
    if config.data_dir is None:
        parser.error("--data_dir is required (on the command line or in --config)")
    return config


# --- data ----------------------------------------------------------------------------------------------------------


@dataclass
class FrameBank:
    """All valid frames of a folder of rounds, in memory. `pose` is the float pose channel, or None."""

    images: torch.Tensor  # uint8 (N, 3, H, W)
    pose: torch.Tensor | None  # float32 (N, 1, H, W), 0..255

    def __len__(self) -> int:
        return self.images.shape[0]

    def pixels(self, indices: torch.Tensor) -> torch.Tensor:
        """The VAE input for these frames: float32 `(B, 3 or 4, H, W)` in [-1, 1]."""
        pose = None if self.pose is None else self.pose[indices]
        return frames_to_pixels(self.images[indices], pose)


def load_frame_bank(folder: str | os.PathLike, pose_dir: str | None = None) -> FrameBank:
    """Read every round in `folder` (valid frames only) and, with `pose_dir`, their pose channels."""
    images, poses = [], []
    for path in list_rounds(folder):
        round_ = load_round(path)
        images.append(torch.from_numpy(round_.trimmed().images))
        if pose_dir is not None:
            poses.append(load_pose_channel(path, pose_dir, num_frames=round_.num_frames)[: round_.num_valid])
    return FrameBank(torch.cat(images), torch.cat(poses) if poses else None)


def sample_indices(num_frames: int, batch_size: int, micro_step: int, seed: int, rank: int) -> torch.Tensor:
    """Random frame indices for one micro-step: a pure function of (seed, micro-step, rank), so resuming is exact."""
    state = np.random.SeedSequence((seed, micro_step, rank)).generate_state(1, dtype=np.uint64)[0]
    generator = torch.Generator().manual_seed(int(state >> np.uint64(1)))
    return torch.randint(num_frames, (batch_size,), generator=generator)


def evenly_spaced(num_frames: int, count: int | None) -> torch.Tensor:
    """`count` indices spread over `range(num_frames)` (all of them when count is None or larger)."""
    if count is None or count >= num_frames:
        return torch.arange(num_frames)
    return torch.linspace(0, num_frames - 1, count).round().long()


# --- model, loss, step ---------------------------------------------------------------------------------------------


def build_model(config: TrainVAEConfig, in_channels: int) -> TekkenAutoencoderDC:
    if config.pretrained_model_name_or_path is not None:
        model = TekkenAutoencoderDC.from_pretrained(config.pretrained_model_name_or_path)
        if model.config.in_channels != in_channels:
            raise ValueError(
                f"{config.pretrained_model_name_or_path} takes {model.config.in_channels} channels but the data has "
                f"{in_channels} (RGB{' + pose' if in_channels == 4 else ''})"
            )
        return model.train()
    stages = len(config.block_out_channels)
    return TekkenAutoencoderDC(
        in_channels=in_channels,
        latent_channels=config.latent_channels,
        encoder_block_out_channels=tuple(config.block_out_channels),
        decoder_block_out_channels=tuple(config.block_out_channels),
        encoder_layers_per_block=tuple(config.encoder_layers_per_block),
        decoder_layers_per_block=tuple(config.decoder_layers_per_block),
        encoder_qkv_multiscales=((),) * stages,
        decoder_qkv_multiscales=((),) * stages,
    )


def reconstruction_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, config: TrainVAEConfig
) -> tuple[torch.Tensor, dict[str, float]]:
    """Weighted MSE + L1 + image-gradient L1, in float32. Returns the loss and its parts for logging."""
    reconstruction, target = reconstruction.float(), target.float()
    parts = {"mse": F.mse_loss(reconstruction, target)}
    if config.l1_weight:
        parts["l1"] = F.l1_loss(reconstruction, target)
    if config.gradient_weight:
        # Finite differences along H and W: penalises blurred edges (boxers' outlines, score digits).
        dy = lambda images: images[..., 1:, :] - images[..., :-1, :]  # noqa: E731
        dx = lambda images: images[..., :, 1:] - images[..., :, :-1]  # noqa: E731
        parts["gradient"] = F.l1_loss(dy(reconstruction), dy(target)) + F.l1_loss(dx(reconstruction), dx(target))
    weights = {"mse": config.mse_weight, "l1": config.l1_weight, "gradient": config.gradient_weight}
    loss = sum(weights[name] * value for name, value in parts.items())
    return loss, {name: value.item() for name, value in parts.items()}


def training_step(
    model: torch.nn.Module,
    bank: FrameBank,
    optimizer: torch.optim.Optimizer,
    lr_scheduler: torch.optim.lr_scheduler.LRScheduler,
    accelerator: Accelerator,
    config: TrainVAEConfig,
    global_step: int,
) -> dict[str, float]:
    """One optimizer step over `gradient_accumulation_steps` micro-batches; returns the mean loss parts."""
    logs: dict[str, float] = {}
    accumulation = config.gradient_accumulation_steps
    for micro in range(accumulation):
        micro_step = global_step * accumulation + micro
        rank = accelerator.process_index
        indices = sample_indices(len(bank), config.train_batch_size, micro_step, config.seed, rank)
        pixels = bank.pixels(indices).to(accelerator.device)  # (B, C, H, W) in [-1, 1]
        sync = micro == accumulation - 1
        with accelerator.no_sync(model) if not sync else contextlib.nullcontext(), accelerator.autocast():
            reconstruction = model(pixels).sample  # (B, C, H, W)
            loss, parts = reconstruction_loss(reconstruction, pixels, config)
        accelerator.backward(loss / accumulation)
        for name, value in {"loss": loss.item(), **parts}.items():
            logs[name] = logs.get(name, 0.0) + value / accumulation
    grad_norm = accelerator.clip_grad_norm_(model.parameters(), config.max_grad_norm)
    optimizer.step()
    lr_scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    logs["grad_norm"] = float(grad_norm)
    logs["lr"] = lr_scheduler.get_last_lr()[0]
    return logs


# --- evaluation ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def reconstruct(model: TekkenAutoencoderDC, pixels: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Encode + decode in batches (eval mode is the caller's business); pixels (N, C, H, W) → (N, C, H, W)."""
    device = next(model.parameters()).device
    outputs = [model(chunk.to(device)).sample.float().cpu() for chunk in pixels.split(batch_size)]
    return torch.cat(outputs)


@torch.no_grad()
def evaluate_reconstruction(
    model: TekkenAutoencoderDC, bank: FrameBank, indices: torch.Tensor, batch_size: int
) -> dict[str, float]:
    """Mean per-frame PSNR (dB) and SSIM of the RGB reconstructions, on uint8 frames as a viewer sees them."""
    psnrs, ssims = [], []
    for chunk in indices.split(batch_size):
        frames = bank.images[chunk]  # uint8 (B, 3, H, W)
        reconstruction = pixels_to_frames(reconstruct(model, bank.pixels(chunk), batch_size)[:, :3])
        psnrs.append(psnr(reconstruction.float(), frames.float(), data_range=255.0))
        ssims.append(ssim(reconstruction.float(), frames.float(), data_range=255.0))
    return {"psnr": torch.cat(psnrs).mean().item(), "ssim": torch.cat(ssims).mean().item(), "frames": len(indices)}


@torch.no_grad()
def measure_latent_statistics(
    model: TekkenAutoencoderDC, bank: FrameBank, indices: torch.Tensor, batch_size: int
) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of the latents of these frames (float64 sums)."""
    device = next(model.parameters()).device
    total = total_sq = None
    count = 0
    for chunk in indices.split(batch_size):
        latents = model.encode(bank.pixels(chunk).to(device)).latent_dist.mode().double().cpu()  # (B, c, h, w)
        per_channel = latents.transpose(0, 1).flatten(1)  # (c, B*h*w)
        total = per_channel.sum(1) if total is None else total + per_channel.sum(1)
        total_sq = per_channel.pow(2).sum(1) if total_sq is None else total_sq + per_channel.pow(2).sum(1)
        count += per_channel.shape[1]
    mean = total / count
    std = (total_sq / count - mean**2).clamp_min(1e-12).sqrt()
    return mean.tolist(), std.tolist()


@torch.no_grad()
def reconstruction_grid(model: TekkenAutoencoderDC, bank: FrameBank, indices: torch.Tensor) -> np.ndarray:
    """uint8 (2·H, n·W, 3): the frames on top, their RGB reconstructions below."""
    frames = bank.images[indices]  # (n, 3, H, W)
    reconstruction = pixels_to_frames(reconstruct(model, bank.pixels(indices), len(indices))[:, :3])
    rows = torch.cat([torch.cat(list(frames), dim=2), torch.cat(list(reconstruction), dim=2)], dim=1)  # (3, 2H, nW)
    return rows.permute(1, 2, 0).numpy()


def log_images(accelerator: Accelerator, grid: np.ndarray, step: int) -> None:
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image("reconstructions", grid, step, dataformats="HWC")
        elif tracker.name == "wandb":
            import wandb

            tracker.log({"reconstructions": wandb.Image(grid, caption="top: frames, bottom: reconstructions")})


# --- main ----------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict[str, float]:
    config = parse_args(argv)
    started = time.perf_counter()

    # 1. Accelerator, logging, seed.
    if config.mixed_precision == "fp16" and not torch.cuda.is_available():
        raise ValueError("--mixed_precision fp16 without a GPU is a slow path (~200× slower than fp32): use bf16")
    trackers = resolve_trackers(config.report_to)
    accelerator = Accelerator(
        mixed_precision=config.mixed_precision,
        log_with=trackers or None,
        project_config=ProjectConfiguration(
            project_dir=config.output_dir, logging_dir=os.path.join(config.output_dir, "logs")
        ),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(config.seed)
    Path(config.output_dir).mkdir(parents=True, exist_ok=True)

    # 2. Data: every valid frame of train/ and val/ in memory.
    train_bank = load_frame_bank(Path(config.data_dir) / "train", config.pose_dir)
    val_bank = load_frame_bank(Path(config.data_dir) / "val", config.pose_dir)
    in_channels = 4 if config.pose_dir is not None else 3
    frame_shape = tuple(train_bank.images.shape[1:])
    logger.info(f"{len(train_bank)} training and {len(val_bank)} held-out frames of {frame_shape}")

    # 3. Model, EMA, optimizer, schedule.
    model = build_model(config, in_channels)
    ema = None
    if config.use_ema:
        ema = EMAModel(
            model.parameters(),
            decay=config.ema_max_decay,
            use_ema_warmup=True,
            power=3 / 4,
            model_cls=TekkenAutoencoderDC,
            model_config=model.config,
        )
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=config.learning_rate,
        betas=(config.adam_beta1, config.adam_beta2),
        weight_decay=config.adam_weight_decay,
    )
    # An accelerate-prepared scheduler steps once per process per optimizer step.
    lr_scheduler = get_scheduler(
        config.lr_scheduler,
        optimizer=optimizer,
        num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
        num_training_steps=config.max_train_steps * accelerator.num_processes,
    )

    # 4. Checkpoints are diffusers folders: vae/, and vae_ema/ with the EMA weights (a usable VAE).
    register_checkpoint_hooks(accelerator, TekkenAutoencoderDC, "vae", ema)
    model, optimizer, lr_scheduler = accelerator.prepare(model, optimizer, lr_scheduler)
    if ema is not None:
        ema.to(accelerator.device)

    # 5. Resume.
    global_step = resume_from_checkpoint(accelerator, resolve_resume(config.resume_from_checkpoint, config.output_dir))

    if accelerator.is_main_process and trackers:
        tracker_config = {key: str(value) if isinstance(value, list | None) else value
                          for key, value in dataclasses.asdict(config).items()}  # fmt: skip
        accelerator.init_trackers(config.tracker_project_name, config=tracker_config)

    validation_indices = evenly_spaced(len(val_bank), config.num_validation_frames)
    image_indices = evenly_spaced(len(val_bank), config.num_image_frames)

    def validate(step: int) -> dict[str, float]:
        unwrapped = accelerator.unwrap_model(model)
        if ema is not None:
            ema.store(unwrapped.parameters())
            ema.copy_to(unwrapped.parameters())
        unwrapped.eval()
        scores = evaluate_reconstruction(unwrapped, val_bank, validation_indices, config.eval_batch_size)
        grid = reconstruction_grid(unwrapped, val_bank, image_indices)
        unwrapped.train()
        if ema is not None:
            ema.restore(unwrapped.parameters())
        accelerator.log({"val/psnr": scores["psnr"], "val/ssim": scores["ssim"]}, step=step)
        log_images(accelerator, grid, step)
        logger.info(f"step {step}: held-out PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
        return scores

    # 6. Training loop.
    model.train()
    progress = tqdm(
        total=config.max_train_steps,
        initial=global_step,
        desc="train_vae",
        disable=not (config.show_progress and accelerator.is_local_main_process),
    )
    while global_step < config.max_train_steps:
        logs = training_step(model, train_bank, optimizer, lr_scheduler, accelerator, config, global_step)
        if ema is not None:
            ema.step(model.parameters())
        global_step += 1
        progress.update(1)
        progress.set_postfix(loss=f"{logs['loss']:.5f}")
        accelerator.log({f"train/{name}": value for name, value in logs.items()}, step=global_step)
        if global_step % config.checkpointing_steps == 0 or global_step == config.max_train_steps:
            save_checkpoint(accelerator, config.output_dir, global_step, config.checkpoints_total_limit)
        if accelerator.is_main_process and global_step % config.validation_steps == 0:
            validate(global_step)
    progress.close()

    # 7. Final model: EMA weights, latent statistics in the config, held-out score, reconstruction image.
    accelerator.wait_for_everyone()
    results: dict[str, float] = {}
    if accelerator.is_main_process:
        final = accelerator.unwrap_model(model)
        if ema is not None:
            ema.copy_to(final.parameters())
        final.eval()
        mean, std = measure_latent_statistics(
            final, train_bank, evenly_spaced(len(train_bank), config.stats_max_frames), config.eval_batch_size
        )
        # With per-channel statistics the normalisation is (z - mean) / std · scaling_factor: keep the factor at 1.
        final.register_to_config(latents_mean=mean, latents_std=std, scaling_factor=1.0, shift_factor=None)
        save_pretrained_atomically(final, Path(config.output_dir) / "vae")
        scores = evaluate_reconstruction(
            final, val_bank, evenly_spaced(len(val_bank), config.eval_max_frames), config.eval_batch_size
        )
        Image.fromarray(reconstruction_grid(final, val_bank, image_indices)).save(
            Path(config.output_dir) / "reconstructions.png"
        )
        results = {
            "heldout_psnr_db": scores["psnr"],
            "heldout_ssim": scores["ssim"],
            "heldout_frames": scores["frames"],
            "train_frames": len(train_bank),
            "steps": global_step,
            "wall_seconds_this_run": time.perf_counter() - started,
            "parameters": sum(p.numel() for p in final.parameters()),
        }
        with open(Path(config.output_dir) / "final_metrics.json", "w", encoding="utf-8") as handle:
            json.dump(results, handle, indent=2)
        logger.info(
            f"final model in {Path(config.output_dir) / 'vae'}: held-out PSNR {scores['psnr']:.2f} dB, "
            f"SSIM {scores['ssim']:.4f} over {scores['frames']} frames; latent std "
            f"{min(std):.3f}..{max(std):.3f}"
        )
        if not math.isfinite(scores["psnr"]):
            logger.warning("held-out PSNR is not finite: the model diverged")
    accelerator.end_training()
    return results


if __name__ == "__main__":
    main()
