"""What `TekkenWorldModelPipeline` accepts as frames and player inputs, checked and converted to tensors.

Frames become float `(T, 3, H, W)` clips in [-1, 1]; player inputs (Tekken notation, action ids or 8-bit vectors)
become float bits `(N, 8)`. Each form may be one clip or a batch (a list of clips, or an array with one more
dimension). Every function raises one `ValueError` that names the argument it refuses. The `prepare_*` functions at
the end turn a call's checked inputs into what the rollout takes: context latents, and one input per model frame
(pooled per latent frame with a video VAE).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import PIL.Image
import torch

from ..actions import NUM_BUTTONS, ids_to_bits, parse_action_sequence, pool_action_bits, validate_action_ids
from .vae_io import vae_name

if TYPE_CHECKING:
    from .pipeline_tekken import TekkenWorldModelPipeline

__all__ = [
    "MAX_FRAMES_PER_CALL",
    "ActionsInput",
    "FramesInput",
    "actions_batch",
    "actions_to_bits",
    "check_call_inputs",
    "check_clip_frames",
    "check_players",
    "context_bits",
    "context_frames",
    "frames_batch",
    "frames_to_tensor",
    "future_bits",
    "is_bits",
    "latent_frame_bits",
    "opponent_side",
    "prepare_context",
    "prepare_future_bits",
    "prepare_noise",
]

ActionsInput = str | Sequence[int] | Sequence[str] | np.ndarray | torch.Tensor
FramesInput = PIL.Image.Image | Sequence[PIL.Image.Image] | np.ndarray | torch.Tensor

# What one call may ask for, so that a typo (`num_frames=10**6`, "f*1000000000") fails at once instead of running for
# days or filling the memory. 10,000 frames is 11 minutes of 15 Hz play; raise `pipe.max_frames_per_call` for more,
# or play longer with a session, whose time and memory per frame are constant.
MAX_FRAMES_PER_CALL = 10_000


def frames_to_tensor(context: FramesInput, name: str = "context") -> torch.Tensor:
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


def _split_batch(value: Any, is_single: Callable[[Any], bool], name: str, expected: str) -> list[Any]:
    """One clip → `[clip]`; a list of clips or an array with a batch dimension → the list of clips."""
    if is_single(value):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(is_single(v) for v in value):
        return list(value)
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return list(value)
    raise ValueError(f"{name}: expected {expected}, or a list of those (a batch); got {type(value).__name__}")


def frames_batch(context: Any) -> list[torch.Tensor]:
    """`context` for one clip or a batch (a list of clips, or a 5-D array) → list of `(T, 3, H, W)` in [-1, 1]."""

    def single(value: Any) -> bool:
        if isinstance(value, PIL.Image.Image):
            return True
        if isinstance(value, (list, tuple)):
            return bool(value) and isinstance(value[0], PIL.Image.Image)
        return isinstance(value, (np.ndarray, torch.Tensor)) and value.ndim in (3, 4)

    expected = "PIL images, a uint8 (T, H, W, 3) or (T, 3, H, W) array, or a float (T, 3, H, W) tensor in [0, 1]"
    clips = _split_batch(context, single, "context", expected)
    return [frames_to_tensor(clip, f"context[{index}]") for index, clip in enumerate(clips)]


def is_bits(value: np.ndarray | torch.Tensor) -> bool:
    """Bool and float arrays hold bit vectors; integer arrays hold action ids."""
    if value.dtype in (torch.bool, np.bool_):
        return True
    return value.is_floating_point() if isinstance(value, torch.Tensor) else value.dtype.kind == "f"


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
    elif isinstance(actions, (np.ndarray, torch.Tensor)) and is_bits(actions):
        bits = actions.float() if isinstance(actions, torch.Tensor) else torch.from_numpy(actions.astype(np.float32))
        if bits.ndim != 2 or bits.shape[1] != NUM_BUTTONS:
            hint = " (float/bool inputs are bit vectors; action ids must be integers)" if bits.ndim < 2 else ""
            raise ValueError(f"{name}: bit vectors must have shape (N, {NUM_BUTTONS}), got {tuple(bits.shape)}{hint}")
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


def actions_batch(actions: Any, side: str, name: str, max_inputs: int = MAX_FRAMES_PER_CALL) -> list[torch.Tensor]:
    """`actions` for one clip or a batch → list of float bits `(N, 8)`, one per clip."""

    def single(value: Any) -> bool:
        if isinstance(value, str):
            return True
        if isinstance(value, (list, tuple)):
            return bool(value) and isinstance(value[0], (int, np.integer, str)) and not isinstance(value[0], bool)
        if isinstance(value, (np.ndarray, torch.Tensor)):
            return value.ndim == (2 if is_bits(value) else 1)
        return False

    if isinstance(actions, (list, tuple)) and actions and all(isinstance(a, str) for a in actions):
        clips = list(actions)  # a list of notation strings is a batch: one sequence per clip
    elif isinstance(actions, (np.ndarray, torch.Tensor)) and actions.ndim < 2:
        clips = [actions]  # one clip: (N,) ids, or floats that `actions_to_bits` names as such
    elif isinstance(actions, (list, tuple)) and actions and all(isinstance(a, float) for a in actions):
        clips = [actions]
    else:
        expected = "Tekken notation, (N,) integer action ids or (N, 8) bool/float bits"
        clips = _split_batch(actions, single, name, expected)
    return [
        actions_to_bits(clip, side, f"{name}[{index}]" if len(clips) > 1 else name, max_inputs)
        for index, clip in enumerate(clips)
    ]


def opponent_side(side: str) -> str:
    """Where player 2 stands when player 1 stands on `side` (its *forward* points the other way)."""
    return {"left": "right", "right": "left"}.get(side, side)  # a bad `side` is named by the notation parser


def check_players(
    num_players: int,
    actions: Any,
    actions_p2: Any,
    context_actions: Any,
    context_actions_p2: Any,
    opponent: Any = None,
) -> None:
    """One error when a two-player model gets one player's inputs, or a one-player model gets two. A two-player
    model with an `opponent` policy may get player 1's inputs alone: the opponent plays player 2."""
    if num_players == 1:
        for name, value in (("actions_p2", actions_p2), ("context_actions_p2", context_actions_p2)):
            if value is not None:
                raise ValueError(
                    f"`{name}`: this pipeline's transformer conditions on player 1 only (num_players=1); it "
                    "cannot take player 2's inputs"
                )
        return
    if opponent is not None:
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


def context_bits(
    context_actions: Any, batch: int, num_context: int, side: str, name: str = "context_actions", note: str = ""
) -> torch.Tensor:
    """One player's context inputs → bits `(B, T, 8)` (neutral when not given); `note` ends the error message."""
    if context_actions is None:
        return torch.zeros(batch, num_context, NUM_BUTTONS)
    clips = actions_batch(context_actions, side, name)
    if len(clips) == 1 and batch > 1:
        clips = clips * batch
    if len(clips) != batch or any(len(c) != num_context for c in clips):
        raise ValueError(
            f"`{name}` must give {num_context} inputs for each of the {batch} context clips, got "
            f"{[len(c) for c in clips]}{note}"
        )
    return torch.stack(clips)


def check_clip_frames(num_frames: int, ratio: int, name: str, vae_name: str, starts_clip: bool = True) -> None:
    """Raise one error naming `name` unless `num_frames` game frames fill whole latent frames of a video VAE.

    A clip that starts with frame 0 (a context) needs `1 + k·r` frames; frames that continue a clip (the frames to
    generate) need `k·r`, `r` per latent frame. A per-frame VAE (`ratio == 1`) takes any count.
    """
    if ratio == 1:
        return
    if starts_clip and (num_frames < 1 or (num_frames - 1) % ratio):
        below = 1 + max(num_frames - 1, 0) // ratio * ratio
        raise ValueError(
            f"`{name}`: {vae_name} compresses time by {ratio}, so a context clip must have 1 + k·{ratio} frames "
            f"(1, {1 + ratio}, {1 + 2 * ratio}, …: frame 0 is a latent frame of its own, then one per {ratio} "
            f"frames); got {num_frames} (the nearest valid counts are {below} and {below + ratio})"
        )
    if not starts_clip and (num_frames < 1 or num_frames % ratio):
        below = num_frames // ratio * ratio
        nearest = f"{below} and {below + ratio}" if below else f"{ratio}"
        raise ValueError(
            f"`{name}`: {vae_name} compresses time by {ratio}, so frames are generated {ratio} at a time (one latent "
            f"frame each) and need a multiple of {ratio} game frames; got {num_frames} (nearest: {nearest})"
        )


def latent_frame_bits(bits: torch.Tensor, ratio: int, mode: str, starts_clip: bool) -> torch.Tensor:
    """One player's per-game-frame bits `(B, N, 8)` → one input per latent frame `(B, N', 8)`, pooled by `mode`
    (`tekken_diffusers.actions.pool_action_bits`); the counts must already fit (`check_clip_frames`)."""
    if ratio == 1:
        return bits
    return pool_action_bits(bits, ratio, mode=mode, starts_clip=starts_clip)


def future_bits(
    actions: Any, num_frames: int | None, batch: int, side: str, max_frames: int, name: str = "actions"
) -> torch.Tensor:
    """One player's inputs of the frames to generate → bits `(B, N, 8)` (neutral when not given).

    One clip of inputs is shared by every clip of the batch; otherwise there must be one per clip, each with one input
    per generated frame (`num_frames` of them when given) and at most `max_frames`.
    """
    if actions is None:
        return torch.zeros(batch, num_frames, NUM_BUTTONS)
    clips = actions_batch(actions, side, name, max_frames)
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
    if max(lengths) > max_frames:
        raise ValueError(f"`{name}` asks for {max(lengths)} frames, more than pipe.max_frames_per_call = {max_frames}")
    needed = num_frames or lengths[0]
    if any(length != needed for length in lengths):
        raise ValueError(f"`{name}` must give one input per generated frame ({needed}), got {lengths}")
    return torch.stack(clips)


def check_call_inputs(
    pipe: TekkenWorldModelPipeline,
    context: Any,
    context_latents: torch.Tensor | None,
    num_frames: int | None,
    actions: Any,
    num_inference_steps: int,
    guidance_scale: float | tuple[float, float],
    context_noise: float | None,
    attention_window: int | None,
    output_type: str,
    latents: torch.Tensor | None,
    generator: Any,
    callback_on_step_end_tensor_inputs: list[str] | None,
) -> None:
    """Raise one concise `ValueError` for every input of `pipe.__call__` (or `start_session`) that is inconsistent by
    itself or with the pipeline (its VAE, latent shape, players and `max_frames_per_call`)."""
    if (context is None) == (context_latents is None):
        raise ValueError("pass exactly one of `context` (frames) and `context_latents`")
    if context is not None and pipe.vae is None:
        raise ValueError(
            "`context` frames need a VAE to encode them; this pipeline has vae=None: pass `context_latents`"
        )
    if context_latents is not None:
        expected = (pipe.transformer.config.in_channels, *pipe.latent_size)
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
    if num_frames is not None and num_frames > pipe.max_frames_per_call:
        raise ValueError(
            f"`num_frames` must be at most pipe.max_frames_per_call = {pipe.max_frames_per_call}, got "
            f"{num_frames} (raise that attribute for longer calls, or play on with a session)"
        )
    if num_frames is not None:
        check_clip_frames(num_frames, pipe.temporal_compression_ratio, "num_frames", type(pipe.vae).__name__, False)
    if num_inference_steps < 1:
        raise ValueError(f"`num_inference_steps` must be >= 1, got {num_inference_steps}")
    if isinstance(guidance_scale, (tuple, list)):
        if pipe.num_players == 1 or len(guidance_scale) != 2:
            raise ValueError(
                f"`guidance_scale`: a pair (player 1, player 2) needs a two-player model and two values; this "
                f"model has num_players={pipe.num_players}, got {guidance_scale!r}"
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
    if output_type != "latent" and pipe.vae is None:
        raise ValueError(f"output_type={output_type!r} needs a VAE; this pipeline has vae=None: use 'latent'")
    if latents is not None and latents.ndim != 5:
        raise ValueError(f"`latents` (initial noise) must be 5-D (batch, frames, C, h, w), got {tuple(latents.shape)}")
    if latents is not None and not torch.isfinite(latents).all():
        raise ValueError("`latents` (initial noise) holds NaN or inf values")
    if callback_on_step_end_tensor_inputs is not None:
        unknown = [k for k in callback_on_step_end_tensor_inputs if k not in pipe._callback_tensor_inputs]
        if unknown:
            raise ValueError(
                f"`callback_on_step_end_tensor_inputs` {unknown} are not in {pipe._callback_tensor_inputs}"
            )
    if isinstance(generator, list) and not generator:
        raise ValueError("`generator` is an empty list")


def context_frames(context: Any, latent_size: tuple[int, int], vae_scale_factor: int) -> torch.Tensor:
    """`context` for one clip or a batch → pixel frames `(B, T, 3, H, W)` in [-1, 1], of the size the model decodes
    (`latent_size` × `vae_scale_factor`)."""
    clips = frames_batch(context)
    shapes = {clip.shape for clip in clips}
    if len(shapes) != 1:
        raise ValueError(f"`context`: every clip needs the same shape, got {sorted(shapes)}")
    frames = torch.stack(clips)
    expected = tuple(size * vae_scale_factor for size in latent_size)
    if tuple(frames.shape[-2:]) != expected:
        raise ValueError(
            f"`context` frames are {tuple(frames.shape[-2:])} but this model works on {expected} frames "
            f"(latents {latent_size} × VAE factor {vae_scale_factor})"
        )
    return frames


# ---------------------------------------------------------------------------------------------------------------------
# From a call's inputs to the rollout's
# ---------------------------------------------------------------------------------------------------------------------
def _pooled_bits(pipe: TekkenWorldModelPipeline, bits: torch.Tensor, name: str, starts_clip: bool) -> torch.Tensor:
    """One player's per-game-frame bits `(B, N, 8)` → per latent frame, pooled by the pipeline's `action_pooling`;
    the count is checked first, naming `name`."""
    ratio = pipe.temporal_compression_ratio
    check_clip_frames(bits.shape[1], ratio, name, vae_name(pipe.vae), starts_clip)
    return latent_frame_bits(bits, ratio, pipe.action_pooling, starts_clip)


def prepare_context(
    pipe: TekkenWorldModelPipeline,
    context: Any,
    context_latents: torch.Tensor | None,
    context_actions: Any,
    side: str,
    context_actions_p2: Any = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Context → normalised latents `(B, T, C, h, w)` and their action bits `(B, T, 8)`, or `(B, T, 2, 8)` for a
    two-player model (player 2's notation read from the other side), on the pipeline's execution device.

    With a video VAE the context frames (`1 + k·r` per clip) are encoded as one clip each, and the context inputs
    are given per game frame (`1 + (T - 1)·r` of them for `T` latent frames) and pooled per latent frame."""
    device = pipe._execution_device
    ratio = pipe.temporal_compression_ratio
    if context_latents is None:
        frames = context_frames(context, pipe.latent_size, pipe.vae_scale_factor)  # (B, T, 3, H, W)
        check_clip_frames(frames.shape[1], ratio, "context", vae_name(pipe.vae))
        context_latents = pipe.encode_frames(frames)
    context_latents = context_latents.to(device, torch.float32)
    batch, num_context = context_latents.shape[:2]
    num_inputs = 1 + (num_context - 1) * ratio  # game frames behind the context's latent frames
    note = ""
    if ratio > 1:
        note = (
            f" (one per game frame: {vae_name(pipe.vae)} compresses time by {ratio}, so the context's {num_context} "
            f"latent frames cover 1 + {num_context - 1}·{ratio} game frames)"
        )
    bits = context_bits(context_actions, batch, num_inputs, side, note=note)
    bits = _pooled_bits(pipe, bits, "context_actions", starts_clip=True)
    opponent = getattr(pipe, "opponent", None)
    if pipe.num_players == 2 and opponent is not None and ratio > 1:
        raise ValueError(
            f"this pipeline's opponent policy reads one latent frame per game frame, but {vae_name(pipe.vae)} "
            f"compresses time by {ratio}"
        )
    if pipe.num_players == 2 and context_actions_p2 is None and opponent is not None:
        # Nobody recorded player 2's inputs: the opponent's inverse model reads them from the frames.
        bits_p2 = opponent.infer_inputs(context_latents.to(opponent.device, opponent.dtype)).to(bits.device)
        bits = torch.stack([bits, bits_p2], dim=2)  # (B, T, 2, 8)
    elif pipe.num_players == 2:
        bits_p2 = context_bits(
            context_actions_p2, batch, num_inputs, opponent_side(side), "context_actions_p2", note=note
        )
        bits_p2 = _pooled_bits(pipe, bits_p2, "context_actions_p2", starts_clip=True)
        bits = torch.stack([bits, bits_p2], dim=2)  # (B, T, 2, 8)
    return context_latents, bits.to(device)


def prepare_future_bits(
    pipe: TekkenWorldModelPipeline, actions: Any, actions_p2: Any, num_frames: int | None, batch: int, side: str
) -> torch.Tensor:
    """The inputs of the frames to generate → one input per model frame, `(B, N, 8)` or `(B, N, 2, 8)` for a
    two-player model, on the pipeline's execution device.

    Inputs are given per game frame (`future_bits`, neutral when not given) and pooled per latent frame with a video
    VAE; player 2 gives as many as player 1, and its notation is read from the other side."""
    bits = future_bits(actions, num_frames, batch, side, pipe.max_frames_per_call)  # (B, N, 8)
    num_game_frames = bits.shape[1]
    bits = _pooled_bits(pipe, bits, "actions", starts_clip=False)
    if pipe.num_players == 2 and actions_p2 is None and getattr(pipe, "opponent", None) is not None:
        bits_p2 = torch.full_like(bits, float("nan"))  # the opponent policy chooses each one (`TekkenRollout`)
        bits = torch.stack([bits, bits_p2], dim=2)  # (B, N, 2, 8)
    elif pipe.num_players == 2:
        bits_p2 = future_bits(
            actions_p2, num_game_frames, batch, opponent_side(side), pipe.max_frames_per_call, "actions_p2"
        )
        bits_p2 = _pooled_bits(pipe, bits_p2, "actions_p2", starts_clip=False)
        bits = torch.stack([bits, bits_p2], dim=2)  # (B, N, 2, 8)
    return bits.to(pipe._execution_device)


def prepare_noise(
    pipe: TekkenWorldModelPipeline, latents: torch.Tensor | None, generator: Any, batch: int, num_frames: int
) -> torch.Tensor | None:
    """Check the generators and the initial noise `latents` against a batch of `batch` clips and `num_frames` model
    frames to generate; returns `latents` in float32 on the pipeline's execution device (None stays None)."""
    if isinstance(generator, list) and len(generator) != batch:
        raise ValueError(f"`generator` is a list of {len(generator)} but the batch has {batch} clips")
    if latents is None:
        return None
    expected = (batch, num_frames, pipe.transformer.config.in_channels, *pipe.latent_size)
    if tuple(latents.shape) != expected:
        raise ValueError(f"`latents` (initial noise) must have shape {expected}, got {tuple(latents.shape)}")
    return latents.to(pipe._execution_device, torch.float32)
