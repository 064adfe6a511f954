"""training/train_vae.py end to end on tiny synthetic rounds: checkpoints, exact resume, final statistics, scores."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tekken_diffusers.data.frames import frames_to_pixels, pixels_to_frames
from tekken_diffusers.data.rounds import list_rounds, load_round
from tekken_diffusers.evaluation.metrics import psnr, ssim
from tekken_diffusers.models.autoencoders import TekkenAutoencoderDC

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training" / "train_vae.py"
TINY = [
    "--block_out_channels", "8", "8",
    "--encoder_layers_per_block", "1", "1",
    "--decoder_layers_per_block", "1", "1",
    "--latent_channels", "4",
    "--train_batch_size", "4",
    "--lr_scheduler", "constant_with_warmup",  # the learning rate of a step does not depend on max_train_steps
    "--lr_warmup_steps", "2",
    "--no-show_progress",
    "--eval_batch_size", "7",
]  # fmt: skip


def load_script():
    spec = importlib.util.spec_from_file_location("train_vae", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["train_vae"] = module  # dataclasses look their module up in sys.modules
    spec.loader.exec_module(module)
    return module


train_vae = load_script()


def train(data: Path, out: Path, *extra: str) -> dict:
    return train_vae.main(["--data_dir", str(data), "--output_dir", str(out), *TINY, *extra])


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(folder / "diffusion_pytorch_model.safetensors")


def all_frames(folder: Path) -> torch.Tensor:
    return torch.cat([torch.from_numpy(load_round(p).trimmed().images) for p in list_rounds(folder)])


def test_help():
    result = subprocess.run([sys.executable, str(SCRIPT), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    for option in ("--data_dir", "--resume_from_checkpoint", "--mixed_precision", "--use_ema", "--pose_dir"):
        assert option in result.stdout


@pytest.mark.slow
def test_resume_is_identical_to_an_uninterrupted_run(synthetic_rounds, tmp_path):
    # 1. Three steps in one go, with a checkpoint every step (only the newest two are kept) and tensorboard.
    straight = tmp_path / "straight"
    results = train(
        synthetic_rounds, straight, "--max_train_steps", "3", "--checkpointing_steps", "1",
        "--validation_steps", "1", "--report_to", "tensorboard",
    )  # fmt: skip
    assert sorted(p.name for p in straight.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
    checkpoint = straight / "checkpoint-3"
    assert (checkpoint / "vae" / "config.json").is_file() and (checkpoint / "vae_ema" / "config.json").is_file()
    assert (checkpoint / "optimizer.bin").is_file() and (checkpoint / "ema_state.json").is_file()
    assert not list(checkpoint.glob("model*")) and not list(checkpoint.glob("pytorch_model*"))  # no pickled model
    assert list((straight / "logs").rglob("events.out.tfevents.*"))
    assert results["steps"] == 3

    # 2. Two steps, then resume from the latest checkpoint for the third; a stale temporary folder is ignored.
    resumed = tmp_path / "resumed"
    train(synthetic_rounds, resumed, "--max_train_steps", "2", "--checkpointing_steps", "5", "--report_to", "none")
    assert sorted(p.name for p in resumed.glob("checkpoint-*")) == ["checkpoint-2"]  # the last step always saves
    (resumed / ".checkpoint-9.tmp").mkdir()
    train(
        synthetic_rounds, resumed, "--max_train_steps", "3", "--checkpointing_steps", "5",
        "--resume_from_checkpoint", "latest", "--report_to", "none",
    )  # fmt: skip

    # 3. Same raw weights, same EMA weights, same final model.
    for folder in ("checkpoint-3/vae", "checkpoint-3/vae_ema", "vae"):
        expected, found = weights(straight / folder), weights(resumed / folder)
        assert expected.keys() == found.keys()
        for key in expected:
            torch.testing.assert_close(found[key], expected[key], rtol=0, atol=1e-6, msg=f"{folder}: {key}")


@pytest.mark.slow
def test_final_model_has_latent_statistics_and_honest_scores(synthetic_rounds, tmp_path):
    out = tmp_path / "run"
    results = train(synthetic_rounds, out, "--max_train_steps", "2", "--report_to", "none")
    vae = TekkenAutoencoderDC.from_pretrained(out / "vae")
    assert vae.config.latent_channels == 4 and vae.config.scaling_factor == 1.0

    # the statistics in the config are the per-channel mean/std of the training frames' latents
    with torch.no_grad():
        latents = vae.encode(frames_to_pixels(all_frames(synthetic_rounds / "train"))).latent_dist.mode()
    flat = latents.double().transpose(0, 1).flatten(1)  # (c, N·h·w)
    np.testing.assert_allclose(vae.config.latents_mean, flat.mean(1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vae.config.latents_std, flat.std(1, correction=0).numpy(), rtol=1e-5, atol=1e-6)

    # the reported score is the mean per-frame PSNR / SSIM of the uint8 reconstructions of every held-out frame
    frames = all_frames(synthetic_rounds / "val")
    with torch.no_grad():
        reconstruction = pixels_to_frames(vae(frames_to_pixels(frames)).sample).float()
    saved = json.loads((out / "final_metrics.json").read_text())
    assert saved == results and saved["heldout_frames"] == len(frames)
    assert saved["heldout_psnr_db"] == pytest.approx(psnr(reconstruction, frames.float(), 255.0).mean().item(), 1e-5)
    assert saved["heldout_ssim"] == pytest.approx(ssim(reconstruction, frames.float(), 255.0).mean().item(), 1e-5)
    assert (out / "reconstructions.png").is_file()


@pytest.mark.slow
def test_training_with_pose_channel(synthetic_rounds, tmp_path):
    pose_dir = tmp_path / "poses"
    pose_dir.mkdir()
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for path in list_rounds(synthetic_rounds / split):
            num_frames = load_round(path).num_frames
            pose = rng.integers(0, 256, (num_frames, 3, 16, 16), dtype=np.uint8)
            np.savez(pose_dir / f"{path.stem}_two_player_poses.npz", pose_images=pose)
    out = tmp_path / "run"
    train(synthetic_rounds, out, "--max_train_steps", "1", "--pose_dir", str(pose_dir), "--report_to", "none")
    vae = TekkenAutoencoderDC.from_pretrained(out / "vae")
    assert vae.config.in_channels == 4
    with torch.no_grad():
        assert vae(torch.zeros(1, 4, 16, 16)).sample.shape == (1, 4, 16, 16)


@pytest.mark.slow
def test_runs_under_accelerate_launch(synthetic_rounds, tmp_path):
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "bf16", "--dynamo_backend", "no", str(SCRIPT),
        "--data_dir", str(synthetic_rounds), "--output_dir", str(tmp_path / "run"), *TINY,
        "--max_train_steps", "1", "--report_to", "none",
    ]  # fmt: skip
    env = {**os.environ, "ACCELERATE_USE_CPU": "1", "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "run" / "vae" / "diffusion_pytorch_model.safetensors").is_file()


def test_bad_arguments_are_reported(synthetic_rounds, tmp_path):
    config = tmp_path / "config.yaml"
    config.write_text("data_dir: somewhere\nlearning_rat: 0.1\n")
    with pytest.raises(ValueError, match=r"unknown keys \['learning_rat'\]"):
        train_vae.parse_args(["--config", str(config)])
    config.write_text(f"data_dir: {synthetic_rounds}\nlearning_rate: 0.25\n")
    assert train_vae.parse_args(["--config", str(config)]).learning_rate == 0.25
    assert train_vae.parse_args(["--config", str(config), "--learning_rate", "0.5"]).learning_rate == 0.5
    with pytest.raises(ValueError, match="must have one entry per stage"):
        train_vae.parse_args(["--data_dir", "x", "--block_out_channels", "8", "8", "8"])
    with pytest.raises(ValueError, match="mixed_precision fp16 without a GPU"):
        train(synthetic_rounds, tmp_path / "run", "--mixed_precision", "fp16", "--report_to", "none")
    with pytest.raises(FileNotFoundError, match="checkpoint-7: no checkpoint-N folder"):
        train(synthetic_rounds, tmp_path / "run", "--resume_from_checkpoint", "checkpoint-7", "--report_to", "none")
    with pytest.raises(SystemExit):
        train_vae.parse_args(["--output_dir", "x"])  # no --data_dir


def test_the_shared_config_system_keeps_the_flags(tmp_path):
    """Typed configs (`training_utils.load_config`): YAML values are checked, command-line options win, and a bool
    is a flag (`--use_ema`, `--no-use_ema`) or takes a value (`--use_ema false`)."""
    config = tmp_path / "config.yaml"
    stages = "block_out_channels: [8, 8]\nencoder_layers_per_block: [1, 1]\ndecoder_layers_per_block: [1, 1]\n"
    config.write_text("data_dir: somewhere\nuse_ema: false\n" + stages)
    parsed = train_vae.parse_args(["--config", str(config)])
    assert parsed.use_ema is False and parsed.block_out_channels == [8, 8] and parsed.show_progress is True
    parsed = train_vae.parse_args(["--config", str(config), "--use_ema", "--no-show_progress", "--seed", "3"])
    assert parsed.use_ema is True and parsed.show_progress is False and parsed.seed == 3
    assert train_vae.parse_args(["--data_dir", "x", "--use_ema", "false"]).use_ema is False
    with pytest.raises(ValueError, match="learning_rate: expected a number"):
        train_vae.parse_args(["--data_dir", "x", "--learning_rate", "fast"])
    assert (
        train_vae.parse_args(["--config", str(ROOT / "training" / "configs" / "vae_boxing.yaml")]).latent_channels
        == 16
    )
