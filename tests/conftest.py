"""Shared fixtures. Everything runs on the CPU with tiny inputs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from tekken_diffusers.data.rounds import Round, save_round

# Tests use tiny models, which run ~10x slower with two threads on this shared 2-core machine.
torch.set_num_threads(1)
# ...and the CLIs called in-process here choose their threads at start-up (tekken_diffusers.runtime): keep them at one.
os.environ.setdefault("TEKKEN_NUM_THREADS", "1")


def tiny_dcae(in_channels: int = 3, seed: int = 0, **overrides):
    """A 16×16 → 4×8×8 `TekkenAutoencoderDC` with random weights (the random pipeline's tiny VAE, narrower)."""
    from tekken_diffusers.models.autoencoders import TekkenAutoencoderDC
    from tekken_diffusers.pipelines.random_pipeline import TINY_VAE_CONFIG

    torch.manual_seed(seed)
    config = {**TINY_VAE_CONFIG, "in_channels": in_channels, "encoder_block_out_channels": (8, 8)}
    config["decoder_block_out_channels"] = (8, 8)
    return TekkenAutoencoderDC(**{**config, **overrides}).eval()


def tiny_ltx(seed: int = 2):
    """An `LTXVideoVAE` with temporal compression 4 (the real LTX-Video has 8) and spatial 4, random weights."""
    from tekken_diffusers.models.autoencoders import LTXVideoVAE

    torch.manual_seed(seed)
    return LTXVideoVAE(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False),
        decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    ).eval()


def tiny_video_vae(kind: str, seed: int = 0):
    """A video VAE for 32×32 frames with 4×4 latents (the tiny transformer's size), random weights: `"ltx"`, an
    `LTXVideoVAE` that compresses time by 8 like LTX-Video (8 channels); `"wan"`, a `WanVAE` that compresses time by 4
    like Wan 2.1 (16 channels)."""
    from tekken_diffusers.models.autoencoders import LTXVideoVAE, WanVAE

    torch.manual_seed(seed)
    if kind == "wan":
        return WanVAE(
            base_dim=3, z_dim=16, dim_mult=[1] * 4, num_res_blocks=1, temperal_downsample=[False, True, True]
        ).eval()
    if kind != "ltx":
        raise ValueError(f"kind must be 'ltx' or 'wan', got {kind!r}")
    return LTXVideoVAE(
        in_channels=3,
        out_channels=3,
        latent_channels=8,
        block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        layers_per_block=(1, 1, 1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True, False),
        decoder_spatio_temporal_scaling=(True, True, True, False),
        decoder_inject_noise=(False,) * 5,
        upsample_residual=(False,) * 4,
        upsample_factor=(1,) * 4,
        timestep_conditioning=False,
        patch_size=1,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    ).eval()


def make_round(num_frames: int = 12, size: tuple[int, int] = (16, 16), seed: int = 0, **overrides) -> Round:
    """A small synthetic round with random frames and inputs."""
    rng = np.random.default_rng(seed)
    fields = dict(
        images=rng.integers(0, 256, (num_frames, 3, *size), dtype=np.uint8),
        actions_p1=rng.integers(0, 256, num_frames, dtype=np.uint8),
        valid_frames=np.ones(num_frames, dtype=bool),
        states=rng.normal(size=(num_frames, 3)).astype(np.float32),
        fps=15.0,
        game="synthetic",
    )
    fields.update(overrides)
    return Round(**fields)


@pytest.fixture
def synthetic_rounds(tmp_path: Path) -> Path:
    """A rounds folder with train/ (3 rounds) and val/ (1 round) of 16×16 synthetic frames."""
    for split, count in (("train", 3), ("val", 1)):
        for index in range(count):
            save_round(tmp_path / split / f"round_{index:04d}.npz", make_round(12 + index, seed=index + 10 * count))
    return tmp_path


@pytest.fixture(scope="session")
def boxing_rounds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real Atari Boxing rounds (64×64, 15 Hz): 3 train + 1 val rounds of 48 frames, recorded once per test run."""
    pytest.importorskip("ale_py")
    from tekken_diffusers.data.atari import RecordConfig, record_boxing

    out = tmp_path_factory.mktemp("boxing")
    record_boxing(RecordConfig(out=out, rounds=4, max_frames=48, seed=0, val_fraction=0.25), progress=False)
    return out


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for a test module (`pytestmark = pytest.mark.usefixtures("single_thread")`): tiny models are
    overhead-bound, and a second thread only adds contention on a shared 2-core machine (measured: 0.8 ms vs 10 ms
    per cached step of the tiny model while another process runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
