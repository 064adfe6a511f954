"""Held-out scoring against real frames: pooled PSNR, both boxers, rollout health, and the tekken-evaluate command."""

import json

import numpy as np
import pytest
import torch

from tekken_diffusers.data.rounds import save_round
from tekken_diffusers.evaluation.heldout import (
    boxer_positions,
    load_heldout_windows,
    longest_frozen_run,
    pooled_psnr,
    rollout_health,
)

from ..conftest import make_round


def test_pooled_psnr_pools_the_error_before_the_log():
    target = torch.zeros(2, 3, 3, 4, 4)
    prediction = target.clone()
    prediction[0] += 0.1  # MSE 0.01 on the first item, 0 on the second
    assert pooled_psnr(prediction, target) == pytest.approx(10 * np.log10(1 / 0.005))  # not the mean of 20 and inf
    per_frame = pooled_psnr(prediction, target, frame_dim=1)
    np.testing.assert_allclose(per_frame, [10 * np.log10(1 / 0.005)] * 3, rtol=1e-6)
    with pytest.raises(ValueError, match="shape"):
        pooled_psnr(prediction, target[:1])


def test_boxer_positions_find_both_boxers_and_ignore_the_blanking_bar():
    frames = np.full((1, 3, 64, 64), 120, dtype=np.uint8)
    frames[..., :, :3] = 0  # the console's black bar at the left edge
    frames[..., 20:28, 30:34] = 255  # white boxer, centre (31.5, 23.5)
    frames[..., 40:48, 10:14] = 0  # black boxer, centre (11.5, 43.5)
    positions = boxer_positions(frames)
    np.testing.assert_allclose(positions[0], [[31.5, 23.5], [11.5, 43.5]])
    frames[..., 40:48, 10:14] = 120
    assert np.isnan(boxer_positions(frames)[0, 1]).all() and np.isfinite(boxer_positions(frames)[0, 0]).all()


def test_longest_frozen_run_and_rollout_health():
    frames = torch.rand(10, 3, 64, 64)
    frames[4:8] = frames[3]  # frames 4..7 repeat frame 3: a run of 4
    assert longest_frozen_run(frames) == 4
    assert longest_frozen_run(frames[:1]) == 0
    recorded = torch.full((5, 3, 64, 64), 0.5)
    recorded[:, :, 20:28, 30:34] = 1.0
    recorded[:, :, 40:48, 10:14] = 0.0
    generated = recorded.clone()
    generated[2, :, 40:48, 10:14] = 0.5  # the black boxer vanishes in one frame
    generated[4] = 1.0  # a white frame: outside the colour range
    health = rollout_health(generated, recorded)
    assert health["black_boxer_missing_frames"] == 2 and health["white_boxer_missing_frames"] == 1
    assert health["frames_outside_colour_range"] == 1
    assert health["longest_frozen_run_recorded"] == 4


def test_load_heldout_windows(tmp_path):
    for index, frames in enumerate((30, 12)):
        save_round(tmp_path / "val" / f"round_{index:04d}.npz", make_round(frames, seed=index))
    windows = load_heldout_windows(tmp_path, length=10, count=3)
    assert windows.frames.shape == (3, 10, 3, 16, 16) and windows.frames.dtype == torch.uint8
    assert windows.action_bits.shape == (3, 10, 8)
    assert windows.sources[0] == "round_0000.npz@0"
    with pytest.raises(ValueError, match="no round has 40 valid frames"):
        load_heldout_windows(tmp_path, length=40, count=3)
    with pytest.raises(FileNotFoundError, match="no round .npz files"):
        load_heldout_windows(tmp_path / "missing", length=10, count=3)


def test_evaluate_command_scores_a_copying_model_as_the_vae_reconstruction_of_the_last_frame(tmp_path):
    """A fresh `prev_frame_residual` model predicts the previous frame from pure noise; with no context noise, its
    one-step teacher-forced frame is the VAE's reconstruction of the previous frame, exactly."""
    from tekken_diffusers.cli.evaluate_world_model import main
    from tekken_diffusers.pipelines.random_pipeline import build_random_pipeline

    pipe = build_random_pipeline(
        perturb_zero_init=False, prev_frame_conditioning=True, prediction_type="prev_frame_residual"
    )
    pipe.save_pretrained(tmp_path / "pipe")
    for index in range(2):
        save_round(tmp_path / "rounds" / f"round_{index:04d}.npz", make_round(20, size=(8, 8), seed=index))
    argv = ["--pipeline", str(tmp_path / "pipe"), "--rounds", str(tmp_path / "rounds"), "--windows", "2",
            "--context-frames", "3", "--frames", "4", "--teacher-forced-steps", "1", "--steps", "1",
            "--health-frames", "6", "--context-noise", "0", "--out", str(tmp_path / "eval.json"),
            "--docs", str(tmp_path / "evaluation.md")]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    windows = load_heldout_windows(tmp_path / "rounds", length=7, count=2)
    real = windows.unit()
    latents = pipe.encode_frames(real * 2 - 1)
    previous = (pipe.decode_latents(latents[:, 2:6]).permute(0, 2, 1, 3, 4) + 1) / 2
    expected = pooled_psnr(previous, real[:, 3:])
    assert results["teacher_forced"]["steps_1"]["pooled_psnr"] == pytest.approx(expected, abs=1e-3)
    assert results["teacher_forced"]["copy_last"]["pooled_psnr"] == pytest.approx(
        pooled_psnr(real[:, 2:6], real[:, 3:])
    )
    assert len(results["open_loop"]["recorded_inputs"]["pooled_psnr_at_k"]) == 4
    # open loop, --context-noise 0: the first generated frame is the same copy of the last context frame
    first = results["open_loop"]["recorded_inputs"]["pooled_psnr_at_k"][0]
    assert first == pytest.approx(pooled_psnr(previous[:, :1], real[:, 3:4]), abs=1e-3)
    assert [item["frames"] for item in results["long_rollouts"]] == [6] * 8  # eight by default
    assert "## pipe" in (tmp_path / "evaluation.md").read_text()


def test_evaluate_command_errors(tmp_path, capsys):
    from tekken_diffusers.cli.evaluate_world_model import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--pipeline", str(tmp_path), "--rounds", str(tmp_path)])
    assert exit_info.value.code == 2 and "not a pipeline folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["--pipeline", str(tmp_path), "--rounds", str(tmp_path), "--frames", "0"])
    assert exit_info.value.code == 2 and "--frames must be >= 1" in capsys.readouterr().err


def test_evaluate_command_two_player_action_binding(tmp_path, capsys):
    """A two-player pipeline is scored per boxer under the recorded inputs, each player's shuffled, and swapped."""
    from tekken_diffusers.cli.evaluate_world_model import main
    from tekken_diffusers.pipelines.random_pipeline import build_random_pipeline

    build_random_pipeline(num_players=2).save_pretrained(tmp_path / "pipe2p")
    rng = np.random.default_rng(0)
    for index in range(2):
        actions_p2 = rng.integers(0, 256, 20, dtype=np.uint8)
        save_round(
            tmp_path / "rounds" / f"round_{index:04d}.npz", make_round(20, (8, 8), index, actions_p2=actions_p2)
        )
    windows = load_heldout_windows(tmp_path / "rounds", length=7, count=2)
    assert windows.action_bits_p2.shape == windows.action_bits.shape == (2, 7, 8)
    argv = ["--pipeline", str(tmp_path / "pipe2p"), "--rounds", str(tmp_path / "rounds"), "--windows", "2",
            "--context-frames", "3", "--frames", "4", "--teacher-forced-steps", "1", "--steps", "1",
            "--health-frames", "5", "--health-rollouts", "3", "--out", str(tmp_path / "eval.json"),
            "--docs", str(tmp_path / "eval.md")]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["players"] == 2 and [item["frames"] for item in results["long_rollouts"]] == [5, 5, 5]
    assert list(results["open_loop"]) == [
        "recorded_inputs", "p1_shuffled_inputs", "p2_shuffled_inputs", "swapped_players", "hold_last_frame"
    ]  # fmt: skip
    assert list(results["action_binding_at_last_k"]["black"]) == [
        "recorded_inputs", "p1_shuffled_inputs", "p2_shuffled_inputs", "swapped_players"
    ]  # fmt: skip
    assert "**Action binding** (two players)" in (tmp_path / "eval.md").read_text()

    # one-player rounds cannot drive a two-player model
    save_round(tmp_path / "p1" / "round_0000.npz", make_round(20, size=(8, 8)))
    with pytest.raises(SystemExit) as exit_info:
        main([*argv[:2], "--rounds", str(tmp_path / "p1"), *argv[4:]])
    assert exit_info.value.code == 2 and "carry no player 2 inputs (actions_p2)" in capsys.readouterr().err


def test_evaluate_command_guidance_scale(tmp_path, capsys):
    """`--guidance-scale` reaches every sampled frame (it is recorded and changes the scores of a model whose inputs
    matter); one value >= 1 for a one-player model, two for a two-player one."""
    from tekken_diffusers.cli.evaluate_world_model import main
    from tekken_diffusers.pipelines.random_pipeline import build_random_pipeline

    build_random_pipeline().save_pretrained(tmp_path / "pipe")
    for index in range(2):
        save_round(tmp_path / "rounds" / f"round_{index:04d}.npz", make_round(20, size=(8, 8), seed=index))
    argv = ["--pipeline", str(tmp_path / "pipe"), "--rounds", str(tmp_path / "rounds"), "--windows", "2",
            "--context-frames", "3", "--frames", "3", "--teacher-forced-steps", "1", "--steps", "1",
            "--health-frames", "0", "--no-docs"]  # fmt: skip
    scores = {}
    for scale in ("1", "3"):
        out = tmp_path / f"eval-{scale}.json"
        assert main([*argv, "--guidance-scale", scale, "--out", str(out)]) == 0
        scores[scale] = json.loads(out.read_text())
    assert scores["1"]["guidance_scale"] == 1.0 and scores["3"]["guidance_scale"] == 3.0
    for key in ("teacher_forced", "open_loop"):
        assert scores["1"][key] != scores["3"][key]
    for bad, message in ((["0.5"], "values >= 1"), (["2", "2"], "two values need a two-player model")):
        with pytest.raises(SystemExit) as exit_info:
            main([*argv, "--guidance-scale", *bad, "--out", str(tmp_path / "bad.json")])
        assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_evaluate_command_samples_each_window_several_times(tmp_path, monkeypatch):
    """`--samples N` rolls every window out N times (tiled along the batch, so each row draws its own noise), keeps
    shuffled inputs from another window, and leaves the long rollouts' input stream as it was."""
    import tekken_diffusers.cli.evaluate_world_model as evaluate
    from tekken_diffusers.pipelines.random_pipeline import build_random_pipeline

    build_random_pipeline().save_pretrained(tmp_path / "pipe")
    for index in range(3):
        save_round(tmp_path / "rounds" / f"round_{index:04d}.npz", make_round(20, size=(8, 8), seed=index))
    calls = []
    rollout_latents = evaluate.rollout_latents

    def recording_rollout(pipe, latents, inputs, *args, **kwargs):
        calls.append((latents.clone(), inputs.clone()))
        return rollout_latents(pipe, latents, inputs, *args, **kwargs)

    monkeypatch.setattr(evaluate, "rollout_latents", recording_rollout)
    argv = ["--pipeline", str(tmp_path / "pipe"), "--rounds", str(tmp_path / "rounds"), "--windows", "3",
            "--context-frames", "3", "--frames", "3", "--teacher-forced-steps", "1", "--steps", "1",
            "--health-frames", "5", "--health-rollouts", "2", "--no-docs"]  # fmt: skip
    results = {}
    for samples in (1, 2):
        calls.clear()
        out = tmp_path / f"eval-{samples}.json"
        assert evaluate.main([*argv, "--samples", str(samples), "--out", str(out)]) == 0
        results[samples] = json.loads(out.read_text())
        (latents, recorded), (_, shuffled) = calls  # recorded inputs, then shuffled
        assert len(latents) == 3 * samples
        assert torch.equal(latents[:3], latents[-3:])  # the same windows again
        for row in range(len(latents)):
            future = shuffled[row, 3:]
            same_window = [other for other in range(len(latents)) if torch.equal(latents[other], latents[row])]
            assert not any(torch.equal(future, recorded[other, 3:]) for other in same_window)
    assert results[2]["samples_per_window"] == 2 and results[2]["windows"] == 3
    assert results[1]["long_rollouts"] == results[2]["long_rollouts"]
    assert results[1]["open_loop"] != results[2]["open_loop"]
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main([*argv, "--samples", "0", "--out", str(tmp_path / "bad.json")])
    assert exit_info.value.code == 2


def test_evaluate_command_computes_in_the_dtype_asked(tmp_path, monkeypatch):
    """`--dtype bfloat16` evaluates the transformer in bf16 (the VAE stays fp32); float32 is the default."""
    import tekken_diffusers.cli.evaluate_world_model as evaluate
    from tekken_diffusers.pipelines.random_pipeline import build_random_pipeline

    build_random_pipeline().save_pretrained(tmp_path / "pipe")
    for index in range(2):
        save_round(tmp_path / "rounds" / f"round_{index:04d}.npz", make_round(20, size=(8, 8), seed=index))
    seen = []
    rollout_latents = evaluate.rollout_latents

    def recording_rollout(pipe, *args, **kwargs):
        seen.append((pipe.transformer.dtype, pipe.vae.dtype))
        return rollout_latents(pipe, *args, **kwargs)

    monkeypatch.setattr(evaluate, "rollout_latents", recording_rollout)
    argv = ["--pipeline", str(tmp_path / "pipe"), "--rounds", str(tmp_path / "rounds"), "--windows", "2",
            "--context-frames", "3", "--frames", "3", "--teacher-forced-steps", "1", "--steps", "1",
            "--health-frames", "0", "--no-docs"]  # fmt: skip
    for dtype, expected in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        seen.clear()
        out = tmp_path / f"eval-{dtype}.json"
        assert evaluate.main([*argv, "--dtype", dtype, "--out", str(out)]) == 0
        assert seen and all(found == (expected, torch.float32) for found in seen)
        assert json.loads(out.read_text())["dtype"] == dtype
