"""Shared fixtures. Everything runs on the CPU with tiny inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tekken_diffusers.data.rounds import Round, save_round

# Tests use tiny models, which run ~10x slower with two threads on this shared 2-core machine.
torch.set_num_threads(1)


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
