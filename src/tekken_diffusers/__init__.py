"""tekken-diffusers: action-conditioned fighting-game world models as Hugging Face diffusers pipelines.

Data flow: actions → rounds (.npz) → latent episodes (datasets) → transformer + scheduler → pipeline → app.
"""

__version__ = "0.1.0"

from . import actions, data
