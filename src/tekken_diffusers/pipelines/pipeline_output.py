"""What `TekkenWorldModelPipeline.__call__` returns (diffusers keeps each pipeline's output class in its own
`pipeline_output.py`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers.utils import BaseOutput

__all__ = ["TekkenWorldModelPipelineOutput"]


@dataclass
class TekkenWorldModelPipelineOutput(BaseOutput):
    """
    Output of [`TekkenWorldModelPipeline`].

    Args:
        frames (`list[list[PIL.Image.Image]]`, `np.ndarray` or `torch.Tensor`):
            The generated frames (context excluded): a list of PIL lists, a `(batch, frames, height, width, 3)` array
            in [0, 1], a `(batch, frames, 3, height, width)` tensor in [0, 1], or normalised latents
            `(batch, frames, channels, latent_height, latent_width)` for `output_type="latent"`.
    """

    frames: list[list[PIL.Image.Image]] | np.ndarray | torch.Tensor
