"""`TekkenWorldModelPipeline`: generate gameplay from a starting context and a stream of player inputs.

Sampling: the context frames are encoded, re-noised to a small `context_noise` and written into the
transformer's KV cache. Each new frame starts from pure noise and is denoised in `num_inference_steps` Euler steps
against the read-only cache, conditioned on its input; the finished frame is re-noised to `context_noise` and
appended to the cache, which evicts frames beyond each layer's window, so time and memory per frame stay constant.
That loop is [`TekkenRollout`] (`rollout.py`). The pipeline's other parts live beside this module: `inputs.py` checks
and converts frames and player inputs and prepares them for the rollout, `vae_io.py` encodes and decodes through the
VAE, `video_session.py` holds the session of a video VAE, `saved_folder.py` checks a folder being loaded,
`model_card.py` writes the files a saved folder carries beside diffusers' own, and `pipeline_output.py` holds what a
call returns.

A two-player model (`transformer.config.num_players == 2`) takes player 2's inputs beside player 1's: `actions_p2`
and `context_actions_p2` in `__call__` and `start_session`, `session.step(p1, p2)`. Player 2 stands on the other side,
so notation reads *forward* for each player towards the opponent.

With a video VAE that compresses time by `r` (`LTXVideoVAE` ×8, `WanVAE` ×4) one model frame is one latent frame,
`r` game frames. Frames and inputs stay per game frame at the pipeline's surface: a context of `1 + k·r` frames is
encoded as one clip (`1 + k` latent frames), the inputs of the game frames behind each latent frame are pooled to one
input by the pipeline's `action_pooling` rule (the one it was trained with; `tekken_diffusers.actions`), one latent
frame is generated per step, and the output is decoded after the context as one clip, `r` game frames per generated
latent frame (`vae_io.decode_after`). Sessions take one latent frame's inputs per step and return its `r` frames
(`video_session.TekkenVideoWorldModelSession`).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import logging, replace_example_docstring
from diffusers.video_processor import VideoProcessor

from ..data.latents.windows import check_action_pooling
from ..models.opponent_policy import TekkenOpponentPolicy
from ..models.transformer_tekken import TekkenWorldModelTransformer
from ..schedulers.scheduling_tekken_flow_match import TekkenFlowMatchScheduler
from . import vae_io
from .inputs import (
    MAX_FRAMES_PER_CALL,
    ActionsInput,
    FramesInput,
    actions_to_bits,
    check_call_inputs,
    check_players,
    frames_to_tensor,
    prepare_context,
    prepare_future_bits,
    prepare_noise,
)
from .model_card import MODEL_CARD_TEMPLATE, default_model_card, write_pipeline_py
from .pipeline_output import TekkenWorldModelPipelineOutput
from .rollout import GuidanceScale, TekkenRollout, TekkenWorldModelSession
from .saved_folder import align_safetensors, check_loaded_pipeline, check_pipeline_source
from .vae_io import VAE_CHUNK_FRAMES
from .video_session import DEFAULT_DECODE_HISTORY, TekkenVideoWorldModelSession, check_decode_history

logger = logging.get_logger(__name__)

# Names that live in `inputs.py`, `vae_io.py`, `model_card.py`, `rollout.py`, `video_session.py` and
# `pipeline_output.py`; importing them from here keeps working.
__all__ = [
    "MAX_FRAMES_PER_CALL",
    "MODEL_CARD_TEMPLATE",
    "VAE_CHUNK_FRAMES",
    "ActionsInput",
    "FramesInput",
    "TekkenRollout",
    "TekkenWorldModelPipeline",
    "TekkenWorldModelPipelineOutput",
    "TekkenVideoWorldModelSession",
    "TekkenWorldModelSession",
]

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from tekken_diffusers import TekkenWorldModelPipeline
        >>> from tekken_diffusers.data import load_round

        >>> pipe = TekkenWorldModelPipeline.from_pretrained("pipelines/boxing-world-model")
        >>> round_ = load_round("data/boxing-demo/val/round_0000.npz")
        >>> video = pipe(context=round_.images[:8], actions="f*8, 1, n*7", num_inference_steps=4).frames[0]
        >>> session = pipe.start_session(context=round_.images[:8])
        >>> frame = session.step("d/f+1")  # a PIL image, the next frame
        ```
"""


class TekkenWorldModelPipeline(DiffusionPipeline):
    r"""
    Action-conditioned world-model pipeline: from context frames and player inputs to the next frames.

    Args:
        transformer ([`TekkenWorldModelTransformer`]): The frame-causal world model.
        scheduler ([`TekkenFlowMatchScheduler`]): Per-frame flow-matching scheduler (holds `context_noise`).
        vae (`TekkenAutoencoderDC`, `LTXVideoVAE`, `WanVAE` or another VAE with the `AutoencoderKL` interface,
            *optional*): Encodes context frames and decodes generated latents. Without it the pipeline takes
            `context_latents` and returns latents (one input per latent frame). A video VAE makes every model frame
            a latent frame of `r` game frames (see the module docstring).
        action_pooling (`str`, defaults to `"or"`): With a video VAE, how the inputs of the `r` game frames behind a
            latent frame become its one input: `"or"` (a button pressed in any of them), `"first"` or `"last"` (the
            input of the first or last of them). Saved in `model_index.json`; the trainer sets the rule the model was
            trained with. Without temporal compression every rule is the identity.
        opponent ([`TekkenOpponentPolicy`], *optional*): For a two-player model, plays player 2 wherever its inputs
            are not given: it labels the context frames with the inputs it reads from them and draws player 2's
            input of every generated frame from the frames before it. Per-frame VAEs only.
    """

    model_cpu_offload_seq = "transformer->vae"
    _optional_components = ["vae", "opponent"]
    _callback_tensor_inputs = ["latents"]
    max_frames_per_call = MAX_FRAMES_PER_CALL

    def __init__(
        self,
        transformer: TekkenWorldModelTransformer,
        scheduler: TekkenFlowMatchScheduler,
        vae: Any | None = None,
        action_pooling: str = "or",
        opponent: TekkenOpponentPolicy | None = None,
    ):
        super().__init__()
        if opponent is not None and transformer.config.get("num_players", 1) != 2:
            raise ValueError(
                "opponent: an opponent policy plays player 2 of a two-player model, but this transformer conditions "
                "on player 1 only (num_players=1)"
            )
        self.register_modules(transformer=transformer, scheduler=scheduler, vae=vae, opponent=opponent)
        self.register_to_config(action_pooling=check_action_pooling(action_pooling))
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor, do_resize=False)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> TekkenWorldModelPipeline:
        """`DiffusionPipeline.from_pretrained`, with checks that name a damaged folder; it loads what diffusers loads.

        Before loading, the source is checked: a local folder's `model_index.json` and component configs, or, for a
        path that does not exist, that it could be a Hub repo id at all. After it, the weight names must match each
        model's config and every weight must be finite (diffusers only warns, or loads NaN weights silently).

        It passes every argument on unchanged. It is an override, not a hook, because diffusers reads a path that does
        not exist as a Hub repo id before anything else runs (a `Path` fails with an `AttributeError`), where these
        checks name it instead.
        """
        source = os.fspath(pretrained_model_name_or_path)  # diffusers reads a missing Path as a repo id, and fails
        folder = check_pipeline_source(source)
        pipe = super().from_pretrained(source, **kwargs)
        check_loaded_pipeline(pipe, source, folder, kwargs.get("variant"))
        return pipe

    # -----------------------------------------------------------------------------------------------------------------
    # State of the last call, read by diffusers callbacks
    # -----------------------------------------------------------------------------------------------------------------
    @property
    def guidance_scale(self) -> GuidanceScale:
        """The `guidance_scale` of the current (or last) `__call__`."""
        return self._guidance_scale

    @property
    def do_classifier_free_guidance(self) -> bool:
        """Whether the current (or last) `__call__` runs the null-action branch (`guidance_scale > 1`)."""
        scales = self._guidance_scale
        return max(scales) > 1.0 if isinstance(scales, (tuple, list)) else scales > 1.0

    @property
    def default_inference_steps(self) -> int:
        """Euler steps per frame when a call does not say: the scheduler's `default_inference_steps` (8, the
        earlier default, for a scheduler saved before that setting existed)."""
        return int(self.scheduler.config.get("default_inference_steps", 8))

    @property
    def num_players(self) -> int:
        """Players whose inputs the transformer takes (1, or 2 for a two-player model)."""
        return int(self.transformer.config.get("num_players", 1))

    @property
    def temporal_compression_ratio(self) -> int:
        """Game frames per model frame: the VAE's temporal compression `r` (1 for a per-frame VAE or no VAE)."""
        return vae_io.temporal_compression_ratio(getattr(self, "vae", None))

    @property
    def action_pooling(self) -> str:
        """How the inputs of the game frames behind a latent frame are pooled to one (`or`, `first` or `last`)."""
        return self.config.get("action_pooling", "or")

    @property
    def num_timesteps(self) -> int:
        """Denoising steps of the current (or last) `__call__`: `num_frames * num_inference_steps`, the number of
        callback calls, whose `step` argument runs from 0 to `num_timesteps - 1`."""
        return self._num_timesteps

    # -----------------------------------------------------------------------------------------------------------------
    # Shapes and conversions
    # -----------------------------------------------------------------------------------------------------------------
    @property
    def vae_scale_factor(self) -> int:
        """Pixels per latent along each side (`vae_io.spatial_compression_ratio`; 8 without a VAE)."""
        return vae_io.spatial_compression_ratio(getattr(self, "vae", None))

    @property
    def latent_size(self) -> tuple[int, int]:
        height, width = self.transformer.config.sample_size
        return int(height), int(width)

    @staticmethod
    def _frames_to_tensor(context: FramesInput, name: str = "context") -> torch.Tensor:
        """One clip of frames → float `(T, 3, H, W)` in [-1, 1] (`inputs.frames_to_tensor`)."""
        return frames_to_tensor(context, name)

    @staticmethod
    def actions_to_bits(
        actions: ActionsInput, side: str = "left", name: str = "actions", max_inputs: int = MAX_FRAMES_PER_CALL
    ) -> torch.Tensor:
        """One clip's inputs → float bits `(N, 8)`: Tekken notation, action ids or bit vectors
        (`inputs.actions_to_bits`)."""
        return actions_to_bits(actions, side, name, max_inputs)

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Pixel frames `(B, T, 3, H, W)` in [-1, 1] → normalised latents `(B, T', C, h, w)` (the VAE's mode);
        `T' = T`, or `1 + (T - 1) / r` for a video VAE (`T = 1 + k·r`)."""
        return vae_io.encode_frames(self.vae, frames, self._execution_device)

    def decode_latents(self, latents: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """Normalised latents `(B, T, C, h, w)` → frames `(B, 3, T', H, W)` in [-1, 1] (diffusers' video layout);
        `T' = T`, or `1 + (T - 1)·r` for a video VAE (the latents decoded as one clip). `dtype`: the VAE's dtype when
        the caller already knows it (a session, every frame), else read from the VAE."""
        return vae_io.decode_latents(self.vae, latents, dtype=dtype)

    def decode_after(self, context_latents: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """The frames of `latents` `(B, N, C, h, w)` generated after `context_latents`: `(B, 3, N·r, H, W)` in
        [-1, 1] (`vae_io.decode_after`; for a per-frame VAE the same as `decode_latents(latents)`)."""
        return vae_io.decode_after(self.vae, context_latents, latents)

    # -----------------------------------------------------------------------------------------------------------------
    # Inputs
    # -----------------------------------------------------------------------------------------------------------------
    # diffusers pipelines check their arguments in `self.check_inputs(...)`; the checks live in `inputs.py`, beside
    # the `prepare_*` functions that turn the checked inputs into the rollout's.
    check_inputs = check_call_inputs

    # -----------------------------------------------------------------------------------------------------------------
    # Generation
    # -----------------------------------------------------------------------------------------------------------------
    @torch.no_grad()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        context: FramesInput | list[FramesInput] | None = None,
        actions: ActionsInput | list[ActionsInput] | None = None,
        num_frames: int | None = None,
        context_latents: torch.Tensor | None = None,
        context_actions: ActionsInput | list[ActionsInput] | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: GuidanceScale = 1.0,
        context_noise: float | None = None,
        attention_window: int | None = None,
        side: str = "left",
        generator: torch.Generator | list[torch.Generator] | None = None,
        latents: torch.Tensor | None = None,
        output_type: str | None = None,
        return_dict: bool = True,
        callback_on_step_end: Callable | PipelineCallback | MultiPipelineCallbacks | None = None,
        callback_on_step_end_tensor_inputs: list[str] | None = None,
        actions_p2: ActionsInput | list[ActionsInput] | None = None,
        context_actions_p2: ActionsInput | list[ActionsInput] | None = None,
    ) -> TekkenWorldModelPipelineOutput | tuple:
        r"""
        Generate `num_frames` frames after the context, one at a time, each under its player input.

        With a video VAE (temporal compression `r`) frames and inputs are counted in game frames: `context` has
        `1 + k·r` frames, `context_actions` one input per game frame of the context, `actions` (and `num_frames`) a
        multiple of `r`; every `r` inputs are pooled to one latent frame's input (`action_pooling`), one latent frame
        is generated per step, and each decodes to `r` frames. `latents` and `output_type="latent"` hold latent
        frames, `num_frames / r` of them.

        Args:
            context (PIL images, `np.ndarray` or `torch.Tensor`, or a list of those for a batch):
                Starting frames of one clip: PIL images, uint8 `(T, H, W, 3)` / `(T, 3, H, W)`, or a float tensor
                `(T, 3, H, W)` in [0, 1]. A batch is a list of clips or a 5-D array.
            actions (`str`, list of ids or notation, `np.ndarray` or `torch.Tensor`, or a list of those for a batch):
                One input per generated frame: Tekken notation (`"f*4, d/f+2, n"`), action ids (`(N,)` integers), or
                bit vectors (`(N, 8)` bool/float). A list of strings is a batch (one sequence per clip).
            num_frames (`int`, *optional*): Frames to generate; defaults to the number of `actions`. Without
                `actions`, every generated frame gets the neutral input.
            context_latents (`torch.Tensor`, *optional*):
                Normalised latents `(B, T, C, h, w)` instead of `context` (e.g. from a latent dataset).
            context_actions (*optional*): The inputs of the context frames (same forms as `actions`); neutral if
                not given.
            num_inference_steps (`int`, *optional*): Euler steps per frame; defaults to the scheduler's
                `default_inference_steps` (the count the trained model samples best with; 8 where not set).
            guidance_scale (`float` or `(float, float)`, defaults to 1.0): Classifier-free guidance on the actions
                (1 disables it; the null-action branch doubles the compute). For a two-player model one number
                guides both players' inputs together; a pair `(player 1, player 2)` guides each player by its own
                scale (a third branch, player 1's inputs only, triples the compute unless the two are equal).
            context_noise (`float`, *optional*): Noise level of frames in the cache; defaults to the scheduler's
                `context_noise` (0.2, like the original).
            attention_window (`int`, *optional*): Cap on the past frames any layer attends to; defaults to each
                layer's trained window.
            side (`str`, defaults to `"left"`): Where player 1 stands, for notation (forward = Right on the left).
            generator (`torch.Generator` or a list, one per clip, *optional*): For reproducible sampling.
            latents (`torch.Tensor`, *optional*): Initial noise `(B, num_frames, C, h, w)` of the generated frames.
            output_type (`str`, *optional*): `"pil"`, `"np"`, `"pt"` or `"latent"`; defaults to `"pil"`, or
                `"latent"` when the pipeline has no VAE.
            return_dict (`bool`, defaults to `True`): Return a [`TekkenWorldModelPipelineOutput`] or a tuple.
            callback_on_step_end (`Callable`, *optional*): Called as `callback(pipe, step, timestep, kwargs)` after
                every Euler step of every frame (`pipe.num_timesteps = num_frames * num_inference_steps` calls;
                `timestep` is the step's entry of `pipe.scheduler.timesteps`); `kwargs["latents"]` is the frame being
                denoised `(B, 1, C, h, w)`, and a returned `"latents"` replaces it.
            callback_on_step_end_tensor_inputs (`list[str]`, *optional*): Tensors passed to the callback.
            actions_p2 (same forms as `actions`, *optional*): Player 2's input per generated frame, for a two-player
                model (required there with `actions`, unless the pipeline has an `opponent` policy, which plays
                player 2 when this is `None`; refused by a one-player model). Player 2 stands on the other side:
                with `side="left"`, player 2's *forward* is Left.
            context_actions_p2 (same forms as `actions`, *optional*): Player 2's inputs of the context frames (with
                `context_actions`, for a two-player model; with an `opponent`, read from the context frames when
                not given).

        Examples:
        """
        # 1. Check inputs
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        output_type = output_type or ("pil" if self.vae is not None else "latent")
        num_inference_steps = self.default_inference_steps if num_inference_steps is None else num_inference_steps
        self.check_inputs(
            context,
            context_latents,
            num_frames,
            actions,
            num_inference_steps,
            guidance_scale,
            context_noise,
            attention_window,
            output_type,
            latents,
            generator,
            callback_on_step_end_tensor_inputs,
        )
        check_players(self.num_players, actions, actions_p2, context_actions, context_actions_p2, self.opponent)
        device = self._execution_device

        # 2. Context latents and inputs (per game frame, pooled to one per latent frame for a video VAE)
        context_latents, context_bits = prepare_context(
            self, context, context_latents, context_actions, side, context_actions_p2
        )
        batch = context_latents.shape[0]
        bits = prepare_future_bits(self, actions, actions_p2, num_frames, batch, side)  # (B, N, [2,] 8)
        num_frames = bits.shape[1]  # model (latent) frames to generate
        latents = prepare_noise(self, latents, generator, batch, num_frames)

        self._guidance_scale = guidance_scale
        self._num_timesteps = num_frames * num_inference_steps

        # 3. Prefill the cache with the re-noised context
        rollout = TekkenRollout(
            self, batch, num_inference_steps, guidance_scale, context_noise, attention_window, device=device
        )
        rollout.append(context_latents, context_bits, generator)

        # 4. Denoise one frame at a time
        with self.progress_bar(total=num_frames * num_inference_steps) as progress_bar:

            def on_step(step: int, timestep: torch.Tensor, frame_latents: torch.Tensor) -> torch.Tensor:
                progress_bar.update()
                if callback_on_step_end is None:
                    return frame_latents
                callback_kwargs = {}
                for name in callback_on_step_end_tensor_inputs:
                    callback_kwargs[name] = frame_latents
                outputs = callback_on_step_end(self, step, timestep, callback_kwargs)
                return outputs.pop("latents", frame_latents)

            video_latents = rollout.generate(bits, generator, noise=latents, on_step=on_step)  # (B, N, C, h, w)

        # 5. Decode (a video VAE decodes the generated latent frames after the context, as one clip)
        if output_type == "latent":
            frames = video_latents
        else:
            frames = self.video_processor.postprocess_video(
                self.decode_after(context_latents, video_latents), output_type
            )
        self.maybe_free_model_hooks()
        if not return_dict:
            return (frames,)
        return TekkenWorldModelPipelineOutput(frames=frames)

    @torch.no_grad()
    def start_session(
        self,
        context: FramesInput | None = None,
        context_latents: torch.Tensor | None = None,
        context_actions: ActionsInput | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: GuidanceScale = 1.0,
        context_noise: float | None = None,
        attention_window: int | None = None,
        side: str = "left",
        generator: torch.Generator | None = None,
        output_type: str | None = None,
        context_actions_p2: ActionsInput | None = None,
        decode_history: int | None = None,
    ) -> TekkenWorldModelSession:
        """Start an interactive session: `session.step(action)` returns the next frame (`session.step(p1, p2)` for a
        two-player model).

        Arguments mean what they mean for `__call__`; the context is one clip. Each session has its own cache, so
        sessions never affect each other; time and memory per step are constant (the cache's window).

        With a video VAE (temporal compression `r`) the session is a [`TekkenVideoWorldModelSession`]: each step
        generates one latent frame from the inputs of its `r` game frames (`r` inputs, or one held for all `r`) and
        returns its `r` decoded frames, each step's frames decoded after the `decode_history` latent frames before
        it (video VAEs only; default `DEFAULT_DECODE_HISTORY`).
        """
        output_type = output_type or ("pil" if self.vae is not None else "latent")
        num_inference_steps = self.default_inference_steps if num_inference_steps is None else num_inference_steps
        ratio = self.temporal_compression_ratio
        check_decode_history(decode_history, ratio, vae_io.vae_name(self.vae))
        self.check_inputs(
            context,
            context_latents,
            ratio,  # one step: one latent frame, `r` game frames
            None,
            num_inference_steps,
            guidance_scale,
            context_noise,
            attention_window,
            output_type,
            None,
            generator,
            None,
        )
        if isinstance(generator, list):
            raise ValueError("a session plays one clip: pass one `generator`, not a list")
        check_players(self.num_players, None, None, context_actions, context_actions_p2, self.opponent)
        context_latents, context_bits = prepare_context(
            self, context, context_latents, context_actions, side, context_actions_p2
        )
        if context_latents.shape[0] != 1:
            raise ValueError(f"a session plays one clip, got a batch of {context_latents.shape[0]} contexts")
        rollout = TekkenRollout(self, 1, num_inference_steps, guidance_scale, context_noise, attention_window)
        rollout.append(context_latents, context_bits, generator)
        if ratio > 1:
            history = DEFAULT_DECODE_HISTORY if decode_history is None else decode_history
            return TekkenVideoWorldModelSession(self, rollout, generator, output_type, side, context_latents, history)
        return TekkenWorldModelSession(self, rollout, generator, output_type, side)

    # -----------------------------------------------------------------------------------------------------------------
    # Saving
    # -----------------------------------------------------------------------------------------------------------------
    def save_pretrained(
        self,
        save_directory: str | os.PathLike,
        safe_serialization: bool = True,
        variant: str | None = None,
        max_shard_size: int | str | None = None,
        push_to_hub: bool = False,
        model_card: str | None = None,
        **kwargs,
    ) -> None:
        """Save like any diffusers pipeline, plus a model card (`README.md`) and a one-line `pipeline.py` so that
        `DiffusionPipeline.from_pretrained(dir, custom_pipeline=dir, trust_remote_code=True)` also works. The weights
        files are laid out with every tensor aligned (`saved_folder.align_safetensors`), so that a pipeline loaded
        from them, memory-mapped, reproduces this one exactly.

        Args:
            model_card (`str`, *optional*): Markdown for `README.md`; by default one is written from the configs
                (an existing `README.md` in the folder is kept).
            push_to_hub (`bool`): Upload the folder to the Hub repo `repo_id` (default: the folder's name) afterwards.
        """
        super().save_pretrained(
            save_directory, safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size
        )
        folder = Path(save_directory)
        for weights in sorted(folder.glob("*/*.safetensors")):
            align_safetensors(weights)  # memory-mapped loading then reproduces this pipeline exactly
        write_pipeline_py(folder)
        card_path = folder / "README.md"
        if model_card is not None or not card_path.exists():
            card_path.write_text(model_card if model_card is not None else self.default_model_card())
        if push_to_hub:
            from huggingface_hub import create_repo

            repo_id = kwargs.pop("repo_id", folder.name)
            token = kwargs.pop("token", None)
            repo_id = create_repo(repo_id, exist_ok=True, private=kwargs.pop("private", None), token=token).repo_id
            self._upload_folder(
                folder,
                repo_id,
                token=token,
                commit_message=kwargs.pop("commit_message", None),
                create_pr=kwargs.pop("create_pr", False),
            )

    def default_model_card(self) -> str:
        """A model card built from the component configs (see `tekken_diffusers.pipelines.model_card`)."""
        return default_model_card(self)
