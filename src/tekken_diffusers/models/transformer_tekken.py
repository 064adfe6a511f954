"""The world model: a frame-causal diffusion transformer driven by per-frame noise levels and button presses.

A rebuild of the network of the owl-wms Tekken fork (`tekken_rft_v2`, COMBAT) as a diffusers `ModelMixin`. Same
ideas: one token per latent patch, per-frame conditioning = timestep embedding + action embedding, QK-norm, 3D RoPE,
attention block-causal over frames (bidirectional within a frame) with local/global frame windows, a KV cache for
autoregressive rollout. Fixed on the way:

* the adaLN modulation is computed once per frame and broadcast to that frame's tokens (the original expanded the
  condition to every token, ~33 % of the block FLOPs wasted), and it is adaLN-Zero (the original initialised the
  gates and the output projection at random; here they start at zero, so each block starts as the identity);
* the timestep embedding runs in fp32 (the original ran sin/cos on bf16-quantised `1000·t`);
* RoPE uses integer frame positions with no upper bound (the original's `linspace(-1, 1, n_frames)` tied the time
  scale to `n_frames` and crashed past it);
* the cache evicts per layer to that layer's window, so global layers never see more than `global_window` frames
  (the original's decoding let them attend to the whole cache, beyond the frames seen in training, and its eviction
  removed the wrong end) and memory and time per frame stay constant however long the rollout.

The module only maps tensors to tensors: no noise sampling, no loss, no device moves (the scheduler owns the noise,
the training script the loss, the pipeline the sampling loop).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import ModelMixin  # diffusers' loader looks this name up in the module: keep this import
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.models.attention import AttentionMixin, AttentionModuleMixin, FeedForward
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.utils import BaseOutput, logging

from .attention_tekken import (
    ATTENTION_CHUNK_TOKENS,
    DENSE_ATTENTION_MAX_TOKENS,
    AttentionChunk,
    chunked_frame_attention,
    plan_frame_attention,
)

# The masks lived here before attention_tekken.py; importing them from this module keeps working.
from .attention_tekken import frame_attention_mask as frame_attention_mask
from .attention_tekken import teacher_forcing_attention_mask as teacher_forcing_attention_mask

logger = logging.get_logger(__name__)

# The model sees sigma in [0, 1]; the sinusoidal embedding gets sigma * 1000, the scale of diffusers' `timesteps`
# (FlowMatchEulerDiscreteScheduler, num_train_timesteps=1000) and of the original's `SinCos(mult=1000)`.
TIMESTEP_SCALE = 1000.0

# One registry of sizes (docs/model_presets.md). `small` is the shipped Atari Boxing model, sized for the 2-core CPU
# (tokens per frame and width set the cost): 8x8 latents with patch size 2 give 16 tokens per frame, a quarter of
# patch size 1. `tekken-large` reproduces the original's layout (16 layers, d_model 2048, 16 heads, 128x14x23
# latents, patch size 1 = 322 tokens/frame, local window 16, global window 128, layers 0, 4, 8, 12 global).
PREDICTION_TYPES = ("flow", "prev_frame_residual")
# Arithmetic variants for checkpoints converted from the original (`tekken-convert-owl-wms`); the first of each is
# this model's own and the default. docs/converting.md describes the original's arithmetic they reproduce.
TIMESTEP_STYLES = ("diffusers", "owl-wms")
TIMESTEP_FEATURES_DTYPES = ("float32", "bfloat16")
ROPE_STYLES = ("integer", "owl-wms")
MLP_ACTIVATIONS = ("gelu-approximate", "linear-silu")
# Players whose inputs condition the model: 1 (player 1 only, every model before `num_players`) or 2 (a fighting
# game's two players, each with its own action embedding so that the model can tell whose input is whose).
NUM_PLAYERS = (1, 2)

TRANSFORMER_PRESETS: dict[str, dict] = {
    "tiny": {
        "in_channels": 4,
        "sample_size": (4, 4),
        "patch_size": 2,
        "num_layers": 2,
        "num_attention_heads": 2,
        "attention_head_dim": 16,
        "local_window": 3,
        "global_window": 6,
        "global_every": 2,
        "timestep_freq_dim": 32,
    },
    "small": {
        "in_channels": 16,
        "sample_size": (8, 8),
        "patch_size": 2,
        "num_layers": 8,
        "num_attention_heads": 6,
        "attention_head_dim": 64,
        "local_window": 8,
        "global_window": 32,
        "global_every": 4,
    },
    # ~7 M parameters (4.7 M outside the per-frame adaLN, which costs per frame, not per token): a third of `small`'s
    # cost per token, so it sees three times the frames in the same CPU time and generates in real time on a laptop.
    "compact": {
        "in_channels": 16,
        "sample_size": (8, 8),
        "patch_size": 2,
        "num_layers": 6,
        "num_attention_heads": 4,
        "attention_head_dim": 64,
        "local_window": 8,
        "global_window": 32,
        "global_every": 3,
    },
    "tekken-large": {
        "in_channels": 128,
        "sample_size": (14, 23),
        "patch_size": 1,
        "num_layers": 16,
        "num_attention_heads": 16,
        "attention_head_dim": 128,
        "local_window": 16,
        "global_window": 128,
        "global_every": 4,
    },
}


@dataclass
class TekkenTransformerOutput(BaseOutput):
    """
    Output of [`TekkenWorldModelTransformer`].

    Args:
        sample (`torch.Tensor` of shape `(batch_size, num_frames, out_channels, height, width)`):
            The predicted velocity `noise - latents` for every input frame.
        pred_original_sample (`torch.Tensor`, same shape, *optional*):
            The predicted clean latents `x0` (set for `prediction_type="prev_frame_residual"`, whose network predicts
            `x0`; the velocity is derived from it).
    """

    sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


@dataclass
class TekkenFrameConditioning:
    """
    Each frame's condition and every block's adaLN modulation, from [`TekkenWorldModelTransformer.condition`], for
    `forward(..., conditioning=...)`. A rollout makes one for all the denoising steps of a frame at once, so the
    modulation weights (a third of a small model's) are read once per frame instead of once per pass.

    Args:
        cond (`torch.Tensor` of shape `(batch_size, num_frames, dim)`): SiLU(time embedding + action embedding).
        modulation (`torch.Tensor` of shape `(batch_size, num_frames, (6 * num_layers + 2) * dim)`): Each block's
            shift/scale/gate for attention and MLP in layer order, then the output norm's shift/scale.
    """

    cond: torch.Tensor
    modulation: torch.Tensor

    @property
    def num_frames(self) -> int:
        return self.cond.shape[1]

    def frames(self, start: int, stop: int) -> TekkenFrameConditioning:
        """Frames `start:stop` (views)."""
        return TekkenFrameConditioning(self.cond[:, start:stop], self.modulation[:, start:stop])

    @classmethod
    def cat(cls, parts: Sequence[TekkenFrameConditioning]) -> TekkenFrameConditioning:
        """The frames of `parts` one after the other."""
        return cls(torch.cat([p.cond for p in parts], dim=1), torch.cat([p.modulation for p in parts], dim=1))


def _kept_fusion(owner: nn.Module, name: str, tensors: Sequence[torch.Tensor | None], build) -> tuple:
    """`build()` (tensors concatenated from `owner`'s parameters `tensors`), kept on `owner` while no gradient is
    recorded and none of `tensors` changed (moved, cast, loaded or trained: another storage or version); rebuilt on
    every call under gradients, so they reach the separate parameters (which stay what is saved and loaded)."""
    if torch.is_grad_enabled():
        return build()
    key = tuple(None if t is None else (t.data_ptr(), t._version, t.dtype, t.device) for t in tensors)
    kept = owner.__dict__.get(name)
    if kept is None or kept[0] != key:
        kept = (key, build())
        owner.__dict__[name] = kept
    return kept[1]


class TekkenKVCache:
    """
    Rolling per-layer key/value cache for frame-by-frame rollout.

    Each layer keeps the keys and values of its most recent `max_frames[layer]` frames, stored after QK-norm and RoPE
    (positions are absolute integers, so a cached key never needs re-rotating as the rollout advances). A layer with
    frame window `w` needs `w - 1` past frames for the next query frame (the query frame itself is the `w`-th), so
    [`TekkenWorldModelTransformer.make_kv_cache`] sizes each layer to its own window: local layers keep few frames,
    global layers more, and memory and time per frame stay constant however long the rollout.

    Usage, driven by the pipeline: prefill with the context (`update_kv_cache=True`), denoise the next frame against
    the read-only cache (`update_kv_cache=False`), then append the finished frame (`update_kv_cache=True`), in a pass
    of its own or in front of the next frame's first denoising pass (`cache_leading_frames`).

    Several caches of the same model can share one forward pass (`tekken_diffusers.pipelines.batching`): [`stack`]
    concatenates them along the batch, [`select`] and [`split`] take the rows back, and [`shift_frames`] moves a
    cache's frame clock (re-rotating its keys) so that caches whose games started at different times continue at the
    same frame index. No operation writes a cached tensor in place, so caches may share storage.

    Args:
        max_frames (`Sequence[int]`):
            Number of past frames each layer keeps (one entry per transformer layer; `0` keeps nothing).
        start_frame (`int`, defaults to `0`):
            Absolute frame index at which the first appended frame must start.
        rope_axes_dim (`Sequence[int]`, *optional*):
            The model's RoPE channels per axis (time, height, width), which [`shift_frames`] re-rotates by;
            [`TekkenWorldModelTransformer.make_kv_cache`] passes them. Without them the cache cannot be shifted.
        rope_theta (`float`, defaults to `10000.0`): The model's RoPE base.
        rope_style (`str`, defaults to `"integer"`): The model's RoPE positions; only `"integer"` can be shifted.
    """

    def __init__(
        self,
        max_frames: Sequence[int],
        start_frame: int = 0,
        rope_axes_dim: Sequence[int] | None = None,
        rope_theta: float = 10000.0,
        rope_style: str = "integer",
    ):
        self.max_frames = tuple(int(m) for m in max_frames)
        if not self.max_frames or min(self.max_frames) < 0:
            raise ValueError(f"max_frames must be a non-empty list of counts >= 0, got {list(max_frames)}")
        if start_frame < 0:
            raise ValueError(f"start_frame must be >= 0, got {start_frame}")
        if rope_style not in ROPE_STYLES:
            raise ValueError(f"rope_style must be one of {', '.join(ROPE_STYLES)}, got {rope_style!r}")
        self._start_frame = int(start_frame)
        self.rope_axes_dim = None if rope_axes_dim is None else tuple(int(d) for d in rope_axes_dim)
        self.rope_theta = float(rope_theta)
        self.rope_style = rope_style
        self.reset()

    def reset(self) -> None:
        """Drop every cached frame; the next append starts again at `start_frame`."""
        self._keys: list[torch.Tensor | None] = [None] * self.num_layers
        self._values: list[torch.Tensor | None] = [None] * self.num_layers
        # The newest cached frame's input latents (B, 1, C, H, W), as they entered the model: the copy path of a
        # model with `prev_frame_conditioning` gives them to the next frame.
        self.prev_latents: torch.Tensor | None = None
        # Absolute index one past each layer's newest cached frame. All layers agree between forward passes.
        self._end_frames = [self._start_frame] * self.num_layers

    @property
    def num_layers(self) -> int:
        return len(self.max_frames)

    @property
    def next_frame(self) -> int:
        """Absolute index of the frame the next forward pass must start at (its `frame_offset`)."""
        if len(set(self._end_frames)) != 1:
            raise RuntimeError(
                f"TekkenKVCache layers disagree on their newest frame ({self._end_frames}): a forward pass that "
                "updated the cache was interrupted; call reset() and prefill again"
            )
        return self._end_frames[0]

    @property
    def batch_size(self) -> int | None:
        """Batch size of the cached keys, or `None` while the cache is empty."""
        return None if self._keys[0] is None else self._keys[0].shape[0]

    @property
    def tokens_per_frame(self) -> int | None:
        """Tokens per frame of the cached keys, or `None` while the cache is empty."""
        return None if self._keys[0] is None else self._keys[0].shape[2]

    def num_frames(self, layer_idx: int) -> int:
        """Number of frames layer `layer_idx` holds now."""
        keys = self._keys[layer_idx]
        return 0 if keys is None else keys.shape[1]

    def first_frame(self, layer_idx: int) -> int:
        """Absolute index of the oldest frame layer `layer_idx` holds."""
        return self._end_frames[layer_idx] - self.num_frames(layer_idx)

    def memory_bytes(self) -> int:
        """Bytes of the cached keys and values (what the cache holds, not counting transient copies)."""
        tensors = [t for t in self._keys + self._values + [self.prev_latents] if t is not None]
        return sum(t.numel() * t.element_size() for t in tensors)

    def get(self, layer_idx: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """
        Cached `(keys, values)` of one layer, each `(batch, frames, tokens_per_frame, heads, head_dim)`, or `None`.

        Args:
            layer_idx (`int`): The transformer layer.
        """
        if self._keys[layer_idx] is None:
            return None
        return self._keys[layer_idx], self._values[layer_idx]

    def append(self, layer_idx: int, keys: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Append new frames to one layer, evict the oldest beyond `max_frames[layer_idx]`, and return the cached plus
        new keys and values (before eviction) for the attention that is running now.

        Args:
            layer_idx (`int`): The transformer layer.
            keys (`torch.Tensor` of shape `(batch, new_frames, tokens_per_frame, heads, head_dim)`): New keys.
            values (`torch.Tensor`, same shape as `keys`): New values.
        """
        past = self.get(layer_idx)
        if past is not None:
            keys = torch.cat([past[0], keys], dim=1)
            values = torch.cat([past[1], values], dim=1)
            added = keys.shape[1] - past[0].shape[1]
        else:
            added = keys.shape[1]
        # Keep a view of the newest frames; the next append's `cat` copies them and frees the old storage, so each
        # layer holds at most `max_frames + new_frames` frames at any time.
        keep = min(self.max_frames[layer_idx], keys.shape[1])
        self._keys[layer_idx] = keys[:, keys.shape[1] - keep :]
        self._values[layer_idx] = values[:, values.shape[1] - keep :]
        self._end_frames[layer_idx] += added
        return keys, values

    # -----------------------------------------------------------------------------------------------------------------
    # Batches of caches: stack, take rows back, align frame clocks
    # -----------------------------------------------------------------------------------------------------------------
    @property
    def can_shift(self) -> bool:
        """Whether [`shift_frames`] can move this cache's clock (integer RoPE positions of a known layout)."""
        return self.rope_style == "integer" and self.rope_axes_dim is not None

    def _layout(self) -> tuple:
        """What caches must share to be stacked: their layers' sizes and their model's RoPE."""
        return self.max_frames, self.rope_axes_dim, self.rope_theta, self.rope_style

    @staticmethod
    def _rows(tensor: torch.Tensor, branches: int, name: str) -> int:
        if tensor.shape[0] % branches:
            raise ValueError(f"{name}: batch {tensor.shape[0]} is not a multiple of branches={branches}")
        return tensor.shape[0] // branches

    @classmethod
    def stack(cls, caches: Sequence[TekkenKVCache], branches: int = 1) -> TekkenKVCache:
        """
        One cache holding the rows of `caches` along the batch, for one forward pass of all of them.

        Every cache must hold the same number of frames in each layer and continue at the same frame (`next_frame`;
        align clocks first with [`shift_frames`]), and come from the same model. The tensors are new (concatenated);
        the caches given are left as they are.

        Args:
            caches (`Sequence[TekkenKVCache]`): The caches, in the order of the rows of the stacked batch.
            branches (`int`, defaults to `1`): Classifier-free guidance branches in each cache's batch. A rollout
                with guidance keeps one copy of its batch per branch, branch-major (`[cond rows, uncond rows]`); the
                stacked cache keeps that order (`[cond rows of every cache, uncond rows of every cache]`).

        Raises:
            ValueError: No caches, caches of different models or sizes, different frame counts in a layer, or
                different `next_frame`.
        """
        if not caches:
            raise ValueError("TekkenKVCache.stack needs at least one cache")
        if branches < 1:
            raise ValueError(f"branches must be >= 1, got {branches}")
        first = caches[0]
        for index, cache in enumerate(caches):
            if cache._layout() != first._layout():
                raise ValueError(
                    f"TekkenKVCache.stack: cache {index} belongs to another model or size (max_frames "
                    f"{cache.max_frames}, RoPE {cache._layout()[1:]}) than cache 0 ({first.max_frames}, "
                    f"{first._layout()[1:]})"
                )
        counts = [tuple(cache.num_frames(i) for i in range(cache.num_layers)) for cache in caches]
        if len(set(counts)) != 1:
            raise ValueError(
                f"TekkenKVCache.stack: the caches hold different numbers of frames per layer ({counts}); only caches "
                "with equal per-layer frame counts share one forward pass"
            )
        clocks = [cache.next_frame for cache in caches]
        if len(set(clocks)) != 1:
            raise ValueError(
                f"TekkenKVCache.stack: the caches continue at different frames (next_frame {clocks}); align them "
                "first with shift_frames"
            )
        if len({cache.prev_latents is None for cache in caches}) != 1:
            raise ValueError("TekkenKVCache.stack: some caches hold the copy path's prev_latents and some do not")

        def cat(tensors: list[torch.Tensor], name: str) -> torch.Tensor:
            for tensor in tensors:
                cls._rows(tensor, branches, name)
            if branches == 1:
                return torch.cat(tensors)
            # (branches * b_i, ...) -> (branches, b_i, ...), concatenated per branch, then back to branch-major.
            return torch.cat([t.unflatten(0, (branches, -1)) for t in tensors], dim=1).flatten(0, 1)

        stacked = cls(first.max_frames, first._start_frame, first.rope_axes_dim, first.rope_theta, first.rope_style)
        for layer in range(first.num_layers):
            if caches[0]._keys[layer] is not None:
                stacked._keys[layer] = cat([cache._keys[layer] for cache in caches], f"layer {layer} keys")
                stacked._values[layer] = cat([cache._values[layer] for cache in caches], f"layer {layer} values")
        if first.prev_latents is not None:
            stacked.prev_latents = cat([cache.prev_latents for cache in caches], "prev_latents")
        stacked._end_frames = list(first._end_frames)
        return stacked

    def select(self, index: int, branches: int = 1, clone: bool = False) -> TekkenKVCache:
        """
        The cache of one row of the batch (with its copy in every guidance branch), as [`stack`] put it there.

        Args:
            index (`int`): The row, in `[0, batch_size / branches)`.
            branches (`int`, defaults to `1`): Guidance branches in the batch, as in [`stack`].
            clone (`bool`, defaults to `False`): Copy the row's tensors. Without it they are views of this cache's
                tensors: free to take, and the row's next append copies them anyway, but until then they keep this
                whole cache's storage alive.
        """
        picked_cache = TekkenKVCache(
            self.max_frames, self._start_frame, self.rope_axes_dim, self.rope_theta, self.rope_style
        )

        def row(tensor: torch.Tensor, name: str) -> torch.Tensor:
            rows = self._rows(tensor, branches, name)
            if not -rows <= index < rows:
                raise IndexError(f"TekkenKVCache.select: row {index} of a batch of {rows} rows")
            picked = tensor.unflatten(0, (branches, rows))[:, index]  # (branches, ...): a view
            return picked.clone() if clone else picked

        for layer in range(self.num_layers):
            if self._keys[layer] is not None:
                picked_cache._keys[layer] = row(self._keys[layer], f"layer {layer} keys")
                picked_cache._values[layer] = row(self._values[layer], f"layer {layer} values")
        if self.prev_latents is not None:
            picked_cache.prev_latents = row(self.prev_latents, "prev_latents")
        picked_cache._end_frames = list(self._end_frames)
        return picked_cache

    def split(self, branches: int = 1, clone: bool = False) -> list[TekkenKVCache]:
        """
        Every row's cache, the inverse of [`stack`] for caches of one row each ([`select`] of each row).

        Args:
            branches (`int`, defaults to `1`): Guidance branches in the batch, as in [`stack`].
            clone (`bool`, defaults to `False`): Copy the tensors rather than take views, as in [`select`].
        """
        if self.batch_size is None:
            raise ValueError("TekkenKVCache.split: the cache is empty, its rows are unknown")
        rows = self._rows(self._keys[0], branches, "layer 0 keys")
        return [self.select(index, branches, clone) for index in range(rows)]

    def shift_frames(self, delta: int) -> None:
        """
        Move the cache's frame clock by `delta` frames: every cached key is re-rotated as if its frame had been
        `delta` frames later, and the next frame continues at `next_frame + delta`.

        Attention depends only on the difference of frame positions, so the next frames' outputs do not change
        (within float rounding of one more rotation: ~1e-7 in fp32, the dtype's rounding in bf16). Two caches whose
        games started at different times can then share a forward pass ([`stack`]).

        Args:
            delta (`int`): Frames to move by (negative moves back, as far as frame 0 for the oldest cached frame).

        Raises:
            ValueError: A cache whose positions cannot be shifted (`rope_style="owl-wms"`, whose positions are
                normalised to the window, or a cache built without its model's RoPE), or a shift below frame 0.
        """
        delta = int(delta)
        end = self.next_frame  # checks that the layers agree
        if delta == 0:
            return
        if self.rope_style != "integer":
            raise ValueError(
                f"shift_frames: this cache's model uses rope_style={self.rope_style!r}; only integer RoPE positions "
                "(rope_style='integer') can be shifted. Step such sessions alone, or only with equal clocks"
            )
        if self.rope_axes_dim is None:
            raise ValueError(
                "shift_frames: this cache does not know its model's RoPE layout; build it with "
                "TekkenWorldModelTransformer.make_kv_cache"
            )
        oldest = min(self.first_frame(layer) for layer in range(self.num_layers))
        if oldest + delta < 0:
            raise ValueError(
                f"shift_frames({delta}): the oldest cached frame ({oldest}) would move before frame 0 "
                f"(the cache continues at frame {end})"
            )
        rotation = None
        for layer, keys in enumerate(self._keys):
            if keys is None:
                continue
            if rotation is None:
                # The time axis rotated by `delta`, the row and column axes by position 0 (the identity): the same
                # pair layout as the model's own rotation, so R(p + delta) = R(delta) R(p) per pair.
                rotation = get_3d_rotary_angles(delta, 1, 1, 1, self.rope_axes_dim, self.rope_theta, keys.device)
            self._keys[layer] = apply_rotary_emb(keys, rotation)  # out of place: views of other caches stay valid
        self._end_frames = [frame + delta for frame in self._end_frames]


def get_3d_rotary_angles(
    frame_offset: int,
    num_frames: int,
    grid_height: int,
    grid_width: int,
    axes_dim: Sequence[int],
    theta: float,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Cos/sin tables of 3D axial RoPE at integer positions (frame, row, column).

    Frame positions are absolute (`frame_offset + i`) and unbounded, so a rolling window can slide forever: attention
    only sees position differences. Angles are computed in float64 (float32 on MPS, as diffusers'
    `get_1d_rotary_pos_embed` does) so that frame 10^5 is still rotated to ~1e-11 rad, then returned as float32.

    Args:
        frame_offset (`int`): Absolute index of the first frame.
        num_frames (`int`): Number of frames.
        grid_height (`int`): Patch rows per frame.
        grid_width (`int`): Patch columns per frame.
        axes_dim (`Sequence[int]`): Rotated channels per axis (time, height, width), each even.
        theta (`float`): RoPE base.
        device (`torch.device`): Where to build the tables.

    Returns:
        `(cos, sin)`, each `(num_frames, grid_height * grid_width, sum(axes_dim) // 2)` float32.
    """
    freqs_dtype = torch.float32 if device.type == "mps" else torch.float64
    positions = (
        torch.arange(frame_offset, frame_offset + num_frames, dtype=freqs_dtype, device=device),
        torch.arange(grid_height, dtype=freqs_dtype, device=device),
        torch.arange(grid_width, dtype=freqs_dtype, device=device),
    )
    angles = []
    for axis, (pos, dim) in enumerate(zip(positions, axes_dim)):
        freqs = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=freqs_dtype, device=device) / dim)  # (dim/2,)
        axis_angles = pos[:, None] * freqs[None]  # (n_axis, dim/2)
        view = [1, 1, 1, dim // 2]
        view[axis] = pos.shape[0]
        angles.append(axis_angles.view(view).expand(num_frames, grid_height, grid_width, dim // 2))
    angles = torch.cat(angles, dim=-1).flatten(1, 2)  # (T, h*w, P)
    return angles.cos().float(), angles.sin().float()


def get_owl_wms_rotary_angles(
    frame_offset: int,
    num_frames: int,
    grid_height: int,
    grid_width: int,
    axes_dim: Sequence[int],
    rope_num_frames: int,
    device: torch.device,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Cos/sin tables of the original's 3D RoPE (`rope_style="owl-wms"`): rotary-embedding-torch's "pixel" frequencies
    at positions normalised to [-1, 1], computed in fp32 as the original did.

    * frequencies of an axis with `dim` channels: `pi * linspace(1, 128, dim // 2)` (rotary-embedding-torch's
      `freqs_for="pixel"` with `max_freq=256`);
    * frame position `linspace(-1, 1, rope_num_frames)[frame]` (continued linearly past `rope_num_frames`, where the
      original fails); row and column positions `linspace(-1, 1, H + 1)[row]` and `linspace(-1, 1, W + 1)[col]`.

    Args:
        frame_offset (`int`): Absolute index of the first frame.
        num_frames (`int`): Number of frames.
        grid_height (`int`): Patch rows per frame.
        grid_width (`int`): Patch columns per frame.
        axes_dim (`Sequence[int]`): Rotated channels per axis (time, height, width), each even.
        rope_num_frames (`int`): The original's `n_frames`, which sets the time scale.
        device (`torch.device`): Where to build the tables.

    Returns:
        `(cos, sin)`, each `(num_frames, grid_height * grid_width, sum(axes_dim) // 2)` float32.
    """
    end = frame_offset + num_frames
    time = torch.linspace(-1.0, 1.0, rope_num_frames, device=device)
    if end > rope_num_frames:
        step = 2.0 / max(rope_num_frames - 1, 1)
        extra = torch.arange(rope_num_frames, end, device=device, dtype=torch.float32) * step - 1.0
        time = torch.cat([time, extra])
    positions = (
        time[frame_offset:end],
        torch.linspace(-1.0, 1.0, grid_height + 1, device=device)[:grid_height],
        torch.linspace(-1.0, 1.0, grid_width + 1, device=device)[:grid_width],
    )
    angles = []
    for axis, (pos, dim) in enumerate(zip(positions, axes_dim)):
        freqs = torch.linspace(1.0, 128.0, dim // 2, device=device) * math.pi  # (dim/2,)
        axis_angles = pos[:, None] * freqs[None]  # (n_axis, dim/2)
        view = [1, 1, 1, dim // 2]
        view[axis] = pos.shape[0]
        angles.append(axis_angles.view(view).expand(num_frames, grid_height, grid_width, dim // 2))
    angles = torch.cat(angles, dim=-1).flatten(1, 2)  # (T, h*w, P)
    return angles.cos(), angles.sin()


def owl_wms_timestep_features(sigmas: torch.Tensor, num_features: int, dtype: torch.dtype) -> torch.Tensor:
    """
    The original's sinusoidal timestep features (`timestep_style="owl-wms"`, owl-wms `SinCosEmbed(theta=300)`):
    `[sin(x * f_0), ..., sin(x * f_{n-1}), cos(x * f_0), ..., cos(x * f_{n-1})]` with `x = 1000 * sigma`,
    `f_k = exp(-k * ln(300) / (n - 1))` and `n = num_features // 2`, sin first.

    The frequencies are computed in fp32, then `x`, the frequencies, their product, sin and cos in `dtype`: the
    original computed them in the dtype of its input, bf16 in its training and sampling.

    Args:
        sigmas (`torch.Tensor`): Noise levels in [0, 1], shape `(n,)`.
        num_features (`int`): Number of features (even).
        dtype (`torch.dtype`): Precision of the features (`torch.float32` or `torch.bfloat16`).

    Returns:
        `(n, num_features)` float32.
    """
    half = num_features // 2
    step = torch.log(torch.tensor(300.0)) / (half - 1)
    freqs = torch.exp(torch.arange(half) * -step).to(device=sigmas.device, dtype=dtype)  # (half,)
    angles = (sigmas.to(dtype) * TIMESTEP_SCALE)[:, None] * freqs[None]  # (n, half)
    return torch.cat([angles.sin(), angles.cos()], dim=-1).float()


def rotary_phasors(rotary_emb: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """The RoPE angles' `(cos, sin)` tables, each `(frames, tokens_per_frame, P)`, stacked into one fp32 table
    `(frames, tokens_per_frame, P, 2)`: the phasors `cos + i sin` that [`apply_rotary_emb`] multiplies by, stored as
    real pairs (the model builds it once per forward pass for all its layers; compiled code sees no complex tensor)."""
    cos, sin = rotary_emb
    return torch.stack([cos.float(), sin.float()], dim=-1)


def apply_rotary_emb(
    hidden_states: torch.Tensor, rotary_emb: tuple[torch.Tensor, torch.Tensor] | torch.Tensor
) -> torch.Tensor:
    """
    Rotate adjacent channel pairs `(2i, 2i+1)` of the first `2P` channels by the RoPE angles; the rest pass through.

    Each pair is read as the complex number `x_2i + i x_2i+1` and multiplied by `cos + i sin` (in fp32, as the original
    rotated, rope.py:43-51), which is the rotation `(x cos - y sin, x sin + y cos)` in fewer operations. Under
    `torch.compile` the same rotation is written in real arithmetic, which Inductor fuses (it generates no code for
    complex numbers).

    Args:
        hidden_states (`torch.Tensor` of shape `(batch, frames, tokens_per_frame, *extra, head_dim)`): Queries or keys
            (`extra`: heads, or (2, heads) for queries and keys together).
        rotary_emb: `(cos, sin)`, each `(frames, tokens_per_frame, P)`, or both as one table ([`rotary_phasors`]).
    """
    table = rotary_emb if isinstance(rotary_emb, torch.Tensor) else rotary_phasors(rotary_emb)
    rot_dim = 2 * table.shape[-2]
    extra = hidden_states.ndim - 4  # broadcast over the batch and the dims between tokens and channels
    table = table.view(*table.shape[:2], *([1] * extra), *table.shape[-2:])  # (T, N, ..., P, 2)
    pairs = hidden_states[..., :rot_dim].float().unflatten(-1, (-1, 2))  # (B, T, N, ..., P, 2)
    if torch.compiler.is_compiling():
        (x, y), (cos, sin) = pairs.unbind(-1), table.unbind(-1)
        rotated = torch.stack([x * cos - y * sin, x * sin + y * cos], dim=-1).flatten(-2)  # (B, T, N, ..., 2P)
    else:
        if pairs.stride(-2) % 2 or pairs.storage_offset() % 2:  # view_as_complex needs whole complex numbers
            pairs = pairs.contiguous()
        phasors = torch.view_as_complex(table)
        rotated = torch.view_as_real(torch.view_as_complex(pairs) * phasors).flatten(-2)  # (B, T, N, ..., 2P)
    if rot_dim < hidden_states.shape[-1]:
        rotated = torch.cat([rotated, hidden_states[..., rot_dim:].float()], dim=-1)
    return rotated.to(hidden_states.dtype)


def rms_norm_fp32(hidden_states: torch.Tensor, norm: nn.RMSNorm) -> torch.Tensor:
    """
    Apply `norm` in fp32 whatever the input and weight dtypes (under bf16 autocast the input is bf16 and the weight
    fp32, which PyTorch's fused kernel refuses); returns fp32.

    Args:
        hidden_states (`torch.Tensor`): Input, normalised over its last dimension.
        norm (`nn.RMSNorm`): The norm whose shape, gain and epsilon to use.
    """
    weight = None if norm.weight is None else norm.weight.float()
    return F.rms_norm(hidden_states.float(), norm.normalized_shape, weight, norm.eps)


def prev_frame_prior(sigmas: torch.Tensor, variance: float) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Coefficients of the `prev_frame_residual` parameterisation at noise levels `sigmas`.

    With the prior "the next frame is the previous one plus a change of variance `variance` per element" and the noisy
    input `x = (1 - sigma) * x0 + sigma * noise`, the best linear estimate of `x0` is
    `prev + gain * (x - (1 - sigma) * prev)` (a Wiener filter) and its error has standard deviation `c_out`:

        gain = (1 - sigma) * variance / ((1 - sigma)^2 * variance + sigma^2)
        c_out = sigma * sqrt(variance / ((1 - sigma)^2 * variance + sigma^2))

    At sigma = 1 the estimate is the previous frame, at sigma = 0 the input itself. The network adds `c_out * F`, so an
    untrained network (F = 0) predicts exactly that estimate, and a unit-variance F covers the remaining error at every
    noise level (the preconditioning idea of EDM, Karras et al. 2022, with the previous frame as the prior's mean).

    Args:
        sigmas (`torch.Tensor`): Noise levels in [0, 1], any shape.
        variance (`float`): The prior's variance of the frame-to-frame change (in normalised latent units).

    Returns:
        `(gain, c_out)`, float32, shaped like `sigmas`.
    """
    sigmas = sigmas.float()
    denominator = (1 - sigmas) ** 2 * variance + sigmas**2
    gain = (1 - sigmas) * variance / denominator
    c_out = sigmas * torch.sqrt(variance / denominator)
    return gain, c_out


class TekkenAttnProcessor:
    """
    Attention processor of [`TekkenAttention`]: QK-RMSNorm, 3D RoPE, optional KV cache, windowed frame-causal mask.

    Attention goes through diffusers' `dispatch_attention_fn`, so `model.set_attention_backend(...)` picks the kernel
    (PyTorch SDPA by default): one call with the dense `attention_mask`, or, for long windows, one call per chunk of
    query frames (`attention_chunks`, see `attention_tekken.py`).
    """

    _attention_backend = None
    _parallel_config = None

    def __call__(
        self,
        attn: TekkenAttention,
        hidden_states: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        attention_chunks: Sequence[AttentionChunk] | None = None,
        kv_cache: TekkenKVCache | None = None,
        layer_idx: int = 0,
        update_kv_cache: bool = False,
        cache_leading_frames: int | None = None,
    ) -> torch.Tensor:
        batch_size, num_frames, tokens_per_frame, _ = hidden_states.shape
        # One projection for q, k and v: (B, T, N, 3, H, Dh).
        if attn.can_fuse_projections:
            weight, bias = attn.qkv_projection()
            qkv = F.linear(hidden_states, weight, bias)  # as nn.Linear would (autocast casts inside)
        else:  # adapted (e.g. LoRA) or otherwise replaced projections: each module as it is
            qkv = torch.cat([attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)], dim=-1)
        qkv = qkv.unflatten(-1, (3, attn.heads, -1))
        value = qkv[..., 2, :, :]
        # QK-norm and RoPE of q and k together in fp32 (the rotation needs it anyway), then back to the value dtype.
        norm = attn.norm_q
        gains = attn.qk_norm_gains()  # (2, 1, Dh) or None
        query_key = F.rms_norm(qkv[..., :2, :, :].float(), norm.normalized_shape, None, norm.eps)
        if gains is not None:
            query_key = query_key * gains
        query, key = apply_rotary_emb(query_key, rotary_emb).to(value.dtype).unbind(-3)  # (B, T, N, H, Dh) each

        if kv_cache is not None and update_kv_cache:
            keep = num_frames if cache_leading_frames is None else cache_leading_frames
            cached_key, cached_value = kv_cache.append(layer_idx, key[:, :keep], value[:, :keep])
            # Frames after the kept ones see them (and the cache) but are not written: (B, F + T, N, H, Dh).
            key = torch.cat([cached_key, key[:, keep:]], dim=1) if keep < num_frames else cached_key
            value = torch.cat([cached_value, value[:, keep:]], dim=1) if keep < num_frames else cached_value
        elif kv_cache is not None and (past := kv_cache.get(layer_idx)) is not None:
            key = torch.cat([past[0], key], dim=1)  # (B, F + T, N, H, Dh)
            value = torch.cat([past[1], value], dim=1)

        if attention_chunks is None:
            hidden_states = dispatch_attention_fn(
                query.flatten(1, 2),  # (B, T*N, H, Dh): diffusers' BSHD layout
                key.flatten(1, 2),
                value.flatten(1, 2),
                attn_mask=attention_mask,
                backend=self._attention_backend,
                parallel_config=self._parallel_config,
            )
        else:
            # Long windows: each chunk of query frames attends to the key frames it may see (no dense mask).
            hidden_states = chunked_frame_attention(query, key, value, attention_chunks, self._attend)
        hidden_states = hidden_states.flatten(2, 3).type_as(query)  # (B, T*N, D)
        hidden_states = attn.to_out(hidden_states)
        return hidden_states.unflatten(1, (num_frames, tokens_per_frame))  # (B, T, N, D)

    def _attend(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """One chunk of chunked attention, through the same dispatcher and backend as the dense call."""
        return dispatch_attention_fn(
            query, key, value, attn_mask=mask, backend=self._attention_backend, parallel_config=self._parallel_config
        )


class TekkenAttention(nn.Module, AttentionModuleMixin):
    """
    Multi-head self-attention with QK-RMSNorm (learnable gains) and a pluggable processor.

    Args:
        dim (`int`): Width of the hidden states.
        heads (`int`): Number of attention heads.
        dim_head (`int`): Channels per head (`heads * dim_head == dim`).
        bias (`bool`, defaults to `True`): Whether the q/k/v projections have a bias (the original's did).
        eps (`float`, defaults to `1e-6`): Epsilon of the QK RMSNorms.
        processor (`TekkenAttnProcessor`, *optional*): Processor; defaults to [`TekkenAttnProcessor`].
    """

    _default_processor_cls = TekkenAttnProcessor
    _available_processors = [TekkenAttnProcessor]
    _supports_qkv_fusion = False

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        bias: bool = True,
        eps: float = 1e-6,
        processor: TekkenAttnProcessor | None = None,
    ):
        super().__init__()
        self.heads = heads
        self.to_q = nn.Linear(dim, heads * dim_head, bias=bias)
        self.to_k = nn.Linear(dim, heads * dim_head, bias=bias)
        self.to_v = nn.Linear(dim, heads * dim_head, bias=bias)
        self.to_out = nn.Linear(heads * dim_head, dim)
        self.norm_q = nn.RMSNorm(dim_head, eps=eps)
        self.norm_k = nn.RMSNorm(dim_head, eps=eps)
        self.set_processor(processor or self._default_processor_cls())

    def _fused_tensors(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The q/k/v projections as one `(3D, D)` weight (and bias), and the q/k norm gains as `(2, 1, Dh)`
        (`_kept_fusion`: kept between inference passes, rebuilt under gradients)."""
        tensors = [self.to_q.weight, self.to_k.weight, self.to_v.weight, self.to_q.bias, self.to_k.bias,
                   self.to_v.bias, self.norm_q.weight, self.norm_k.weight]  # fmt: skip

        def build():
            weight = torch.cat([self.to_q.weight, self.to_k.weight, self.to_v.weight])
            biases = [self.to_q.bias, self.to_k.bias, self.to_v.bias]
            bias = None if any(b is None for b in biases) else torch.cat(biases)
            gains = None
            if self.norm_q.weight is not None:
                gains = torch.stack([self.norm_q.weight.float(), self.norm_k.weight.float()])[:, None, :]
            return weight, bias, gains

        return _kept_fusion(self, "_fused_qkv", tensors, build)

    @property
    def can_fuse_projections(self) -> bool:
        """Whether q, k and v are plain `nn.Linear` layers, whose weights can be concatenated (not, e.g., wrapped by
        a LoRA adapter, whose output the concatenated weights would miss)."""
        return all(type(layer) is nn.Linear for layer in (self.to_q, self.to_k, self.to_v))

    def qkv_projection(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`(weight, bias)` of q, k and v projected at once, `(3 * heads * dim_head, dim)`."""
        weight, bias, _ = self._fused_tensors()
        return weight, bias

    def qk_norm_gains(self) -> torch.Tensor | None:
        """The q and k RMSNorm gains stacked, `(2, 1, dim_head)` fp32 (None without gains)."""
        return self._fused_tensors()[2]

    def forward(
        self,
        hidden_states: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        attention_chunks: Sequence[AttentionChunk] | None = None,
        kv_cache: TekkenKVCache | None = None,
        layer_idx: int = 0,
        update_kv_cache: bool = False,
        cache_leading_frames: int | None = None,
    ) -> torch.Tensor:
        return self.processor(
            self,
            hidden_states,
            rotary_emb=rotary_emb,
            attention_mask=attention_mask,
            attention_chunks=attention_chunks,
            kv_cache=kv_cache,
            layer_idx=layer_idx,
            update_kv_cache=update_kv_cache,
            cache_leading_frames=cache_leading_frames,
        )


class TekkenTransformerBlock(nn.Module):
    """
    DiT block with adaLN-Zero modulation computed once per frame and broadcast to the frame's tokens.

    Args:
        dim (`int`): Width of the hidden states.
        num_attention_heads (`int`): Number of attention heads.
        attention_head_dim (`int`): Channels per head.
        mlp_ratio (`float`): Hidden width of the MLP as a multiple of `dim`.
        eps (`float`): Epsilon of the RMSNorms.
        qkv_bias (`bool`): Whether the q/k/v projections have a bias.
        mlp_activation (`str`, defaults to `"gelu-approximate"`): diffusers `FeedForward` activation of the MLP.
    """

    def __init__(
        self,
        dim: int,
        num_attention_heads: int,
        attention_head_dim: int,
        mlp_ratio: float,
        eps: float,
        qkv_bias: bool,
        mlp_activation: str = "gelu-approximate",
    ):
        super().__init__()
        self.norm1 = nn.RMSNorm(dim, eps=eps, elementwise_affine=False)
        self.attn = TekkenAttention(dim, num_attention_heads, attention_head_dim, bias=qkv_bias, eps=eps)
        self.norm2 = nn.RMSNorm(dim, eps=eps, elementwise_affine=False)
        self.ff = FeedForward(dim, mult=mlp_ratio, activation_fn=mlp_activation)
        # shift/scale/gate for attention and MLP; zero-initialised by the model so the block starts as the identity.
        self.adaLN_modulation = nn.Linear(dim, 6 * dim)

    def forward(
        self,
        hidden_states: torch.Tensor,
        cond: torch.Tensor,
        rotary_emb: tuple[torch.Tensor, torch.Tensor] | torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        attention_chunks: Sequence[AttentionChunk] | None = None,
        kv_cache: TekkenKVCache | None = None,
        layer_idx: int = 0,
        update_kv_cache: bool = False,
        cache_leading_frames: int | None = None,
        modulation: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # cond: (B, T, D), already through SiLU. One modulation per frame, (B, T, 1, D) to broadcast over tokens;
        # `modulation` (B, T, 6D): this block's, computed ahead for several passes (`TekkenFrameConditioning`).
        if modulation is None:
            modulation = self.adaLN_modulation(cond)
        shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation.unsqueeze(2).chunk(6, dim=-1)
        norm_hidden_states = self.norm1(hidden_states) * (1 + scale_msa) + shift_msa  # (B, T, N, D)
        attn_output = self.attn(
            norm_hidden_states,
            rotary_emb=rotary_emb,
            attention_mask=attention_mask,
            attention_chunks=attention_chunks,
            kv_cache=kv_cache,
            layer_idx=layer_idx,
            update_kv_cache=update_kv_cache,
            cache_leading_frames=cache_leading_frames,
        )
        hidden_states = hidden_states + gate_msa * attn_output
        norm_hidden_states = self.norm2(hidden_states) * (1 + scale_mlp) + shift_mlp
        return hidden_states + gate_mlp * self.ff(norm_hidden_states)


class TekkenWorldModelTransformer(ModelMixin, ConfigMixin, AttentionMixin):
    """
    Action-conditioned, frame-causal diffusion transformer that predicts the flow-matching velocity of latent frames.

    Input latents `(B, T, C, H, W)` are cut into `patch_size` x `patch_size` patches, one token each (frame-major, then
    row-major). Every frame has its own noise level `sigma` (diffusion forcing) and its own 8 button bits; their
    embeddings are summed into one condition per frame that drives adaLN-Zero in every block. Attention is causal over
    frames and bidirectional within a frame; layer `i` sees the last `global_window` frames if `i % global_every == 0`,
    else the last `local_window` frames. A fresh model outputs exactly zero (adaLN-Zero, zero output projection).

    The options from `timestep_style` to `cache_global_window` reproduce the arithmetic of the original owl-wms
    network, so that its checkpoints convert exactly (`tekken-convert-owl-wms`, docs/converting.md); each defaults to
    this model's own arithmetic.

    With `num_players=2` the condition also carries player 2's 8 buttons: each player's bits go through that player's
    own embedding (and a player without inputs gets that player's own learned null action), and the two are summed
    into the one per-frame condition, so a two-player model costs the same per frame, cache included.

    Load in bf16 with `from_pretrained(path, dtype=torch.bfloat16)`: the timestep embedding stays fp32
    (`_keep_in_fp32_modules`). Because of that, `low_cpu_mem_usage=False` is refused by diffusers.

    Long windows attend chunk by chunk instead of through one dense token mask: an attention with more than
    `attention_dense_max_tokens` key tokens (cache included) cuts its query frames into chunks of
    `attention_chunk_tokens` tokens (at least one frame) that attend only to the key frames they may see, so memory
    grows with the window rather than its square (`attention_tekken.py`). Both are plain attributes, not config: they
    change the cost, never the result (equal within float rounding).

    Args:
        in_channels (`int`, defaults to `16`): Latent channels.
        out_channels (`int`, *optional*): Output channels; defaults to `in_channels`.
        sample_size (`tuple[int, int]`, defaults to `(8, 8)`):
            Latent height and width the model is trained on (for pipelines; any size divisible by `patch_size` runs).
        patch_size (`int`, defaults to `2`): Side of the square latent patch that becomes one token.
        num_layers (`int`, defaults to `8`): Number of transformer blocks.
        num_attention_heads (`int`, defaults to `6`): Attention heads; width = heads * head dim.
        attention_head_dim (`int`, defaults to `64`): Channels per head.
        mlp_ratio (`float`, defaults to `4.0`): MLP hidden width as a multiple of the width.
        num_actions (`int`, defaults to `8`):
            Button bits per frame (MSB-first: Up, Down, Left, Right, LP, RP, LK, RK; see `tekken_diffusers.actions`).
        local_window (`int`, defaults to `8`): Frames seen by local layers (the query frame included).
        global_window (`int`, defaults to `32`): Frames seen by global layers (the query frame included).
        global_every (`int`, defaults to `4`):
            Layer `i` is global iff `i % global_every == 0` (the original: 4, layers 0, 4, 8, 12); `0` = all local.
        rope_axes_dim (`tuple[int, int, int]`, *optional*):
            Channels of each head rotated by the frame, row and column position (each even, sum <= head dim); the
            remaining channels are not rotated. Defaults to `2 * (head_dim // 6)` per axis.
        rope_theta (`float`, defaults to `10000.0`): RoPE base.
        timestep_freq_dim (`int`, defaults to `256`): Channels of the sinusoidal timestep features.
        norm_eps (`float`, defaults to `1e-6`): Epsilon of all RMSNorms.
        qkv_bias (`bool`, defaults to `True`): Whether the q/k/v projections have a bias.
        prev_frame_conditioning (`bool`, defaults to `False`):
            The copy path: each frame's tokens also receive the previous frame's input latents (concatenated to the
            frame's channels before patchify), as the previous frame sits in the KV cache; the first frame of a
            sequence gets a learned null latent instead. Copying the last frame becomes an easy function to learn.
        prediction_type (`str`, defaults to `"flow"`):
            `"flow"`: the network outputs the velocity `noise - x0` directly. `"prev_frame_residual"` (needs
            `prev_frame_conditioning`): the network predicts `x0` as the Wiener estimate from the noisy input and the
            previous frame plus `c_out(sigma)` times its output ([`prev_frame_prior`]), and the velocity is derived
            from it, `(x - x0) / sigma`. A fresh model then predicts the previous frame from pure noise.
        prev_frame_variance (`float`, defaults to `0.15`):
            The prior variance of the frame-to-frame change used by `"prev_frame_residual"` (normalised latents; the
            Boxing latents change by a mean square of ~0.12 per frame).
        timestep_style (`str`, defaults to `"diffusers"`):
            `"diffusers"`: diffusers' `Timesteps` features (cos first, max period 10000). `"owl-wms"`: the original's
            `SinCosEmbed` ([`owl_wms_timestep_features`]: sin first, frequencies `exp(-k ln 300 / (n - 1))`).
        timestep_features_dtype (`str`, defaults to `"float32"`):
            Precision of the `"owl-wms"` sin/cos features. `"bfloat16"` reproduces the original as it was trained and
            sampled (its features were computed in the bf16 of its inputs); the embedding MLP stays fp32 either way.
        timestep_hidden_dim (`int`, *optional*):
            Hidden width of the timestep MLP; defaults to the model width (the original: 4x the width).
        rope_style (`str`, defaults to `"integer"`):
            `"integer"`: integer frame/row/column positions with `rope_theta` frequencies ([`get_3d_rotary_angles`]).
            `"owl-wms"`: positions normalised to [-1, 1] with "pixel" frequencies ([`get_owl_wms_rotary_angles`]);
            needs `rope_num_frames`.
        rope_num_frames (`int`, *optional*):
            For `rope_style="owl-wms"`: the original's `n_frames`, which maps frame `f` to time position
            `-1 + 2 f / (rope_num_frames - 1)`.
        mlp_activation (`str`, defaults to `"gelu-approximate"`):
            diffusers `FeedForward` activation of every block's MLP: `"gelu-approximate"` or `"linear-silu"` (the
            original's `fc2(SiLU(fc1(x)))`).
        final_layer_silu (`bool`, defaults to `False`):
            Apply SiLU between the final modulated norm and the output projection (the original's final layer).
        cache_global_window (`int`, *optional*):
            Frames a global layer sees (the query frame included) in a forward pass with a KV cache; the cache keeps
            `cache_global_window - 1` past frames for global layers. Defaults to `global_window`, which makes a cached
            rollout equal the full-sequence forward. The original sampler's decoding mode let global layers attend to
            everything it had cached: set this to reproduce it. Not with teacher forcing.
        num_players (`int`, defaults to `1`):
            Players whose inputs condition the model: `1` (player 1; `actions` are `(B, T, num_actions)`) or `2`
            (`actions` are `(B, T, 2, num_actions)`, player 1 then player 2, each with its own embedding and null
            action, so that guidance and action dropout work per player).
    """

    _supports_gradient_checkpointing = True
    _no_split_modules = ["TekkenTransformerBlock"]
    _repeated_blocks = ["TekkenTransformerBlock"]
    _keep_in_fp32_modules = ["time_embed"]
    _skip_layerwise_casting_patterns = ["proj_in", "time_embed", "norm"]

    @register_to_config
    def __init__(
        self,
        in_channels: int = 16,
        out_channels: int | None = None,
        sample_size: tuple[int, int] = (8, 8),
        patch_size: int = 2,
        num_layers: int = 8,
        num_attention_heads: int = 6,
        attention_head_dim: int = 64,
        mlp_ratio: float = 4.0,
        num_actions: int = 8,
        local_window: int = 8,
        global_window: int = 32,
        global_every: int = 4,
        rope_axes_dim: tuple[int, int, int] | None = None,
        rope_theta: float = 10000.0,
        timestep_freq_dim: int = 256,
        norm_eps: float = 1e-6,
        qkv_bias: bool = True,
        prev_frame_conditioning: bool = False,
        prediction_type: str = "flow",
        prev_frame_variance: float = 0.15,
        timestep_style: str = "diffusers",
        timestep_features_dtype: str = "float32",
        timestep_hidden_dim: int | None = None,
        rope_style: str = "integer",
        rope_num_frames: int | None = None,
        mlp_activation: str = "gelu-approximate",
        final_layer_silu: bool = False,
        cache_global_window: int | None = None,
        num_players: int = 1,
    ):
        super().__init__()
        # 1. Validate the configuration (one message per problem, naming the value)
        for name, value in [
            ("in_channels", in_channels),
            ("patch_size", patch_size),
            ("num_layers", num_layers),
            ("num_attention_heads", num_attention_heads),
            ("attention_head_dim", attention_head_dim),
            ("num_actions", num_actions),
            ("local_window", local_window),
            ("global_window", global_window),
        ]:
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        if global_every < 0:
            raise ValueError(f"global_every must be >= 0 (0 = no global layers), got {global_every}")
        if num_players not in NUM_PLAYERS:
            raise ValueError(f"num_players must be one of {', '.join(map(str, NUM_PLAYERS))}, got {num_players!r}")
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {', '.join(PREDICTION_TYPES)}, got {prediction_type!r}")
        if prediction_type == "prev_frame_residual" and not prev_frame_conditioning:
            raise ValueError("prediction_type='prev_frame_residual' needs prev_frame_conditioning=True")
        if prev_frame_variance <= 0:
            raise ValueError(f"prev_frame_variance must be > 0, got {prev_frame_variance}")
        for name, value, allowed in [
            ("timestep_style", timestep_style, TIMESTEP_STYLES),
            ("timestep_features_dtype", timestep_features_dtype, TIMESTEP_FEATURES_DTYPES),
            ("rope_style", rope_style, ROPE_STYLES),
            ("mlp_activation", mlp_activation, MLP_ACTIVATIONS),
        ]:
            if value not in allowed:
                raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
        if timestep_features_dtype != "float32" and timestep_style != "owl-wms":
            raise ValueError(
                f"timestep_features_dtype={timestep_features_dtype!r} needs timestep_style='owl-wms' (diffusers' "
                "Timesteps always computes in fp32)"
            )
        if rope_style == "owl-wms" and (rope_num_frames is None or rope_num_frames < 2):
            raise ValueError(f"rope_style='owl-wms' needs rope_num_frames >= 2, got {rope_num_frames}")
        if rope_style != "owl-wms" and rope_num_frames is not None:
            raise ValueError(f"rope_num_frames={rope_num_frames} is only used by rope_style='owl-wms'")
        for name, value in [
            ("timestep_hidden_dim", timestep_hidden_dim),
            ("cache_global_window", cache_global_window),
        ]:
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None), got {value}")
        if timestep_style == "owl-wms" and timestep_freq_dim % 2:
            raise ValueError(f"timestep_style='owl-wms' needs an even timestep_freq_dim, got {timestep_freq_dim}")
        if any(size % patch_size for size in sample_size):
            raise ValueError(f"sample_size {tuple(sample_size)} is not divisible by patch_size {patch_size}")
        if rope_axes_dim is None:
            rope_axes_dim = (2 * (attention_head_dim // 6),) * 3
        if len(rope_axes_dim) != 3 or any(d % 2 for d in rope_axes_dim) or sum(rope_axes_dim) > attention_head_dim:
            raise ValueError(
                f"rope_axes_dim must be 3 even numbers summing to at most attention_head_dim={attention_head_dim}, "
                f"got {tuple(rope_axes_dim)}"
            )
        self.rope_axes_dim = tuple(rope_axes_dim)
        # Save the resolved split, so a checkpoint never depends on how the default is computed.
        self.register_to_config(rope_axes_dim=self.rope_axes_dim)
        out_channels = out_channels or in_channels
        inner_dim = num_attention_heads * attention_head_dim

        # 2. Per-frame condition: timestep embedding (fp32) + action embedding, or the null action for CFG
        self.time_proj = Timesteps(timestep_freq_dim, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(timestep_freq_dim, timestep_hidden_dim or inner_dim, out_dim=inner_dim)
        # A linear map of the bits = the sum of per-button embeddings of the pressed buttons (the original's
        # mean over 8 of `button_embedding * pressed`, without the arbitrary 1/8). Its bias is the
        # "nothing pressed" embedding, distinct from the learned null action used where no action is given.
        self.action_embed = nn.Linear(num_actions, inner_dim)
        self.null_action_embedding = nn.Parameter(torch.zeros(inner_dim))
        # Player 2's own embedding and null action: a shared embedding of both players' bits could not tell whose
        # input moves which character (the "action binding" failure of multi-player world models). One-player models
        # have neither, so their weights and outputs are those of models saved before `num_players` existed.
        self.action_embed_p2 = nn.Linear(num_actions, inner_dim) if num_players == 2 else None
        self.null_action_embedding_p2 = nn.Parameter(torch.zeros(inner_dim)) if num_players == 2 else None

        # 3. Tokens and blocks
        copies = 2 if prev_frame_conditioning else 1  # the frame's own latents, then the previous frame's
        self.proj_in = nn.Linear(copies * in_channels * patch_size * patch_size, inner_dim)
        # What the first frame of a sequence sees on the copy path (no previous frame): one learned value per channel.
        self.null_prev_latents = nn.Parameter(torch.zeros(in_channels)) if prev_frame_conditioning else None
        self.transformer_blocks = nn.ModuleList(
            [
                TekkenTransformerBlock(
                    inner_dim,
                    num_attention_heads,
                    attention_head_dim,
                    mlp_ratio,
                    eps=norm_eps,
                    qkv_bias=qkv_bias,
                    mlp_activation=mlp_activation,
                )
                for _ in range(num_layers)
            ]
        )

        # 4. Output: modulated norm and projection back to patches
        self.norm_out = nn.RMSNorm(inner_dim, eps=norm_eps, elementwise_affine=False)
        self.norm_out_modulation = nn.Linear(inner_dim, 2 * inner_dim)
        self.proj_out = nn.Linear(inner_dim, out_channels * patch_size * patch_size)

        self.gradient_checkpointing = False
        # Dense mask up to this many key tokens, chunked attention beyond (attention_tekken.py); not config, since
        # they trade speed for memory without changing the outputs.
        self.attention_dense_max_tokens = DENSE_ATTENTION_MAX_TOKENS
        self.attention_chunk_tokens = ATTENTION_CHUNK_TOKENS
        self._init_weights()

    def _init_weights(self) -> None:
        # DiT's initialisation (facebookresearch/DiT models.py): xavier linears, N(0, 0.02) embeddings, and zero for
        # every adaLN modulation and the output projection, so each block is the identity and the output is 0.
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        for linear in (self.time_embed.linear_1, self.time_embed.linear_2, self.action_embed):
            nn.init.normal_(linear.weight, std=0.02)
        if self.action_embed_p2 is not None:
            nn.init.normal_(self.action_embed_p2.weight, std=0.02)
        zero_init = [block.adaLN_modulation for block in self.transformer_blocks]
        for linear in zero_init + [self.norm_out_modulation, self.proj_out]:
            nn.init.zeros_(linear.weight)
            nn.init.zeros_(linear.bias)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> TekkenWorldModelTransformer:
        """
        Build a fresh model from a named size in `TRANSFORMER_PRESETS`.

        Args:
            name (`str`): One of `TRANSFORMER_PRESETS` ("tiny", "small", "tekken-large").
            **overrides: Config values that replace the preset's (e.g. `in_channels=32`).
        """
        if name not in TRANSFORMER_PRESETS:
            raise ValueError(f"unknown transformer preset {name!r}; known presets: {', '.join(TRANSFORMER_PRESETS)}")
        return cls(**{**TRANSFORMER_PRESETS[name], **overrides})

    @property
    def layer_windows(self) -> list[int]:
        """Frame window of each layer: `global_window` where `i % global_every == 0`, else `local_window`."""
        every = self.config.global_every
        return [
            self.config.global_window if every and i % every == 0 else self.config.local_window
            for i in range(self.config.num_layers)
        ]

    @property
    def cache_layer_windows(self) -> list[int]:
        """Frame window of each layer in a forward pass with a KV cache: as `layer_windows`, with `cache_global_window`
        (when set) for the global layers."""
        every, cache_window = self.config.global_every, self.config.cache_global_window
        if cache_window is None:
            return self.layer_windows
        return [
            cache_window if every and i % every == 0 else self.config.local_window
            for i in range(self.config.num_layers)
        ]

    def make_kv_cache(self, max_frames: int | None = None, start_frame: int = 0) -> TekkenKVCache:
        """
        An empty [`TekkenKVCache`] sized to each layer's window (`window - 1` past frames per layer).

        Args:
            max_frames (`int`, *optional*):
                Cap on the frames any layer keeps. Below a layer's `window - 1` the rollout sees less context than
                training did and no longer matches the full-sequence forward.
            start_frame (`int`, defaults to `0`): Absolute index of the first frame that will be appended.
        """
        keep = [window - 1 for window in self.cache_layer_windows]
        if max_frames is not None:
            if max_frames < max(keep):
                logger.warning(
                    f"make_kv_cache(max_frames={max_frames}) keeps less than the largest window needs "
                    f"({max(keep)} frames): the rollout will see less context than the model was trained with"
                )
            keep = [min(k, max_frames) for k in keep]
        return TekkenKVCache(
            keep,
            start_frame=start_frame,
            rope_axes_dim=self.rope_axes_dim,
            rope_theta=self.config.rope_theta,
            rope_style=self.config.rope_style,
        )

    def _timestep_features(self, sigmas: torch.Tensor) -> torch.Tensor:
        # (n,) noise levels -> (n, timestep_freq_dim) float32 sinusoidal features
        if self.config.timestep_style == "owl-wms":
            dtype = getattr(torch, self.config.timestep_features_dtype)
            return owl_wms_timestep_features(sigmas, self.config.timestep_freq_dim, dtype)
        return self.time_proj(sigmas.float() * TIMESTEP_SCALE)

    def _per_frame(self, values: torch.Tensor | float, batch_size: int, num_frames: int, name: str) -> torch.Tensor:
        # Accept a scalar, (B,) or (B, T) and return (B, T).
        values = torch.as_tensor(values)
        if values.ndim == 1 and values.shape[0] == batch_size:
            values = values[:, None]
        if values.ndim > 2 or not all(s in (1, n) for s, n in zip(values.shape, (batch_size, num_frames))):
            raise ValueError(
                f"{name} must be a scalar, ({batch_size},) or ({batch_size}, {num_frames}), got {tuple(values.shape)}"
            )
        return values.expand(batch_size, num_frames)

    def _per_player(self, values: torch.Tensor | bool, batch_size: int, num_frames: int, name: str) -> torch.Tensor:
        # Two-player models: accept a scalar, (B, P) or (B, T, P), one flag per player, and return (B, T, P).
        players = self.config.num_players
        values = torch.as_tensor(values)
        if values.ndim == 0:
            values = values.view(1, 1, 1)
        elif values.ndim == 2:
            values = values[:, None]  # (B, P) -> (B, 1, P)
        if values.ndim != 3 or not all(s in (1, n) for s, n in zip(values.shape, (batch_size, num_frames, players))):
            raise ValueError(
                f"{name} of a {players}-player model must be a scalar, ({batch_size}, {players}) or ({batch_size}, "
                f"{num_frames}, {players}) (one flag per player), got {tuple(values.shape)}"
            )
        return values.expand(batch_size, num_frames, players)

    def _two_player_action_embedding(
        self, actions: torch.Tensor | None, action_mask: torch.Tensor | None, batch_size: int, num_frames: int
    ) -> torch.Tensor:
        """The summed embedding of both players' buttons `(B, T, D)` float32, a player's null action where that
        player's `action_mask` is False (or everywhere without `actions`)."""
        null_actions = torch.stack([self.null_action_embedding, self.null_action_embedding_p2]).float()  # (P, D)
        if actions is None:
            if action_mask is not None:
                raise ValueError("action_mask was given without actions")
            return null_actions.sum(dim=0).expand(batch_size, num_frames, -1)
        expected = (batch_size, num_frames, 2, self.config.num_actions)
        if actions.shape != expected:
            hint = " (one player's inputs: a two-player model needs both)" if actions.ndim == 3 else ""
            raise ValueError(
                f"actions of a two-player model must be {expected}: each player's button bits, player 1 first; got "
                f"{tuple(actions.shape)}{hint}"
            )
        dtype = self.action_embed.weight.dtype
        player_emb = torch.stack(
            [self.action_embed(actions[:, :, 0].to(dtype)), self.action_embed_p2(actions[:, :, 1].to(dtype))], dim=2
        ).float()  # (B, T, P, D)
        if action_mask is not None:
            keep = self._per_player(action_mask, batch_size, num_frames, "action_mask").to(torch.bool)  # (B, T, P)
            player_emb = torch.where(keep[..., None], player_emb, null_actions)
        return player_emb.sum(dim=2)  # (B, T, D)

    def condition(
        self,
        sigmas: torch.Tensor,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
    ) -> TekkenFrameConditioning:
        """
        The conditions and every block's adaLN modulation of frames at noise levels `sigmas` under `actions`, for
        `forward(..., conditioning=...)`: one matmul for all blocks (their modulation weights concatenated, kept
        between calls without gradients). A rollout calls it once per frame with all the frame's denoising steps
        as "frames" (and the finished frame it writes into the cache), then slices it for each pass.

        Args:
            sigmas (`torch.Tensor` of shape `(batch_size, num_frames)`): Noise levels in [0, 1].
            actions, action_mask: As in [`forward`], for these frames.
        """
        if sigmas.ndim != 2:
            raise ValueError(f"sigmas must be (batch, frames), got {tuple(sigmas.shape)}")
        batch_size, num_frames = sigmas.shape
        cond = self._condition(sigmas, actions, action_mask, batch_size, num_frames, num_frames)
        cond = cond.to(self.proj_in.weight.dtype)
        layers = [block.adaLN_modulation for block in self.transformer_blocks] + [self.norm_out_modulation]
        if all(type(layer) is nn.Linear for layer in layers):
            weight, bias = self._fused_modulation()
            return TekkenFrameConditioning(cond, F.linear(cond, weight, bias))
        # adapted (e.g. LoRA) or otherwise replaced layers: each as it is, side by side
        return TekkenFrameConditioning(cond, torch.cat([layer(cond) for layer in layers], dim=-1))

    def _fused_modulation(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Every block's adaLN modulation and the output norm's as one linear map (`_kept_fusion`)."""
        layers = [block.adaLN_modulation for block in self.transformer_blocks] + [self.norm_out_modulation]

        def build():
            return torch.cat([layer.weight for layer in layers]), torch.cat([layer.bias for layer in layers])

        tensors = [layer.weight for layer in layers] + [layer.bias for layer in layers]
        return _kept_fusion(self, "_fused_modulation_weights", tensors, build)

    def _condition(
        self,
        sigmas: torch.Tensor,
        actions: torch.Tensor | None,
        action_mask: torch.Tensor | None,
        batch_size: int,
        num_input_frames: int,
        num_frames: int,
    ) -> torch.Tensor:
        """SiLU(time embedding + action embedding) of every input frame, `(B, T, D)` fp32 (`num_frames`: the frames
        named in error messages, the targets under teacher forcing)."""
        with torch.autocast(device_type=sigmas.device.type, enabled=False):
            # fp32 even under bf16 autocast: sin/cos of sigma * 1000 in bf16 is noise at high frequencies.
            time_features = self._timestep_features(sigmas.reshape(-1))  # (B*T, F)
            temb = self.time_embed(time_features.to(self.time_embed.linear_1.weight.dtype))  # (B*T, D)
        temb = temb.float().view(batch_size, num_input_frames, -1)
        null_action = self.null_action_embedding.float().expand(batch_size, num_input_frames, -1)
        if self.config.num_players == 2:
            action_emb = self._two_player_action_embedding(actions, action_mask, batch_size, num_input_frames)
        elif actions is None:
            if action_mask is not None:
                raise ValueError("action_mask was given without actions")
            action_emb = null_action
        else:
            if actions.shape != (batch_size, num_input_frames, self.config.num_actions):
                hint = (
                    " (both players' inputs: this model has num_players=1)"
                    if actions.ndim == 4
                    else "; convert uint8 action ids with tekken_diffusers.actions.ids_to_bits"
                )
                raise ValueError(
                    f"actions must be ({batch_size}, {num_frames}, {self.config.num_actions}) button bits, got "
                    f"{tuple(actions.shape)}{hint}"
                )
            action_emb = self.action_embed(actions.to(self.action_embed.weight.dtype)).float()
            if action_mask is not None:
                action_mask = self._per_frame(action_mask, batch_size, num_input_frames, "action_mask")
                action_mask = action_mask.to(torch.bool)
                action_emb = torch.where(action_mask[..., None], action_emb, null_action)
        # SiLU once here rather than in every block's adaLN (DiT applies SiLU before each modulation linear).
        return F.silu(temb + action_emb)  # (B, T, D)

    def forward(
        self,
        hidden_states: torch.Tensor,
        sigmas: torch.Tensor | float,
        actions: torch.Tensor | None = None,
        action_mask: torch.Tensor | None = None,
        frame_offset: int | None = None,
        kv_cache: TekkenKVCache | None = None,
        update_kv_cache: bool = False,
        cache_leading_frames: int | None = None,
        context_latents: torch.Tensor | None = None,
        context_sigmas: torch.Tensor | float | None = None,
        conditioning: TekkenFrameConditioning | None = None,
        return_dict: bool = True,
    ) -> TekkenTransformerOutput | tuple[torch.Tensor, ...]:
        """
        Predict the velocity `noise - latents` of every input frame.

        Args:
            hidden_states (`torch.Tensor` of shape `(batch_size, num_frames, in_channels, height, width)`):
                Noisy latent frames `(1 - sigma) * latents + sigma * noise`.
            sigmas (`torch.Tensor` of shape `(batch_size, num_frames)`, `(batch_size,)` or a float):
                Noise level of each frame in [0, 1] (0 = clean).
            actions (`torch.Tensor` of shape `(batch_size, num_frames, num_actions)`, *optional*):
                Button bits of each frame (bool or 0/1 float, MSB-first order of `tekken_diffusers.actions`).
                `None` gives every frame the learned null action (the unconditional branch of classifier-free
                guidance). A two-player model (`num_players=2`) takes `(batch_size, num_frames, 2, num_actions)`:
                player 1's bits, then player 2's.
            action_mask (`torch.Tensor` of shape `(batch_size, num_frames)` or `(batch_size,)`, *optional*):
                Bool; where `False` the frame gets the null action instead of its buttons (CFG dropout in training,
                the unconditional half of a CFG batch at sampling). A two-player model takes one flag per player:
                `(batch_size, num_frames, 2)`, `(batch_size, 2)` or a scalar; where a player's flag is `False`, that
                player's null action replaces that player's buttons.
            frame_offset (`int`, *optional*):
                Absolute index of the first input frame (its RoPE position). Defaults to `kv_cache.next_frame` with a
                cache, else 0. With a cache it must equal `kv_cache.next_frame`.
            kv_cache (`TekkenKVCache`, *optional*):
                Keys and values of the frames before `frame_offset` (from [`make_kv_cache`]). Read, and written only if
                `update_kv_cache`.
            update_kv_cache (`bool`, defaults to `False`):
                Append the input frames' keys and values to `kv_cache` (then evict beyond each layer's window). Use
                `False` while denoising a frame and `True` to prefill the context or append a finished frame.
            cache_leading_frames (`int`, *optional*):
                With `update_kv_cache`, append only the first `cache_leading_frames` input frames; the frames after
                them attend to them as to cached frames but are not kept. A rollout uses it to write a finished
                frame in the same pass as the first denoising step of the next frame (one forward fewer per frame;
                the result equals the two separate passes, since no frame attends to a later one).
            context_latents (`torch.Tensor`, same shape as `hidden_states`, *optional*):
                Teacher forcing (training): the same frames at a low noise level. Frame `t` of `hidden_states` is then
                predicted from context frames `< t` and itself, exactly as when it is denoised against a KV cache
                that holds those context frames; one pass trains every frame as the next frame. Not with `kv_cache`.
            context_sigmas (`torch.Tensor` or float, *optional*): Noise levels of `context_latents`, as `sigmas`.
            conditioning ([`TekkenFrameConditioning`], *optional*):
                The input frames' conditions and modulations from [`condition`] for these `sigmas`, `actions` and
                `action_mask` (which are then not embedded again; `sigmas` still set the parameterisation): what a
                rollout passes so that one matmul per frame serves all its denoising passes. Not with teacher forcing.
            return_dict (`bool`, defaults to `True`): Return a [`TekkenTransformerOutput`] instead of a tuple.

        Returns:
            [`TekkenTransformerOutput`] or `(sample,)` (`(sample, pred_original_sample)` for
            `prediction_type="prev_frame_residual"`): the velocity, `(batch_size, num_frames, out_channels, height,
            width)`, in the model's compute dtype (fp32 for `"prev_frame_residual"`).
        """
        # 1. Check inputs
        if hidden_states.ndim != 5:
            raise ValueError(
                f"hidden_states must be (batch, frames, channels, height, width), got {tuple(hidden_states.shape)}"
            )
        batch_size, num_frames, channels, height, width = hidden_states.shape
        patch = self.config.patch_size
        if channels != self.config.in_channels:
            raise ValueError(f"hidden_states has {channels} channels, the model expects {self.config.in_channels}")
        if height % patch or width % patch:
            raise ValueError(f"latent size {height}x{width} is not divisible by patch_size {patch}")
        grid_height, grid_width = height // patch, width // patch
        tokens_per_frame = grid_height * grid_width
        sigmas = self._per_frame(sigmas, batch_size, num_frames, "sigmas").to(hidden_states.device)
        teacher_forcing = context_latents is not None
        if teacher_forcing:
            if kv_cache is not None:
                raise ValueError("context_latents (teacher forcing) cannot be combined with a kv_cache")
            if context_latents.shape != hidden_states.shape:
                raise ValueError(
                    f"context_latents must have the shape of hidden_states {tuple(hidden_states.shape)}, got "
                    f"{tuple(context_latents.shape)}"
                )
            if context_sigmas is None:
                raise ValueError("context_latents needs context_sigmas (their noise levels)")
            context_sigmas = self._per_frame(context_sigmas, batch_size, num_frames, "context_sigmas")
            context_sigmas = context_sigmas.to(hidden_states.device)
            cache_window = self.config.cache_global_window
            if cache_window not in (None, self.config.global_window):
                raise ValueError(
                    f"context_latents (teacher forcing) reproduces cached denoising only with cache_global_window = "
                    f"global_window, got {cache_window} and {self.config.global_window}"
                )
        elif context_sigmas is not None:
            raise ValueError("context_sigmas was given without context_latents")
        if update_kv_cache and kv_cache is None:
            raise ValueError("update_kv_cache=True needs a kv_cache")
        if cache_leading_frames is not None:
            if not update_kv_cache:
                raise ValueError("cache_leading_frames needs update_kv_cache=True")
            if not 1 <= cache_leading_frames <= num_frames:
                raise ValueError(f"cache_leading_frames must be in [1, {num_frames}], got {cache_leading_frames}")
        if kv_cache is not None:
            if kv_cache.num_layers != self.config.num_layers:
                raise ValueError(f"kv_cache has {kv_cache.num_layers} layers, the model {self.config.num_layers}")
            if frame_offset is None:
                frame_offset = kv_cache.next_frame
            elif frame_offset != kv_cache.next_frame:
                raise ValueError(
                    f"frame_offset={frame_offset} but the kv_cache continues at frame {kv_cache.next_frame}; "
                    "pass frame_offset=None or kv_cache.next_frame"
                )
            if kv_cache.batch_size not in (None, batch_size) or kv_cache.tokens_per_frame not in (
                None,
                tokens_per_frame,
            ):
                raise ValueError(
                    f"kv_cache holds batch {kv_cache.batch_size} x {kv_cache.tokens_per_frame} tokens/frame, the "
                    f"input is batch {batch_size} x {tokens_per_frame} tokens/frame"
                )
        frame_offset = frame_offset or 0
        if frame_offset < 0:
            raise ValueError(f"frame_offset must be >= 0, got {frame_offset}")
        compute_dtype = self.proj_in.weight.dtype

        # 2. The copy path: each frame's previous frame as it entered the model (from the cache for the first one)
        prev_latents = None
        if self.config.prev_frame_conditioning:
            history = context_latents if teacher_forcing else hidden_states
            first = kv_cache.prev_latents if kv_cache is not None else None
            if first is None:
                first = self.null_prev_latents.to(history.dtype)[None, None, :, None, None]
                first = first.expand(batch_size, 1, channels, height, width)
            prev_latents = torch.cat([first.to(history.dtype), history[:, :-1]], dim=1)  # (B, T, C, H, W)
            if kv_cache is not None and update_kv_cache:
                last_kept = num_frames if cache_leading_frames is None else cache_leading_frames
                kv_cache.prev_latents = hidden_states[:, last_kept - 1 : last_kept].detach()
        targets = hidden_states  # the frames whose prediction is returned
        if teacher_forcing:
            # Context frames first, then the targets, at the same positions: (B, 2T, ...).
            hidden_states = torch.cat([context_latents, hidden_states], dim=1)
            sigmas_all = torch.cat([context_sigmas, sigmas], dim=1)
            if prev_latents is not None:
                prev_latents = torch.cat([prev_latents, prev_latents], dim=1)
            if actions is not None:
                actions_ndim = 3 if self.config.num_players == 1 else 4  # (B, T, [P,] num_actions)
                actions = torch.cat([actions, actions], dim=1) if actions.ndim == actions_ndim else actions
            if action_mask is not None:
                per_frame = self._per_frame if self.config.num_players == 1 else self._per_player
                action_mask = per_frame(action_mask, batch_size, num_frames, "action_mask")
                action_mask = torch.cat([action_mask, action_mask], dim=1)
        else:
            sigmas_all = sigmas
        num_input_frames = hidden_states.shape[1]

        # 3. Per-frame condition c = SiLU(time embedding + action embedding), (B, T, D); each block's modulation
        if conditioning is not None:
            if teacher_forcing:
                raise ValueError("conditioning cannot be combined with context_latents (teacher forcing)")
            if tuple(conditioning.cond.shape[:2]) != (batch_size, num_frames):
                raise ValueError(
                    f"conditioning covers {tuple(conditioning.cond.shape[:2])} (batch, frames), the input is "
                    f"({batch_size}, {num_frames})"
                )
            cond = conditioning.cond.to(compute_dtype)
            modulations = conditioning.modulation.to(compute_dtype).split(6 * cond.shape[-1], dim=-1)
        else:
            cond = self._condition(sigmas_all, actions, action_mask, batch_size, num_input_frames, num_frames)
            cond = cond.to(compute_dtype)
            modulations = None

        # 4. Patchify: (B, T, C', H, W) -> (B, T, N, C'*p*p), tokens row-major over the patch grid
        model_input = hidden_states if prev_latents is None else torch.cat([hidden_states, prev_latents], dim=2)
        input_channels = model_input.shape[2]
        model_input = model_input.to(compute_dtype).reshape(
            batch_size, num_input_frames, input_channels, grid_height, patch, grid_width, patch
        )
        model_input = model_input.permute(0, 1, 3, 5, 2, 4, 6).reshape(
            batch_size, num_input_frames, tokens_per_frame, input_channels * patch * patch
        )
        hidden_states = self.proj_in(model_input)  # (B, T, N, D)
        if self.config.rope_style == "owl-wms":
            rotary_emb = get_owl_wms_rotary_angles(
                frame_offset,
                num_frames,
                grid_height,
                grid_width,
                self.rope_axes_dim,
                self.config.rope_num_frames,
                hidden_states.device,
            )
        else:
            rotary_emb = get_3d_rotary_angles(
                frame_offset,
                num_frames,
                grid_height,
                grid_width,
                self.rope_axes_dim,
                self.config.rope_theta,
                hidden_states.device,
            )
        if teacher_forcing:
            rotary_emb = tuple(torch.cat([angles, angles]) for angles in rotary_emb)  # context and target share t
        rotary_emb = rotary_phasors(rotary_emb)  # once for every layer: (T, N, P, 2)

        # 5. Blocks; one attention plan per distinct (cached frames, window): a dense mask (None where nothing is
        # masked) or, for long windows, chunks of query frames with the key frames each may see
        plans: dict[tuple[int, int], tuple[torch.Tensor | None, tuple[AttentionChunk, ...] | None]] = {}
        windows = self.cache_layer_windows if kv_cache is not None else self.layer_windows
        for layer_idx, (block, window) in enumerate(zip(self.transformer_blocks, windows)):
            num_cached = kv_cache.num_frames(layer_idx) if kv_cache is not None else 0
            if (num_cached, window) not in plans:
                plans[num_cached, window] = plan_frame_attention(
                    num_frames,
                    num_cached,
                    window,
                    tokens_per_frame,
                    hidden_states.device,
                    teacher_forcing=teacher_forcing,
                    dense_max_tokens=self.attention_dense_max_tokens,
                    chunk_tokens=self.attention_chunk_tokens,
                )
            mask, chunks = plans[num_cached, window]
            # Never checkpoint with a cache: recomputation in backward would append the frames a second time.
            if torch.is_grad_enabled() and self.gradient_checkpointing and kv_cache is None:
                hidden_states = self._gradient_checkpointing_func(block, hidden_states, cond, rotary_emb, mask, chunks)
            else:
                hidden_states = block(
                    hidden_states,
                    cond,
                    rotary_emb,
                    attention_mask=mask,
                    attention_chunks=chunks,
                    kv_cache=kv_cache,
                    layer_idx=layer_idx,
                    update_kv_cache=update_kv_cache,
                    cache_leading_frames=cache_leading_frames,
                    modulation=None if modulations is None else modulations[layer_idx],
                )
        if teacher_forcing:
            hidden_states, cond = hidden_states[:, num_frames:], cond[:, num_frames:]  # the targets only

        # 6. Output: adaLN-modulated norm, projection, unpatchify (B, T, N, C_out*p*p) -> (B, T, C_out, H, W)
        final = self.norm_out_modulation(cond) if modulations is None else modulations[-1]
        shift, scale = final.unsqueeze(2).chunk(2, dim=-1)  # (B, T, 1, D) each
        hidden_states = self.norm_out(hidden_states) * (1 + scale) + shift
        if self.config.final_layer_silu:
            hidden_states = F.silu(hidden_states)
        hidden_states = self.proj_out(hidden_states)  # (B, T, N, C_out*p*p)
        out_channels = self.config.out_channels or self.config.in_channels
        hidden_states = hidden_states.reshape(
            batch_size, num_frames, grid_height, grid_width, out_channels, patch, patch
        )
        output = hidden_states.permute(0, 1, 4, 2, 5, 3, 6).reshape(
            batch_size, num_frames, out_channels, height, width
        )

        # 7. Parameterisation: the velocity directly, or x0 from the previous frame's prior and the velocity from it
        pred_original_sample = None
        if self.config.prediction_type == "prev_frame_residual":
            sample = targets.float()
            anchor = prev_latents[:, -num_frames:].float()  # the targets' previous frames
            per_frame_sigmas = sigmas.float()[:, :, None, None, None]  # (B, T, 1, 1, 1)
            gain, c_out = prev_frame_prior(per_frame_sigmas, self.config.prev_frame_variance)
            pred_original_sample = anchor + gain * (sample - (1 - per_frame_sigmas) * anchor) + c_out * output.float()
            # x = (1 - s) x0 + s n  =>  v = n - x0 = (x - x0) / s; an Euler step to s = 0 lands on x0 for any s > 0.
            output = (sample - pred_original_sample) / per_frame_sigmas.clamp_min(1e-6)

        if not return_dict:
            return (output,) if pred_original_sample is None else (output, pred_original_sample)
        return TekkenTransformerOutput(sample=output, pred_original_sample=pred_original_sample)


def build_preset_on_meta(name: str) -> TekkenWorldModelTransformer:
    """A preset's model on the meta device: its config and parameter shapes without allocating (1 B params = free)."""
    with torch.device("meta"):
        return TekkenWorldModelTransformer.from_preset(name)


def format_preset_table() -> str:
    """Markdown table of every preset: layout and parameter count."""
    lines = [
        "| preset | latent (C, H, W) | patch | tokens/frame | layers | width | heads | local / global window "
        "(global every) | parameters |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in TRANSFORMER_PRESETS:
        model = build_preset_on_meta(name)
        config = model.config
        height, width = config.sample_size
        tokens = (height // config.patch_size) * (width // config.patch_size)
        heads = config.num_attention_heads
        num_parameters = sum(p.numel() for p in model.parameters())
        lines.append(
            f"| `{name}` | {config.in_channels}, {height}, {width} | {config.patch_size} | {tokens} "
            f"| {config.num_layers} | {heads * config.attention_head_dim} | {heads} | {config.local_window} / "
            f"{config.global_window} ({config.global_every}) | {num_parameters:,} |"
        )
    return "\n".join(lines)
