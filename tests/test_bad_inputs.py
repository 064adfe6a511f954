"""Hostile inputs to pipelines/generate.py (issue 12): each gets one clear error line naming the argument, exit code
2, no traceback; nothing is silently accepted."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from tekken_diffusers.cli.generate import main as generate
from tekken_diffusers.data.rounds import save_round
from tekken_diffusers.pipelines import build_random_pipeline
from tests.conftest import make_round


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    """A tiny random pipeline (8×8 frames), a copy without vae/, one with truncated weights, and a 16-frame round."""
    root = tmp_path_factory.mktemp("generate")
    build_random_pipeline("tiny", seed=0).save_pretrained(root / "pipe")
    shutil.copytree(root / "pipe", root / "no_vae")
    shutil.rmtree(root / "no_vae" / "vae")
    shutil.copytree(root / "pipe", root / "truncated")
    weights = root / "truncated" / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    save_round(root / "round.npz", make_round(16, size=(8, 8)))
    (root / "file").write_text("")
    return {"root": root, "pipe": root / "pipe", "round": root / "round.npz"}


def run(setup, *argv) -> list[str]:
    return ["--pipeline", str(setup["pipe"]), "--context", str(setup["round"]), "--context-frames", "4",
            "--out", str(setup["root"] / "out.mp4"), *map(str, argv)]  # fmt: skip


def error_of(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        generate(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--guidance-scale", "0.5"], "--guidance-scale must be a finite number >= 1 (1 = off), got 0.5"),
        (["--guidance-scale", "nan"], "--guidance-scale must be a finite number >= 1"),
        (["--context-noise", "2"], "--context-noise must lie in [0, 1), got 2.0"),
        (["--frames", "0"], "--frames must lie in [1, --max-frames = 10000], got 0"),
        (["--frames", "-2"], "--frames must lie in [1, --max-frames = 10000], got -2"),
        (["--frames", "10000000"], "--frames must lie in [1, --max-frames = 10000], got 10000000"),
        (["--actions", ""], "--actions is empty"),
        (["--actions", "f*1000000000"], "--actions: actions: more than 10000 inputs"),
        (["--scale", "0"], "--scale must be >= 1, got 0"),
        (["--start", "-1"], "--start must be >= 0, got -1"),
    ],
)
def test_generate_refuses_bad_values(setup, capsys, args, message):
    assert message in error_of(run(setup, *args), capsys)


def test_generate_names_bad_paths(setup, capsys):
    root = setup["root"]
    argv = run(setup, "--frames", "2", "--steps", "1")
    out_index = argv.index("--out") + 1
    under_file = argv[:out_index] + [str(root / "file" / "x.mp4")] + argv[out_index + 1 :]
    assert f"{root / 'file'} is a file (expected a folder)" in error_of(under_file, capsys)
    for pipeline, message in (
        (root / "missing", "no such folder"),
        (root / "no_vae", "no_vae/vae: missing or without its config"),
        (root / "truncated", "cannot load it"),
    ):
        argv[1] = str(pipeline)
        assert f"--pipeline {pipeline}: " in (line := error_of(argv, capsys)) and message in line


def test_generate_writes_a_video(setup):
    out = setup["root"] / "ok.mp4"
    argv = run(setup, "--frames", "2", "--steps", "1", "--actions", "f")
    argv[argv.index("--out") + 1] = str(out)
    assert generate(argv) == 0 and out.stat().st_size > 0


def test_generate_streams_long_videos_in_chunks(setup, monkeypatch):
    """The video is written chunk by chunk (memory does not grow with --frames): 5 frames in chunks of 2 give one
    5-frame video whose input panels keep counting across chunks, beside the recorded frames."""
    import imageio.v3 as iio

    import tekken_diffusers.cli.generate as generate_module

    monkeypatch.setattr(generate_module, "VIDEO_CHUNK", 2)
    from tekken_diffusers import visualization

    composed, compose = [], visualization.compose_frames

    def spy(*args, **kwargs):
        composed.append((len(args[1]), kwargs["first_frame"], len(args[0])))
        return compose(*args, **kwargs)

    monkeypatch.setattr(visualization, "compose_frames", spy)
    out = setup["root"] / "chunks.mp4"
    argv = run(setup, "--frames", "5", "--steps", "1")
    argv[argv.index("--out") + 1] = str(out)
    assert generate(argv) == 0
    assert composed == [(2, 0, 2), (2, 2, 2), (1, 4, 2)]  # generated beside recorded, panels from 0, 2, 4
    assert iio.imread(out).shape[0] == 5


@pytest.fixture(scope="module")
def setup_2p(setup) -> dict[str, Path]:
    """A two-player tiny pipeline and a round with both players' inputs."""
    root = setup["root"]
    build_random_pipeline("tiny", seed=1, num_players=2).save_pretrained(root / "pipe2")
    save_round(root / "round2.npz", make_round(16, size=(8, 8), actions_p2=np.arange(16, dtype=np.uint8)))
    return {"root": root, "pipe": root / "pipe2", "round": root / "round2.npz"}


def test_generate_drives_both_players_of_a_two_player_pipeline(setup, setup_2p, monkeypatch, capsys):
    """Player 2's inputs come from --actions-p2 or the round's recording and reach session.step(p1, p2) and the
    video's second input panel; a one-player pipeline refuses --actions-p2."""
    from tekken_diffusers import visualization
    from tekken_diffusers.pipelines.rollout import TekkenWorldModelSession

    steps, panels = [], []
    original_step = TekkenWorldModelSession.step

    def step(self, action, action_p2=None, noise=None):
        steps.append((action, action_p2))
        return original_step(self, action, action_p2, noise)

    compose = visualization.compose_frames

    def spy(*args, **kwargs):
        panels.append(kwargs["actions_p2"])
        return compose(*args, **kwargs)

    monkeypatch.setattr(TekkenWorldModelSession, "step", step)
    monkeypatch.setattr(visualization, "compose_frames", spy)
    out = str(setup_2p["root"] / "two.mp4")
    base = ["--pipeline", str(setup_2p["pipe"]), "--context", str(setup_2p["round"]), "--context-frames", "4",
            "--steps", "1", "--out", out]  # fmt: skip
    assert generate([*base, "--actions", "f*3", "--actions-p2", "b, 1"]) == 0
    # player 2 stands on the right: its "b" is a step to the right, and the shorter list holds its last input
    from tekken_diffusers.actions import notation_to_id

    back_p2, punch = notation_to_id("b", "right"), notation_to_id("1", "right")
    assert [p2 for _, p2 in steps] == [back_p2, punch, punch]
    assert list(panels[-1]) == [back_p2, punch, punch]
    steps.clear()
    assert generate([*base, "--frames", "3"]) == 0  # replays both players' recorded inputs after the context
    assert [p2 for _, p2 in steps] == [4, 5, 6]
    one_player = [*base, "--actions-p2", "f"]
    one_player[1] = str(setup["pipe"])
    assert "conditions on player 1 only" in error_of(one_player, capsys)
