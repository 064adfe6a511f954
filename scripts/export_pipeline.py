#!/usr/bin/env python
"""Export a trained pipeline folder for shipping (bf16 transformer weights). Run with --help; the code lives in
tekken_diffusers.cli.export_pipeline (console script: tekken-export)."""

from tekken_diffusers.cli.export_pipeline import main

if __name__ == "__main__":
    raise SystemExit(main())
