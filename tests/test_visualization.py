import numpy as np
import pytest

from tekken_diffusers.actions import LP, RIGHT
from tekken_diffusers.visualization import compose_frames, draw_input_panel, write_contact_sheet, write_video


def test_panel_shows_the_input():
    neutral, punch = draw_input_panel(0, 200), draw_input_panel(RIGHT | LP, 200)
    assert neutral.shape == (40, 200, 3)
    assert not np.array_equal(neutral, punch)
    assert np.array_equal(draw_input_panel(RIGHT | LP, 200), punch)


def test_compose_and_write(tmp_path):
    frames = np.random.default_rng(0).integers(0, 256, (5, 3, 16, 16), dtype=np.uint8)
    actions = np.array([0, RIGHT, RIGHT, LP, 0], dtype=np.uint8)
    canvas = compose_frames([frames, frames], actions, titles=["generated", "recorded"], scale=2)
    assert canvas.shape[0] == 5 and canvas.shape[1] % 16 == 0 and canvas.shape[2] % 16 == 0
    # The frames are drawn unchanged (pixel repetition) under the title strip.
    np.testing.assert_array_equal(canvas[0, 14:46:2, 0:32:2], frames[0].transpose(1, 2, 0))
    video = write_video(tmp_path / "clip.mp4", canvas, fps=15)
    sheet = write_contact_sheet(tmp_path / "clip.png", canvas, columns=3)
    assert video.stat().st_size > 0 and sheet.stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "clip.png"]  # no temporary files left


def test_compose_rejects_mismatched_inputs():
    frames = np.zeros((5, 3, 16, 16), dtype=np.uint8)
    with pytest.raises(ValueError, match=r"actions: expected shape \(5,\)"):
        compose_frames([frames], np.zeros(4, dtype=np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        compose_frames([frames.astype(np.float32)], np.zeros(5, dtype=np.uint8))
