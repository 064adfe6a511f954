"""scripts/benchmark_dataloader.py: its markdown section and a tiny end-to-end run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tekken_diffusers.cli.benchmark_dataloader import SECTION, write_section

ROOT = Path(__file__).resolve().parents[1]


def test_write_section_replaces_only_its_own_section(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Sampling\nfast\n\n## Latent windows\nold numbers\n\n## Training\nslow\n")
    write_section(doc, f"{SECTION}\n\nnew numbers\n")
    assert doc.read_text() == (
        "# Benchmarks\n\n## Sampling\nfast\n\n## Latent windows\n\nnew numbers\n\n## Training\nslow\n"
    )
    write_section(doc, f"{SECTION}\n\nnewer\n")
    assert (
        doc.read_text().count(SECTION) == 1 and "newer" in doc.read_text() and "## Training\nslow" in doc.read_text()
    )

    fresh = tmp_path / "new.md"
    write_section(fresh, f"{SECTION}\n\nnumbers\n")
    assert fresh.read_text() == "# Benchmarks\n\n## Latent windows\n\nnumbers\n"


@pytest.mark.slow
def test_benchmark_runs_and_writes_its_section(tmp_path):
    output = tmp_path / "benchmarks.md"
    output.write_text("# Benchmarks\n\n## Other\nkept\n")
    argv = ["--rounds", "4", "--frames", "40", "--latent-shape", "4", "4", "4", "--windows", "200"]
    argv += ["--num-workers", "0", "--encode-frames", "0", "--output", str(output)]
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_dataloader.py"), *argv],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    text = output.read_text()
    assert "## Other\nkept" in text and SECTION in text
    assert "| `dataset[i]`, one random window (float32) |" in text and "4 rounds × 40 frames × 4×4×4" in text
