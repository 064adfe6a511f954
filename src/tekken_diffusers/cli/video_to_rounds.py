"""Import a gameplay capture: `python scripts/video_to_rounds.py --video match.mp4 --inputs match.csv --out DIR`."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from . import setup_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="video_to_rounds.py",
        description=(
            "Turn a gameplay video plus a per-frame input log (CSV with a 'frame' column and an 'action', "
            "'notation' or up,down,left,right,lp,rp,lk,rk columns; see docs/data_format.md) into validated rounds "
            "OUT/SPLIT/round_NNNN.npz."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--video", required=True, help="gameplay video (any format ffmpeg reads)")
    parser.add_argument("--inputs", required=True, help="input log CSV")
    parser.add_argument("--out", required=True, help="dataset folder; rounds go to OUT/SPLIT/")
    parser.add_argument("--split", default="train", choices=["train", "val"], help="sub-folder to write into")
    parser.add_argument("--size", type=int, nargs=2, default=(64, 64), metavar=("H", "W"), help="output frame size")
    parser.add_argument("--keep-size", action="store_true", help="keep the video's frame size (ignores --size)")
    parser.add_argument("--frame-skip", type=int, default=1, help="keep every N-th frame (60 fps with 4 = 15 fps)")
    parser.add_argument("--round-frames", type=int, default=1000, help="longest round; the capture is cut")
    parser.add_argument("--side", choices=["left", "right"], default="left", help="where player 1 stands")
    parser.add_argument("--game", default=None, help="game name stored in each round (e.g. tekken8)")
    parser.add_argument("--prefix", default="round", help="file name prefix")
    parser.add_argument("--start-index", type=int, default=0, help="number of the first round written")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.start_index < 0:
        parser.error(f"--start-index must be >= 0, got {args.start_index}")
    if not args.keep_size and min(args.size) < 1:
        parser.error(f"--size must be two positive numbers H W, got {args.size[0]} {args.size[1]}")
    if not args.prefix or Path(args.prefix).name != args.prefix or args.prefix in (".", ".."):
        parser.error(f"--prefix must be a plain file name prefix (no folders), got {args.prefix!r}")
    out = Path(args.out)
    if any(parent.exists() and not parent.is_dir() for parent in (out, *out.parents)):
        parser.error(f"--out {out}: a file is in the way (expected a folder, or nothing)")
    setup_logging()
    from ..data.importers import VideoImportConfig, video_to_rounds

    config = VideoImportConfig(
        size=None if args.keep_size else tuple(args.size),
        frame_skip=args.frame_skip,
        round_frames=args.round_frames,
        side=args.side,
        game=args.game,
    )
    try:
        paths = video_to_rounds(
            args.video,
            args.inputs,
            out / args.split,
            config,
            prefix=args.prefix,
            start_index=args.start_index,
        )
    except (ValueError, FileNotFoundError) as error:
        parser.error(str(error))
    logger.info("wrote %d rounds", len(paths))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
