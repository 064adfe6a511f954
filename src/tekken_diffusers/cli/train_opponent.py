"""Train an opponent policy (`TekkenOpponentPolicy`) on a latent dataset with both players' inputs, and optionally
attach it to a two-player pipeline, which then plays player 2 by itself wherever its inputs are not given.

    tekken-train-opponent --dataset data/boxing-vs-console_latents --out outputs/opponent
    tekken-train-opponent --dataset data/boxing-vs-console_latents data/boxing-extra-vs-console_latents --out ...
    tekken-train-opponent --dataset data/boxing-vs-console_latents --pipeline outputs/boxing-vs-console \\
        --out outputs/boxing-vs-console-with-opponent

Writes the model (`save_pretrained` layout) and `opponent_metrics.json` (negative log-likelihood and accuracy of the
policy and the inverse model on train and val, beside repeating the previous input and the most common input). With
`--pipeline`, `--out` is the whole pipeline with the policy as its `opponent` component.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
from dataclasses import fields
from pathlib import Path

from ..opponent_training import METRICS_FILE, OpponentTrainingConfig, train_opponent_policy
from . import setup_logging

logger = logging.getLogger("train_opponent")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = OpponentTrainingConfig()
    parser.add_argument(
        "--dataset",
        required=True,
        nargs="+",
        help="latent dataset folder(s) with player 2's inputs (actions_p2); several are pooled (same latent shape)",
    )
    parser.add_argument("--out", required=True, help="folder to write (the policy, or the pipeline with --pipeline)")
    parser.add_argument("--pipeline", default=None, help="a two-player pipeline folder to attach the policy to")
    parser.add_argument("--steps", type=int, default=defaults.steps, help="optimizer steps (default %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size, help="frames per step")
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate, help="peak (one-cycle) rate")
    parser.add_argument(
        "--context-frames", type=int, default=defaults.context_frames, help="past latent frames it reads"
    )
    parser.add_argument(
        "--input-frames",
        type=int,
        default=defaults.input_frames,
        help="past frames whose inputs (both players') it reads; at least --context-frames (default: as many)",
    )
    parser.add_argument("--hidden-dim", type=int, default=defaults.hidden_dim, help="width of features and heads")
    parser.add_argument(
        "--noise-max", type=float, default=defaults.noise_max, help="largest re-noising σ of the frames it reads"
    )
    parser.add_argument(
        "--temperature", type=float, default=defaults.temperature, help="sampling temperature saved with the policy"
    )
    parser.add_argument(
        "--no-player-1-input",
        dest="reads_player_1_input",
        action="store_false",
        help="the policy does not read player 1's input of the frame it draws for (it does by default)",
    )
    parser.add_argument("--seed", type=int, default=defaults.seed, help="random seed")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    for name in ("steps", "batch_size", "context_frames", "hidden_dim"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.input_frames is not None and args.input_frames < args.context_frames:
        parser.error(f"--input-frames must be >= --context-frames ({args.context_frames}), got {args.input_frames}")
    if args.learning_rate <= 0:
        parser.error(f"--learning-rate must be > 0, got {args.learning_rate}")
    if not 0 <= args.noise_max < 1:
        parser.error(f"--noise-max must lie in [0, 1), got {args.noise_max}")
    if args.temperature < 0:
        parser.error(f"--temperature must be >= 0 (0: always the most likely input), got {args.temperature}")
    for dataset in args.dataset:
        if not Path(dataset).is_dir():
            parser.error(f"--dataset {dataset}: not a folder")
    pipe = None
    if args.pipeline is not None:
        from ..pipelines import TekkenWorldModelPipeline

        if not (Path(args.pipeline) / "model_index.json").is_file():
            parser.error(f"--pipeline {args.pipeline}: not a pipeline folder (no model_index.json)")
        pipe = TekkenWorldModelPipeline.from_pretrained(args.pipeline)
        if pipe.num_players != 2:
            parser.error(f"--pipeline {args.pipeline}: a one-player model (num_players=1); an opponent plays player 2")
    if Path(args.out).exists() and not args.overwrite:
        parser.error(f"--out {args.out}: already exists (pass --overwrite to replace it)")
    config = OpponentTrainingConfig(
        **{field.name: vars(args)[field.name] for field in fields(OpponentTrainingConfig) if field.name in vars(args)}
    )
    if pipe is None:
        try:
            model, metrics = train_opponent_policy(args.dataset, args.out, config)
        except (FileNotFoundError, ValueError) as error:
            parser.error(str(error))
    else:
        from ..pipelines import TekkenWorldModelPipeline
        from ..training_utils import save_pretrained_atomically

        source = Path(args.pipeline)  # read before saving: --out may be the same folder
        card = (source / "README.md").read_text() if (source / "README.md").is_file() else None
        extras = {
            name: (source / name).read_bytes()
            for name in ("train_summary.json", "train_config.json")
            if (source / name).is_file()
        }
        with tempfile.TemporaryDirectory(prefix="opponent-") as scratch:
            try:
                model, metrics = train_opponent_policy(args.dataset, Path(scratch) / "opponent", config)
            except (FileNotFoundError, ValueError) as error:
                parser.error(str(error))
            with_opponent = TekkenWorldModelPipeline(
                pipe.transformer, pipe.scheduler, pipe.vae, action_pooling=pipe.config.action_pooling, opponent=model
            )
            out = save_pretrained_atomically(with_opponent, args.out, model_card=card)
            shutil.copy(Path(scratch) / "opponent" / METRICS_FILE, out / METRICS_FILE)
        for name, content in extras.items():
            (out / name).write_bytes(content)
    val = metrics.get("val", metrics["train"])
    logger.info(
        "policy accuracy %.3f (repeat previous %.3f, most common %.3f), inverse accuracy %.3f; wrote %s",
        val["policy_accuracy"], val["baseline_repeat_previous_accuracy"], val["baseline_most_common_accuracy"],
        val["inverse_accuracy"], args.out,
    )  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
