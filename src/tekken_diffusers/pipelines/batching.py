"""Many live games, one forward pass: step several [`TekkenWorldModelSession`]s of one pipeline together.

Each session steps its own batch-1 rollout; with N players that is N forward passes per denoising step. A batch of N
costs far less than N batches of 1 (the weights are read once, the matmuls are larger), so [`step_sessions`] stacks
the sessions' KV caches and queued frames along the batch, denoises all N frames in one [`TekkenRollout.next_frame`]
of batch N (each row drawing its noise from its own session's generator), splits the caches back and decodes the N
frames in one VAE call. Every session gets exactly the frame its own `step` would have given (equal within float
rounding) and continues as if it had stepped alone.

One forward pass needs one frame index for the whole batch and equal cache shapes:

* sessions started at different times continue at different frames; their clocks are aligned first
  ([`TekkenKVCache.shift_frames`] re-rotates the cached keys, which leaves the outputs unchanged since attention only
  sees position differences; a model with `rope_style="owl-wms"` cannot be shifted, its sessions batch only with
  sessions at the same frame);
* a session whose cache is still filling (its first frames) holds fewer frames in some layers than an older one:
  sessions are grouped by their caches' per-layer frame counts (and everything else a shared pass needs: pipeline,
  steps, guidance, context noise, output type), and each group steps as one batch; a group of one is `session.step`.

[`SessionBatcher`] serves the play app: concurrent request threads each ask for their session's next frame, and a
worker thread steps whatever is queued in one [`step_sessions`] call per tick.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import weakref
from collections import Counter, deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..models.transformer_tekken import TekkenKVCache
from .rollout import TekkenWorldModelSession

logger = logging.getLogger(__name__)

__all__ = ["SessionBatcher", "batch_key", "step_sessions"]


def batch_key(session: Any) -> Hashable | None:
    """What sessions must share to be stepped in one forward pass, or `None` for a session that always steps alone
    (a video session, a rollout of more than one clip, a cache whose last update was interrupted).

    Two sessions with equal keys come from the same pipeline with the same sampling settings (steps and their
    schedule, guidance, context noise, cache cap, device, output type), hold the same number of frames in every cache
    layer and the same number of queued frames, and draw noise from generators on the same kind of device (or both
    from the global generator). Their frame clocks may differ, except for a model whose positions cannot be shifted
    (`rope_style="owl-wms"`), where the clock is part of the key.
    """
    if type(session) is not TekkenWorldModelSession:
        return None
    rollout = session.rollout
    cache = rollout.cache
    if rollout.batch_size != 1:
        return None
    try:
        clock = cache.next_frame
    except RuntimeError:  # layers disagree: the session's own step reports it
        return None
    pending = rollout._pending
    generator = session.generator
    key = (
        id(session.pipe),
        rollout.num_inference_steps,
        tuple(rollout.sigmas.tolist()),
        repr(rollout.guidance_scale),
        rollout.context_noise,
        rollout.merge_cache_writes,
        str(rollout.device),
        session.output_type,
        cache._layout(),
        tuple(cache.num_frames(layer) for layer in range(cache.num_layers)),
        cache.tokens_per_frame,
        cache.prev_latents is None,
        None if pending is None else tuple(tuple(part.shape[1:]) for part in pending),
        None if generator is None else generator.device.type,
    )
    if not cache.can_shift:
        key += (clock,)
    return key


def _common_clock(clocks: Sequence[int]) -> int:
    """The frame the group continues at: the clock most sessions already have (fewest caches re-rotated), the latest
    of those on a tie."""
    counts = Counter(clocks)
    return max(counts, key=lambda clock: (counts[clock], clock))


@dataclass
class _Row:
    """What one session got from a batched frame: its cache (views of the batch's tensors) and queued frame, and the
    exact tensors they held, to tell whether the session has done anything on its own since."""

    cache: TekkenKVCache
    keys: list[torch.Tensor | None]
    values: list[torch.Tensor | None]
    prev_latents: torch.Tensor | None
    end_frames: list[int]
    pending: tuple[torch.Tensor, ...] | None

    @classmethod
    def handed_out(cls, cache: TekkenKVCache, pending: tuple[torch.Tensor, ...] | None) -> _Row:
        return cls(cache, list(cache._keys), list(cache._values), cache.prev_latents, list(cache._end_frames), pending)

    def untouched(self, session: TekkenWorldModelSession) -> bool:
        """Whether the session still holds exactly this row (no step of its own, no reset, no shift since)."""
        rollout = session.rollout
        cache = rollout.cache
        return (
            cache is self.cache
            and rollout._pending is self.pending
            and cache.prev_latents is self.prev_latents
            and cache._end_frames == self.end_frames
            and all(a is b for a, b in zip(cache._keys, self.keys))
            and all(a is b for a, b in zip(cache._values, self.values))
        )


@dataclass
class _BatchState:
    """The stacked cache and queued frames a group's last batched frame left, and the rows handed out from them."""

    cache: TekkenKVCache
    pending: tuple[torch.Tensor, ...] | None
    rows: list[_Row]


# session -> (the batch state it last stepped in, its row). While the same sessions step together again, unchanged,
# the next frame reuses the stacked state instead of stacking the sessions' caches and splitting them again.
_LAST_BATCH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _reusable_state(sessions: list[TekkenWorldModelSession]) -> _BatchState | None:
    """The batch state the sessions left last tick, if they are the same sessions in the same order and none of them
    stepped, reset or shifted on its own since; else `None`."""
    entries = [_LAST_BATCH.get(session) for session in sessions]
    if entries[0] is None:
        return None
    state = entries[0][0]
    if len(state.rows) != len(sessions):
        return None
    for index, (session, entry) in enumerate(zip(sessions, entries)):
        if entry is None or entry[0] is not state or entry[1] != index or not state.rows[index].untouched(session):
            return None
    return state


@torch.no_grad()
def _step_group(sessions: list[TekkenWorldModelSession], bits: list[torch.Tensor]) -> list[Any]:
    """One batched frame for sessions with equal [`batch_key`]s; returns each session's frame as its `step` would."""
    first = sessions[0]
    branches = len(first.rollout.branches)
    state = _reusable_state(sessions)
    if state is not None:  # the same players as last tick: their rows are still views of last tick's stacked state
        cache, pending = state.cache, state.pending
    else:
        rollouts = [session.rollout for session in sessions]
        target = _common_clock([rollout.cache.next_frame for rollout in rollouts])
        for rollout in rollouts:
            # In place on the session's own cache: the shift changes no output, and the next tick needs none.
            rollout.cache.shift_frames(target - rollout.cache.next_frame)
        cache = TekkenKVCache.stack([rollout.cache for rollout in rollouts], branches=branches)
        pending = None
        if first.rollout._pending is not None:
            pending = tuple(torch.cat(parts) for parts in zip(*(rollout._pending for rollout in rollouts)))
    batched = copy.copy(first.rollout)  # shares the schedule and settings; its own cache, queue and batch size
    batched.batch_size = len(sessions)
    batched.cache = cache
    batched._pending = pending
    batched.opponent, batched._history = None, None  # inputs arrive resolved (`step_bits`); rows remember their own
    generators = [session.generator for session in sessions]
    generator = None if generators[0] is None else generators  # one generator per row, as randn_tensor takes them
    stacked_bits = torch.cat(bits)
    latents = batched.next_frame(stacked_bits, generator)  # (N, 1, C, h, w)

    # The sessions' state changes only now that the batched frame succeeded. Each session gets views of its rows
    # (free to take; its first step on its own copies them), and the stacked state is kept for the next tick. A
    # session that stops stepping keeps one batch's storage alive until its next step or reset.
    queued = batched._pending
    rows = []
    for index, (session, row_cache) in enumerate(zip(sessions, cache.split(branches=branches))):
        session.rollout.cache = row_cache
        session.rollout._pending = None if queued is None else tuple(part[index : index + 1] for part in queued)
        session.rollout.remember(latents[index : index + 1], stacked_bits[index : index + 1])
        session.num_steps += 1
        rows.append(_Row.handed_out(row_cache, session.rollout._pending))
    state = _BatchState(cache, queued, rows)
    for index, session in enumerate(sessions):
        _LAST_BATCH[session] = (state, index)
    if first.output_type == "latent":
        return [latents[index, 0] for index in range(len(sessions))]
    pipe = first.pipe
    decoded = pipe.decode_latents(latents, dtype=first._vae_dtype)
    frames = pipe.video_processor.postprocess_video(decoded, first.output_type)
    return [frames[index][0] for index in range(len(sessions))]


def step_sessions(
    sessions: Sequence[TekkenWorldModelSession],
    actions: Sequence[Any],
    actions_p2: Sequence[Any] | None = None,
    return_exceptions: bool = False,
) -> list[Any]:
    """
    Step several sessions by one frame each, batching those that can share a forward pass ([`batch_key`]).

    Each session gets exactly what `session.step(action, action_p2)` would have returned (same output type, equal
    within float rounding) and continues as if it had stepped alone: its cache, queued frame, generator and step count
    advance as in `step`. Sessions started at different times are aligned with
    [`TekkenKVCache.shift_frames`] (their own caches stay shifted; outputs do not change).

    Args:
        sessions (`Sequence[TekkenWorldModelSession]`): Distinct sessions, of one pipeline or several.
        actions (`Sequence`): Player 1's input of each session, in any form `session.step` takes.
        actions_p2 (`Sequence`, *optional*): Player 2's input of each session (`None` entries for one-player
            sessions); omit it when every session is one-player.
        return_exceptions (`bool`, defaults to `False`): Put the exception of a session whose step failed in its
            place of the result instead of raising (a failed batched pass fails every session of its group; a bad
            input only its own session). The other sessions still step.

    Returns:
        `list`: the frame (or exception) of each session, in the order of `sessions`.

    Example:
        ```py
        >>> sessions = [pipe.start_session(context=clip, context_actions=ids, output_type="np") for clip in clips]
        >>> frames = step_sessions(sessions, ["f", "b+1", 0])  # one forward per denoising step for all three
        ```
    """
    sessions = list(sessions)
    count = len(sessions)
    actions = list(actions)
    actions_p2 = [None] * count if actions_p2 is None else list(actions_p2)
    if len(actions) != count or len(actions_p2) != count:
        raise ValueError(
            f"step_sessions: {count} sessions but {len(actions)} actions and {len(actions_p2)} player 2 actions"
        )
    if len({id(session) for session in sessions}) != count:
        raise ValueError("step_sessions: a session is listed twice; each steps one frame per call")

    results: list[Any] = [None] * count

    def attempt(indices: list[int], call: Callable[[], list[Any]]) -> None:
        try:
            values = call()
        except Exception as error:
            if not return_exceptions:
                raise
            logger.warning("a step of %d session(s) failed: %s", len(indices), error)
            values = [error] * len(indices)
        for index, value in zip(indices, values):
            results[index] = value

    groups: dict[Hashable, list[tuple[int, torch.Tensor]]] = {}
    for index, (session, action, action_p2) in enumerate(zip(sessions, actions, actions_p2)):
        key = batch_key(session)
        if key is None:
            attempt([index], lambda s=session, a=action, a2=action_p2: [s.step(a, a2)])
            continue
        try:
            bits = session.step_bits(action, action_p2)
        except Exception as error:
            if not return_exceptions:
                raise
            results[index] = error
            continue
        groups.setdefault(key, []).append((index, bits))
    for members in groups.values():
        indices = [index for index, _ in members]
        if len(members) == 1:
            index, bits = members[0]
            attempt(indices, lambda i=index, b=bits: [sessions[i].step_from_bits(b)])
        else:
            group = [sessions[index] for index in indices]
            attempt(indices, lambda g=group, m=members: _step_group(g, [bits for _, bits in m]))
    return results


@dataclass
class _Request:
    """One caller's request for its session's next frame, answered by the batcher's thread."""

    session: Any
    action: Any
    action_p2: Any
    arrived: float = field(default_factory=time.perf_counter)
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: BaseException | None = None


class SessionBatcher:
    """
    Serve the frame requests of many concurrent callers (the play app's request threads, one per browser tab) in
    batched ticks: each [`step`] call queues its session's input and blocks; a worker thread steps every queued
    session in one [`step_sessions`] call and hands each caller its own frame (or its own error).

    A tick starts as soon as every active session has a request queued, or when the oldest queued request has waited
    `max_wait` seconds, whichever comes first. A session is active from its first request until [`leave`] or until it
    has not asked for `active_for` seconds (a closed tab), so sessions join and leave at frame boundaries: starting,
    pausing or resetting a game just starts or stops its requests.

    Args:
        max_wait (`float`, defaults to `0.005`): Longest wait of a request for the other active sessions' requests.
        active_for (`float`, defaults to `1.0`): Seconds without a request after which a session is no longer waited
            for.
        step (`Callable`, defaults to [`step_sessions`]): Steps one tick, called as `step(sessions, actions,
            actions_p2, return_exceptions=True)`.

    Example:
        ```py
        >>> batcher = SessionBatcher()
        >>> frame = batcher.step(session, "f+1")  # from each request thread; blocks until its tick is done
        >>> batcher.close()
        ```
    """

    def __init__(
        self, max_wait: float = 0.005, active_for: float = 1.0, step: Callable[..., list[Any]] = step_sessions
    ):
        if max_wait < 0 or active_for <= 0:
            raise ValueError(f"max_wait must be >= 0 and active_for > 0, got {max_wait} and {active_for}")
        self.max_wait = max_wait
        self.active_for = active_for
        self._step = step
        self._condition = threading.Condition()
        self._queue: list[_Request] = []
        self._last_request: dict[int, tuple[float, Any]] = {}  # id(session) -> (time of its last request, session)
        self._closed = False
        self.ticks = 0
        self.batch_sizes: deque[int] = deque(maxlen=256)  # sessions stepped in each recent tick
        self._thread = threading.Thread(target=self._run, name="tekken-session-batcher", daemon=True)
        self._thread.start()

    @property
    def active_sessions(self) -> int:
        """Sessions the next tick waits for (those that asked within `active_for` seconds and did not leave)."""
        with self._condition:
            self._expire(time.perf_counter())
            return len(self._last_request)

    def step(self, session: TekkenWorldModelSession, action: Any, action_p2: Any = None) -> Any:
        """Queue `session`'s next input, wait for its tick and return its frame, as `session.step(action, action_p2)`
        would; raises what that step raised. One request per session at a time."""
        request = _Request(session, action, action_p2)
        with self._condition:
            if self._closed:
                raise RuntimeError("the SessionBatcher is closed")
            if any(queued.session is session for queued in self._queue):
                raise RuntimeError("this session already has a frame request queued: one frame at a time")
            self._queue.append(request)
            self._last_request[id(session)] = (request.arrived, session)
            self._condition.notify_all()
        while not request.done.wait(1.0):
            if not self._thread.is_alive():
                raise RuntimeError("the SessionBatcher's thread has stopped")
        if request.error is not None:
            raise request.error
        return request.result

    def leave(self, session: Any) -> None:
        """Stop waiting for `session`'s requests (its game paused, reset or ended); a request it already queued is
        still served. Its next request makes it active again."""
        with self._condition:
            self._last_request.pop(id(session), None)
            self._condition.notify_all()

    def close(self, timeout: float | None = 10.0) -> None:
        """Serve what is queued, then stop the worker thread."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        self._thread.join(timeout)

    def _expire(self, now: float) -> None:
        stale = [key for key, (seen, _) in self._last_request.items() if now - seen > self.active_for]
        for key in stale:
            del self._last_request[key]

    def _missing(self, now: float) -> bool:
        """Whether an active session has no request queued."""
        self._expire(now)
        queued = {id(request.session) for request in self._queue}
        return any(key not in queued for key in self._last_request)

    def _next_batch(self) -> list[_Request]:
        with self._condition:
            while not self._queue and not self._closed:
                self._condition.wait()
            if not self._queue:
                return []
            deadline = self._queue[0].arrived + self.max_wait
            while not self._closed and self._missing(now := time.perf_counter()) and deadline > now:
                self._condition.wait(deadline - now)
            batch, self._queue = self._queue, []
            return batch

    def _run(self) -> None:
        while batch := self._next_batch():
            sessions = [request.session for request in batch]
            try:
                results = self._step(
                    sessions,
                    [request.action for request in batch],
                    [request.action_p2 for request in batch],
                    return_exceptions=True,
                )
                if len(results) != len(batch):
                    raise RuntimeError(f"the tick returned {len(results)} results for {len(batch)} sessions")
            except Exception as error:  # a failure outside any one session: every caller of the tick hears it
                logger.exception("a batched tick of %d sessions failed", len(batch))
                results = [error] * len(batch)
            self.ticks += 1
            self.batch_sizes.append(len(batch))
            for request, result in zip(batch, results):
                if isinstance(result, BaseException):
                    request.error = result
                else:
                    request.result = result
                request.done.set()
