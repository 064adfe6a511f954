"""The opponent-policy commands (`tekken-infer-opponent`, `tekken-train-opponent`) and `tekken-evaluate` with a
two-player pipeline whose opponent policy plays player 2 on one-player rounds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tekken_diffusers import TekkenOpponentPolicy, TekkenWorldModelPipeline
from tekken_diffusers.cli import encode_latents
from tekken_diffusers.cli.infer_opponent import main as infer_opponent
from tekken_diffusers.cli.train_opponent import main as train_opponent
from tekken_diffusers.data.latents import load_latent_info
from tekken_diffusers.data.rounds import save_round
from tekken_diffusers.opponent_training import METRICS_FILE
from tekken_diffusers.pipelines import TekkenRollout, build_random_pipeline
from tests.conftest import make_round, tiny_dcae
from tests.data.test_opponent import boxing_round
from tests.training.test_train_opponent import synthetic_opponent_dataset

pytestmark = pytest.mark.usefixtures("single_thread")


def error_of(main, argv, capsys) -> str:
    """The one `error:` line of a command that exits with code 2."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(arg) for arg in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "error:" in line]
    assert "Traceback" not in err and len(lines) == 1, err
    return lines[0]


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """One-player Boxing-like rounds and their latent dataset, a two-player latent dataset (4×4×4 latents, as the
    tiny pipeline's), a one-player and a two-player tiny pipeline."""
    root = tmp_path_factory.mktemp("opponent-cli")
    save_round(root / "rounds" / "train" / "round_0000.npz", boxing_round(12, seed=1))
    save_round(root / "rounds" / "train" / "round_0001.npz", boxing_round(10, seed=2))
    tiny_dcae().save_pretrained(root / "vae")
    argv = ["--no-progress", "--rounds", root / "rounds", "--vae", root / "vae", "--out", root / "one-player"]
    assert encode_latents.main([str(arg) for arg in argv]) == 0
    synthetic_opponent_dataset(root / "two-player", rounds={"train": 2, "val": 1}, frames=20)
    synthetic_opponent_dataset(root / "no-p2", rounds={"train": 1}, frames=10, with_p2=False)
    build_random_pipeline("tiny", seed=0).save_pretrained(root / "pipe1p")
    pipe = build_random_pipeline("tiny", seed=0, num_players=2)
    pipe.save_pretrained(root / "pipe2p")
    (root / "pipe2p" / "train_config.json").write_text('{"steps": 1}\n')
    return root


# ---------------------------------------------------------------------------------------------------------------------
# tekken-infer-opponent
# ---------------------------------------------------------------------------------------------------------------------
def infer_argv(root, out, latents=None, rounds=None):
    return ["--latents", latents or root / "one-player", "--rounds", rounds or root / "rounds", "--out", out]


def test_infer_opponent_writes_a_dataset_with_player_2_inputs(root, tmp_path):
    out = tmp_path / "vs-console"
    assert infer_opponent([str(arg) for arg in infer_argv(root, out)]) == 0
    assert load_latent_info(out).has_actions_p2
    # --punch-width reaches the inference: 1 pixel counts every visible boxer as punching
    wide = tmp_path / "wide"
    assert infer_opponent([str(arg) for arg in [*infer_argv(root, wide), "--punch-width", "1"]]) == 0
    import datasets

    default = np.concatenate(datasets.load_from_disk(str(out))["train"]["actions_p2"])
    every = np.concatenate(datasets.load_from_disk(str(wide))["train"]["actions_p2"])
    assert (every & 8).all() and not (default & 8).all()
    np.testing.assert_array_equal(every & ~np.uint8(8), default & ~np.uint8(8))  # the moves are the same


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda root, tmp: ["--punch-width", "0"], "--punch-width must be >= 1, got 0"),
        (lambda root, tmp: ["--latents", tmp / "missing"], "missing: not a folder"),
        (lambda root, tmp: ["--latents", root / "two-player"], "two-player: its rows already carry player 2's inputs"),
        (lambda root, tmp: ["--rounds", tmp], r"train/round_0000.npz not found"),
        (lambda root, tmp: ["--out", root / "one-player"], "already exists"),
    ],
    ids=["punch-width", "latents-missing", "latents-with-p2", "rounds-missing", "out-exists"],
)
def test_infer_opponent_errors_name_the_argument(root, tmp_path, capsys, change, message):
    argv = [*infer_argv(root, tmp_path / "out"), *change(root, tmp_path)]
    line = error_of(infer_opponent, argv, capsys)
    assert message in line
    assert argv[-2] in line  # the option the error is about
    assert not (tmp_path / "out").exists()
    assert not load_latent_info(root / "one-player").has_actions_p2  # the source is untouched


# ---------------------------------------------------------------------------------------------------------------------
# tekken-train-opponent
# ---------------------------------------------------------------------------------------------------------------------
FAST = ["--steps", "5", "--batch-size", "8", "--hidden-dim", "8", "--context-frames", "2"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--steps", "0"], "--steps must be >= 1, got 0"),
        (["--batch-size", "0"], "--batch-size must be >= 1, got 0"),
        (["--context-frames", "0"], "--context-frames must be >= 1, got 0"),
        (["--hidden-dim", "-1"], "--hidden-dim must be >= 1, got -1"),
        (["--context-frames", "8", "--input-frames", "4"], "--input-frames must be >= --context-frames (8), got 4"),
        (["--learning-rate", "0"], "--learning-rate must be > 0, got 0.0"),
        (["--noise-max", "1"], "--noise-max must lie in [0, 1), got 1.0"),
        (["--temperature", "-0.5"], "--temperature must be >= 0"),
    ],
)
def test_train_opponent_option_errors(root, tmp_path, capsys, extra, message):
    argv = ["--dataset", root / "two-player", "--out", tmp_path / "out", *extra]
    assert message in error_of(train_opponent, argv, capsys)
    assert not (tmp_path / "out").exists()


def test_train_opponent_input_errors(root, tmp_path, capsys):
    out = tmp_path / "out"
    line = error_of(train_opponent, ["--dataset", tmp_path / "missing", "--out", out], capsys)
    assert "--dataset" in line and "missing: not a folder" in line
    line = error_of(train_opponent, ["--dataset", root / "no-p2", "--out", out, *FAST], capsys)
    assert "--dataset" in line and "no player-2 inputs (actions_p2)" in line and "tekken-infer-opponent" in line
    line = error_of(train_opponent, ["--dataset", root / "two-player", "--out", out, "--pipeline", tmp_path], capsys)
    assert "--pipeline" in line and "not a pipeline folder (no model_index.json)" in line
    argv = ["--dataset", root / "two-player", "--out", out, "--pipeline", root / "pipe1p", *FAST]
    line = error_of(train_opponent, argv, capsys)
    assert "--pipeline" in line and "a one-player model (num_players=1)" in line
    assert not out.exists()


def test_train_opponent_alone_writes_the_policy(root, tmp_path):
    out = tmp_path / "opponent"
    assert train_opponent([str(a) for a in ["--dataset", root / "two-player", "--out", out, *FAST]]) == 0
    policy = TekkenOpponentPolicy.from_pretrained(out)
    assert policy.config.context_frames == 2 and policy.config.hidden_dim == 8
    metrics = json.loads((out / METRICS_FILE).read_text())
    assert metrics["config"]["steps"] == 5 and {"train", "val"} <= set(metrics)


def test_train_opponent_pools_several_datasets(root, tmp_path, capsys):
    out = tmp_path / "opponent"
    argv = ["--dataset", root / "two-player", root / "two-player", "--out", out, *FAST]
    assert train_opponent([str(a) for a in argv]) == 0
    assert json.loads((out / METRICS_FILE).read_text())["dataset"] == [str(root / "two-player")] * 2
    argv = ["--dataset", root / "two-player", tmp_path / "missing", "--out", tmp_path / "other", *FAST]
    line = error_of(train_opponent, argv, capsys)
    assert "--dataset" in line and "missing: not a folder" in line


def test_train_opponent_attaches_the_policy_to_a_pipeline(root, tmp_path):
    out = tmp_path / "with-opponent"
    argv = ["--dataset", root / "two-player", "--out", out, "--pipeline", root / "pipe2p", "--temperature", "0.3"]
    assert train_opponent([str(a) for a in [*argv, *FAST]]) == 0
    pipe = TekkenWorldModelPipeline.from_pretrained(out)
    assert isinstance(pipe.opponent, TekkenOpponentPolicy)
    assert pipe.opponent.config.temperature == 0.3 and pipe.opponent.config.context_frames == 2
    assert json.loads((out / METRICS_FILE).read_text())["config"]["steps"] == 5
    assert (out / "train_config.json").read_text() == '{"steps": 1}\n'  # the source's training files come along
    assert (out / "README.md").read_text() == (root / "pipe2p" / "README.md").read_text()
    # the world model is the source's, unchanged, and now plays without player 2's inputs
    source = TekkenWorldModelPipeline.from_pretrained(root / "pipe2p")
    for (name, a), (_, b) in zip(pipe.transformer.state_dict().items(), source.transformer.state_dict().items()):
        assert torch.equal(a, b), name
    pipe.set_progress_bar_config(disable=True)
    frames = pipe(
        context_latents=torch.randn(1, 3, 4, 4, 4), actions="f,n", num_inference_steps=1, output_type="latent"
    ).frames
    assert frames.shape == (1, 2, 4, 4, 4) and torch.isfinite(frames).all()


# ---------------------------------------------------------------------------------------------------------------------
# tekken-evaluate: the opponent plays player 2 of one-player rounds
# ---------------------------------------------------------------------------------------------------------------------
def test_evaluate_with_an_opponent_on_one_player_rounds(tmp_path, monkeypatch, capsys):
    from tekken_diffusers.cli.evaluate_world_model import main as evaluate

    pipe = build_random_pipeline("tiny", seed=0, num_players=2)
    torch.manual_seed(0)
    opponent = TekkenOpponentPolicy(in_channels=4, sample_size=(4, 4), context_frames=2, hidden_dim=8, conv_channels=4)
    TekkenWorldModelPipeline(pipe.transformer, pipe.scheduler, pipe.vae, opponent=opponent).save_pretrained(
        tmp_path / "pipe"
    )
    for index in range(2):
        save_round(tmp_path / "rounds" / f"round_{index:04d}.npz", make_round(20, size=(8, 8), seed=index))
    drawn = []
    original = TekkenRollout.choose_opponent_inputs

    def counting(self, bits, generator):
        if torch.isnan(bits).any():
            drawn.append(bits.shape[0])
        return original(self, bits, generator)

    monkeypatch.setattr(TekkenRollout, "choose_opponent_inputs", counting)
    argv = ["--pipeline", tmp_path / "pipe", "--rounds", tmp_path / "rounds", "--windows", "2",
            "--context-frames", "3", "--frames", "3", "--teacher-forced-steps", "1", "--steps", "1",
            "--health-frames", "4", "--health-rollouts", "2", "--no-docs",
            "--out", tmp_path / "eval.json"]  # fmt: skip
    assert evaluate([str(arg) for arg in argv]) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    assert results["opponent"] == "policy"
    from tekken_diffusers.cli.evaluate_world_model import format_section

    assert "Player 2 is played by the pipeline's opponent policy" in format_section(results)
    assert np.isfinite(results["delta_pooled_psnr_at_last_k"]) and "delta_white_error_at_last_k" in results
    assert "players" not in results and "action_binding_at_last_k" not in results
    assert list(results["open_loop"]) == ["recorded_inputs", "shuffled_inputs", "hold_last_frame"]
    assert [item["frames"] for item in results["long_rollouts"]] == [4, 4]
    # the policy drew player 2's input of every generated frame: teacher-forced (3), the two open-loop rollouts
    # (3 each) and the long rollouts (4), each over its whole batch
    assert len(drawn) >= 3 + 2 * 3 + 4 and set(drawn) == {2}
    for name in ("recorded_inputs", "shuffled_inputs"):
        assert all(np.isfinite(results["open_loop"][name]["pooled_psnr_at_k"]))

    # the same pipeline without its opponent cannot play these rounds
    plain = tmp_path / "plain"
    pipe.save_pretrained(plain)
    line = error_of(evaluate, [*argv[:1], plain, *argv[2:]], capsys)
    assert "carry no player 2 inputs (actions_p2)" in line


def test_evaluate_opponent_oracle_reads_player_2_from_the_recorded_frames(tmp_path, monkeypatch, capsys):
    import tekken_diffusers.cli.evaluate_world_model as evaluate_module

    pipe = build_random_pipeline("tiny", seed=0, num_players=2)
    torch.manual_seed(0)
    opponent = TekkenOpponentPolicy(in_channels=4, sample_size=(4, 4), context_frames=2, hidden_dim=8, conv_channels=4)
    with_opponent = TekkenWorldModelPipeline(pipe.transformer, pipe.scheduler, pipe.vae, opponent=opponent)
    with_opponent.save_pretrained(tmp_path / "pipe")
    for index in range(3):
        save_round(tmp_path / "rounds" / f"round_{index:04d}.npz", make_round(20, size=(8, 8), seed=index))
    calls = []
    original = evaluate_module.rollout_latents

    def recording(pipe, latents, inputs, *args, **kwargs):
        calls.append((latents.clone(), inputs.clone()))
        return original(pipe, latents, inputs, *args, **kwargs)

    monkeypatch.setattr(evaluate_module, "rollout_latents", recording)
    argv = ["--pipeline", tmp_path / "pipe", "--rounds", tmp_path / "rounds", "--windows", "3",
            "--context-frames", "3", "--frames", "3", "--teacher-forced-steps", "1", "--steps", "1",
            "--health-frames", "0", "--no-docs", "--opponent-oracle", "--out", tmp_path / "eval.json"]  # fmt: skip
    assert evaluate_module.main([str(arg) for arg in argv]) == 0
    results = json.loads((tmp_path / "eval.json").read_text())
    assert list(results["open_loop"]) == [
        "recorded_inputs", "shuffled_inputs", "hold_last_frame",
        "recorded_inputs_read_opponent", "shuffled_inputs_read_opponent",
    ]  # fmt: skip
    oracle = results["open_loop"]["recorded_inputs_read_opponent"]
    shuffled = results["open_loop"]["shuffled_inputs_read_opponent"]
    assert results["delta_pooled_psnr_at_last_k_read_opponent"] == pytest.approx(
        oracle["pooled_psnr_at_k"][-1] - shuffled["pooled_psnr_at_k"][-1]
    )
    assert "player 2's read from the frames (oracle)" in evaluate_module.format_section(results)
    # rollouts: recorded, shuffled (player 2 drawn: NaN), then the two oracle ones with player 2 read by the
    # policy's inverse model from the recorded frames, player 1's inputs recorded / shuffled between windows
    assert len(calls) == 4
    (latents, drawn), (_, drawn_shuffled), (_, read), (_, read_shuffled) = calls
    assert torch.isnan(drawn[:, 3:, 1]).all() and torch.isnan(drawn_shuffled[:, 3:, 1]).all()
    expected = with_opponent.opponent.infer_inputs(latents.to(torch.float32))
    assert not torch.isnan(read).any() and torch.equal(read[:, :, 1], expected)
    assert torch.equal(read[:, :, 0], drawn[:, :, 0])
    assert torch.equal(read_shuffled[:, 3:, 0], read[:, 3:, 0].roll(1, dims=0))
    assert torch.equal(read_shuffled[:, :3], read[:, :3]) and torch.equal(read_shuffled[:, :, 1], read[:, :, 1])

    # a pipeline without an opponent policy has nothing to compare against
    plain = tmp_path / "plain"
    pipe.save_pretrained(plain)
    line = error_of(evaluate_module.main, [*argv[:1], plain, *argv[2:]], capsys)
    assert "--opponent-oracle: needs a two-player pipeline with an opponent policy" in line


def test_train_opponent_in_place_keeps_the_training_files(root, tmp_path):
    import shutil

    folder = tmp_path / "pipe"
    shutil.copytree(root / "pipe2p", folder)
    argv = ["--dataset", root / "two-player", "--out", folder, "--pipeline", folder, "--overwrite", *FAST]
    assert train_opponent([str(a) for a in argv]) == 0
    assert TekkenWorldModelPipeline.from_pretrained(folder).opponent is not None
    assert (folder / "train_config.json").read_text() == '{"steps": 1}\n'
