"""Record Atari Boxing rounds in the round format: `python scripts/record_atari.py --out data/boxing --rounds 20`."""

from __future__ import annotations

import argparse
import logging
import time

from . import setup_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="record_atari.py",
        description=(
            "Play Atari Boxing with human-like policies and write rounds as OUT/train/round_NNNN.npz and "
            "OUT/val/round_NNNN.npz (uint8 (T,3,H,W) frames, 8-bit inputs, RAM-derived state). Re-running with the "
            "same arguments keeps finished rounds and records only the missing ones."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--rounds", type=int, default=20, help="number of rounds (train + val)")
    parser.add_argument("--max-frames", type=int, default=1000, help="longest round; episodes are cut into rounds")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives byte-identical rounds")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"), help="frame size")
    parser.add_argument("--frame-skip", type=int, default=4, help="console frames per recorded frame (4 = 15 Hz)")
    parser.add_argument("--policy", default="mix", choices=["mix", "approach", "random"], help="who plays")
    parser.add_argument("--val-fraction", type=float, default=0.1, help="share of rounds for validation")
    parser.add_argument(
        "--two-player", action="store_true", help="a second policy plays player 2 (records actions_p2)"
    )
    parser.add_argument("--min-frames", type=int, default=16, help="drop an episode's tail shorter than this")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    from ..data.atari import RecordConfig, record_boxing

    # Errors name the option, as argparse does: the dataclass speaks of `min_frames`, the user typed --min-frames.
    def option_error(error: Exception) -> None:
        message = str(error)
        for name in ("rounds", "max_frames", "min_frames", "size", "frame_skip", "val_fraction", "out"):
            if message.startswith(f"{name} "):
                message = f"--{name.replace('_', '-')}{message[len(name) :]}"
                break
        parser.error(message)

    try:
        config = RecordConfig(
            out=args.out,
            rounds=args.rounds,
            max_frames=args.max_frames,
            seed=args.seed,
            size=tuple(args.size),
            frame_skip=args.frame_skip,
            policy=args.policy,
            val_fraction=args.val_fraction,
            two_player=args.two_player,
            min_frames=args.min_frames,
        )
    except ValueError as error:
        option_error(error)
    start = time.perf_counter()
    try:
        written = record_boxing(config, progress=not args.no_progress)
    except (ValueError, ImportError) as error:
        option_error(error)
    logger.info(
        "%d train and %d val rounds in %s (%.1f s)",
        len(written["train"]),
        len(written["val"]),
        config.out,
        time.perf_counter() - start,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
