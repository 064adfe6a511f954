#!/usr/bin/env python
"""Record Atari Boxing rounds. Run with --help; the code lives in tekken_diffusers.cli.record_atari."""

from tekken_diffusers.cli.record_atari import main

if __name__ == "__main__":
    raise SystemExit(main())
