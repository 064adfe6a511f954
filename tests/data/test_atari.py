import numpy as np
import pytest

from tekken_diffusers.actions import LEFT, RIGHT, id_to_atari
from tekken_diffusers.data.rounds import load_round

pytest.importorskip("ale_py")
from tekken_diffusers.data.atari import (  # noqa: E402
    BOXING_STATE_NAMES,
    BoxingEnv,
    RecordConfig,
    make_policy,
    record_boxing,
)

P1_X = BOXING_STATE_NAMES.index("p1_x")
P2_X = BOXING_STATE_NAMES.index("p2_x")


def white_boxer_x(frame: np.ndarray) -> float:
    """Mean column of the white boxer's pixels (all channels bright) inside the ring of a (3, 64, 64) frame."""
    ring = frame[:, 6:58].astype(int)
    _, columns = np.nonzero(ring.min(0) > 180)
    assert len(columns) > 10, "the white boxer is not visible"
    return float(columns.mean())


def hold(env, atari_action, steps, atari_p2=0):
    for _ in range(steps):
        frame, state, _ = env.step(atari_action, atari_p2)
    return frame, state


def test_holding_right_moves_the_player_right_in_frames_and_state():
    env = BoxingEnv()
    frame, state = env.reset(seed=0)
    x_frame, x_state = white_boxer_x(frame), state[P1_X]
    frame, state = hold(env, int(id_to_atari(RIGHT)), 8)
    assert state[P1_X] > x_state + 10
    assert white_boxer_x(frame) > x_frame + 5
    x_frame, x_state = white_boxer_x(frame), state[P1_X]
    frame, state = hold(env, int(id_to_atari(LEFT)), 8)
    assert state[P1_X] < x_state - 10
    assert white_boxer_x(frame) < x_frame - 5


def test_two_player_moves_player_two():
    pytest.importorskip("pettingzoo")
    env = BoxingEnv(two_player=True)
    _, state = env.reset(seed=0)
    start = state[P2_X]
    _, state = hold(env, 0, 8, atari_p2=int(id_to_atari(LEFT)))
    assert state[P2_X] < start - 10


def test_recording_is_deterministic_and_resumes(tmp_path):
    config = dict(rounds=3, max_frames=40, seed=3, val_fraction=0.34)
    first = record_boxing(RecordConfig(out=tmp_path / "a", **config), progress=False)
    second = record_boxing(RecordConfig(out=tmp_path / "b", **config), progress=False)
    assert [len(first[s]) for s in ("train", "val")] == [2, 1]
    for split in ("train", "val"):
        for a, b in zip(first[split], second[split]):
            assert a.read_bytes() == b.read_bytes()
    # A different seed gives different play.
    other = record_boxing(RecordConfig(out=tmp_path / "c", **{**config, "seed": 4}), progress=False)
    assert other["train"][0].read_bytes() != first["train"][0].read_bytes()

    # Resume: a missing round is recorded again, identical; finished rounds are not rewritten.
    kept = first["train"][0]
    kept_mtime = kept.stat().st_mtime_ns
    first["train"][1].unlink()
    resumed = record_boxing(RecordConfig(out=tmp_path / "a", **config), progress=False)
    assert resumed["train"][1].read_bytes() == second["train"][1].read_bytes()
    assert kept.stat().st_mtime_ns == kept_mtime


def test_recorded_rounds_follow_the_format(boxing_rounds):
    paths = sorted(boxing_rounds.glob("*/round_*.npz"))
    assert len(paths) == 4
    for path in paths:
        round_ = load_round(path)
        assert round_.images.shape == (48, 3, 64, 64)
        assert round_.states.shape == (48, len(BOXING_STATE_NAMES))
        assert round_.fps == 15.0 and round_.game == "boxing"
        # Inputs a person plays: held for several frames, not a new random input every step.
        changes = np.count_nonzero(np.diff(round_.actions_p1.astype(int)))
        assert changes < 0.6 * len(round_.actions_p1)
    first = load_round(boxing_rounds / "train" / "round_0000.npz")
    assert first.actions_p1[0] == 0  # nothing was pressed before the reset frame
    # The clock runs down one second every 15 frames.
    assert first.states[0, -1] - first.states[-1, -1] in (2.0, 3.0, 4.0)


def test_approach_policy_closes_in_and_punches():
    env = BoxingEnv()
    _, state = env.reset(seed=1)
    policy = make_policy("approach", np.random.default_rng(0))
    distances, punches = [], 0
    for _ in range(150):
        action = policy(state)
        punches += bool(action & 8)
        _, state, _ = env.step(int(id_to_atari(action)))
        distances.append(np.hypot(*(state[0:2] - state[2:4])))
    assert np.mean(distances[-50:]) < 45
    assert punches > 10


def test_bad_config_is_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown policy 'lazy'; known policies: mix, approach, random"):
        RecordConfig(out=tmp_path, policy="lazy")
    with pytest.raises(ValueError, match="val_fraction"):
        RecordConfig(out=tmp_path, val_fraction=1.5)
