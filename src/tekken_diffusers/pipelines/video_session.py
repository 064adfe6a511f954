"""The interactive session of a pipeline whose VAE compresses time (`LTXVideoVAE` ×8, `WanVAE` ×4).

One model frame is one latent frame, `r` game frames, so one `step` is one latent frame: it takes the inputs of its
`r` game frames (`r` inputs, or one input held for all `r`), pools them to one input by the pipeline's
`action_pooling` rule (the rule the model was trained with), generates the latent frame, and returns its `r` decoded
frames.

A video VAE decodes a latent frame in the light of the latent frames before it (a clip's first latent frame decodes
to a single frame), so each step decodes the clip `[the last decode_history latent frames, the new one]` and keeps
the new frame's `r` frames (`vae_io.decode_after`). Time per step stays constant. Decoding the whole rollout at once
(`TekkenWorldModelPipeline.__call__`) sees every earlier latent frame, and, with a decoder that is not causal
(LTX-Video's), the later ones too, so a session's frames can differ slightly from a call's under the same noise; the
latents are the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ..actions import NUM_BUTTONS, pool_action_bits
from . import vae_io
from .inputs import actions_to_bits, is_bits, opponent_side
from .rollout import TekkenRollout, TekkenWorldModelSession

if TYPE_CHECKING:
    from .pipeline_tekken import TekkenWorldModelPipeline

__all__ = ["DEFAULT_DECODE_HISTORY", "TekkenVideoWorldModelSession", "check_decode_history"]

# Latent frames decoded before each step's new one (for LTX-Video, 4 × 8 = 32 game frames, 2 s at 15 Hz): enough of
# the decoder's view of the past to continue the clip, at a constant cost per step.
DEFAULT_DECODE_HISTORY = 4

StepInput = int | str | Sequence[int] | Sequence[str] | np.ndarray | torch.Tensor


def check_decode_history(decode_history: int | None, ratio: int, vae_name: str) -> None:
    """Refuse a `decode_history` (of `start_session`) that the pipeline cannot use: one given to a pipeline whose VAE
    (`vae_name`, temporal compression `ratio`) does not compress time, or one that is not an int >= 1."""
    if decode_history is not None and ratio == 1:
        raise ValueError(
            "`decode_history`: only a video VAE (temporal compression > 1) decodes a step's frames after earlier "
            f"latent frames; this pipeline's VAE ({vae_name}) does not compress time"
        )
    if decode_history is not None and (not isinstance(decode_history, int) or decode_history < 1):
        raise ValueError(f"`decode_history` must be an int >= 1 (latent frames), got {decode_history!r}")


class TekkenVideoWorldModelSession(TekkenWorldModelSession):
    """A live game with a video VAE: each `step` is one latent frame, `r` game frames (see the module docstring).
    Made by [`TekkenWorldModelPipeline.start_session`] when the pipeline's VAE compresses time.

    Args:
        pipe ([`TekkenWorldModelPipeline`]): Converts inputs and decodes frames.
        rollout ([`TekkenRollout`]): A rollout of batch size 1 whose cache already holds the context.
        generator (`torch.Generator`, *optional*): Draws every frame's noise.
        output_type (`str`): `"pil"`, `"np"`, `"pt"` or `"latent"`.
        side (`str`): Where player 1 stands, for notation.
        context_latents (`torch.Tensor`): The context's normalised latents `(1, T, C, h, w)`; the last
            `decode_history` of them start the decoder's view of the past.
        decode_history (`int`): Latent frames decoded before each step's new one (at least 1).
    """

    def __init__(
        self,
        pipe: TekkenWorldModelPipeline,
        rollout: TekkenRollout,
        generator: torch.Generator | None,
        output_type: str,
        side: str,
        context_latents: torch.Tensor,
        decode_history: int = DEFAULT_DECODE_HISTORY,
    ):
        super().__init__(pipe, rollout, generator, output_type, side)
        if decode_history < 1:
            raise ValueError(f"decode_history must be >= 1 latent frame, got {decode_history}")
        self.ratio = pipe.temporal_compression_ratio
        self.decode_history = decode_history
        self._initial_history = context_latents[:, -decode_history:].detach().clone()  # (1, H, C, h, w)
        self._history = self._initial_history.clone()

    def _latent_frame_input(self, action: Any, side: str, name: str) -> torch.Tensor:
        """One player's inputs for one latent frame → its pooled bits `(1, 8)`."""
        r = self.ratio
        if isinstance(action, (int, np.integer)) and not isinstance(action, bool):
            action = [int(action)]
        elif isinstance(action, (list, tuple)) and action and all(isinstance(a, (bool, float)) for a in action):
            action = np.asarray(action, dtype=np.float32)  # 8 bits, as `TekkenWorldModelSession.step` reads them
        if isinstance(action, (np.ndarray, torch.Tensor)) and is_bits(action) and action.ndim == 1:
            action = action[None]  # one bit vector (8,)
        bits = actions_to_bits(action, side, name, max_inputs=r)  # (n, 8)
        if len(bits) == 1:
            bits = bits.expand(r, NUM_BUTTONS)  # one input held for the latent frame's r game frames
        elif len(bits) != r:
            raise ValueError(
                f"{name}: one step is one latent frame of {r} game frames ({type(self.pipe.vae).__name__}); give "
                f"{r} inputs, one per game frame, or one input held for all {r}; got {len(bits)}"
            )
        return pool_action_bits(bits, r, mode=self.pipe.action_pooling, starts_clip=False)  # (1, 8)

    @torch.no_grad()
    def step(
        self,
        action: StepInput,
        action_p2: StepInput | None = None,
        noise: torch.Tensor | None = None,
    ):
        """Generate the next latent frame under the inputs of its `r` game frames, and return its `r` frames.

        Args:
            action: player 1's inputs for the `r` game frames: one input held for all of them (an action id, one
                notation token such as `"d/f+2"`, or 8 bits), or one per game frame (notation with `r` inputs such
                as `"f*4, n*4"`, a list of `r` ids or notation strings, an integer array `(r,)`, or bits `(r, 8)`).
                They are pooled to the latent frame's one input by the pipeline's `action_pooling`.
            action_p2: player 2's inputs in the same forms, for a two-player model (required there, refused by a
                one-player model); notation is read for player 2's side, the other one.
            noise (`torch.Tensor`, *optional*): Initial noise `(1, 1, C, h, w)` of the latent frame.

        Returns:
            The `r` frames: a list of PIL images, an `(r, H, W, 3)` array in [0, 1] or an `(r, 3, H, W)` tensor in
            [0, 1]; or the latent frame `(C, h, w)` for `output_type="latent"`.
        """
        self.check_players(action_p2)
        bits = self._latent_frame_input(action, self.side, "action")  # (1, 8)
        if action_p2 is not None:
            bits_p2 = self._latent_frame_input(action_p2, opponent_side(self.side), "action_p2")
            bits = torch.stack([bits, bits_p2], dim=1)  # (1, 2, 8)
        bits = bits[None].to(self.rollout.device)  # (1, 1, [2,] 8)
        latents = self.rollout.next_frame(bits, self.generator, noise=noise)  # (1, 1, C, h, w)
        self.num_steps += 1
        history = self._history.to(latents.device, latents.dtype)
        self._history = torch.cat([history, latents], dim=1)[:, -self.decode_history :]
        if self.output_type == "latent":
            return latents[0, 0]
        frames = vae_io.decode_after(self.pipe.vae, history, latents)  # (1, 3, r, H, W)
        return self.pipe.video_processor.postprocess_video(frames, self.output_type)[0]

    def reset(self) -> None:
        """Forget every generated frame: back to the state right after the context."""
        super().reset()
        self._history = self._initial_history.clone()
