#!/usr/bin/env python
"""Import a video + input log as rounds. Run with --help; the code lives in tekken_diffusers.cli.video_to_rounds."""

from tekken_diffusers.cli.video_to_rounds import main

if __name__ == "__main__":
    raise SystemExit(main())
