"""scripts/benchmark_vae.py: measures every (operation, precision, batch) and replaces only its own section."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tekken_diffusers.cli import benchmark_vae
from tekken_diffusers.models.autoencoders import TekkenAutoencoderDC

ROOT = Path(__file__).resolve().parents[1]


def test_help():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "benchmark_vae.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--batch-sizes" in result.stdout


def test_benchmark_writes_only_the_vae_section(tmp_path):
    vae_dir = tmp_path / "vae"
    TekkenAutoencoderDC(
        latent_channels=4,
        encoder_block_out_channels=(8, 8),
        decoder_block_out_channels=(8, 8),
        encoder_layers_per_block=(1, 1),
        decoder_layers_per_block=(1, 1),
        encoder_qkv_multiscales=((), ()),
        decoder_qkv_multiscales=((), ()),
    ).save_pretrained(vae_dir)
    output = tmp_path / "benchmarks.md"
    sections = ["# Benchmarks", "## Latent windows", "keep me", "## VAE", "old table", "## World model", "me too"]
    output.write_text("\n\n".join(sections) + "\n")
    argv = ["--vae", str(vae_dir), "--batch-sizes", "1", "2", "--reps", "1", "--output", str(output)]
    assert benchmark_vae.main(argv) == 0
    text = output.read_text()
    assert "keep me" in text and "me too" in text and "old table" not in text
    assert text.index("## Latent windows") < text.index("## VAE") < text.index("## World model")
    rows = [line for line in text.splitlines() if line.startswith("| encode") or line.startswith("| decode")]
    assert len(rows) == 2 * 2 * 2 * 2  # (encode, decode) × (fp32, bf16) × batch (1, 2) × threads (1, 2)
    assert "| encode | bf16 | 2 | 2 |" in text and "| decode | fp32 | 1 | 1 |" in text
    # a file without the section gets it appended
    other = tmp_path / "other.md"
    other.write_text("# Benchmarks\n\n## Latent windows\n\nkeep me\n")
    benchmark_vae.write_section(other, "## VAE\n\nnew\n")
    assert other.read_text() == "# Benchmarks\n\n## Latent windows\n\nkeep me\n\n## VAE\n\nnew\n"
