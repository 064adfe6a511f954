"""`tekken-train-vae`: train the per-frame DC-AE. The training code is `training/train_vae.py`; this command runs
that file's `main` (found as for `tekken-train`, see `tekken_diffusers.cli.train`).

    tekken-train-vae --data_dir data/boxing --output_dir outputs/boxing-dcae
"""

from __future__ import annotations

from .train import run_training_script


def main(argv: list[str] | None = None) -> int:
    """Run `training/train_vae.py`'s `main` with these arguments (`--help` lists them)."""
    return run_training_script("train_vae.py", "tekken-train-vae", argv)


if __name__ == "__main__":
    raise SystemExit(main())
