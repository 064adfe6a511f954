"""A two-player pipeline with an opponent policy (`opponent` component): the policy plays player 2 wherever its inputs
are not given, in calls, sessions, batched sessions and the teacher-forced evaluation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from tekken_diffusers import TekkenOpponentPolicy, TekkenWorldModelPipeline
from tekken_diffusers.actions import LEFT, bits_to_ids, ids_to_bits
from tekken_diffusers.evaluation.world_model import teacher_forced_next_frames
from tekken_diffusers.pipelines import TekkenRollout, build_random_pipeline, step_sessions

pytestmark = pytest.mark.usefixtures("single_thread")

STEPS = 2
ACTIONS = "f,f,1,n,b"


def tiny_opponent(temperature: float = 0.0, seed: int = 0) -> TekkenOpponentPolicy:
    """A random policy for the tiny transformer's 4×4×4 latents that reads 3 frames; its heads' last weights are
    scaled up so that its choices depend on the frames (a fresh one picks the input its biases favour)."""
    torch.manual_seed(seed)
    policy = TekkenOpponentPolicy(
        in_channels=4, sample_size=(4, 4), context_frames=3, hidden_dim=16, conv_channels=8, temperature=temperature
    ).eval()
    with torch.no_grad():
        policy.policy_head[-1].weight.mul_(30.0)
        policy.inverse_head[-1].weight.mul_(30.0)
    return policy


def with_opponent(pipe, opponent):
    pipe = TekkenWorldModelPipeline(pipe.transformer, pipe.scheduler, pipe.vae, opponent=opponent)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe2():
    pipe = build_random_pipeline("tiny", seed=0, num_players=2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe_opp(pipe2):
    return with_opponent(pipe2, tiny_opponent())


@pytest.fixture(scope="module")
def context():
    return np.random.default_rng(0).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def run(pipe, context, actions=ACTIONS, seed=0, **kwargs):
    kwargs.setdefault("output_type", "latent")
    return pipe(context=context, actions=actions, num_inference_steps=STEPS, generator=gen(seed), **kwargs).frames


@pytest.fixture
def chosen(monkeypatch):
    """Player 2's inputs the opponent chose, one `(B, 8)` tensor per generated frame."""
    record = []
    original = TekkenRollout.choose_opponent_inputs

    def recording(self, bits, generator):
        result = original(self, bits, generator)
        if torch.isnan(bits).any():
            record.append(result[:, 0, 1].clone())
        return result

    monkeypatch.setattr(TekkenRollout, "choose_opponent_inputs", recording)
    return record


def context_latents_of(pipe, context):
    return pipe.encode_frames(pipe._frames_to_tensor(context)[None])


# ---------------------------------------------------------------------------------------------------------------------
# __call__
# ---------------------------------------------------------------------------------------------------------------------
def test_the_opponent_plays_player_2_as_explicit_inputs_would(pipe_opp, context, chosen):
    played = run(pipe_opp, context)
    assert played.shape == (1, 5, 4, 4, 4) and torch.isfinite(played).all()
    assert len(chosen) == 5 and all(c.shape == (1, 8) for c in chosen)
    opponent = pipe_opp.opponent
    latents = context_latents_of(pipe_opp, context)
    read = opponent.infer_inputs(latents)  # (1, 3, 8): the context's player-2 inputs
    # the first choice is the policy's most likely input after the context (player 1 pressed nothing there)
    first = opponent(latents, torch.stack([torch.zeros_like(read), read], dim=2)).argmax(-1)
    assert torch.equal(bits_to_ids(chosen[0]).long(), first)

    context_ids = bits_to_ids(read[0]).numpy()
    chosen_ids = bits_to_ids(torch.cat(chosen)).numpy()
    assert len(set(chosen_ids.tolist())) > 1  # the opponent reacts to the frames
    chosen.clear()
    explicit = run(pipe_opp, context, actions_p2=chosen_ids, context_actions_p2=context_ids)
    assert not chosen  # every input given: the opponent chose none
    torch.testing.assert_close(explicit, played, rtol=0, atol=0)

    # ...and those inputs matter: neutral player-2 inputs give other frames, as do other context inputs
    neutral = run(pipe_opp, context, actions_p2="n*5", context_actions_p2="n*3")
    assert (neutral - played).abs().max() > 1e-4
    other_context = run(pipe_opp, context, actions_p2=chosen_ids, context_actions_p2=context_ids ^ 0xFF)
    assert (other_context - played).abs().max() > 1e-4


def test_given_inputs_override_the_opponent(pipe2, pipe_opp, context):
    both = dict(actions_p2="b,1,n,f,2", context_actions="1,n,b", context_actions_p2="n,f,1")
    torch.testing.assert_close(run(pipe_opp, context, **both), run(pipe2, context, **both), rtol=0, atol=0)


def test_without_any_inputs_both_default_and_the_opponent_still_plays(pipe_opp, context, chosen):
    frames = pipe_opp(
        context=context, num_frames=3, num_inference_steps=STEPS, generator=gen(), output_type="latent"
    ).frames
    assert frames.shape == (1, 3, 4, 4, 4) and torch.isfinite(frames).all() and len(chosen) == 3


def test_a_batch_equals_single_calls_even_when_sampling(pipe2, context):
    """With a list of generators each clip draws its opponent's inputs from its own generator."""
    pipe = with_opponent(pipe2, tiny_opponent(temperature=1.0))
    other = context[::-1].copy()
    batch = pipe(
        context=[context, other], actions=[ACTIONS, "b,b,3,n,1"], num_inference_steps=STEPS,
        generator=[gen(0), gen(1)], output_type="latent",
    ).frames  # fmt: skip
    torch.testing.assert_close(batch[0:1], run(pipe, context, seed=0), rtol=0, atol=1e-5)
    torch.testing.assert_close(batch[1:2], run(pipe, other, "b,b,3,n,1", seed=1), rtol=0, atol=1e-5)


def test_sampling_follows_the_seed_and_the_saved_temperature(pipe2, context, chosen):
    pipe = with_opponent(pipe2, tiny_opponent(temperature=1.0))
    first = run(pipe, context, actions="n*8", seed=0)
    first_choices = torch.cat(chosen)
    chosen.clear()
    torch.testing.assert_close(run(pipe, context, actions="n*8", seed=0), first, rtol=0, atol=0)
    assert torch.equal(torch.cat(chosen), first_choices)
    chosen.clear()
    run(pipe, context, actions="n*8", seed=1)
    assert not torch.equal(torch.cat(chosen), first_choices)  # 8 draws among ~256 near-equal inputs
    # temperature 0 (set in the policy's config) plays the policy's most likely input: no longer the sample
    chosen.clear()
    pipe.opponent.register_to_config(temperature=0.0)
    greedy = run(pipe, context, actions="n*8", seed=0)
    cold = run(with_opponent(pipe2, tiny_opponent(temperature=0.0)), context, actions="n*8", seed=0)
    torch.testing.assert_close(greedy, cold, rtol=0, atol=0)
    assert (greedy - first).abs().max() > 1e-4


def test_guidance_with_an_opponent(pipe_opp, context):
    plain = run(pipe_opp, context)
    guided = run(pipe_opp, context, guidance_scale=(1.0, 3.0))
    assert torch.isfinite(guided).all() and (guided - plain).abs().max() > 1e-4


# ---------------------------------------------------------------------------------------------------------------------
# Sessions
# ---------------------------------------------------------------------------------------------------------------------
def start(pipe, context, seed=0, **kwargs):
    return pipe.start_session(
        context=context, num_inference_steps=STEPS, generator=gen(seed), output_type="latent", **kwargs
    )


def test_a_session_steps_with_player_1_alone_and_equals_the_call(pipe_opp, context, chosen):
    session = start(pipe_opp, context)
    initial = session.rollout._history
    assert initial[0].shape == (1, 3, 4, 4, 4) and initial[1].shape == (1, 3, 2, 8)
    torch.testing.assert_close(initial[0], context_latents_of(pipe_opp, context))
    frames = [session.step(action) for action in ACTIONS.split(",")]
    assert session.num_steps == 5 and len(chosen) == 5
    torch.testing.assert_close(torch.stack(frames)[None], run(pipe_opp, context)[:, :5], rtol=0, atol=1e-5)
    latents, bits = session.rollout._history
    torch.testing.assert_close(latents[0], torch.stack(frames[-3:]), rtol=0, atol=0)  # the last 3 frames
    assert torch.equal(bits[0, :, 1], torch.cat(chosen[-3:]))  # under the inputs the opponent chose
    assert int(bits_to_ids(bits[0, -1, 0])) == LEFT  # player 1's last input, "b"
    # player 2's input given to a step: the opponent does not play it
    chosen.clear()
    session.step("n", "1")
    assert not chosen and torch.equal(session.rollout._history[1][0, -1, 1], torch.from_numpy(ids_to_bits(8)).float())


def test_reset_restores_the_opponents_history(pipe_opp, context):
    session = start(pipe_opp, context)
    initial = tuple(part.clone() for part in session.rollout._history)
    for action in ("f", "1", "b", "n"):
        session.step(action)
    assert not torch.equal(session.rollout._history[0], initial[0])
    noise = torch.randn(1, 1, 4, 4, 4, generator=gen(9))
    session.reset()
    assert session.num_steps == 0
    for part, expected in zip(session.rollout._history, initial):
        assert torch.equal(part, expected)
    after_reset = session.step("f", noise=noise)
    fresh = start(pipe_opp, context)
    torch.testing.assert_close(after_reset, fresh.step("f", noise=noise), rtol=0, atol=1e-6)
    # state()/restore() carry the history too
    state = fresh.rollout.state()
    saved = tuple(part.clone() for part in fresh.rollout._history)
    fresh.step("b")
    fresh.rollout.restore(state)
    for part, expected in zip(fresh.rollout._history, saved):
        assert torch.equal(part, expected)


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_batched_sessions_equal_sessions_stepped_alone(pipe2, temperature):
    pipe = with_opponent(pipe2, tiny_opponent(temperature))
    batches = []
    hook = pipe.transformer.register_forward_hook(lambda module, args, output: batches.append(args[0].shape[0]))
    try:

        def sessions():
            made = []
            for seed in (0, 1):
                latents = torch.randn(1, 4, 4, 4, 4, generator=gen(100 + seed))
                made.append(
                    pipe.start_session(
                        context_latents=latents, context_actions=[seed, 16, 32, 8], num_inference_steps=STEPS,
                        generator=gen(seed), output_type="latent",
                    )
                )  # fmt: skip
            return made

        alone, batched = sessions(), sessions()
        rng = np.random.default_rng(0)
        for tick in range(6):
            actions = [int(a) for a in rng.integers(0, 256, 2)]
            actions_p2 = [None, 9] if tick == 3 else None  # one tick where the second session's player 2 is given
            p2 = actions_p2 or [None, None]
            expected = [session.step(a, b) for session, a, b in zip(alone, actions, p2)]
            batches.clear()
            got = step_sessions(batched, actions, actions_p2)
            assert batches == [2] * STEPS  # one forward pass for both sessions per denoising step
            for a, b in zip(got, expected):
                torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
            for a, b in zip(batched, alone):
                torch.testing.assert_close(a.rollout._history[0], b.rollout._history[0], rtol=0, atol=1e-5)
                assert torch.equal(a.rollout._history[1], b.rollout._history[1])
                torch.testing.assert_close(a.rollout._history[0][0, -1], got[batched.index(a)], rtol=0, atol=0)
        assert [s.num_steps for s in batched] == [6, 6]
        # the two games are different: their opponents' histories differ
        assert not torch.equal(batched[0].rollout._history[0], batched[1].rollout._history[0])
        # and each goes on alone as it would have
        for a, b in zip(batched, alone):
            torch.testing.assert_close(a.step(5), b.step(5), rtol=0, atol=1e-5)
    finally:
        hook.remove()


def test_a_session_stepped_alone_by_the_batched_stepper_draws_once_per_frame(pipe2):
    """A group of one (here: a session whose settings no other shares) takes the inputs `step_bits` converted, so the
    opponent's draw is not repeated: the game equals plain `step` calls under the same seed, at temperature 1."""
    pipe = with_opponent(pipe2, tiny_opponent(1.0))

    def session():
        latents = torch.randn(1, 4, 4, 4, 4, generator=gen(7))
        return pipe.start_session(context_latents=latents, context_actions=[0, 16, 32, 8], num_inference_steps=STEPS,
                                  generator=gen(3), output_type="latent")  # fmt: skip

    alone, batched = session(), session()
    for action in (16, 0, 40, 16, 8):
        torch.testing.assert_close(step_sessions([batched], [action])[0], alone.step(action), rtol=0, atol=0)
    assert torch.equal(batched.rollout._history[1], alone.rollout._history[1])


# ---------------------------------------------------------------------------------------------------------------------
# Saving, loading and construction
# ---------------------------------------------------------------------------------------------------------------------
def test_save_and_load_keep_the_opponent(pipe_opp, context, tmp_path):
    expected = run(pipe_opp, context)
    pipe_opp.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["opponent"] == ["tekken_diffusers.models.opponent_policy", "TekkenOpponentPolicy"]
    assert (tmp_path / "pipe" / "opponent" / "config.json").is_file()
    loaded = TekkenWorldModelPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    assert isinstance(loaded.opponent, TekkenOpponentPolicy)
    assert loaded.opponent.config.temperature == 0.0 and loaded.opponent.config.context_frames == 3
    torch.testing.assert_close(run(loaded, context), expected, rtol=0, atol=0)


def test_a_pipeline_without_an_opponent_loads_without_one(pipe2, context, tmp_path):
    pipe2.save_pretrained(tmp_path / "pipe")
    loaded = TekkenWorldModelPipeline.from_pretrained(tmp_path / "pipe")
    assert loaded.opponent is None
    # a folder saved before the component existed (no "opponent" entry in model_index.json)
    index_path = tmp_path / "pipe" / "model_index.json"
    index = json.loads(index_path.read_text())
    index.pop("opponent", None)
    index_path.write_text(json.dumps(index))
    old = TekkenWorldModelPipeline.from_pretrained(tmp_path / "pipe")
    old.set_progress_bar_config(disable=True)
    assert old.opponent is None
    with pytest.raises(ValueError, match="got `actions` without `actions_p2`"):
        run(old, context)


def test_a_one_player_transformer_takes_no_opponent():
    one_player = build_random_pipeline("tiny", seed=0, vae=None)
    with pytest.raises(ValueError, match=r"opponent: .*player 1 only \(num_players=1\)"):
        TekkenWorldModelPipeline(one_player.transformer, one_player.scheduler, opponent=tiny_opponent())
    assert TekkenWorldModelPipeline(one_player.transformer, one_player.scheduler).opponent is None


def test_without_an_opponent_player_2_is_still_required(pipe2, context):
    with pytest.raises(
        ValueError, match=r"`actions_p2`: .*two-player model \(num_players=2\) and got `actions` without"
    ):
        run(pipe2, context)
    session = start(pipe2, context, context_actions="n*3", context_actions_p2="n*3")
    with pytest.raises(ValueError, match=r"action_p2: .*two-player model .*without an opponent policy"):
        session.step("f")
    assert session.rollout._history is None  # nothing is kept without an opponent
    rollout = TekkenRollout(pipe2, 1, STEPS)
    rollout.append(torch.randn(1, 2, 4, 4, 4), torch.zeros(1, 2, 2, 8), gen())
    with pytest.raises(ValueError, match="no opponent policy to choose it"):
        rollout.next_frame(torch.full((1, 1, 2, 8), float("nan")), gen())


def test_the_opponent_needs_a_frame_to_read(pipe_opp):
    rollout = TekkenRollout(pipe_opp, 1, STEPS)
    with pytest.raises(ValueError, match="needs at least one frame before the one to generate"):
        rollout.next_frame(torch.full((1, 1, 2, 8), float("nan")), gen())


# ---------------------------------------------------------------------------------------------------------------------
# Teacher-forced evaluation: the true frames enter the cache under `truth_bits`
# ---------------------------------------------------------------------------------------------------------------------
def test_teacher_forcing_writes_the_truth_under_truth_bits(pipe2, pipe_opp):
    latents = torch.randn(2, 6, 4, 4, 4, generator=gen(3))
    bits = ids_to_bits(torch.randint(0, 256, (2, 6, 2), generator=gen(4))).float()

    def predict(pipe, action_bits, truth_bits=None):
        return teacher_forced_next_frames(pipe, latents, action_bits, 3, STEPS, generator=gen(), truth_bits=truth_bits)

    base = predict(pipe2, bits)
    torch.testing.assert_close(predict(pipe2, bits, truth_bits=bits), base, rtol=0, atol=0)
    other = bits.clone()
    other[:, :, 1] = 0.0  # player 2 pressed nothing in the true frames
    moved = predict(pipe2, bits, truth_bits=other)
    assert moved.shape == base.shape == (2, 3, 4, 4, 4) and (moved - base).abs().max() > 1e-4
    # the generated frames' own inputs still come from action_bits: the first prediction differs when only the
    # context's truth bits are changed, but not when only the generated frames' truth bits are
    late = bits.clone()
    late[:, 3:, 1] = 0.0
    changed_late = predict(pipe2, bits, truth_bits=late)
    torch.testing.assert_close(changed_late[:, 0], base[:, 0], rtol=0, atol=0)
    assert (changed_late[:, 1:] - base[:, 1:]).abs().max() > 1e-4

    # with an opponent, NaN player-2 inputs are chosen frame by frame from the true frames before them
    drawn = bits.clone()
    drawn[:, 3:, 1] = float("nan")
    predicted = predict(pipe_opp, drawn, truth_bits=bits)
    assert predicted.shape == (2, 3, 4, 4, 4) and torch.isfinite(predicted).all()


def test_the_policy_reads_player_1s_input_of_the_frame_it_draws_for(pipe2, context):
    policy = TekkenOpponentPolicy(in_channels=4, sample_size=(4, 4), context_frames=3, hidden_dim=16, conv_channels=8,
                                  temperature=0.0, reads_player_1_input=True).eval()  # fmt: skip
    pipe = with_opponent(pipe2, policy)
    seen = []
    original = policy.forward

    def recording(latents, actions, player_1_input=None):
        seen.append(bits_to_ids(player_1_input).tolist())
        return original(latents, actions, player_1_input)

    policy.forward = recording
    session = pipe.start_session(context=context, context_actions=[0, 0, 0], num_inference_steps=1, generator=gen())
    for action in (16, 32, 160):
        session.step(action)
    assert seen == [[16], [32], [160]]


def test_a_session_keeps_as_many_inputs_as_the_policy_reads(pipe2, context):
    """A policy reading 6 frames of inputs and 3 latent frames gets the real last 6 inputs of the session."""
    policy = tiny_opponent()
    policy = TekkenOpponentPolicy(**{**policy.config, "input_frames": 6}).eval()
    pipe = with_opponent(pipe2, policy)
    seen = []
    original = policy.forward

    def recording(latents, actions, player_1_input=None):
        seen.append((latents.shape[1], bits_to_ids(actions[0, :, 0]).tolist()))
        return original(latents, actions, player_1_input)

    policy.forward = recording
    session = pipe.start_session(context=context, context_actions=[1, 2, 3], num_inference_steps=1, generator=gen())
    for action in (16, 32, 64, 128, 160):
        session.step(action)
    assert seen[0] == (3, [1, 2, 3])  # the context's three frames
    assert seen[-1] == (6, [2, 3, 16, 32, 64, 128])  # its last 6 inputs; the latents kept with them
    assert "last 3 frames and the inputs of the last 6 (temperature 0.0)" in pipe.default_model_card()


def test_the_model_card_names_the_opponent(pipe2, pipe_opp):
    assert "| opponent | `TekkenOpponentPolicy`" in pipe_opp.default_model_card()
    assert "last 3 frames (temperature 0.0)" in pipe_opp.default_model_card()
    assert "| opponent |" not in pipe2.default_model_card()
