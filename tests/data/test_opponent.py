"""Player 2's inputs inferred for one-player Boxing (`tekken_diffusers.data.opponent`): the black boxer's width,
its moves from the RAM positions, and the copy of a latent dataset with `actions_p2` added."""

from __future__ import annotations

import datasets
import numpy as np
import pytest

from tekken_diffusers.actions import DOWN, LEFT, LP, RIGHT, UP
from tekken_diffusers.cli import encode_latents
from tekken_diffusers.data.atari import BOXING_STATE_NAMES
from tekken_diffusers.data.latents import load_latent_info
from tekken_diffusers.data.opponent import (
    add_boxing_opponent_actions,
    black_boxer_width,
    infer_boxing_opponent_actions,
)
from tekken_diffusers.data.rounds import load_round, save_round
from tests.conftest import make_round, tiny_dcae

GREY = 128


def grey_frames(count: int, size: int = 64) -> np.ndarray:
    return np.full((count, 3, size, size), GREY, dtype=np.uint8)


def boxing_states(p2_xy, seed: int = 0) -> np.ndarray:
    """`(T, 7)` states in `BOXING_STATE_NAMES` order with player 2 at `p2_xy` and player 1 wandering at random."""
    rng = np.random.default_rng(seed)
    p2_xy = np.asarray(p2_xy, dtype=np.float32)
    states = rng.integers(0, 100, (len(p2_xy), len(BOXING_STATE_NAMES))).astype(np.float32)
    states[:, BOXING_STATE_NAMES.index("p2_x")] = p2_xy[:, 0]
    states[:, BOXING_STATE_NAMES.index("p2_y")] = p2_xy[:, 1]
    return states


# ---------------------------------------------------------------------------------------------------------------------
# black_boxer_width
# ---------------------------------------------------------------------------------------------------------------------
def test_black_boxer_width_measures_the_dark_silhouette_inside_the_ring():
    frames = grey_frames(6)
    frames[0, :, 20:30, 25:33] = 0  # 8 wide
    frames[1, :, 40:44, 10:22] = 20  # 12 wide, dark enough in every channel
    frames[2, :, 30:32, 30:31] = 0  # 1 wide
    frames[3, :, 20:30, 20:23] = 0  # two parts: columns 20..22 and 30..31 → 20..31, 12 wide
    frames[3, :, 50:52, 30:32] = 0
    # frame 4: nothing dark
    frames[5, 0, 20:30, 25:40] = 255  # dark in green and blue only: red, not black
    frames[5, 1:, 20:30, 25:40] = 0
    np.testing.assert_array_equal(black_boxer_width(frames), [8, 12, 1, 12, 0, 0])
    assert black_boxer_width(frames).dtype == np.int64


def test_black_boxer_width_ignores_dark_objects_in_the_border():
    frames = grey_frames(5)
    frames[0, :, 20:30, 0:6] = 0  # left border (6 pixels at 64 wide)
    frames[1, :, 20:30, 58:64] = 0  # right border
    frames[2, :, 0:6, 10:40] = 0  # top border, 30 wide
    frames[3, :, 58:64, 10:40] = 0  # bottom border
    frames[4, :, 20:30, 0:6] = 0  # border plus a boxer inside: only the boxer counts
    frames[4, :, 20:30, 30:35] = 0
    np.testing.assert_array_equal(black_boxer_width(frames), [0, 0, 0, 0, 5])
    frames[0, :, 20:30, 0:7] = 0  # one column past the border is inside the ring
    assert black_boxer_width(frames)[0] == 1


def test_black_boxer_width_refuses_frames_that_are_not_rgb_clips():
    with pytest.raises(ValueError, match=r"expected \(T, 3, H, W\) frames, got shape \(3, 64, 64\)"):
        black_boxer_width(grey_frames(1)[0])
    with pytest.raises(ValueError, match=r"got shape \(2, 1, 64, 64\)"):
        black_boxer_width(np.zeros((2, 1, 64, 64), dtype=np.uint8))


# ---------------------------------------------------------------------------------------------------------------------
# infer_boxing_opponent_actions
# ---------------------------------------------------------------------------------------------------------------------
# player 2's RAM position per frame and the input that moved it there (RAM y grows downwards: dy > 0 is DOWN)
MOVES = [
    ((50, 50), 0),  # first frame: nothing before it
    ((51, 50), RIGHT),
    ((50, 50), LEFT),
    ((50, 47), UP),
    ((50, 50), DOWN),
    ((53, 52), RIGHT | DOWN),
    ((51, 49), LEFT | UP),
    ((51, 49), 0),
    ((55, 40), RIGHT | UP),
    ((50, 41), LEFT | DOWN),
]


def test_moves_become_direction_bits():
    positions, expected = zip(*MOVES)
    ids = infer_boxing_opponent_actions(boxing_states(positions), grey_frames(len(MOVES)))
    assert ids.dtype == np.uint8 and ids.shape == (len(MOVES),)
    np.testing.assert_array_equal(ids, expected)


def test_player_1_moving_sets_nothing():
    states = boxing_states([(50, 50)] * 6)
    states[:, BOXING_STATE_NAMES.index("p1_x")] = np.arange(6) * 3
    states[:, BOXING_STATE_NAMES.index("p1_y")] = np.arange(6)[::-1] * 2
    np.testing.assert_array_equal(infer_boxing_opponent_actions(states, grey_frames(6)), np.zeros(6))


def test_the_first_frame_has_no_movement_even_far_from_anything():
    ids = infer_boxing_opponent_actions(boxing_states([(90, 5), (90, 5)]), grey_frames(2))
    np.testing.assert_array_equal(ids, [0, 0])


def test_a_wide_silhouette_is_a_punch():
    frames = grey_frames(4)
    frames[0, :, 20:30, 20:30] = 0  # 10 wide: a punch, on the first frame too
    frames[1, :, 20:30, 20:29] = 0  # 9 wide: a boxer
    frames[2, :, 20:30, 20:32] = 0  # 12 wide, while moving right
    states = boxing_states([(50, 50), (50, 50), (52, 50), (52, 50)])
    np.testing.assert_array_equal(infer_boxing_opponent_actions(states, frames), [LP, 0, RIGHT | LP, 0])
    # an explicit threshold
    np.testing.assert_array_equal(
        infer_boxing_opponent_actions(states, frames, punch_width=9), [LP, LP, RIGHT | LP, 0]
    )
    np.testing.assert_array_equal(infer_boxing_opponent_actions(states, frames, punch_width=13), [0, 0, RIGHT, 0])


def test_the_punch_width_scales_with_the_frame_width():
    frames = grey_frames(2, size=32)  # default threshold 10 · 32 / 64 = 5
    frames[0, :, 10:15, 10:15] = 0
    frames[1, :, 10:15, 10:14] = 0
    np.testing.assert_array_equal(infer_boxing_opponent_actions(boxing_states([(0, 0)] * 2), frames), [LP, 0])


def test_state_names_choose_the_columns():
    states = np.array([[10, 20], [10, 21], [12, 21]], dtype=np.float32)  # (p2_y, p2_x)
    ids = infer_boxing_opponent_actions(states, grey_frames(3), state_names=("p2_y", "p2_x"))
    np.testing.assert_array_equal(ids, [0, RIGHT, DOWN])


def test_bad_states_and_frames_are_refused():
    frames = grey_frames(4)
    with pytest.raises(ValueError, match=r"states: expected \(T, 7\) .*got shape \(4, 3\)"):
        infer_boxing_opponent_actions(np.zeros((4, 3)), frames)
    with pytest.raises(ValueError, match=r"states: expected \(T, 7\)"):
        infer_boxing_opponent_actions(np.zeros(4), frames)
    with pytest.raises(ValueError, match="column 'p2_x' is needed"):
        infer_boxing_opponent_actions(np.zeros((4, 2)), frames, state_names=("p1_x", "p2_y"))
    with pytest.raises(ValueError, match="column 'p2_y' is needed"):
        infer_boxing_opponent_actions(np.zeros((4, 2)), frames, state_names=("p2_x", "p1_y"))
    with pytest.raises(ValueError, match="images have 3 frames but states have 4"):
        infer_boxing_opponent_actions(boxing_states([(0, 0)] * 4), frames[:3])


# ---------------------------------------------------------------------------------------------------------------------
# add_boxing_opponent_actions: a one-player latent dataset copied with actions_p2
# ---------------------------------------------------------------------------------------------------------------------
def boxing_round(num_frames: int, seed: int, num_valid: int | None = None, names=BOXING_STATE_NAMES):
    """A 16×16 one-player round with a random walk of player 2 in the RAM and a dark boxer that punches at random."""
    rng = np.random.default_rng(seed)
    positions = np.cumsum(rng.integers(-1, 2, (num_frames, 2)), axis=0) + 50
    states = boxing_states(positions, seed)
    order = [BOXING_STATE_NAMES.index(name) for name in names]
    images = np.full((num_frames, 3, 16, 16), GREY, dtype=np.uint8)
    widths = rng.integers(1, 5, num_frames)  # 2+ pixels is a punch at 16 wide
    for t, width in enumerate(widths):
        images[t, :, 6:10, 5 : 5 + width] = 0
    valid = np.ones(num_frames, dtype=bool)
    if num_valid is not None:
        valid[num_valid:] = False
    return make_round(
        num_frames,
        size=(16, 16),
        seed=seed,
        images=images,
        states=states[:, order],
        valid_frames=valid,
        game="boxing",
        extras={"state_names": np.array(names)},
    )


@pytest.fixture(scope="module")
def one_player_latents(tmp_path_factory):
    """Rounds (train: 2, one of them padded and with its state columns in another order; val: 1) and their latent
    dataset."""
    root = tmp_path_factory.mktemp("opponent")
    rounds = root / "rounds"
    save_round(rounds / "train" / "round_0000.npz", boxing_round(14, seed=1))
    save_round(
        rounds / "train" / "round_0001.npz", boxing_round(12, seed=2, num_valid=9, names=BOXING_STATE_NAMES[::-1])
    )
    save_round(rounds / "val" / "round_0000.npz", boxing_round(10, seed=3))
    tiny_dcae().save_pretrained(root / "vae")
    latents = root / "latents"
    argv = ["--no-progress", "--rounds", rounds, "--vae", root / "vae", "--out", latents, "--batch-size", "16"]
    assert encode_latents.main([str(arg) for arg in argv]) == 0
    assert not load_latent_info(latents).has_actions_p2
    return rounds, latents


def test_the_copy_carries_each_rounds_inferred_inputs(one_player_latents, tmp_path):
    rounds, latents = one_player_latents
    out = add_boxing_opponent_actions(latents, rounds, tmp_path / "vs-console", progress=False)
    assert out == tmp_path / "vs-console"
    assert load_latent_info(out).has_actions_p2 and not load_latent_info(latents).has_actions_p2
    before, after = datasets.load_from_disk(str(latents)), datasets.load_from_disk(str(out))
    assert set(after) == {"train", "val"} and after["train"].features == before["train"].features
    checked = 0
    for split in ("train", "val"):
        assert len(after[split]) == len(before[split])
        for old, new in zip(before[split], after[split]):
            round_ = load_round(rounds / split / f"{new['round_id']}.npz")
            names = tuple(str(name) for name in round_.extras["state_names"])
            expected = infer_boxing_opponent_actions(round_.states, round_.images, state_names=names)
            assert len(new["actions_p2"]) == new["num_frames"] == round_.num_valid
            np.testing.assert_array_equal(new["actions_p2"], expected[: new["num_frames"]])
            assert old["actions_p2"] is None
            for column in ("latents", "actions", "states", "num_valid", "round_id"):
                assert new[column] == old[column], column
            checked += 1
    assert checked == 3
    # not a constant: the walk moves both ways and the boxer punches on some frames only
    train_p2 = np.concatenate([np.asarray(row["actions_p2"]) for row in after["train"]])
    assert len(np.unique(train_p2)) > 3 and (train_p2 & LP).any() and not (train_p2 & LP).all()


def test_a_dataset_with_player_2_inputs_is_refused(one_player_latents, tmp_path):
    rounds, latents = one_player_latents
    first = add_boxing_opponent_actions(latents, rounds, tmp_path / "first", progress=False)
    with pytest.raises(ValueError, match="already carry player 2's inputs"):
        add_boxing_opponent_actions(first, rounds, tmp_path / "second", progress=False)
    assert not (tmp_path / "second").exists()
    with pytest.raises(FileExistsError, match="already exists"):
        add_boxing_opponent_actions(latents, rounds, first, progress=False)


def test_a_missing_round_file_is_named(one_player_latents, tmp_path):
    rounds, latents = one_player_latents
    partial = tmp_path / "rounds"
    for path in rounds.rglob("*.npz"):
        if path.name != "round_0001.npz":
            target = partial / path.relative_to(rounds)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    with pytest.raises(FileNotFoundError, match=r"train/round_0001\.npz not found"):
        add_boxing_opponent_actions(latents, partial, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
