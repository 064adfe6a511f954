"""Who attends to whom in the world model, and attention that does not build a token-by-token mask for long windows.

The rule is over frames: a query frame sees the key frames at or before it (causal over frames, bidirectional within
a frame), at most `window` frames back, the query frame included. A teacher-forced window stacks the context frames
and the target frames at the same positions; a target frame sees the context frames before it in its window and
itself, as when it is denoised against a KV cache that holds the context.

Two ways to apply the rule:

* dense: one boolean `(Lq, Lk)` token mask and one attention call. Cheapest for short sequences, but the mask grows
  with the square of the window (the `tekken-large` preset's 128 frames x 322 tokens = 41,216 tokens make a 1.7 GB
  mask per call) and a mask keeps PyTorch's SDPA off its fastest kernels on GPU;
* chunked: the query frames are cut into chunks of `chunk_frames` frames, and each chunk attends only to the key
  frames its rows may see, with a mask over just that block, or none where the whole block is visible (always the
  case with one-frame chunks outside teacher forcing). Memory grows with the window, not its square, and no work is
  spent on key frames a chunk cannot see.

[`plan_frame_attention`] picks between the two by the number of key tokens (`dense_max_tokens`) and returns the
dense mask or the chunks; [`chunked_frame_attention`] runs the chunks through any attention function with the
signature of diffusers' `dispatch_attention_fn`, so the attention backend choice still applies to every chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import torch
import torch.utils.checkpoint

# Attentions with at most this many key tokens (cached frames included) use one dense mask and one call; longer ones
# are chunked. Measured on the 2-core CPU with the `compact` preset (16 tokens per frame, windows 8 and 32), fp32
# forward + backward: the two paths are equally fast from 256 to 1,024 tokens (the dense mask is then at most 1 MiB),
# and chunked attention is 1.9x faster at 2,048 tokens and 3.5x at 4,096, because it skips the key frames outside
# each chunk's window instead of masking them. The `compact` model's teacher-forced training windows (2 x 16 frames
# of 16 tokens) stay on the dense path.
DENSE_ATTENTION_MAX_TOKENS = 1024
# Query tokens per chunk: a chunk holds `max(1, ATTENTION_CHUNK_TOKENS // tokens_per_frame)` frames. At 256 or more
# tokens per frame (`tekken-large`: 322) every chunk is one frame, whose block of visible keys needs no mask at all;
# smaller frames are grouped so that each call still has a few hundred queries.
ATTENTION_CHUNK_TOKENS = 256

# An attention function with the signature of diffusers' `dispatch_attention_fn(query, key, value, attn_mask)`, in
# its `(batch, tokens, heads, head_dim)` layout.
AttendFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None], torch.Tensor]


def frame_visibility(
    num_query_frames: int,
    num_cached_frames: int,
    window: int,
    teacher_forcing: bool = False,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """
    Which key frame each query frame may attend to: the frame-level form of every mask here.

    Without teacher forcing, query frame `q` (preceded by `num_cached_frames` cached frames, which are keys only) sees
    key frame `k` iff `k <= q` and `q - k < window` (as the original's `get_block_mask`). With teacher forcing
    (`num_cached_frames` must be 0) the `num_query_frames` context frames come first and see each other that way, then
    the same number of target frames at the same positions: target `t` sees context frames `t - window + 1 .. t - 1`
    and itself.

    Args:
        num_query_frames (`int`): New frames; with teacher forcing, the target frames (as many context frames precede
            them).
        num_cached_frames (`int`): Cached frames before the new ones (keys only).
        window (`int`): Frame window of the layer, the query frame included.
        teacher_forcing (`bool`, defaults to `False`): The teacher-forced layout (context frames, then targets).
        device (`torch.device` or `str`, defaults to `"cpu"`): Where to build the table.

    Returns:
        A bool tensor `(Tq, Tk)`: `(T, F + T)` with `F` cached frames, `(2T, 2T)` with teacher forcing.
    """
    if teacher_forcing:
        if num_cached_frames:
            raise ValueError("the teacher-forced layout has no cached frames")
        context = frame_visibility(num_query_frames, 0, window, device=device)  # (T, T)
        query = torch.arange(num_query_frames, device=device)[:, None]
        key = torch.arange(num_query_frames, device=device)[None, :]
        target_to_context = (key < query) & (query - key < window)
        target_to_target = torch.eye(num_query_frames, dtype=torch.bool, device=device)
        return torch.cat(
            [
                torch.cat([context, torch.zeros_like(context)], dim=1),
                torch.cat([target_to_context, target_to_target], dim=1),
            ],
            dim=0,
        )  # (2T, 2T)
    query_frames = torch.arange(num_query_frames, device=device)[:, None] + num_cached_frames
    key_frames = torch.arange(num_cached_frames + num_query_frames, device=device)[None, :]
    return (key_frames <= query_frames) & (query_frames - key_frames < window)  # (Tq, Tk)


def expand_to_tokens(visibility: torch.Tensor, tokens_per_frame: int) -> torch.Tensor:
    """A frame-level visibility table `(Tq, Tk)` as a 4D token mask `(1, 1, Tq * N, Tk * N)`, `N` tokens per frame.

    4D so that diffusers' native backend never mistakes a square mask (`Lq == batch`) for a `(batch, Lk)` padding
    mask."""
    tokens = visibility.repeat_interleave(tokens_per_frame, 0).repeat_interleave(tokens_per_frame, 1)
    return tokens[None, None]


def frame_attention_mask(
    num_query_frames: int, num_cached_frames: int, window: int, tokens_per_frame: int, device: torch.device
) -> torch.Tensor | None:
    """
    Boolean attention mask for new frames attending to cached plus new frames, or `None` when nothing is masked.

    Query frame `q` may attend key frame `k` iff `k <= q` (causal over frames, bidirectional within a frame) and
    `q - k < window` (as the original's `get_block_mask`). The cached frames come right before the new ones.

    Args:
        num_query_frames (`int`): New frames (queries).
        num_cached_frames (`int`): Cached frames before them (keys only).
        window (`int`): Frame window of the layer.
        tokens_per_frame (`int`): Tokens per frame.
        device (`torch.device`): Where to build the mask.

    Returns:
        `None` or a bool tensor `(1, 1, Lq, Lk)` with `Lq = num_query_frames * tokens_per_frame` and
        `Lk = (num_cached_frames + num_query_frames) * tokens_per_frame`.
    """
    allowed = frame_visibility(num_query_frames, num_cached_frames, window, device=device)
    if bool(allowed.all()):
        # The usual rollout step (one frame against a cache trimmed to the window) needs no mask at all.
        return None
    return expand_to_tokens(allowed, tokens_per_frame)


def teacher_forcing_attention_mask(
    num_frames: int, window: int, tokens_per_frame: int, device: torch.device
) -> torch.Tensor:
    """
    Boolean attention mask of a teacher-forced window: `num_frames` context frames followed by the same number of
    noisy target frames, where target frame `t` sees context frames `t - window + 1 .. t - 1` and itself, exactly what
    it sees when it is denoised against a KV cache that holds the context. Context frames see context frames as in
    [`frame_attention_mask`].

    Returns:
        A bool tensor `(1, 1, 2 * num_frames * tokens_per_frame, 2 * num_frames * tokens_per_frame)`.
    """
    return expand_to_tokens(
        frame_visibility(num_frames, 0, window, teacher_forcing=True, device=device), tokens_per_frame
    )


@dataclass(frozen=True)
class AttentionChunk:
    """
    One block of chunked attention: a run of query frames and the key frames they may see.

    Args:
        query_frames (`tuple[int, int]`): `[start, end)` of the chunk's query frames.
        key_frames (`tuple[tuple[int, int], ...]`): The `[start, end)` runs of key frames that some query frame of
            the chunk may see, in order (one run, except for the target frames of a teacher-forced window, which see
            a run of context frames and a run of target frames).
        mask (`torch.Tensor`, *optional*): Bool `(1, 1, query tokens, key tokens)` over the chunk's keys (the runs
            concatenated), or `None` when every query of the chunk sees every one of them.
    """

    query_frames: tuple[int, int]
    key_frames: tuple[tuple[int, int], ...]
    mask: torch.Tensor | None


def _runs(flags: Sequence[bool]) -> tuple[tuple[int, int], ...]:
    """The `[start, end)` runs of consecutive `True` entries."""
    runs, start = [], None
    for index, flag in enumerate(flags):
        if flag and start is None:
            start = index
        elif not flag and start is not None:
            runs.append((start, index))
            start = None
    if start is not None:
        runs.append((start, len(flags)))
    return tuple(runs)


def plan_attention_chunks(
    visibility: torch.Tensor,
    tokens_per_frame: int,
    chunk_frames: int,
    segments: Sequence[tuple[int, int]],
    device: torch.device,
) -> tuple[AttentionChunk, ...]:
    """
    Cut the query frames into chunks and find, for each, the key frames it may see and the mask over just those.

    Args:
        visibility (`torch.Tensor`): The frame-level table of [`frame_visibility`], `(Tq, Tk)` bool.
        tokens_per_frame (`int`): Tokens per frame.
        chunk_frames (`int`): Query frames per chunk (the last chunk of a segment may be shorter).
        segments (`Sequence[tuple[int, int]]`): `[start, end)` runs of query frames that chunks must not straddle
            (the context and the targets of a teacher-forced window see different keys).
        device (`torch.device`): Where to build the masks.
    """
    if chunk_frames < 1:
        raise ValueError(f"chunk_frames must be >= 1, got {chunk_frames}")
    visibility = visibility.cpu()
    chunks = []
    for segment_start, segment_end in segments:
        for start in range(segment_start, segment_end, chunk_frames):
            end = min(start + chunk_frames, segment_end)
            rows = visibility[start:end]  # (c, Tk)
            seen = rows.any(dim=0)
            block = rows[:, seen]  # (c, visible key frames)
            mask = None if bool(block.all()) else expand_to_tokens(block, tokens_per_frame).to(device)
            chunks.append(AttentionChunk((start, end), _runs(seen.tolist()), mask))
    return tuple(chunks)


def plan_frame_attention(
    num_query_frames: int,
    num_cached_frames: int,
    window: int,
    tokens_per_frame: int,
    device: torch.device,
    teacher_forcing: bool = False,
    dense_max_tokens: int = DENSE_ATTENTION_MAX_TOKENS,
    chunk_tokens: int = ATTENTION_CHUNK_TOKENS,
) -> tuple[torch.Tensor | None, tuple[AttentionChunk, ...] | None]:
    """
    How one layer's attention applies the frame rule: `(mask, None)` for one dense call (`mask=None` where every query
    sees every key, as in one-frame decoding against a cache trimmed to the window), or `(None, chunks)` for
    [`chunked_frame_attention`] when the attention has more than `dense_max_tokens` key tokens.

    Args:
        num_query_frames (`int`): New frames; with teacher forcing, the target frames.
        num_cached_frames (`int`): Cached frames before the new ones.
        window (`int`): Frame window of the layer.
        tokens_per_frame (`int`): Tokens per frame.
        device (`torch.device`): Where to build masks.
        teacher_forcing (`bool`, defaults to `False`): The teacher-forced layout (context frames, then targets).
        dense_max_tokens (`int`, defaults to `DENSE_ATTENTION_MAX_TOKENS`): Most key tokens of a dense attention.
        chunk_tokens (`int`, defaults to `ATTENTION_CHUNK_TOKENS`): Query tokens per chunk (at least one frame).
    """
    visibility = frame_visibility(num_query_frames, num_cached_frames, window, teacher_forcing)  # CPU, tiny
    if bool(visibility.all()):
        return None, None
    num_key_tokens = visibility.shape[1] * tokens_per_frame
    if num_key_tokens <= dense_max_tokens:
        return expand_to_tokens(visibility.to(device), tokens_per_frame), None
    if teacher_forcing:
        segments = [(0, num_query_frames), (num_query_frames, 2 * num_query_frames)]
    else:
        segments = [(0, num_query_frames)]
    chunk_frames = max(1, chunk_tokens // tokens_per_frame)
    return None, plan_attention_chunks(visibility, tokens_per_frame, chunk_frames, segments, device)


def _attend_runs(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_frames: tuple[tuple[int, int], ...],
    mask: torch.Tensor | None,
    attend: AttendFn,
) -> torch.Tensor:
    """Attention of flattened queries to the concatenated runs of key frames of `key`/`value` `(B, Tk, N, H, Dh)`."""
    keys = torch.cat([key[:, start:end] for start, end in key_frames], dim=1).flatten(1, 2)
    values = torch.cat([value[:, start:end] for start, end in key_frames], dim=1).flatten(1, 2)
    return attend(query, keys, values, mask)


def chunked_frame_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    chunks: Sequence[AttentionChunk],
    attend: AttendFn,
) -> torch.Tensor:
    """
    Frame-chunked attention: each chunk of query frames attends to the key frames it may see, nothing else.

    A chunk whose keys are one run of frames attends to a view of `key`/`value`, so autograd keeps no copy. A chunk
    with several runs (the targets of a teacher-forced window) concatenates them; under autograd that step is
    recomputed in backward (activation checkpointing) instead of keeping every chunk's copy, which would add up to
    `window` times the keys and values.

    Args:
        query (`torch.Tensor`): `(batch, query frames, tokens_per_frame, heads, head_dim)`.
        key (`torch.Tensor`): `(batch, key frames, tokens_per_frame, heads, head_dim)`.
        value (`torch.Tensor`): Same shape as `key`.
        chunks (`Sequence[AttentionChunk]`): The plan of [`plan_attention_chunks`]; their query frames must cover
            the query frames once, in order.
        attend (`AttendFn`): Attention in diffusers' `(batch, tokens, heads, head_dim)` layout.

    Returns:
        `(batch, query frames * tokens_per_frame, heads, head_dim)`.
    """
    needs_grad = torch.is_grad_enabled() and any(t.requires_grad for t in (query, key, value))
    outputs = []
    for chunk in chunks:
        start, end = chunk.query_frames
        chunk_query = query[:, start:end].flatten(1, 2)
        if len(chunk.key_frames) == 1:
            ((key_start, key_end),) = chunk.key_frames
            chunk_key = key[:, key_start:key_end].flatten(1, 2)
            chunk_value = value[:, key_start:key_end].flatten(1, 2)
            outputs.append(attend(chunk_query, chunk_key, chunk_value, chunk.mask))
            continue
        function = partial(_attend_runs, key_frames=chunk.key_frames, mask=chunk.mask, attend=attend)
        if needs_grad:
            outputs.append(torch.utils.checkpoint.checkpoint(function, chunk_query, key, value, use_reentrant=False))
        else:
            outputs.append(function(chunk_query, key, value))
    return torch.cat(outputs, dim=1)
