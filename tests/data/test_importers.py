import numpy as np
import pytest

from tekken_diffusers.actions import DOWN, LP, RIGHT, RP
from tekken_diffusers.data.importers import VideoImportConfig, pool_inputs, read_input_log, video_to_rounds
from tekken_diffusers.data.rounds import load_round


@pytest.fixture
def capture(tmp_path):
    """A 60 fps 40-frame video whose red channel encodes the frame index, and an input log of changes."""
    import imageio.v2 as imageio

    video = tmp_path / "match.mp4"
    with imageio.get_writer(video, fps=60, codec="libx264", quality=10, macro_block_size=16) as writer:
        for t in range(40):
            frame = np.zeros((32, 48, 3), dtype=np.uint8)
            frame[..., 0] = t * 6
            writer.append_data(frame)
    log = tmp_path / "match.csv"
    log.write_text("frame,notation\n0,n\n5,f\n9,d/f+2\n")
    return video, log


def test_video_import(capture, tmp_path):
    video, log = capture
    paths = video_to_rounds(video, log, tmp_path / "rounds", VideoImportConfig(size=(16, 16), round_frames=16))
    assert [p.name for p in paths] == ["round_0000.npz", "round_0001.npz"]  # 40 frames = 16 + 16 (+ 8 dropped)
    first = load_round(paths[0])
    assert first.images.shape == (16, 3, 16, 16) and first.fps == pytest.approx(60.0)
    expected = [0] * 5 + [RIGHT] * 4 + [DOWN | RIGHT | RP] * 7
    np.testing.assert_array_equal(first.actions_p1, expected)
    # Frames stay in order: the red channel grows with the frame index.
    assert np.all(np.diff(first.images[:, 0].mean(axis=(1, 2))) > 0)


def test_video_import_with_frame_skip(capture, tmp_path):
    video, log = capture
    config = VideoImportConfig(size=None, frame_skip=4, round_frames=100, min_frames=4)
    (path,) = video_to_rounds(video, log, tmp_path / "rounds", config)
    round_ = load_round(path)
    assert round_.images.shape == (10, 3, 32, 48) and round_.fps == pytest.approx(15.0)
    # Kept frame k = source 4k; its input covers source frames (4k-4, 4k].
    np.testing.assert_array_equal(round_.actions_p1[:4], [0, 0, RIGHT, DOWN | RIGHT | RP])


def test_pool_inputs_keeps_short_presses():
    actions = np.array([0, 0, LP, 0, RIGHT, RIGHT, 0, 0], dtype=np.uint8)
    np.testing.assert_array_equal(pool_inputs(actions, 2), [0, LP, RIGHT, 0])
    np.testing.assert_array_equal(pool_inputs(actions, 4), [0, RIGHT | LP])


@pytest.mark.parametrize(
    "text, message",
    [
        ("time,notation\n0,n\n", "expected a header with a 'frame' column"),
        ("frame,buttons\n0,n\n", "expected an 'action', 'notation'"),
        ("frame,notation\n0,n\n3,x\n", r"log.csv:3: notation: notation 'x': unknown token"),
        ("frame,action\n0,300\n", r"log.csv:2: action: expected an integer in \[0, 255\], found '300'"),
        ("frame,notation\n4,n\n2,f\n", r"log.csv:3: frame: expected increasing frame indexes"),
        ("frame,notation\n0,n\n50,f\n", r"log.csv:3: frame: the video has 10 frames, found frame index 50"),
        ("frame,up,down,left,right,lp,rp,lk,rk\n0,1,0,0,0,2,0,0,0\n", r"log.csv:2: lp: expected 0 or 1"),
        ("frame,notation\n", "no rows"),
    ],
)
def test_input_log_errors(tmp_path, text, message):
    path = tmp_path / "log.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_input_log(path, num_frames=10)


def test_input_log_forms_agree(tmp_path):
    forms = {
        "a.csv": "frame,action,action_p2\n0,0,0\n2,84,32\n",
        "b.csv": "frame,notation,notation_p2\n0,n,n\n2,d/f+2,f\n",
        "c.csv": "frame,up,down,left,right,lp,rp,lk,rk,up_p2,down_p2,left_p2,right_p2,lp_p2,rp_p2,lk_p2,rk_p2\n"
        "0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n2,0,1,0,1,0,1,0,0,0,0,1,0,0,0,0,0\n",
    }
    results = []
    for name, text in forms.items():
        (tmp_path / name).write_text(text)
        results.append(read_input_log(tmp_path / name, 4))
    for p1, p2 in results:
        np.testing.assert_array_equal(p1, [0, 0, 84, 84])
        np.testing.assert_array_equal(p2, [0, 0, 32, 32])  # player 2 stands right: forward is Left


def test_missing_video(tmp_path):
    (tmp_path / "log.csv").write_text("frame,notation\n0,n\n")
    with pytest.raises(FileNotFoundError, match="nope.mp4: no such video file"):
        video_to_rounds(tmp_path / "nope.mp4", tmp_path / "log.csv", tmp_path / "out")
