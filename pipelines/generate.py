#!/usr/bin/env python
"""Generate gameplay with a world-model pipeline. Run with --help; the code is in tekken_diffusers.cli.generate
(console script: tekken-generate)."""

from tekken_diffusers.cli.generate import main

if __name__ == "__main__":
    raise SystemExit(main())
