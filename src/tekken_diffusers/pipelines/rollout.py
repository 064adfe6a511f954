"""The autoregressive rollout of a world model, and the interactive session built on it.

[`TekkenRollout`] holds what sampling carries from one frame to the next: the transformer's KV cache (one part per
guidance branch), the Euler schedule and the per-frame loop. Past frames enter the cache re-noised to
`context_noise` by [`TekkenFlowMatchScheduler.add_context_noise`]; each new frame starts from pure noise and is
denoised in `num_inference_steps` Euler steps against the read-only cache. `TekkenWorldModelPipeline.__call__`,
[`TekkenWorldModelSession`] and the evaluation (`tekken_diffusers.evaluation.world_model`) all sample through it.

The rollout is apart from the pipeline as DIAMOND keeps its `WorldModelEnv` apart from the sampler: the pipeline
checks and converts inputs and decodes outputs; the rollout only steps the model.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from diffusers.utils.torch_utils import randn_tensor

from ..actions import bits_to_ids
from ..models.transformer_tekken import TekkenFrameConditioning, TekkenKVCache
from .inputs import opponent_side

if TYPE_CHECKING:
    from .pipeline_tekken import TekkenWorldModelPipeline

__all__ = ["GuidanceScale", "TekkenRollout", "TekkenWorldModelSession", "guidance_branches"]

# One guidance scale for every player's inputs, or (player 1, player 2) for a two-player model.
GuidanceScale = float | tuple[float, float]
# `on_step(step, timestep, latents)` after every Euler step; returns the latents to continue from.
StepCallback = Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor]


def guidance_branches(guidance_scale: GuidanceScale, num_players: int) -> list[tuple[bool, ...]]:
    """Which players keep their inputs in each branch of the batch: conditional first, the null action of every
    player last, and for two different per-player scales a middle branch with player 1's inputs only."""
    scales = guidance_scale if isinstance(guidance_scale, (tuple, list)) else (guidance_scale,) * num_players
    if max(scales) <= 1.0:
        return [(True,) * num_players]
    if len(set(scales)) == 1:
        return [(True,) * num_players, (False,) * num_players]
    return [(True, True), (True, False), (False, False)]


class TekkenRollout:
    r"""
    Autoregressive sampling state of a [`TekkenWorldModelPipeline`]: one KV cache, the Euler schedule and the
    per-frame loop. The pipeline's `__call__`, its sessions and the evaluation sample through it; inputs are
    already tensors here (the pipeline converts notation, frames and ids).

    Args:
        pipe ([`TekkenWorldModelPipeline`]): Supplies the transformer, the scheduler and the latent size.
        batch_size (`int`, defaults to 1): Clips rolled out together.
        num_inference_steps (`int`, *optional*): Euler steps per frame; defaults to the pipeline's
            `default_inference_steps` (from its scheduler's config).
        guidance_scale (`float` or `(float, float)`, defaults to 1.0): Classifier-free guidance on the inputs, as in
            `TekkenWorldModelPipeline.__call__` (each branch is one more copy of the batch in the cache).
        context_noise (`float`, *optional*): Noise level of the frames in the cache; `None` means the scheduler's
            `context_noise`, resolved by `scheduler.add_context_noise` at each append.
        attention_window (`int`, *optional*): Cap on the past frames any layer attends to; defaults to each layer's
            trained window.
        device (`torch.device`, *optional*): Where the rollout runs; defaults to the pipeline's execution device.

    Example:
        ```py
        >>> rollout = TekkenRollout(pipe, batch_size=1, num_inference_steps=4)
        >>> rollout.append(context_latents, context_bits, generator)  # (1, T, C, h, w), (1, T, 8)
        >>> latents = rollout.generate(future_bits, generator)  # (1, N, C, h, w)
        ```
    """

    def __init__(
        self,
        pipe: TekkenWorldModelPipeline,
        batch_size: int = 1,
        num_inference_steps: int | None = None,
        guidance_scale: GuidanceScale = 1.0,
        context_noise: float | None = None,
        attention_window: int | None = None,
        device: torch.device | str | None = None,
    ):
        self.pipe = pipe
        self.batch_size = batch_size
        if num_inference_steps is None:
            num_inference_steps = pipe.default_inference_steps
        self.num_inference_steps = num_inference_steps
        self.context_noise = context_noise
        self.guidance_scale = guidance_scale
        self.num_players = pipe.transformer.config.get("num_players", 1)
        self.branches = guidance_branches(guidance_scale, self.num_players)
        self.device = torch.device(device) if device is not None else pipe._execution_device
        self.cache: TekkenKVCache = pipe.transformer.make_kv_cache(max_frames=attention_window)
        # A two-player model's opponent policy (`pipe.opponent`) picks player 2's input wherever it is NaN; it reads
        # the last frames (clean latents) and both players' inputs of them, kept here.
        self.opponent = getattr(pipe, "opponent", None) if self.num_players == 2 else None
        # Read once here: diffusers' `ModelMixin.dtype`/`.device` walk every submodule (~0.15 ms a call, several per
        # frame). Move or cast the pipeline between rollouts, not during one.
        self.model_dtype = pipe.transformer.dtype
        self._opponent_at = (self.opponent.device, self.opponent.dtype) if self.opponent is not None else None
        self._history: tuple[torch.Tensor, torch.Tensor] | None = None
        # Writing queued frames in the next frame's first pass equals writing them on their own only when every layer
        # keeps its whole window: a cache capped below it (`attention_window`) would let that pass see past frames
        # the later passes no longer see, so a capped rollout writes in a pass of its own.
        needed = [window - 1 for window in pipe.transformer.cache_layer_windows]
        self.merge_cache_writes = all(kept >= need for kept, need in zip(self.cache.max_frames, needed))
        # Frames appended but not yet written into the cache: (re-noised latents, sigmas, bits). They are written by
        # the first denoising pass of the next frame (one forward fewer per frame) or by `flush()`.
        self._pending: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        # A private copy of the schedule, stepped with the stateless `step_per_frame`: sessions and calls must not
        # disturb each other through the scheduler's step index.
        pipe.scheduler.set_timesteps(num_inference_steps, device=self.device)
        self.sigmas = pipe.scheduler.sigmas.clone().float()
        self.timesteps = pipe.scheduler.timesteps.clone().float()  # sigmas[:-1] in diffusers' timestep scale

    @property
    def do_guidance(self) -> bool:
        """Whether the batch carries more than the conditional branch."""
        return len(self.branches) > 1

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """The shape of one generated frame's latents: `(batch_size, 1, C, h, w)`."""
        return (self.batch_size, 1, self.pipe.transformer.config.in_channels, *self.pipe.latent_size)

    def _branches(self, *tensors: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor | None]:
        """The tensors repeated once per guidance branch along the batch, and the branches' action mask
        (`(copies*B,)` or `(copies*B, P)`: conditional, ..., null); unchanged and `None` without guidance."""
        if not self.do_guidance:
            return list(tensors), None
        copies = len(self.branches)
        keep = torch.tensor(self.branches, device=self.device).repeat_interleave(self.batch_size, dim=0)
        mask = keep[:, 0] if self.num_players == 1 else keep
        return [torch.cat([x] * copies) for x in tensors], mask

    def _conditioning(self, sigmas: torch.Tensor, bits: torch.Tensor) -> TekkenFrameConditioning:
        """The transformer's conditioning of frames at `sigmas` `(B, F)` under `bits` `(B, F, [P,] 8)`, one copy of
        the batch per guidance branch, in one matmul (`TekkenWorldModelTransformer.condition`)."""
        (sigmas, bits), mask = self._branches(sigmas, bits)
        return self.pipe.transformer.condition(sigmas, actions=bits.to(self.model_dtype), action_mask=mask)

    def _forward(
        self,
        latents: torch.Tensor,
        sigmas: torch.Tensor,
        bits: torch.Tensor,
        update: bool,
        cache_leading_frames: int | None = None,
        conditioning: TekkenFrameConditioning | None = None,
    ) -> torch.Tensor:
        """Run the transformer on `(B, F, C, h, w)` latents under bits `(B, F, [P,] 8)`, one copy of the batch per
        guidance branch (`conditioning`: theirs from `_conditioning`, made ahead). Returns the fp32 velocity."""
        transformer = self.pipe.transformer
        (latents, sigmas, bits), mask = self._branches(latents, sigmas, bits)
        velocity = transformer(
            latents.to(self.model_dtype),
            sigmas,
            actions=bits.to(self.model_dtype),
            action_mask=mask,
            kv_cache=self.cache,
            update_kv_cache=update,
            cache_leading_frames=cache_leading_frames,
            conditioning=conditioning,
        ).sample.float()
        if len(self.branches) == 2:
            cond, uncond = velocity.chunk(2)
            scale = self.guidance_scale
            scale = scale[0] if isinstance(scale, (tuple, list)) else scale  # equal per-player scales
            velocity = uncond + scale * (cond - uncond)
        elif len(self.branches) == 3:
            # Per-player scales (InstructPix2Pix's two-condition guidance, Brooks et al. 2023, eq. 3): player 1's
            # inputs against none, then player 2's on top of player 1's. Equal scales give the joint guidance above.
            both, p1_only, uncond = velocity.chunk(3)
            scale_p1, scale_p2 = self.guidance_scale
            velocity = uncond + scale_p1 * (p1_only - uncond) + scale_p2 * (both - p1_only)
        return velocity

    @torch.no_grad()
    def append(
        self, latents: torch.Tensor, bits: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None
    ) -> None:
        """Re-noise finished (or context) frames `(B, F, C, h, w)` to `context_noise` through the scheduler and queue
        them, under their inputs `(B, F, [P,] 8)`, for the cache.

        The noise is drawn now; the frames' keys and values are written by the first denoising pass of the next
        frame, which carries them in front of the new frame (so a frame costs `num_inference_steps` forwards, not one
        more), or by [`flush`]. With a cache capped below the trained windows they are written here, in a pass of
        their own.
        """
        self.remember(latents, bits)
        noisy, sigmas = self.pipe.scheduler.add_context_noise(
            latents.float(), generator=generator, context_noise=self.context_noise
        )
        if self._pending is not None:
            noisy, sigmas, bits = (
                torch.cat([old, new], dim=1) for old, new in zip(self._pending, (noisy, sigmas, bits))
            )
        self._pending = (noisy, sigmas, bits)
        if not self.merge_cache_writes:
            self.flush()

    @torch.no_grad()
    def flush(self) -> None:
        """Write the queued frames into the cache now (one forward pass); nothing to do when none are queued."""
        if self._pending is not None:
            self._forward(*self._pending, update=True)
            self._pending = None  # only once written: a pass that raises keeps them queued

    def remember(self, latents: torch.Tensor, bits: torch.Tensor) -> None:
        """Keep finished frames `(B, F, C, h, w)` and their inputs `(B, F, 2, 8)` for the opponent policy (as many as
        it reads: its `context_frames` latent frames, its `input_frames` inputs); nothing to keep without one."""
        if self.opponent is None:
            return
        keep = self.opponent.num_input_frames  # never fewer than its context_frames
        latents, bits = latents.detach().float(), bits.detach().float()
        if self._history is not None:
            latents = torch.cat([self._history[0], latents], dim=1)
            bits = torch.cat([self._history[1], bits.to(self._history[1].device)], dim=1)
        self._history = (latents[:, -keep:], bits[:, -keep:])

    def choose_opponent_inputs(
        self, bits: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None
    ) -> torch.Tensor:
        """Bits `(B, 1, 2, 8)` with player 2's input drawn from the opponent policy in every row where it is NaN
        (the pipeline's mark for "the opponent plays"); bits without NaN are returned as they are."""
        if self.num_players != 2 or not torch.isnan(bits).any():
            return bits
        if self.opponent is None:
            raise ValueError("player 2's input is missing and this pipeline has no opponent policy to choose it")
        if self._history is None:
            raise ValueError("the opponent policy needs at least one frame before the one to generate")
        opponent = self.opponent
        device, dtype = self._opponent_at
        latents, past = self._history
        latents = latents.to(device, dtype)
        past = past.to(device)
        temperature = opponent.config.temperature
        player_1 = bits[:, 0, 0].to(device)  # player 1's input of the frame to generate
        if isinstance(generator, list):
            chosen = torch.cat(
                [
                    opponent.sample(
                        latents[i : i + 1], past[i : i + 1], generator[i], temperature, player_1[i : i + 1]
                    )
                    for i in range(latents.shape[0])
                ]
            )
        else:
            chosen = opponent.sample(latents, past, generator, temperature, player_1)
        bits = bits.clone()
        missing = torch.isnan(bits[:, 0, 1]).any(dim=-1)
        bits[missing, 0, 1] = chosen.to(bits.device, bits.dtype)[missing]
        return bits

    def state(self) -> tuple[TekkenKVCache, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, torch.Tensor] | None]:
        """A copy of everything a later frame depends on (the cache, the queued frames and the opponent's history),
        for [`restore`]."""
        return copy.deepcopy((self.cache, self._pending, self._history))

    def restore(
        self, state: tuple[TekkenKVCache, tuple[torch.Tensor, ...] | None, tuple[torch.Tensor, torch.Tensor] | None]
    ) -> None:
        """Return to a [`state`] (which stays usable for another restore)."""
        self.cache, self._pending, self._history = copy.deepcopy(state)

    def _check_noise(self, noise: Any) -> None:
        shape = self.frame_shape
        if not isinstance(noise, torch.Tensor) or tuple(noise.shape) != shape:
            found = tuple(noise.shape) if isinstance(noise, torch.Tensor) else type(noise).__name__
            raise ValueError(f"`noise`: expected a tensor of shape {shape} (one frame's initial noise), got {found}")
        if not torch.isfinite(noise).all():
            raise ValueError("`noise`: holds NaN or inf values; the frame and every later one would be NaN")

    @torch.no_grad()
    def next_frame(
        self,
        bits: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None,
        noise: torch.Tensor | None = None,
        on_step: StepCallback | None = None,
        append: bool = True,
    ) -> torch.Tensor:
        """Denoise one new frame `(B, 1, C, h, w)` under `bits` `(B, 1, [P,] 8)`.

        Args:
            bits (`torch.Tensor`): The frame's inputs, `(B, 1, 8)` or `(B, 1, 2, 8)` for a two-player model, where
                NaN in player 2's input means the opponent policy chooses it (`choose_opponent_inputs`).
            generator: Draws the initial noise (unless `noise` is given) and the re-noising of the finished frame.
            noise (`torch.Tensor`, *optional*): Initial noise `(B, 1, C, h, w)`.
            on_step (`Callable`, *optional*): `on_step(step, timestep, latents)` runs after every Euler step, with
                `timestep` the step's entry of the scheduler's `timesteps`, and returns the latents to continue from.
            append (`bool`, defaults to `True`): Append the finished frame to the cache (teacher forcing appends the
                true frame instead).
        """
        bits = self.choose_opponent_inputs(bits, generator)
        if noise is not None:
            self._check_noise(noise)
            latents = noise.to(self.device)
        else:
            latents = randn_tensor(self.frame_shape, generator=generator, device=self.device)
        latents = latents.float()
        # Every pass's conditioning at once (the queued frames', then one "frame" per denoising step): the
        # modulation weights are read once per frame, not once per pass.
        num_steps = len(self.sigmas) - 1
        step_sigmas = self.sigmas[:-1].to(self.device).expand(self.batch_size, num_steps)
        step_bits = bits.expand(-1, num_steps, *bits.shape[2:])
        count = 0 if self._pending is None else self._pending[0].shape[1]
        if count:
            queued, queued_sigmas, queued_bits = self._pending
            step_sigmas = torch.cat([queued_sigmas.to(step_sigmas.dtype), step_sigmas], dim=1)
            step_bits = torch.cat([queued_bits, step_bits.to(queued_bits.dtype)], dim=1)
        conditioning = self._conditioning(step_sigmas, step_bits)
        for step, (sigma, sigma_next) in enumerate(zip(self.sigmas[:-1], self.sigmas[1:])):
            sigmas = sigma.expand(self.batch_size, 1)
            if step == 0 and count:
                # The queued frames go into the cache in this same pass, in front of the new frame.
                velocity = self._forward(
                    torch.cat([queued, latents], dim=1),
                    torch.cat([queued_sigmas.to(sigmas.dtype), sigmas], dim=1),
                    torch.cat([queued_bits, bits.to(queued_bits.dtype)], dim=1),
                    update=True,
                    cache_leading_frames=count,
                    conditioning=conditioning.frames(0, count + 1),
                )[:, count:]
                self._pending = None
            else:
                step_conditioning = conditioning.frames(count + step, count + step + 1)
                velocity = self._forward(latents, sigmas, bits, update=False, conditioning=step_conditioning)
            latents = self.pipe.scheduler.step_per_frame(
                velocity, sigmas, latents, sigma_next.expand(self.batch_size, 1)
            ).prev_sample
            if on_step is not None:
                latents = on_step(step, self.timesteps[step], latents)
        if append:
            self.append(latents, bits, generator)
        return latents

    @torch.no_grad()
    def generate(
        self,
        bits: torch.Tensor,
        generator: torch.Generator | list[torch.Generator] | None,
        noise: torch.Tensor | None = None,
        on_step: StepCallback | None = None,
    ) -> torch.Tensor:
        """The per-frame loop: one frame per input of `bits` `(B, N, [P,] 8)`, each appended to the cache before the
        next. Returns the latents `(B, N, C, h, w)`.

        Args:
            noise (`torch.Tensor`, *optional*): Initial noise of every frame, `(B, N, C, h, w)`.
            on_step (`Callable`, *optional*): As in [`next_frame`], with `step` counted over the whole call
                (`frame * num_inference_steps + step`, from 0 to `N * num_inference_steps - 1`).
        """
        generated = []
        for frame_index in range(bits.shape[1]):
            frame_on_step = None
            if on_step is not None:
                offset = frame_index * self.num_inference_steps

                def frame_on_step(step: int, timestep: torch.Tensor, latents: torch.Tensor, offset: int = offset):
                    return on_step(offset + step, timestep, latents)

            frame_noise = None if noise is None else noise[:, frame_index : frame_index + 1]
            frame_bits = bits[:, frame_index : frame_index + 1]
            generated.append(self.next_frame(frame_bits, generator, noise=frame_noise, on_step=frame_on_step))
        return torch.cat(generated, dim=1)  # (B, N, C, h, w)


class TekkenWorldModelSession:
    """A live game: call `step(action)` for each frame, `step(action, action_p2)` with a two-player model. Made by
    [`TekkenWorldModelPipeline.start_session`].

    Time and memory per step are constant (the KV cache keeps each layer's window). `reset()` returns to the state
    right after the context was read; sessions never share state.

    Args:
        pipe ([`TekkenWorldModelPipeline`]): Converts inputs and decodes frames.
        rollout ([`TekkenRollout`]): A rollout of batch size 1 whose cache already holds the context.
        generator (`torch.Generator`, *optional*): Draws every frame's noise.
        output_type (`str`): `"pil"`, `"np"`, `"pt"` or `"latent"`.
        side (`str`): Where player 1 stands, for notation.
    """

    def __init__(
        self,
        pipe: TekkenWorldModelPipeline,
        rollout: TekkenRollout,
        generator: torch.Generator | None,
        output_type: str,
        side: str,
    ):
        self.pipe = pipe
        self.output_type = output_type
        self.side = side
        self.generator = generator
        self.rollout = rollout
        self._vae_dtype = pipe.vae.dtype if getattr(pipe, "vae", None) is not None else None  # read once, as above
        self._initial_state = rollout.state()
        self.num_steps = 0

    @property
    def cache(self) -> TekkenKVCache:
        """The rollout's KV cache, holding every frame so far (the last frame is written into it first)."""
        self.rollout.flush()
        return self.rollout.cache

    @property
    def last_action_p2(self) -> int | None:
        """The action id player 2's input had in the last frame (drawn by the opponent policy, or given); None
        without an opponent policy or before the first frame."""
        history = self.rollout._history
        if history is None:
            return None
        return int(bits_to_ids(history[1][0, -1, 1].cpu()))

    @staticmethod
    def _one_input(pipe: TekkenWorldModelPipeline, action: Any, side: str, name: str) -> torch.Tensor:
        """One frame's input of one player → bits `(1, 8)`."""
        if isinstance(action, (int, np.integer)):
            bits = pipe.actions_to_bits([int(action)], side, name)
        elif isinstance(action, str):
            bits = pipe.actions_to_bits(action, side, name)
            if len(bits) != 1:
                raise ValueError(f"{name}: one input per step, got {len(bits)} in {action!r}")
        else:
            bits = pipe.actions_to_bits(np.asarray(action, dtype=np.float32)[None], side, name)
        return bits

    def check_players(self, action_p2: Any) -> None:
        """One clear error where `step` gets player 2's input for a one-player model, or lacks it for a two-player
        one."""
        num_players = self.pipe.num_players
        if num_players == 2 and action_p2 is None and self.rollout.opponent is not None:
            return  # the opponent policy plays player 2
        if num_players == 1 and action_p2 is not None:
            raise ValueError(
                "action_p2: this session's transformer conditions on player 1 only (num_players=1); call step(action)"
            )
        if num_players == 2 and action_p2 is None:
            raise ValueError(
                "action_p2: this session's transformer is a two-player model (num_players=2) without an opponent "
                "policy: call step(action, action_p2) with both players' inputs"
            )

    def step_bits(self, action: Any, action_p2: Any = None) -> torch.Tensor:
        """One step's inputs (as `step` takes them) → the rollout's bits `(1, 1, [2,] 8)` on its device, after the
        player-count check; a batched stepper (`tekken_diffusers.pipelines.batching`) converts them the same way."""
        self.check_players(action_p2)
        bits = self._one_input(self.pipe, action, self.side, "action")
        if action_p2 is not None:
            bits_p2 = self._one_input(self.pipe, action_p2, opponent_side(self.side), "action_p2")
            bits = torch.stack([bits, bits_p2], dim=1)  # (1, 2, 8)
        elif self.pipe.num_players == 2:  # the opponent policy plays player 2: drawn now, so a batch gets all inputs
            bits = torch.stack([bits, torch.full_like(bits, float("nan"))], dim=1)
            return self.rollout.choose_opponent_inputs(bits[None].to(self.rollout.device), self.generator)
        return bits[None].to(self.rollout.device)  # (1, 1, [2,] 8)

    @torch.no_grad()
    def step(
        self,
        action: int | str | Sequence[int] | np.ndarray | torch.Tensor,
        action_p2: int | str | Sequence[int] | np.ndarray | torch.Tensor | None = None,
        noise: torch.Tensor | None = None,
    ):
        """Generate the next frame under one input (one per player with a two-player model).

        Args:
            action: player 1's input: an action id (`int`), Tekken notation (`"d/f+2"`), or 8 bits.
            action_p2: player 2's input in the same forms, for a two-player model (required there unless the
                pipeline has an opponent policy, which plays player 2 when it is `None`; refused by a one-player
                model); notation is read for player 2's side, the other one.
            noise (`torch.Tensor`, *optional*): Initial noise `(1, 1, C, h, w)` for this frame.

        Returns:
            The frame as a PIL image, an `(H, W, 3)` array in [0, 1], a `(3, H, W)` tensor in [0, 1], or its
            latents `(C, h, w)`, by the session's `output_type`.
        """
        return self.step_from_bits(self.step_bits(action, action_p2), noise=noise)

    @torch.no_grad()
    def step_from_bits(self, bits: torch.Tensor, noise: torch.Tensor | None = None):
        """`step` with the inputs already converted by [`step_bits`] (`(1, 1, [2,] 8)`, player 2's drawn): what a
        batched stepper calls for a session it steps alone, so the opponent's input is drawn once per frame."""
        latents = self.rollout.next_frame(bits, self.generator, noise=noise)  # (1, 1, C, h, w)
        self.num_steps += 1
        if self.output_type == "latent":
            return latents[0, 0]
        decoded = self.pipe.decode_latents(latents, dtype=self._vae_dtype)
        frames = self.pipe.video_processor.postprocess_video(decoded, self.output_type)
        return frames[0][0]

    def reset(self) -> None:
        """Forget every generated frame: back to the state right after the context."""
        self.rollout.restore(self._initial_state)
        self.num_steps = 0
