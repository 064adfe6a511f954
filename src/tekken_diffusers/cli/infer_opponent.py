"""Add player 2's inferred inputs to a one-player Boxing latent dataset (the console's boxer presses no joystick), so
that a two-player world model and an opponent policy can learn from it.

    tekken-infer-opponent --latents data/boxing_latents --rounds data/boxing --out data/boxing-vs-console_latents

Player 2's input of frame t: the directions the black boxer moved in from frame t−1 (the recorded RAM positions) and
LP while its arm is out (its silhouette's width). See `tekken_diffusers.data.opponent`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ..data.opponent import add_boxing_opponent_actions
from . import setup_logging

logger = logging.getLogger("infer_opponent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latents", required=True, help="latent dataset folder of one-player Boxing rounds")
    parser.add_argument("--rounds", required=True, help="the round folder it was encoded from (<split>/<round>.npz)")
    parser.add_argument("--out", required=True, help="latent dataset folder to write (a copy with actions_p2)")
    parser.add_argument(
        "--punch-width", type=int, default=None, help="silhouette width (pixels) that counts as a punch (default: 10 "
        "at 64 pixels wide, scaled with the frame width)"
    )  # fmt: skip
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    if args.punch_width is not None and args.punch_width < 1:
        parser.error(f"--punch-width must be >= 1, got {args.punch_width}")
    for name, folder in (("--latents", args.latents), ("--rounds", args.rounds)):
        if not Path(folder).is_dir():
            parser.error(f"{name} {folder}: not a folder")
    if Path(args.out).exists() and not args.overwrite:
        parser.error(f"--out {args.out}: already exists (pass --overwrite to replace it)")
    try:
        out = add_boxing_opponent_actions(
            args.latents, args.rounds, args.out, punch_width=args.punch_width, overwrite=args.overwrite
        )
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        message = str(error)
        parser.error(f"--latents {message}" if message.startswith(str(args.latents)) else message)
    logger.info("wrote %s", out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
