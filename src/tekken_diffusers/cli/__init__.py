"""Command-line programs. Each module has a `main(argv)`; `scripts/*.py` and the console scripts call them."""

import logging


def setup_logging(verbose: bool = False) -> None:
    """Plain, timestamped log lines on stderr for command-line runs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
