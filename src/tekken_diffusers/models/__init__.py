"""Models: the world-model transformer and the autoencoders (every VAE behaves like diffusers' AutoencoderKL)."""

from .transformer_tekken import TRANSFORMER_PRESETS, TekkenKVCache, TekkenWorldModelTransformer
