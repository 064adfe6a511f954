"""Print the world-model size presets and their parameter counts (`tekken-presets`)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    argparse.ArgumentParser(
        prog="tekken-presets",
        description="Markdown table of TekkenWorldModelTransformer presets (counted on the meta device: instant).",
    ).parse_args(argv)
    from ..models.transformer_tekken import format_preset_table

    sys.stdout.write(format_preset_table() + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
