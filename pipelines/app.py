#!/usr/bin/env python
"""Play a world-model pipeline in the browser. Run with --help; the code is in tekken_diffusers.cli.play (console
script: tekken-play)."""

from tekken_diffusers.cli.play import main

if __name__ == "__main__":
    raise SystemExit(main())
