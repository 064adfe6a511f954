"""Stepping many sessions in one forward pass (`step_sessions`, `SessionBatcher`): every session gets the frames it
would have got stepping alone, and keeps behaving as if it had."""

import threading
import time

import numpy as np
import pytest
import torch

from tekken_diffusers.pipelines import SessionBatcher, build_random_pipeline, step_sessions
from tekken_diffusers.pipelines.batching import batch_key

STEPS = 2
ATOL = 1e-5


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: conftest.single_thread


def make_pipe(**overrides):
    pipe = build_random_pipeline("tiny", seed=0, **overrides)  # windows 6 (global) / 3 (local)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def start(pipe, seed, context_frames=4, guidance_scale=1.0, output_type="latent"):
    """A session on `context_frames` random latents, its generator seeded by `seed`."""
    generator = torch.Generator().manual_seed(100 + seed)
    latents = torch.randn(1, context_frames, 4, 4, 4, generator=generator)
    ids = torch.randint(0, 256, (context_frames, 2), generator=generator).numpy()
    players = {"context_actions_p2": ids[:, 1]} if pipe.num_players == 2 else {}
    return pipe.start_session(
        context_latents=latents,
        context_actions=ids[:, 0],
        num_inference_steps=STEPS,
        guidance_scale=guidance_scale,
        generator=torch.Generator().manual_seed(seed),
        output_type=output_type,
        **players,
    )


def as_array(frame):
    return frame.numpy() if isinstance(frame, torch.Tensor) else np.asarray(frame)


def assert_same_frames(got, expected):
    assert len(got) == len(expected)
    for a, b in zip(got, expected):
        assert type(a) is type(b)
        np.testing.assert_allclose(as_array(a), as_array(b), rtol=0, atol=ATOL)


class ForwardLog:
    """The batch size of every transformer forward pass while `recording`."""

    def __init__(self, pipe):
        self.batches, self.recording = [], False
        pipe.transformer.register_forward_hook(self.hook)

    def hook(self, module, args, output):
        if self.recording:
            self.batches.append(args[0].shape[0])

    def during(self, call, *args):
        self.batches, self.recording = [], True
        try:
            return call(*args)
        finally:
            self.recording = False


CASES = [
    pytest.param(1, 1.0, "np", {}, id="1p-np"),
    pytest.param(1, 2.0, "latent", {"prev_frame_conditioning": True}, id="1p-guided-copy-path"),
    pytest.param(2, 1.0, "latent", {}, id="2p"),
    pytest.param(2, 2.0, "pt", {"prev_frame_conditioning": True}, id="2p-guided-pt"),
    pytest.param(2, (2.0, 1.5), "np", {}, id="2p-per-player-guidance"),
]


@torch.no_grad()
@pytest.mark.parametrize(("players", "guidance", "output_type", "overrides"), CASES)
def test_batched_sessions_equal_sessions_stepped_alone(players, guidance, output_type, overrides):
    """Four games, twice: `alone` stepped one by one with `session.step`, `batched` with `step_sessions`, the same
    seeds and inputs. Games 0 and 1 start at tick 0, game 2 at tick 3 (a later clock), game 3 has a longer context
    (another clock again) and pauses for ticks 5 to 8 while the others play on."""
    vae = "tiny" if output_type != "latent" else None
    pipe = make_pipe(num_players=players, vae=vae, **overrides)
    log = ForwardLog(pipe)
    branches = 1 if guidance == 1.0 else (2 if not isinstance(guidance, tuple) else 3)
    starts, contexts, paused = {0: 0, 1: 0, 2: 3, 3: 0}, {0: 4, 1: 4, 2: 4, 3: 6}, range(5, 9)
    alone, batched = {}, {}
    rng = np.random.default_rng(0)
    for tick in range(16):
        for game, start_tick in starts.items():
            if tick == start_tick:
                kwargs = dict(context_frames=contexts[game], guidance_scale=guidance, output_type=output_type)
                alone[game], batched[game] = start(pipe, game, **kwargs), start(pipe, game, **kwargs)
        games = [game for game in sorted(alone) if not (game == 3 and tick in paused)]
        inputs = rng.integers(0, 256, (len(games), 2))
        actions = [int(i) for i in inputs[:, 0]]
        actions_p2 = [int(i) for i in inputs[:, 1]] if players == 2 else None
        expected = [
            alone[game].step(action, None if actions_p2 is None else actions_p2[index])
            for index, (game, action) in enumerate(zip(games, actions))
        ]
        got = log.during(step_sessions, [batched[game] for game in games], actions, actions_p2)
        assert_same_frames(got, expected)
        if tick == 15:
            # Every game's cache is full and the clocks are aligned: one pass of all four per denoising step.
            assert log.batches == [4 * branches] * STEPS
        elif tick == 0:
            # Fresh caches: games 0 and 1 (equal contexts) share a pass, game 3 (a longer context) steps alone.
            assert sorted(log.batches) == sorted([2 * branches] * STEPS + [branches] * STEPS)

    # The batched games were moved to one clock (the alone ones keep theirs): the re-rotation was exercised.
    assert len({alone[game].rollout.cache.next_frame for game in alone}) > 1
    assert len({batched[game].rollout.cache.next_frame for game in batched}) == 1
    assert [batched[game].num_steps for game in batched] == [alone[game].num_steps for game in alone]
    # The games that stepped together hold views of one stacked cache (kept for the next tick, not copied out).
    storages = {batched[game].rollout.cache.get(0)[0].untyped_storage().data_ptr() for game in batched}
    assert len(storages) == 1

    # Afterwards each game goes on alone as it would have; and reset returns it to its own start.
    for game in alone:
        for action in (3, 200, 16):
            action_p2 = 9 if players == 2 else None
            assert_same_frames([batched[game].step(action, action_p2)], [alone[game].step(action, action_p2)])
        alone[game].reset(), batched[game].reset()
        action_p2 = 1 if players == 2 else None
        assert_same_frames([batched[game].step(5, action_p2)], [alone[game].step(5, action_p2)])


@torch.no_grad()
def test_sessions_group_by_cache_fill_and_settings():
    pipe = make_pipe(vae=None)
    old, young = start(pipe, 0), start(pipe, 1)
    for _ in range(3):
        old.step(0)
    for _ in range(2):
        young.step(0)  # caches: old and young both (5, 2), full, at other clocks (frames 7 and 6)
    assert batch_key(old) == batch_key(young)
    fresh = start(pipe, 2)
    assert batch_key(fresh) != batch_key(old)  # its cache is still empty, the context queued
    other_steps = pipe.start_session(context_latents=torch.zeros(1, 4, 4, 4, 4), num_inference_steps=STEPS + 1)
    for _ in range(3):
        other_steps.step(0)
    assert batch_key(other_steps) != batch_key(old)
    unseeded = pipe.start_session(context_latents=torch.zeros(1, 4, 4, 4, 4), num_inference_steps=STEPS)
    for _ in range(3):
        unseeded.step(0)
    assert batch_key(unseeded) != batch_key(old)  # the global generator: a group of its own

    log = ForwardLog(pipe)
    frames = log.during(step_sessions, [old, fresh, young, other_steps, unseeded], [1, 2, 3, 4, 5])
    assert len(frames) == 5 and all(frame.shape == (4, 4, 4) for frame in frames)
    # old + young in one pass; fresh, other_steps and unseeded each alone.
    assert sorted(log.batches) == sorted([2] * STEPS + [1] * STEPS + [1] * (STEPS + 1) + [1] * STEPS)


@torch.no_grad()
def test_owl_wms_sessions_batch_only_at_the_same_clock():
    pipe = make_pipe(vae=None, rope_style="owl-wms", rope_num_frames=16)
    alone = [start(pipe, seed) for seed in range(3)]
    batched = [start(pipe, seed) for seed in range(3)]
    for sessions in (alone, batched):
        for _ in range(2):
            sessions[2].step(7)  # game 2 two frames ahead: its clock cannot be shifted
    log = ForwardLog(pipe)
    for tick in range(4):
        expected = [session.step(tick) for session in alone]
        got = log.during(step_sessions, batched, [tick] * 3)
        assert_same_frames(got, expected)
    assert sorted(log.batches) == sorted([2] * STEPS + [1] * STEPS)  # games 0 and 1 together, game 2 alone
    assert [s.rollout.cache.next_frame for s in batched] == [s.rollout.cache.next_frame for s in alone]


@torch.no_grad()
def test_step_sessions_errors_reach_their_own_session():
    pipe = make_pipe(vae=None)
    sessions = [start(pipe, seed) for seed in range(3)]
    twins = [start(pipe, seed) for seed in range(3)]
    with pytest.raises(ValueError, match="3 sessions but 2 actions"):
        step_sessions(sessions, [0, 1])
    with pytest.raises(ValueError, match="listed twice"):
        step_sessions([sessions[0], sessions[0]], [0, 1])
    with pytest.raises(ValueError, match="not Tekken notation|notation"):
        step_sessions(sessions, [0, "zz+9", 1])
    results = step_sessions(sessions, [0, "zz+9", 1], return_exceptions=True)
    assert isinstance(results[1], ValueError) and sessions[1].num_steps == 0
    assert_same_frames([results[0], results[2]], [twins[0].step(0), twins[2].step(1)])
    with pytest.raises(ValueError, match="action_p2: this session's transformer conditions on player 1 only"):
        step_sessions(sessions, [0, 0, 0], [None, 3, None])

    # A failing batched pass fails its whole group and leaves every session as it was.
    states = [session.rollout.state() for session in sessions]
    original = pipe.transformer.forward

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    pipe.transformer.forward = broken
    try:
        results = step_sessions(sessions[:2], [0, 0], return_exceptions=True)
    finally:
        pipe.transformer.forward = original
    assert all(isinstance(r, RuntimeError) and "simulated" in str(r) for r in results)
    for session, (cache, pending, _) in zip(sessions, states):
        assert session.rollout.cache.next_frame == cache.next_frame
        assert (session.rollout._pending is None) == (pending is None)


@torch.no_grad()
def test_session_batcher_serves_concurrent_callers_in_batches():
    pipe = make_pipe(vae="tiny")
    count, frames_each = 4, 8
    alone = [start(pipe, seed, output_type="np") for seed in range(count)]
    served = [start(pipe, seed, output_type="np") for seed in range(count)]
    inputs = np.random.default_rng(1).integers(0, 256, (count, frames_each))
    expected = [[alone[i].step(int(a)) for a in inputs[i]] for i in range(count)]
    # A long deadline: a tick starts when every active session has asked, so the test does not depend on timing.
    batcher = SessionBatcher(max_wait=2.0, active_for=30.0)
    got, errors = [[] for _ in range(count)], []

    def player(index):
        try:
            for action in inputs[index]:
                got[index].append(batcher.step(served[index], int(action)))
            batcher.leave(served[index])  # done: the others' last ticks do not wait for it
        except Exception as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=player, args=(index,)) for index in range(count)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not errors
        for index in range(count):
            assert_same_frames(got[index], expected[index])
        assert sum(batcher.batch_sizes) == count * frames_each and max(batcher.batch_sizes) == count
        assert batcher.ticks < count * frames_each  # batched, not one tick per request
    finally:
        batcher.close()


def test_session_batcher_errors_reach_the_right_caller_and_the_thread_survives():
    pipe = make_pipe(vae=None)
    good, bad = start(pipe, 0), start(pipe, 1)
    batcher = SessionBatcher(max_wait=2.0, active_for=30.0)
    try:
        results = {}

        def call(name, session, action):
            try:
                results[name] = batcher.step(session, action)
            except Exception as error:
                results[name] = error

        threads = [
            threading.Thread(target=call, args=("good", good, 3)),
            threading.Thread(target=call, args=("bad", bad, "zz+9")),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert isinstance(results["bad"], ValueError) and isinstance(results["good"], torch.Tensor)
        batcher.max_wait = 0.0  # one caller at a time from here: no waiting for the other session

        # A tick that fails outside any session (the stepper itself) reaches its callers; the thread goes on.
        def broken_step(*args, **kwargs):
            raise RuntimeError("stepper failed")

        batcher._step = broken_step
        with pytest.raises(RuntimeError, match="stepper failed"):
            batcher.step(good, 1)
        batcher._step = step_sessions
        assert batcher.step(good, 1).shape == (4, 4, 4)
        with pytest.raises(ValueError, match="notation"):
            batcher.step(bad, "zz+9")
        assert batcher._thread.is_alive()
    finally:
        batcher.close()
    with pytest.raises(RuntimeError, match="closed"):
        batcher.step(good, 0)


def test_session_batcher_waits_only_for_active_sessions():
    pipe = make_pipe(vae=None)
    first, second = start(pipe, 0), start(pipe, 1)
    batcher = SessionBatcher(max_wait=5.0, active_for=30.0)
    try:
        batcher.step(first, 0)  # the only active session: served at once
        batcher.leave(first)
        batcher.step(second, 0)  # first left: nobody else to wait for
        # Both active: a request waits for the other session's (up to max_wait), and they share one tick.
        answer = {}
        waiting = threading.Thread(target=lambda: answer.setdefault("frame", batcher.step(first, 1)))
        waiting.start()
        time.sleep(0.3)
        assert "frame" not in answer and batcher.active_sessions == 2
        started = time.perf_counter()
        batcher.step(second, 1)
        waiting.join(10)
        assert answer["frame"].shape == (4, 4, 4) and time.perf_counter() - started < 2.5
        assert batcher.batch_sizes[-1] == 2
        # Paused (left): the next tick does not wait for it.
        batcher.leave(second)
        started = time.perf_counter()
        batcher.step(first, 2)
        assert time.perf_counter() - started < 2.5 and batcher.active_sessions == 1
        # A session that stopped asking (a closed tab) expires after `active_for`.
        batcher.active_for = 0.05
        time.sleep(0.1)
        started = time.perf_counter()
        batcher.step(second, 2)
        time.sleep(0.1)
        batcher.step(first, 3)
        assert time.perf_counter() - started < 2.5
    finally:
        batcher.close()


def test_the_same_players_reuse_the_stacked_state_until_one_steps_on_its_own(monkeypatch):
    """Tick after tick, the same sessions in the same order skip stacking and splitting copies; a session that steps
    alone, resets or joins in another order makes the next tick stack again, and every frame stays what each session
    would have made alone."""
    from tekken_diffusers.models.transformer_tekken import TekkenKVCache

    pipe = build_random_pipeline("tiny", seed=0, prev_frame_conditioning=True, prediction_type="prev_frame_residual")
    pipe.set_progress_bar_config(disable=True)
    context = np.random.default_rng(0).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)

    def start(seed: int):
        return pipe.start_session(
            context=context, context_actions=[0, 1, 2], output_type="pt", generator=torch.Generator().manual_seed(seed)
        )

    batched, alone = [start(seed) for seed in range(3)], [start(seed) for seed in range(3)]
    stacks = []
    original = TekkenKVCache.stack.__func__

    def counted(cls, *args, **kwargs):
        stacks.append(1)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(TekkenKVCache, "stack", classmethod(counted))

    def tick(order, action):
        got = step_sessions([batched[i] for i in order], [action] * len(order))
        for i, frame in zip(order, got):
            torch.testing.assert_close(frame, alone[i].step(action), rtol=0, atol=1e-5)

    for action in range(4):
        tick([0, 1, 2], action)
    assert len(stacks) == 1  # stacked once, then reused
    torch.testing.assert_close(batched[1].step(7), alone[1].step(7), rtol=0, atol=1e-5)  # one steps alone
    tick([0, 1, 2], 5)
    assert len(stacks) == 2
    tick([2, 1, 0], 6)  # another order
    assert len(stacks) == 3
    batched[0].reset(), alone[0].reset()
    tick([2, 1, 0], 8)  # a reset session rejoins: its cache is its own again, the group differs
    assert len(stacks) == 4  # the other two stack anew; the reset one, its cache not yet full, steps alone
