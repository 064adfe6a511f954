#!/usr/bin/env python
"""Play a world-model pipeline in the browser. Run with --help; the code is in tekken_diffusers.demo."""

from tekken_diffusers.demo import main

if __name__ == "__main__":
    raise SystemExit(main())
