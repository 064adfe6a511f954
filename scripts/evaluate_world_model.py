#!/usr/bin/env python
"""Evaluate a world-model pipeline on recorded held-out rounds. Run with --help; the code lives in
tekken_diffusers.cli.evaluate_world_model (console script: tekken-evaluate)."""

from tekken_diffusers.cli.evaluate_world_model import main

if __name__ == "__main__":
    raise SystemExit(main())
