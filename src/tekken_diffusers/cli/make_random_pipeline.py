"""Save a randomly initialised pipeline (to try generate.py and app.py before a trained model exists)."""

import argparse
import logging

from ..pipelines import build_random_pipeline
from . import setup_logging

logger = logging.getLogger("make_random_pipeline")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--out", required=True, help="output pipeline folder")
    parser.add_argument("--preset", default="tiny", help="transformer preset (see TRANSFORMER_PRESETS)")
    parser.add_argument(
        "--vae", default="tiny", help="'tiny' (8x8 frames) or a VAE folder (e.g. pipelines/boxing-dcae)"
    )
    parser.add_argument("--seed", type=int, default=0, help="weights seed")
    args = parser.parse_args(argv)
    setup_logging()
    vae = args.vae
    overrides = {}
    if vae != "tiny":
        from ..models.autoencoders import TekkenAutoencoderDC

        vae = TekkenAutoencoderDC.from_pretrained(vae)
        factor = vae.spatial_compression_ratio
        overrides = dict(in_channels=vae.config.latent_channels, sample_size=(64 // factor, 64 // factor))
    pipe = build_random_pipeline(args.preset, vae=vae, seed=args.seed, **overrides)
    pipe.save_pretrained(args.out)
    logger.info("saved a random %s pipeline to %s", args.preset, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
