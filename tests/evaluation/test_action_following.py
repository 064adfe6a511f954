import numpy as np
import pytest

from tekken_diffusers.data.rounds import load_round
from tekken_diffusers.evaluation.action_following import position_error, white_boxer_position


def test_white_boxer_is_tracked_like_the_console_ram(boxing_rounds):
    round_ = load_round(boxing_rounds / "train" / "round_0000.npz")
    positions = white_boxer_position(round_.images)  # (T, 2) pixels
    assert positions.shape == (round_.num_frames, 2) and np.isfinite(positions).all()
    # The pixel position follows the RAM position (p1_x, p1_y) closely: a linear map of the screen.
    for axis, column in ((0, 0), (1, 1)):
        correlation = np.corrcoef(positions[:, axis], round_.states[:, column])[0, 1]
        assert correlation > 0.9, (axis, correlation)


def test_position_error_and_missing_boxer():
    frames = np.zeros((2, 3, 64, 64), dtype=np.uint8)
    frames[..., 40:48, 20:24] = 255  # a white block
    moved = np.roll(frames, 6, axis=-1)
    np.testing.assert_allclose(position_error(moved, frames), [6.0, 6.0])
    empty = np.zeros((1, 3, 64, 64), dtype=np.uint8)
    assert np.isnan(white_boxer_position(empty)).all()
    with pytest.warns(RuntimeWarning):
        assert np.isnan(np.nanmean(position_error(empty, empty)))
