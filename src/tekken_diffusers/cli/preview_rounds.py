"""Preview rounds as videos and contact sheets with the inputs drawn under the frames.

`python scripts/preview_rounds.py data/boxing/train/round_0000.npz` writes `round_0000.mp4` and `round_0000.png`
next to it (or into `--out-dir`).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from . import setup_logging

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="preview_rounds.py",
        description="Turn round .npz files (or folders of them) into mp4 videos and PNG contact sheets with the "
        "inputs drawn under each frame, to check that frames and inputs line up.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("rounds", nargs="+", help="round .npz files or folders holding them")
    parser.add_argument("--out-dir", default=None, help="where to write (default: next to each round)")
    parser.add_argument("--scale", type=int, default=4, help="integer upscaling of the frames")
    parser.add_argument("--fps", type=float, default=None, help="video frame rate (default: the round's fps or 15)")
    parser.add_argument("--max-frames", type=int, default=None, help="preview only the first N frames")
    parser.add_argument("--sheet-every", type=int, default=4, help="contact sheet: every N-th frame")
    parser.add_argument("--sheet-columns", type=int, default=8, help="contact sheet: frames per row")
    parser.add_argument("--no-video", action="store_true", help="write only the contact sheet")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging()
    from ..data.rounds import list_rounds, load_round
    from ..visualization import compose_frames, write_contact_sheet, write_video

    paths: list[Path] = []
    for item in map(Path, args.rounds):
        if item.is_dir():
            paths += list_rounds(item)
        elif item.is_file():
            paths.append(item)
        else:
            raise SystemExit(f"preview_rounds.py: error: {item}: no such round file or folder")
    for path in paths:
        round_ = load_round(path).trimmed()
        end = args.max_frames or round_.num_frames
        actions_p2 = None if round_.actions_p2 is None else round_.actions_p2[:end]
        fps = args.fps or round_.fps or 15.0
        frames = compose_frames(
            [round_.images[:end]], round_.actions_p1[:end], actions_p2=actions_p2, scale=args.scale, fps=fps
        )
        out_dir = Path(args.out_dir) if args.out_dir else path.parent
        sheet = write_contact_sheet(
            out_dir / f"{path.stem}.png", frames, columns=args.sheet_columns, every=args.sheet_every
        )
        logger.info("%s: %d frames -> %s", path, len(frames), sheet)
        if not args.no_video:
            video = write_video(out_dir / f"{path.stem}.mp4", frames, fps=fps)
            logger.info("%s: %d frames at %.1f fps -> %s", path, len(frames), fps, video)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
