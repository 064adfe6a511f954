"""Training the opponent policy (`train_opponent_policy`) on a latent dataset where player 2's input can be read from
the frames: it must learn it, and beat the baselines."""

from __future__ import annotations

import json

import datasets
import numpy as np
import pytest
import torch

from tekken_diffusers import TekkenOpponentPolicy
from tekken_diffusers.actions import LEFT, RIGHT
from tekken_diffusers.data.latents import LATENT_FEATURES, LatentDatasetInfo, latent_row, save_latent_dataset
from tekken_diffusers.opponent_training import (
    METRICS_FILE,
    OpponentTrainingConfig,
    evaluate_opponent_policy,
    load_opponent_data,
    load_opponent_datasets,
    train_opponent_policy,
)

pytestmark = pytest.mark.usefixtures("single_thread")


def synthetic_opponent_dataset(path, rounds=None, frames: int = 40, with_p2: bool = True, seed: int = 0):
    """A latent dataset of 4×4×4 latents (the tiny pipeline's) where player 2 presses RIGHT at frame t when channel 0
    of frame t−1 is bright (mean +2) and LEFT when it is dark (mean −2); player 1 presses at random."""
    rng = np.random.default_rng(seed)
    rounds = rounds or {"train": 6, "val": 2}
    splits = {}
    for split, count in rounds.items():
        rows = []
        for index in range(count):
            latents = rng.normal(size=(frames, 4, 4, 4)).astype(np.float32) * 0.5
            sign = rng.choice([-1.0, 1.0], size=frames)
            latents[:, 0] += 2.0 * sign[:, None, None]
            actions_p2 = np.zeros(frames, dtype=np.uint8)
            actions_p2[1:] = np.where(sign[:-1] > 0, RIGHT, LEFT)
            actions = rng.integers(0, 256, frames, dtype=np.uint8)
            rows.append(
                latent_row(f"round_{index:04d}", split, latents, actions, actions_p2=actions_p2 if with_p2 else None)
            )
        splits[split] = datasets.Dataset.from_list(rows, features=LATENT_FEATURES)
    save_latent_dataset(splits, path, LatentDatasetInfo(latent_channels=4, latent_height=4, latent_width=4))
    return path


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return synthetic_opponent_dataset(tmp_path_factory.mktemp("opponent") / "latents")


def test_load_opponent_data_keeps_rounds_apart(dataset):
    data = load_opponent_data(dataset, "train")
    assert len(data) == 6 * 40 and data.latents.shape == (240, 4, 4, 4) and data.latents.dtype == torch.float16
    assert data.actions.shape == (240, 2)
    np.testing.assert_array_equal(data.starts, np.arange(0, 240, 40))
    positions = data.positions()
    assert len(positions) == 240 - 6 and not np.isin(data.starts, positions).any()
    # the dataset's rule holds in what was loaded: player 2's input follows the previous frame's channel 0
    bright = data.latents[positions - 1, 0].float().mean(dim=(-1, -2)) > 0
    expected = torch.where(bright, RIGHT, LEFT)
    assert torch.equal(data.actions[positions, 1], expected)
    with pytest.raises(ValueError, match="no split 'test'; it has train, val"):
        load_opponent_data(dataset, "test")


def test_several_datasets_are_pooled_with_their_rounds_kept_apart(dataset, tmp_path):
    other = synthetic_opponent_dataset(tmp_path / "other", rounds={"train": 2}, frames=30, seed=1)
    one, two = load_opponent_data(dataset, "train"), load_opponent_data(other, "train")
    both = load_opponent_datasets([dataset, other], "train")
    assert len(both) == 240 + 60
    assert torch.equal(both.latents, torch.cat([one.latents, two.latents]))
    assert torch.equal(both.actions, torch.cat([one.actions, two.actions]))
    np.testing.assert_array_equal(both.starts, [0, 40, 80, 120, 160, 200, 240, 270])
    assert len(both.positions()) == 300 - 8  # no frame is taken as following another dataset's last frame
    # the val split of the datasets that have one; None where none has it
    assert len(load_opponent_datasets([other, dataset], "val")) == 2 * 40
    assert load_opponent_datasets([other], "val") is None
    wide = synthetic_opponent_dataset(tmp_path / "wide", rounds={"train": 1})
    info = json.loads((wide / "tekken_latents.json").read_text())
    info["latent_channels"] = 8
    (wide / "tekken_latents.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"must have one shape \(C, h, w\).*wide: \(8, 4, 4\)"):
        load_opponent_datasets([dataset, wide], "train")


def test_training_on_two_datasets_reports_both(dataset, tmp_path):
    other = synthetic_opponent_dataset(tmp_path / "other", rounds={"train": 2}, seed=1)
    config = OpponentTrainingConfig(steps=2, batch_size=8, hidden_dim=8, context_frames=2)
    _, metrics = train_opponent_policy([dataset, other], tmp_path / "out", config, progress=False)
    assert metrics["dataset"] == [str(dataset), str(other)]
    assert metrics["val"]["frames"] == 2 * 40 - 2  # the first dataset's val rounds (the other has none)


def test_a_dataset_without_player_2_inputs_says_how_to_infer_them(tmp_path):
    path = synthetic_opponent_dataset(tmp_path / "one-player", rounds={"train": 1}, with_p2=False)
    with pytest.raises(ValueError, match=r"no player-2 inputs \(actions_p2\).*tekken-infer-opponent"):
        load_opponent_data(path, "train")
    with pytest.raises(ValueError, match="tekken-infer-opponent"):
        train_opponent_policy(path, tmp_path / "out", OpponentTrainingConfig(steps=1), progress=False)
    assert not (tmp_path / "out").exists()


def test_training_learns_an_opponent_that_can_be_read_from_the_frames(dataset, tmp_path):
    config = OpponentTrainingConfig(
        steps=150, batch_size=64, hidden_dim=32, conv_channels=8, learning_rate=3e-3, temperature=0.7, val_samples=512
    )
    model, metrics = train_opponent_policy(dataset, tmp_path / "opponent", config, progress=False)
    val = metrics["val"]
    assert val["frames"] == 2 * 39  # every val frame with one before it
    assert 0.4 <= val["baseline_most_common_accuracy"] <= 0.7  # RIGHT and LEFT about equally often
    assert val["policy_accuracy"] >= 0.95 > val["baseline_most_common_accuracy"] + 0.2
    assert val["inverse_accuracy"] >= 0.95
    assert val["policy_nll"] < 0.5 * np.log(2)  # far below a coin flip between the two inputs
    assert metrics["train"]["policy_accuracy"] >= 0.95

    out = tmp_path / "opponent"
    assert (out / "config.json").is_file() and (out / "diffusion_pytorch_model.safetensors").is_file()
    saved = json.loads((out / METRICS_FILE).read_text())
    assert saved["val"] == pytest.approx(val) and saved["config"]["steps"] == 150
    loaded = TekkenOpponentPolicy.from_pretrained(out)
    assert loaded.config.temperature == 0.7 and loaded.config.hidden_dim == 32
    assert loaded.config.in_channels == 4 and tuple(loaded.config.sample_size) == (4, 4)
    # the saved model is the trained one: it scores the same
    again = evaluate_opponent_policy(loaded, load_opponent_data(dataset, "val"), samples=512)
    assert again["policy_accuracy"] == pytest.approx(val["policy_accuracy"])


def test_an_untrained_policy_scores_near_chance(dataset):
    torch.manual_seed(0)
    model = TekkenOpponentPolicy(in_channels=4, sample_size=(4, 4), hidden_dim=32, conv_channels=8)
    metrics = evaluate_opponent_policy(model, load_opponent_data(dataset, "val"), samples=512)
    assert metrics["policy_accuracy"] < 0.7 and metrics["policy_nll"] > np.log(256) - 1.0
    # the baselines are computed from the data, not the model: repeating player 2's previous input is right about
    # half the time here (the brightness flips at random)
    assert 0.25 <= metrics["baseline_repeat_previous_accuracy"] <= 0.75


def test_twenty_steps_train(dataset, tmp_path):
    config = OpponentTrainingConfig(steps=20, batch_size=8, hidden_dim=8, conv_channels=4, val_samples=16)
    _, metrics = train_opponent_policy(dataset, tmp_path / "opponent", config, progress=False)
    assert metrics["config"]["steps"] == 20 and (tmp_path / "opponent" / METRICS_FILE).is_file()


def test_a_longer_input_history_learns_what_only_older_inputs_tell(tmp_path):
    """Player 2 echoes player 1's input of 5 frames before (the latents are noise): a policy that reads 6 frames of
    inputs learns it, one that reads 2 cannot, and the saved policy keeps its `input_frames`."""
    rng = np.random.default_rng(0)
    splits = {}
    for split, count in {"train": 6, "val": 2}.items():
        rows = []
        for index in range(count):
            actions = rng.choice(np.array([LEFT, RIGHT], dtype=np.uint8), size=40)
            actions_p2 = np.zeros(40, dtype=np.uint8)
            actions_p2[5:] = actions[:-5]
            latents = rng.normal(size=(40, 4, 4, 4)).astype(np.float32)
            rows.append(latent_row(f"round_{index:04d}", split, latents, actions, actions_p2=actions_p2))
        splits[split] = datasets.Dataset.from_list(rows, features=LATENT_FEATURES)
    dataset = tmp_path / "echo"
    save_latent_dataset(splits, dataset, LatentDatasetInfo(latent_channels=4, latent_height=4, latent_width=4))
    common = dict(
        steps=300, batch_size=64, hidden_dim=32, conv_channels=8, learning_rate=3e-3, context_frames=2, val_samples=512
    )
    _, short = train_opponent_policy(dataset, tmp_path / "short", OpponentTrainingConfig(**common), progress=False)
    config = OpponentTrainingConfig(**common, input_frames=6)
    _, long = train_opponent_policy(dataset, tmp_path / "long", config, progress=False)
    assert long["val"]["policy_accuracy"] >= 0.9 > short["val"]["policy_accuracy"] + 0.2
    assert TekkenOpponentPolicy.from_pretrained(tmp_path / "long").num_input_frames == 6
