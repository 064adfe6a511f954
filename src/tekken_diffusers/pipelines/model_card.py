"""The files a saved pipeline folder carries beside diffusers' own: the model card (`README.md`) and the one-line
`pipeline.py` that lets `DiffusionPipeline.from_pretrained(dir, custom_pipeline=dir, trust_remote_code=True)` find
`TekkenWorldModelPipeline` without tekken-diffusers imported."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .pipeline_tekken import TekkenWorldModelPipeline

__all__ = ["MODEL_CARD_TEMPLATE", "PIPELINE_PY", "default_model_card", "write_pipeline_py"]

# The module path is the one saved folders have always named; it must keep importing the pipeline class.
PIPELINE_PY = (
    "# Lets `DiffusionPipeline.from_pretrained(dir, custom_pipeline=dir, trust_remote_code=True)` find the\n"
    "# class; it runs the installed tekken-diffusers package, nothing else.\n"
    "from tekken_diffusers.pipelines.pipeline_tekken import TekkenWorldModelPipeline  # noqa: F401\n"
)

MODEL_CARD_TEMPLATE = """---
library_name: diffusers
tags:
- world-model
- tekken-diffusers
- action-conditioned
- video-generation
---

# Action-conditioned world model (tekken-diffusers)

A frame-causal diffusion transformer that generates the next frames of a game from a starting context and the
player's inputs (8 buttons per frame: Up, Down, Left, Right, 1, 2, 3, 4), one frame at a time with a KV cache.

| component | |
|---|---|
| transformer | `TekkenWorldModelTransformer`, {params} parameters: {layers} layers, width {width}, {heads} heads |
| latents | {latent} per frame, patch size {patch} |
| attention | frame-causal; windows: local {local_window}, global {global_window} (every {global_every} layers) |
| predicts | {prediction} |
| scheduler | `TekkenFlowMatchScheduler` (per-frame flow matching), shift {shift}, context noise {context_noise} |
| VAE | {vae} |{opponent}

## Use

```python
from tekken_diffusers import TekkenWorldModelPipeline

pipe = TekkenWorldModelPipeline.from_pretrained("PATH_OR_REPO")
frames = pipe(context=context_frames, actions="f*8, 1, n*7").frames[0]  # steps: scheduler default_inference_steps

session = pipe.start_session(context=context_frames)  # interactive play
next_frame = session.step("d/f+1")
```

Without tekken-diffusers imported, `DiffusionPipeline.from_pretrained(PATH, custom_pipeline=PATH,
trust_remote_code=True)` loads it through the bundled `pipeline.py` (which needs `pip install tekken-diffusers`).
"""


def default_model_card(pipe: TekkenWorldModelPipeline) -> str:
    """A model card (`README.md` text) built from the pipeline's component configs."""
    t = pipe.transformer.config
    params = sum(p.numel() for p in pipe.transformer.parameters())
    vae = "none (the pipeline works on latents)" if pipe.vae is None else f"`{type(pipe.vae).__name__}`"
    if pipe.temporal_compression_ratio > 1:
        vae += (
            f": one latent frame per {pipe.temporal_compression_ratio} game frames, whose inputs are pooled by "
            f"`{pipe.action_pooling}` (`action_pooling`)"
        )
    opponent = ""
    if getattr(pipe, "opponent", None) is not None:
        o = pipe.opponent.config
        count = sum(p.numel() for p in pipe.opponent.parameters())
        frames = pipe.opponent.num_input_frames
        inputs = f" and the inputs of the last {frames}" if frames != o.context_frames else ""
        opponent = (
            f"\n| opponent | `TekkenOpponentPolicy`, {count / 1e6:.2f} M parameters: plays player 2 where its "
            f"inputs are not given, drawing each input from the last {o.context_frames} frames{inputs} "
            f"(temperature {o.temperature}) |"
        )
    return MODEL_CARD_TEMPLATE.format(
        opponent=opponent,
        params=f"{params / 1e6:.1f} M",
        layers=t.num_layers,
        width=t.num_attention_heads * t.attention_head_dim,
        heads=t.num_attention_heads,
        latent=f"{t.in_channels}×{t.sample_size[0]}×{t.sample_size[1]}",
        patch=t.patch_size,
        local_window=t.local_window,
        global_window=t.global_window,
        global_every=t.global_every,
        vae=vae,
        prediction=(
            "the clean frame as the previous frame plus a learned correction (copy path, `prev_frame_residual`)"
            if getattr(t, "prediction_type", "flow") == "prev_frame_residual"
            else "the flow velocity `noise - latents`"
            + (", with the previous frame on a copy path" if getattr(t, "prev_frame_conditioning", False) else "")
        ),
        context_noise=pipe.scheduler.config.context_noise,
        shift=pipe.scheduler.config.shift,
    )


def write_pipeline_py(folder: str | os.PathLike) -> Path:
    """Write `pipeline.py` into a saved pipeline folder; returns its path."""
    path = Path(folder) / "pipeline.py"
    path.write_text(PIPELINE_PY)
    return path
