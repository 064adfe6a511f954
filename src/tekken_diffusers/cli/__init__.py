"""Command-line programs, one rule for all: each command is a module here with `main(argv: list[str] | None = None)
-> int` and a `tekken-*` console script in setup.py (the README's command table lists them). The files in `scripts/`
and `pipelines/` are thin entry points that call these `main`s; `train` and `train_vae` run the accelerate scripts
in `training/`. Options are kebab-case (`--context-frames`), except training options, which keep the snake_case
field names of the typed config and its YAML files (`--max_train_steps`)."""

import logging


def setup_logging(verbose: bool = False) -> None:
    """Plain, timestamped log lines on stderr for command-line runs."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def transformer_width(pipeline: str) -> int | None:
    """Hidden width of a pipeline's transformer, read from its config (a local folder or a Hub id) before loading the
    weights, so that `--dtype auto` can keep fp32 for narrow models (`runtime.BF16_MIN_CPU_WIDTH`). None where the
    config cannot be read; loading the pipeline then reports why."""
    from ..models import TekkenWorldModelTransformer

    try:
        config = TekkenWorldModelTransformer.load_config(pipeline, subfolder="transformer")
        return int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    except Exception:  # missing folder, offline Hub, another model: from_pretrained gives the user the real error
        return None
