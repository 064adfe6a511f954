#!/usr/bin/env python
"""Save a randomly initialised pipeline. Run with --help; the code lives in
tekken_diffusers.cli.make_random_pipeline (console script: tekken-make-random-pipeline)."""

from tekken_diffusers.cli.make_random_pipeline import main

if __name__ == "__main__":
    raise SystemExit(main())
