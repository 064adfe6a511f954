"""End-to-end runs of the data scripts, as a user runs them."""

import subprocess
import sys
from pathlib import Path

import pytest

from tekken_diffusers.data.rounds import load_round

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("script", ["record_atari.py", "preview_rounds.py", "video_to_rounds.py"])
def test_help(script):
    result = run(script, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


@pytest.mark.slow
def test_record_then_preview(tmp_path):
    pytest.importorskip("ale_py")
    out = tmp_path / "boxing"
    result = run("record_atari.py", "--out", str(out), "--rounds", "2", "--max-frames", "30", "--no-progress")
    assert result.returncode == 0, result.stderr
    for split in ("train", "val"):
        assert load_round(out / split / "round_0000.npz").num_frames == 30
    result = run("preview_rounds.py", str(out / "val"), "--out-dir", str(tmp_path / "preview"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "preview").iterdir()) == ["round_0000.mp4", "round_0000.png"]


def test_bad_arguments_are_reported(tmp_path):
    result = run("record_atari.py", "--out", str(tmp_path), "--policy", "lazy")
    assert result.returncode == 2 and "invalid choice: 'lazy'" in result.stderr
    result = run("record_atari.py", "--out", str(tmp_path), "--val-fraction", "2")
    assert result.returncode != 0 and "val_fraction must lie in [0, 1), got 2.0" in result.stderr
    result = run("preview_rounds.py", str(tmp_path / "missing.npz"))
    assert result.returncode != 0 and "missing.npz: no such round file or folder" in result.stderr
