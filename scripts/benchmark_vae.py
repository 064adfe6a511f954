#!/usr/bin/env python
"""Benchmark VAE encode/decode frames/s (--help). The code lives in tekken_diffusers.cli.benchmark_vae."""

from tekken_diffusers.cli.benchmark_vae import main

if __name__ == "__main__":
    raise SystemExit(main())
