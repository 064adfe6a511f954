#!/usr/bin/env python
"""Benchmark latent-window reads and VAE encoding (--help). Code: tekken_diffusers.cli.benchmark_dataloader."""

from tekken_diffusers.cli.benchmark_dataloader import main

if __name__ == "__main__":
    raise SystemExit(main())
