#!/usr/bin/env python
"""Generate gameplay with a world-model pipeline. Run with --help; the code is in tekken_diffusers.cli.generate
(console script: tekken-generate)."""

import os

# Idle OpenMP threads sleep instead of spinning against other programs (a browser, a second player); OpenMP reads this
# once, when torch loads, so it is set before the import. An explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from tekken_diffusers.cli.generate import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
