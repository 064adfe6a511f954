"""Models: the world-model transformer and the autoencoders (every VAE behaves like diffusers' AutoencoderKL)."""

from .autoencoders import LTXVideoVAE, TekkenAutoencoderDC, WanVAE
from .growth import grow_transformer
from .opponent_policy import TekkenOpponentPolicy
from .transformer_tekken import (
    TRANSFORMER_PRESETS,
    TekkenFrameConditioning,
    TekkenKVCache,
    TekkenWorldModelTransformer,
)
