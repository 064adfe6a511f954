"""Randomly initialised pipelines: for tests, for trying the tools before a trained model exists, and as the
starting point of training."""

from __future__ import annotations

import torch

from ..models.autoencoders import TekkenAutoencoderDC
from ..models.transformer_tekken import TekkenWorldModelTransformer
from ..schedulers.scheduling_tekken_flow_match import TekkenFlowMatchScheduler
from .pipeline_tekken import TekkenWorldModelPipeline

__all__ = ["TINY_VAE_CONFIG", "build_random_pipeline"]

# 8×8 RGB frames → 4×4×4 latents (one downsampling stage): matches the "tiny" transformer preset.
TINY_VAE_CONFIG = dict(
    in_channels=3,
    latent_channels=4,
    encoder_block_out_channels=(8, 16),
    decoder_block_out_channels=(8, 16),
    encoder_layers_per_block=(1, 1),
    decoder_layers_per_block=(1, 1),
    encoder_qkv_multiscales=((), ()),
    decoder_qkv_multiscales=((), ()),
    encoder_block_types="ResBlock",
    decoder_block_types="ResBlock",
)


def build_random_pipeline(
    preset: str = "tiny",
    vae: TekkenAutoencoderDC | None | str = "tiny",
    seed: int = 0,
    perturb_zero_init: bool = True,
    **transformer_overrides,
) -> TekkenWorldModelPipeline:
    """A pipeline with random weights.

    Args:
        preset: transformer size (`TRANSFORMER_PRESETS`).
        vae: `"tiny"` for `TINY_VAE_CONFIG`, a VAE instance (e.g. a trained one), or None for a latent-only pipeline.
        seed: weights are a function of the seed.
        perturb_zero_init: give the adaLN-Zero and output layers small random weights. A freshly initialised model
            outputs exactly zero, which makes every generated frame the same; perturbed, outputs depend on the inputs.
        **transformer_overrides: config values replacing the preset's (e.g. `in_channels`).
    """
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        transformer = TekkenWorldModelTransformer.from_preset(preset, **transformer_overrides)
        if perturb_zero_init:
            with torch.no_grad():
                for name, parameter in transformer.named_parameters():
                    if "adaLN_modulation" in name or "norm_out_modulation" in name or "proj_out" in name:
                        parameter.normal_(0.0, 0.05)
        if vae == "tiny":
            vae = TekkenAutoencoderDC(**TINY_VAE_CONFIG)
    finally:
        torch.random.set_rng_state(generator_state)
    transformer.eval()
    if vae is not None:
        vae.eval()
    return TekkenWorldModelPipeline(transformer=transformer, scheduler=TekkenFlowMatchScheduler(), vae=vae)
