"""tekken-diffusers: action-conditioned fighting-game world models as Hugging Face diffusers pipelines.

Data flow: actions → rounds (.npz) → latent episodes (datasets) → transformer + scheduler → pipeline → app.

Every component module is imported here, eagerly: diffusers 0.42 resolves the classes named in a saved
`model_index.json` only through modules already in `sys.modules`.
"""

__version__ = "0.1.0"

from . import actions, data
from .models import TRANSFORMER_PRESETS, TekkenKVCache, TekkenOpponentPolicy, TekkenWorldModelTransformer
from .models.autoencoders import LTXVideoVAE, TekkenAutoencoderDC, WanVAE
from .pipelines import TekkenRollout, TekkenWorldModelPipeline, TekkenWorldModelPipelineOutput, TekkenWorldModelSession
from .schedulers import TekkenFlowMatchScheduler

__all__ = [
    "LTXVideoVAE",
    "TRANSFORMER_PRESETS",
    "TekkenAutoencoderDC",
    "TekkenFlowMatchScheduler",
    "TekkenKVCache",
    "TekkenOpponentPolicy",
    "TekkenRollout",
    "TekkenWorldModelPipeline",
    "TekkenWorldModelPipelineOutput",
    "TekkenWorldModelSession",
    "TekkenWorldModelTransformer",
    "WanVAE",
    "actions",
    "data",
]
