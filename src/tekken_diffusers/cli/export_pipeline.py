"""Export a trained pipeline folder for shipping: the transformer's weights stored in bf16 (half the size; the
timestep embedding stays fp32, and loading without `dtype=` gives an fp32 model again), the VAE and scheduler as
they are, the model card kept. Optionally pushes the result to the Hub.

    tekken-export --pipeline outputs/boxing-world-model --out pipelines/boxing-world-model
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path

import torch

from ..pipelines import TekkenWorldModelPipeline
from ..training_utils import save_pretrained_atomically
from . import setup_logging

logger = logging.getLogger("export_pipeline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", required=True, help="trained pipeline folder (train_world_model.py output)")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--dtype", choices=["bfloat16", "float32"], default="bfloat16", help="transformer storage")
    parser.add_argument("--push-to-hub", metavar="REPO_ID", default=None, help="also upload to this Hub model repo")
    args = parser.parse_args(argv)
    setup_logging()

    source = Path(args.pipeline)
    pipe = TekkenWorldModelPipeline.from_pretrained(source)
    if args.dtype == "bfloat16":
        transformer = pipe.transformer
        keep = tuple(transformer._keep_in_fp32_modules or ())
        with torch.no_grad():
            for name, parameter in transformer.named_parameters():
                if not name.startswith(keep):
                    parameter.data = parameter.data.to(torch.bfloat16)
    card = (source / "README.md").read_text() if (source / "README.md").is_file() else None
    out = save_pretrained_atomically(pipe, args.out, model_card=card)
    for extra in ("train_summary.json", "train_config.json"):
        if (source / extra).is_file():
            shutil.copy(source / extra, out / extra)
    size = sum(p.stat().st_size for p in out.rglob("*.safetensors")) / 1e6
    logger.info("wrote %s (%.1f MB of weights, transformer in %s)", out, size, args.dtype)
    if args.push_to_hub:
        pipe.save_pretrained(out, push_to_hub=True, repo_id=args.push_to_hub, model_card=card)
        logger.info("pushed %s to %s", out, args.push_to_hub)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
