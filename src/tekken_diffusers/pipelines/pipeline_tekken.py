"""`TekkenWorldModelPipeline`: generate gameplay from a starting context and a stream of player inputs.

Sampling: the context frames are encoded, re-noised to a small `context_noise` and written into the
transformer's KV cache. Each new frame starts from pure noise and is denoised in `num_inference_steps` Euler steps
against the read-only cache, conditioned on its input; the finished frame is re-noised to `context_noise` and
appended to the cache, which evicts frames beyond each layer's window, so time and memory per frame stay constant.
That loop is [`TekkenRollout`] (`rollout.py`); this module checks and converts the inputs and decodes the outputs.

A two-player model (`transformer.config.num_players == 2`) takes player 2's inputs beside player 1's: `actions_p2`
and `context_actions_p2` in `__call__` and `start_session`, `session.step(p1, p2)`. Player 2 stands on the other side,
so notation reads *forward* for each player towards the opponent.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback
from diffusers.utils import BaseOutput, logging, replace_example_docstring
from diffusers.video_processor import VideoProcessor

from ..actions import NUM_BUTTONS, ids_to_bits, parse_action_sequence, validate_action_ids
from ..models.autoencoders.latent_norm import denormalize_latents, normalize_latents
from ..models.transformer_tekken import TekkenWorldModelTransformer
from ..schedulers.scheduling_tekken_flow_match import TekkenFlowMatchScheduler
from .model_card import MODEL_CARD_TEMPLATE, default_model_card, write_pipeline_py
from .rollout import GuidanceScale, TekkenRollout, TekkenWorldModelSession

logger = logging.get_logger(__name__)

# `MODEL_CARD_TEMPLATE` and `TekkenWorldModelSession` live in `model_card.py` and `rollout.py`; importing them from
# here keeps working.
__all__ = [
    "MODEL_CARD_TEMPLATE",
    "TekkenRollout",
    "TekkenWorldModelPipeline",
    "TekkenWorldModelPipelineOutput",
    "TekkenWorldModelSession",
]

ActionsInput = str | Sequence[int] | Sequence[str] | np.ndarray | torch.Tensor
FramesInput = PIL.Image.Image | Sequence[PIL.Image.Image] | np.ndarray | torch.Tensor

# What one call may ask for, so that a typo (`num_frames=10**6`, "f*1000000000") fails at once instead of running for
# days or filling the memory. 10,000 frames is 11 minutes of 15 Hz play; raise `pipe.max_frames_per_call` for more,
# or play longer with a session, whose time and memory per frame are constant.
MAX_FRAMES_PER_CALL = 10_000
# Frames per VAE call when encoding a context or decoding the output: a batch of many clips is split into such calls.
VAE_CHUNK_FRAMES = 64

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


def _check_pipeline_folder(folder: Path) -> None:
    """Name what a local pipeline folder lacks before diffusers reports it from somewhere else."""
    index_path = folder / "model_index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{folder}: no model_index.json (not a pipeline folder saved with save_pretrained)")
    try:
        index = json.loads(index_path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{index_path}: not valid JSON ({error})") from None
    for name, entry in index.items():
        if name.startswith("_") or not isinstance(entry, list) or None in entry:
            continue
        component = folder / name
        if not any((component / config).is_file() for config in ("config.json", "scheduler_config.json")):
            raise FileNotFoundError(
                f"{component}: missing or without its config (model_index.json lists a {entry[-1]} there)"
            )


def _saved_weight_names(component: Path, variant: str | None) -> set[str] | None:
    """The tensor names of a component's safetensors weights (from the file headers), or None if there are none."""
    from safetensors import safe_open

    stem = "diffusion_pytorch_model" + (f".{variant}" if variant else "")
    index = component / f"{stem}.safetensors.index.json"
    if index.is_file():
        return set(json.loads(index.read_text(encoding="utf-8"))["weight_map"])
    single = component / f"{stem}.safetensors"
    if not single.is_file():
        return None
    with safe_open(str(single), framework="pt") as weights:
        return set(weights.keys())


def _check_weights_match(source: Path, name: str, model: torch.nn.Module, variant: str | None) -> None:
    """Raise when a component's config and its weights describe different models (diffusers only warns)."""
    saved = _saved_weight_names(source / name, variant)
    if saved is None:
        return
    expected = set(model.state_dict())
    missing, unexpected = sorted(expected - saved), sorted(saved - expected)
    if missing or unexpected:
        details = "; ".join(
            f"{label} {len(keys)} ({', '.join(keys[:3])}{', …' if len(keys) > 3 else ''})"
            for label, keys in (("missing", missing), ("unexpected", unexpected))
            if keys
        )
        raise ValueError(f"{source / name}: config.json and the weights describe different models: weights {details}")


class TekkenWorldModelPipeline(DiffusionPipeline):
    r"""
    Action-conditioned world-model pipeline: from context frames and player inputs to the next frames.

    Args:
        transformer ([`TekkenWorldModelTransformer`]): The frame-causal world model.
        scheduler ([`TekkenFlowMatchScheduler`]): Per-frame flow-matching scheduler (holds `context_noise`).
        vae (`TekkenAutoencoderDC` or any per-frame VAE with the `AutoencoderKL` interface, *optional*):
            Encodes context frames and decodes generated latents. Without it the pipeline takes `context_latents`
            and returns latents.
    """

    model_cpu_offload_seq = "transformer->vae"
    _optional_components = ["vae"]
    _callback_tensor_inputs = ["latents"]
    max_frames_per_call = MAX_FRAMES_PER_CALL

    def __init__(
        self,
        transformer: TekkenWorldModelTransformer,
        scheduler: TekkenFlowMatchScheduler,
        vae: Any | None = None,
    ):
        super().__init__()
        self.register_modules(transformer=transformer, scheduler=scheduler, vae=vae)
        self.video_processor = VideoProcessor(vae_scale_factor=self.vae_scale_factor, do_resize=False)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs) -> TekkenWorldModelPipeline:
        """`DiffusionPipeline.from_pretrained` that names a damaged folder, and reads the weights without mmap.

        Before loading, a local folder's `model_index.json` and component configs are checked; after it, the
        weight names must match each model's config and every weight must be finite (diffusers only warns, or
        loads NaN weights silently). `disable_mmap` defaults to `True`: memory-mapped safetensors leave the weights
        at arbitrary offsets of the file, where the CPU matmul kernels take a different path, so a loaded pipeline
        differed from the saved one in the last bits (~1e-7); read into memory, it reproduces the saved one exactly.
        Pass `disable_mmap=False` to map the files instead (less memory while loading).
        """
        source = os.fspath(pretrained_model_name_or_path)  # diffusers reads a missing Path as a repo id, and fails
        folder = Path(source)
        if folder.exists():
            _check_pipeline_folder(folder)
        elif source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source:
            raise FileNotFoundError(f"{source}: no such pipeline folder (nor a Hub repo id of the form owner/name)")
        kwargs.setdefault("disable_mmap", True)
        pipe = super().from_pretrained(source, **kwargs)
        if folder.exists():
            for name in ("transformer", "vae"):
                if getattr(pipe, name, None) is not None:
                    _check_weights_match(folder, name, getattr(pipe, name), kwargs.get("variant"))
        with torch.no_grad():
            for name, component in (("transformer", pipe.transformer), ("vae", pipe.vae)):
                if component is None:
                    continue
                for parameter_name, parameter in component.named_parameters():
                    if not torch.isfinite(parameter).all():
                        raise ValueError(
                            f"{source}: {name}/{parameter_name} holds NaN or inf weights: the weights file is damaged"
                        )
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
    def num_players(self) -> int:
        """Players whose inputs the transformer takes (1, or 2 for a two-player model)."""
        return int(self.transformer.config.get("num_players", 1))

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
        vae = getattr(self, "vae", None)
        if vae is None:
            return 8
        return int(getattr(vae, "spatial_compression_ratio", None) or 2 ** (len(vae.config.block_out_channels) - 1))

    @property
    def latent_size(self) -> tuple[int, int]:
        height, width = self.transformer.config.sample_size
        return int(height), int(width)

    def _check_vae(self) -> None:
        ratio = getattr(self.vae, "temporal_compression_ratio", 1) or 1
        if ratio != 1:
            raise ValueError(
                f"the pipeline generates one latent per frame, but {type(self.vae).__name__} compresses time by "
                f"{ratio}; encode clips yourself and pass `context_latents`, with output_type='latent'"
            )

    @staticmethod
    def _frames_to_tensor(context: FramesInput, name: str = "context") -> torch.Tensor:
        """One clip of frames → float `(T, 3, H, W)` in [-1, 1]."""
        if isinstance(context, PIL.Image.Image):
            context = [context]
        if isinstance(context, (list, tuple)):
            if not context or not all(isinstance(f, PIL.Image.Image) for f in context):
                raise ValueError(f"{name}: a list must hold PIL images (one clip), got {[type(f) for f in context]}")
            context = np.stack([np.asarray(f.convert("RGB")) for f in context])  # (T, H, W, 3)
        if isinstance(context, (np.ndarray, torch.Tensor)) and context.ndim == 4 and context.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one context frame, got shape {tuple(context.shape)}")
        if isinstance(context, np.ndarray):
            if context.dtype != np.uint8:
                raise ValueError(f"{name}: numpy frames must be uint8 (0-255), got {context.dtype}")
            if context.ndim == 3:
                context = context[None]
            if context.ndim != 4 or 3 not in (context.shape[1], context.shape[-1]):
                raise ValueError(f"{name}: expected uint8 (T, 3, H, W) or (T, H, W, 3), got shape {context.shape}")
            if context.shape[1] != 3:
                context = context.transpose(0, 3, 1, 2)  # (T, H, W, 3) -> (T, 3, H, W)
            return torch.from_numpy(np.ascontiguousarray(context)).float() / 127.5 - 1.0
        if isinstance(context, torch.Tensor):
            if not context.is_floating_point():
                raise ValueError(f"{name}: tensor frames must be float in [0, 1], got {context.dtype}")
            if context.ndim == 3:
                context = context[None]
            if context.ndim != 4 or context.shape[1] != 3:
                raise ValueError(f"{name}: expected a float (T, 3, H, W) tensor in [0, 1], got {tuple(context.shape)}")
            if not torch.isfinite(context).all():
                raise ValueError(f"{name}: tensor frames hold NaN or inf values")
            if context.min() < 0 or context.max() > 1:
                raise ValueError(
                    f"{name}: tensor frames must lie in [0, 1], got [{context.min():.3f}, {context.max():.3f}]"
                )
            return context.float() * 2.0 - 1.0
        raise ValueError(f"{name}: expected PIL images, a uint8 numpy array or a float tensor, got {type(context)}")

    @staticmethod
    def _split_batch(value: Any, is_single: Callable[[Any], bool], name: str, expected: str) -> list[Any]:
        if is_single(value):
            return [value]
        if isinstance(value, (list, tuple)) and value and all(is_single(v) for v in value):
            return list(value)
        if isinstance(value, (np.ndarray, torch.Tensor)):
            return list(value)
        raise ValueError(f"{name}: expected {expected}, or a list of those (a batch); got {type(value).__name__}")

    @classmethod
    def _frames_batch(cls, context: Any) -> list[torch.Tensor]:
        """`context` for one clip or a batch (a list of clips, or a 5-D array) → list of `(T, 3, H, W)` in [-1, 1]."""

        def single(value: Any) -> bool:
            if isinstance(value, PIL.Image.Image):
                return True
            if isinstance(value, (list, tuple)):
                return bool(value) and isinstance(value[0], PIL.Image.Image)
            return isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim in (3, 4)

        expected = "PIL images, a uint8 (T, H, W, 3) or (T, 3, H, W) array, or a float (T, 3, H, W) tensor in [0, 1]"
        clips = cls._split_batch(context, single, "context", expected)
        return [cls._frames_to_tensor(clip, f"context[{index}]") for index, clip in enumerate(clips)]

    @staticmethod
    def actions_to_bits(
        actions: ActionsInput, side: str = "left", name: str = "actions", max_inputs: int = MAX_FRAMES_PER_CALL
    ) -> torch.Tensor:
        """One clip's inputs → float bits `(N, 8)`.

        Accepts Tekken notation (one string `"f*4, d/f+2, n"` or a list of per-frame strings), action ids (ints or an
        integer array `(N,)`), or bit vectors (a bool/float array `(N, 8)`, values in [0, 1]). Notation that expands
        to more than `max_inputs` inputs is refused before it is expanded.
        """
        if isinstance(actions, str):
            ids = parse_action_sequence(actions, side, max_inputs=max_inputs)
        elif isinstance(actions, (list, tuple)) and actions and all(isinstance(a, str) for a in actions):
            ids = parse_action_sequence(list(actions), side, max_inputs=max_inputs)
        elif isinstance(actions, (np.ndarray, torch.Tensor)) and (
            actions.dtype in (torch.bool, np.bool_)
            or (actions.is_floating_point() if isinstance(actions, torch.Tensor) else actions.dtype.kind == "f")
        ):
            bits = (
                actions.float() if isinstance(actions, torch.Tensor) else torch.from_numpy(actions.astype(np.float32))
            )
            if bits.ndim != 2 or bits.shape[1] != NUM_BUTTONS:
                hint = " (float/bool inputs are bit vectors; action ids must be integers)" if bits.ndim < 2 else ""
                raise ValueError(
                    f"{name}: bit vectors must have shape (N, {NUM_BUTTONS}), got {tuple(bits.shape)}{hint}"
                )
            if not torch.isfinite(bits).all() or bits.min() < 0 or bits.max() > 1:
                raise ValueError(
                    f"{name}: bit vectors must hold values in [0, 1], found [{bits.min():.3g}, {bits.max():.3g}]"
                    + (" and NaN" if bits.isnan().any() else "")
                )
            return bits
        elif isinstance(actions, (list, tuple)) and any(isinstance(a, float) for a in actions):
            raise ValueError(f"{name}: action ids must be integers in [0, 255], got floats {list(actions)[:4]}")
        else:
            ids = actions.cpu().numpy() if isinstance(actions, torch.Tensor) else np.asarray(actions)
            if ids.ndim != 1 or ids.size == 0:
                raise ValueError(f"{name}: action ids must be a non-empty (N,) sequence, got shape {ids.shape}")
            validate_action_ids(ids, name)
        return torch.from_numpy(ids_to_bits(np.asarray(ids)).astype(np.float32))

    @classmethod
    def _actions_batch(
        cls, actions: Any, side: str, name: str, max_inputs: int = MAX_FRAMES_PER_CALL
    ) -> list[torch.Tensor]:
        def single(value: Any) -> bool:
            if isinstance(value, str):
                return True
            if isinstance(value, (list, tuple)):
                return bool(value) and isinstance(value[0], (int, np.integer, str)) and not isinstance(value[0], bool)
            if isinstance(value, (np.ndarray, torch.Tensor)):
                is_bits = value.dtype in (torch.bool, np.bool_) or (
                    value.is_floating_point() if isinstance(value, torch.Tensor) else value.dtype.kind == "f"
                )
                return value.ndim == (2 if is_bits else 1)
            return False

        if isinstance(actions, (list, tuple)) and actions and all(isinstance(a, str) for a in actions):
            clips = list(actions)  # a list of notation strings is a batch: one sequence per clip
        elif isinstance(actions, (np.ndarray, torch.Tensor)) and actions.ndim < 2:
            clips = [actions]  # one clip: (N,) ids, or floats that `actions_to_bits` names as such
        elif isinstance(actions, (list, tuple)) and actions and all(isinstance(a, float) for a in actions):
            clips = [actions]
        else:
            expected = "Tekken notation, (N,) integer action ids or (N, 8) bool/float bits"
            clips = cls._split_batch(actions, single, name, expected)
        return [
            cls.actions_to_bits(clip, side, f"{name}[{index}]" if len(clips) > 1 else name, max_inputs)
            for index, clip in enumerate(clips)
        ]

    @torch.no_grad()
    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        """Pixel frames `(B, T, 3, H, W)` in [-1, 1] → normalised latents `(B, T, C, h, w)` (the VAE's mode)."""
        self._check_vae()
        batch, num_frames = frames.shape[:2]
        pixels = frames.flatten(0, 1)  # (B*T, 3, H, W)
        latents = []
        for chunk in pixels.split(VAE_CHUNK_FRAMES):  # bounded memory per VAE call, whatever the batch
            encoded = self.vae.encode(chunk.to(self._execution_device, self.vae.dtype)).latent_dist.mode()
            latents.append(normalize_latents(encoded.float(), self.vae, channel_dim=1))
        return torch.cat(latents).unflatten(0, (batch, num_frames))

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents `(B, T, C, h, w)` → frames `(B, 3, T, H, W)` in [-1, 1] (diffusers' video layout)."""
        self._check_vae()
        batch, num_frames = latents.shape[:2]
        raw = denormalize_latents(latents.flatten(0, 1).float(), self.vae, channel_dim=1)
        frames = torch.cat(
            [
                self.vae.decode(chunk.to(self.vae.dtype)).sample.float().clamp(-1, 1)
                for chunk in raw.split(VAE_CHUNK_FRAMES)
            ]
        )  # (B*T, 3, H, W)
        return frames.unflatten(0, (batch, num_frames)).permute(0, 2, 1, 3, 4)

    # -----------------------------------------------------------------------------------------------------------------
    # Inputs
    # -----------------------------------------------------------------------------------------------------------------
    def check_inputs(
        self,
        context: Any,
        context_latents: torch.Tensor | None,
        num_frames: int | None,
        actions: Any,
        num_inference_steps: int,
        guidance_scale: float,
        context_noise: float | None,
        attention_window: int | None,
        output_type: str,
        latents: torch.Tensor | None,
        generator: Any,
        callback_on_step_end_tensor_inputs: list[str] | None,
    ) -> None:
        """Raise one concise `ValueError` for every inconsistent input."""
        if (context is None) == (context_latents is None):
            raise ValueError("pass exactly one of `context` (frames) and `context_latents`")
        if context is not None and self.vae is None:
            raise ValueError(
                "`context` frames need a VAE to encode them; this pipeline has vae=None: pass `context_latents`"
            )
        if context_latents is not None:
            expected = (self.transformer.config.in_channels, *self.latent_size)
            if context_latents.ndim != 5 or tuple(context_latents.shape[2:]) != expected:
                raise ValueError(
                    f"`context_latents` must have shape (batch, frames, {expected[0]}, {expected[1]}, {expected[2]}), "
                    f"got {tuple(context_latents.shape)}"
                )
            if context_latents.shape[1] == 0:
                raise ValueError("`context_latents` must hold at least one frame")
            if not torch.isfinite(context_latents).all():
                raise ValueError("`context_latents` holds NaN or inf values")
        if num_frames is None and actions is None:
            raise ValueError("pass `actions` (one input per generated frame) or `num_frames` (neutral inputs)")
        if num_frames is not None and num_frames < 1:
            raise ValueError(f"`num_frames` must be >= 1, got {num_frames}")
        if num_frames is not None and num_frames > self.max_frames_per_call:
            raise ValueError(
                f"`num_frames` must be at most pipe.max_frames_per_call = {self.max_frames_per_call}, got "
                f"{num_frames} (raise that attribute for longer calls, or play on with a session)"
            )
        if num_inference_steps < 1:
            raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
        if isinstance(guidance_scale, (tuple, list)):
            if self.num_players == 1 or len(guidance_scale) != 2:
                raise ValueError(
                    f"`guidance_scale`: a pair (player 1, player 2) needs a two-player model and two values; this "
                    f"model has num_players={self.num_players}, got {guidance_scale!r}"
                )
            scales = [float(scale) for scale in guidance_scale]
        else:
            scales = [guidance_scale]
        if not all(math.isfinite(scale) and scale >= 1.0 for scale in scales):
            raise ValueError(f"`guidance_scale` must be >= 1 and finite (1 disables guidance), got {guidance_scale}")
        if context_noise is not None and not 0.0 <= context_noise < 1.0:
            raise ValueError(f"`context_noise` must lie in [0, 1), got {context_noise}")
        if attention_window is not None and attention_window < 1:
            raise ValueError(f"`attention_window` must be >= 1 frame, got {attention_window}")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"`output_type` must be one of 'pil', 'np', 'pt', 'latent', got {output_type!r}")
        if output_type != "latent" and self.vae is None:
            raise ValueError(f"output_type={output_type!r} needs a VAE; this pipeline has vae=None: use 'latent'")
        if latents is not None and latents.ndim != 5:
            raise ValueError(
                f"`latents` (initial noise) must be 5-D (batch, frames, C, h, w), got {tuple(latents.shape)}"
            )
        if latents is not None and not torch.isfinite(latents).all():
            raise ValueError("`latents` (initial noise) holds NaN or inf values")
        if callback_on_step_end_tensor_inputs is not None:
            unknown = [k for k in callback_on_step_end_tensor_inputs if k not in self._callback_tensor_inputs]
            if unknown:
                raise ValueError(
                    f"`callback_on_step_end_tensor_inputs` {unknown} are not in {self._callback_tensor_inputs}"
                )
        if isinstance(generator, list) and not generator:
            raise ValueError("`generator` is an empty list")

    def _check_players(self, actions: Any, actions_p2: Any, context_actions: Any, context_actions_p2: Any) -> None:
        """One error when a two-player model gets one player's inputs, or a one-player model gets two."""
        if self.num_players == 1:
            for name, value in (("actions_p2", actions_p2), ("context_actions_p2", context_actions_p2)):
                if value is not None:
                    raise ValueError(
                        f"`{name}`: this pipeline's transformer conditions on player 1 only (num_players=1); it "
                        "cannot take player 2's inputs"
                    )
            return
        for p1_name, p1, p2_name, p2 in (
            ("actions", actions, "actions_p2", actions_p2),
            ("context_actions", context_actions, "context_actions_p2", context_actions_p2),
        ):
            if (p1 is None) != (p2 is None):
                given, missing = (p1_name, p2_name) if p2 is None else (p2_name, p1_name)
                raise ValueError(
                    f"`{missing}`: this pipeline's transformer is a two-player model (num_players=2) and got "
                    f"`{given}` without `{missing}`: pass both players' inputs (or neither, for neutral inputs)"
                )

    @staticmethod
    def _opponent_side(side: str) -> str:
        """Where player 2 stands when player 1 stands on `side` (its *forward* points the other way)."""
        return {"left": "right", "right": "left"}.get(side, side)  # a bad `side` is named by the notation parser

    def _context_bits(
        self, context_actions: Any, batch: int, num_context: int, side: str, name: str = "context_actions"
    ) -> torch.Tensor:
        """One player's context inputs → bits `(B, T, 8)` (neutral when not given)."""
        if context_actions is None:
            return torch.zeros(batch, num_context, NUM_BUTTONS)
        clips = self._actions_batch(context_actions, side, name)
        if len(clips) == 1 and batch > 1:
            clips = clips * batch
        if len(clips) != batch or any(len(c) != num_context for c in clips):
            raise ValueError(
                f"`{name}` must give {num_context} inputs for each of the {batch} context clips, got "
                f"{[len(c) for c in clips]}"
            )
        return torch.stack(clips)

    def _prepare(
        self,
        context: Any,
        context_latents: torch.Tensor | None,
        context_actions: Any,
        side: str,
        context_actions_p2: Any = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Context → normalised latents `(B, T, C, h, w)` and their action bits `(B, T, 8)`, or `(B, T, 2, 8)` for a
        two-player model (player 2's notation read from the other side)."""
        device = self._execution_device
        if context_latents is None:
            clips = self._frames_batch(context)
            lengths = {clip.shape for clip in clips}
            if len(lengths) != 1:
                raise ValueError(f"`context`: every clip needs the same shape, got {sorted(lengths)}")
            frames = torch.stack(clips)  # (B, T, 3, H, W)
            expected = tuple(s * self.vae_scale_factor for s in self.latent_size)
            if tuple(frames.shape[-2:]) != expected:
                raise ValueError(
                    f"`context` frames are {tuple(frames.shape[-2:])} but this model works on {expected} frames "
                    f"(latents {self.latent_size} × VAE factor {self.vae_scale_factor})"
                )
            context_latents = self.encode_frames(frames)
        context_latents = context_latents.to(device, torch.float32)
        batch, num_context = context_latents.shape[:2]
        bits = self._context_bits(context_actions, batch, num_context, side)
        if self.num_players == 2:
            bits_p2 = self._context_bits(
                context_actions_p2, batch, num_context, self._opponent_side(side), "context_actions_p2"
            )
            bits = torch.stack([bits, bits_p2], dim=2)  # (B, T, 2, 8)
        return context_latents, bits.to(device)

    def _future_actions(
        self, actions: Any, num_frames: int | None, batch: int, side: str, name: str = "actions"
    ) -> torch.Tensor:
        if actions is None:
            return torch.zeros(batch, num_frames, NUM_BUTTONS, device=self._execution_device)
        clips = self._actions_batch(actions, side, name, self.max_frames_per_call)
        if len(clips) == 1 and batch > 1:
            clips = clips * batch
        if len(clips) != batch:
            hint = ""
            if isinstance(actions, (np.ndarray, torch.Tensor)) and actions.ndim == 2:
                hint = (
                    f": an integer {tuple(actions.shape)} array is read as {actions.shape[0]} clips of "
                    f"{actions.shape[1]} action ids; for one clip of bit vectors pass a bool or float array"
                )
            raise ValueError(f"`{name}` has {len(clips)} clips but `context` has {batch}{hint}")
        lengths = [len(c) for c in clips]
        if max(lengths) > self.max_frames_per_call:
            raise ValueError(
                f"`{name}` asks for {max(lengths)} frames, more than pipe.max_frames_per_call = "
                f"{self.max_frames_per_call}"
            )
        needed = num_frames or lengths[0]
        if any(length != needed for length in lengths):
            raise ValueError(f"`{name}` must give one input per generated frame ({needed}), got {lengths}")
        return torch.stack(clips).to(self._execution_device)

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
        num_inference_steps: int = 8,
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
            num_inference_steps (`int`, defaults to 8): Euler steps per frame.
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
                model (required there with `actions`; refused by a one-player model). Player 2 stands on the other
                side: with `side="left"`, player 2's *forward* is Left.
            context_actions_p2 (same forms as `actions`, *optional*): Player 2's inputs of the context frames (with
                `context_actions`, for a two-player model).

        Examples:
        """
        # 1. Check inputs
        if isinstance(callback_on_step_end, (PipelineCallback, MultiPipelineCallbacks)):
            callback_on_step_end_tensor_inputs = callback_on_step_end.tensor_inputs
        callback_on_step_end_tensor_inputs = callback_on_step_end_tensor_inputs or ["latents"]
        output_type = output_type or ("pil" if self.vae is not None else "latent")
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
        self._check_players(actions, actions_p2, context_actions, context_actions_p2)
        device = self._execution_device

        # 2. Context latents and inputs
        context_latents, context_bits = self._prepare(
            context, context_latents, context_actions, side, context_actions_p2
        )
        batch = context_latents.shape[0]
        future_bits = self._future_actions(actions, num_frames, batch, side)  # (B, N, 8)
        num_frames = future_bits.shape[1]
        if self.num_players == 2:
            bits_p2 = self._future_actions(actions_p2, num_frames, batch, self._opponent_side(side), "actions_p2")
            future_bits = torch.stack([future_bits, bits_p2], dim=2)  # (B, N, 2, 8)
        if isinstance(generator, list) and len(generator) != batch:
            raise ValueError(f"`generator` is a list of {len(generator)} but the batch has {batch} clips")
        if latents is not None:
            expected = (batch, num_frames, self.transformer.config.in_channels, *self.latent_size)
            if tuple(latents.shape) != expected:
                raise ValueError(f"`latents` (initial noise) must have shape {expected}, got {tuple(latents.shape)}")
            latents = latents.to(device, torch.float32)

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

            video_latents = rollout.generate(future_bits, generator, noise=latents, on_step=on_step)  # (B, N, C, h, w)

        # 5. Decode
        if output_type == "latent":
            frames = video_latents
        else:
            frames = self.video_processor.postprocess_video(self.decode_latents(video_latents), output_type)
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
        num_inference_steps: int = 8,
        guidance_scale: GuidanceScale = 1.0,
        context_noise: float | None = None,
        attention_window: int | None = None,
        side: str = "left",
        generator: torch.Generator | None = None,
        output_type: str | None = None,
        context_actions_p2: ActionsInput | None = None,
    ) -> TekkenWorldModelSession:
        """Start an interactive session: `session.step(action)` returns the next frame (`session.step(p1, p2)` for a
        two-player model).

        Arguments mean what they mean for `__call__`; the context is one clip. Each session has its own cache, so
        sessions never affect each other; time and memory per step are constant (the cache's window).
        """
        output_type = output_type or ("pil" if self.vae is not None else "latent")
        self.check_inputs(
            context,
            context_latents,
            1,
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
        self._check_players(None, None, context_actions, context_actions_p2)
        context_latents, context_bits = self._prepare(
            context, context_latents, context_actions, side, context_actions_p2
        )
        if context_latents.shape[0] != 1:
            raise ValueError(f"a session plays one clip, got a batch of {context_latents.shape[0]} contexts")
        rollout = TekkenRollout(self, 1, num_inference_steps, guidance_scale, context_noise, attention_window)
        rollout.append(context_latents, context_bits, generator)
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
        `DiffusionPipeline.from_pretrained(dir, custom_pipeline=dir, trust_remote_code=True)` also works.

        Args:
            model_card (`str`, *optional*): Markdown for `README.md`; by default one is written from the configs
                (an existing `README.md` in the folder is kept).
            push_to_hub (`bool`): Upload the folder to the Hub repo `repo_id` (default: the folder's name) afterwards.
        """
        super().save_pretrained(
            save_directory, safe_serialization=safe_serialization, variant=variant, max_shard_size=max_shard_size
        )
        folder = Path(save_directory)
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
