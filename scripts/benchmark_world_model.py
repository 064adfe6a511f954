#!/usr/bin/env python
"""Benchmark the world model (generation, KV cache, neighbour load, sessions, training, loader, VAE). Run with --help;
the code lives in tekken_diffusers.cli.benchmark_world_model (console script: tekken-benchmark)."""

from tekken_diffusers.cli.benchmark_world_model import main

if __name__ == "__main__":
    raise SystemExit(main())
