#!/usr/bin/env python
"""Preview rounds as mp4 + PNG. Run with --help; the code lives in tekken_diffusers.cli.preview_rounds."""

from tekken_diffusers.cli.preview_rounds import main

if __name__ == "__main__":
    raise SystemExit(main())
