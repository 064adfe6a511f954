"""scripts/encode_latents.py: rounds → latent dataset, resuming, the original cache, errors, several processes, Hub."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch

from tekken_diffusers.cli import encode_latents
from tekken_diffusers.data import latents as latent_dataset
from tekken_diffusers.data.frames import frames_to_pixels
from tekken_diffusers.data.latents import (
    LATENT_FEATURES,
    LATENT_INFO_FILE,
    encode_round,
    latents_from_row,
    load_latent_dataset,
    load_latent_info,
)
from tekken_diffusers.data.rounds import list_rounds, load_round
from tekken_diffusers.models.autoencoders import TekkenAutoencoderDC, normalize_latents
from tests.conftest import make_round
from tests.data.test_latent_dataset import tiny_vae
from tests.fake_hub import FakeHub

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def vae_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("vae")
    tiny_vae().save_pretrained(folder)
    return folder


def encode(*argv: str) -> int:
    return encode_latents.main(["--no-progress", *map(str, argv)])


def tables(path: Path) -> dict:
    loaded = datasets.load_from_disk(str(path))
    return {split: loaded[split].data.table for split in loaded}


def info_without_time(path: Path) -> dict:
    data = json.loads((path / LATENT_INFO_FILE).read_text())
    data.pop("created")
    return data


def test_encoded_rounds_match_the_library(synthetic_rounds, vae_dir, tmp_path):
    out = tmp_path / "latents"
    assert encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out, "--batch-size", "5") == 0
    assert not (tmp_path / "latents.partial").exists()
    loaded = datasets.load_from_disk(str(out))
    vae = TekkenAutoencoderDC.from_pretrained(vae_dir).eval()
    for split in ("train", "val"):
        paths = list_rounds(synthetic_rounds / split)
        assert loaded[split].features == LATENT_FEATURES and loaded[split]["round_id"] == [p.stem for p in paths]
        for path, row in zip(paths, loaded[split]):
            expected = encode_round(load_round(path), vae, path.stem, split, batch_size=5)
            for column, value in expected.items():
                stored = row[column]
                assert (np.asarray(stored) == np.asarray(value)).all() if column != "latents" else stored == value, (
                    column
                )
    info = load_latent_info(out)
    info.check_vae(vae, check_weights=True)
    assert info.source == f"rounds:{synthetic_rounds}" and info.vae.source == str(vae_dir)
    assert info.frame_size == (16, 16) and info.splits["train"].rounds == 3 and info.splits["val"].rounds == 1
    assert "TekkenAutoencoderDC" in (out / "README.md").read_text()


def test_an_interrupted_encode_resumes_to_the_same_dataset(synthetic_rounds, vae_dir, tmp_path, monkeypatch):
    reference = tmp_path / "reference"
    encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", reference)

    # 1. Interrupt after two rounds: their shards stay, nothing is written to --out.
    out = tmp_path / "resumed"
    write = latent_dataset.write_row_shard
    written = []

    def interrupted(path, row):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        return write(path, row)

    monkeypatch.setattr(latent_dataset, "write_row_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out)
    assert not out.exists()
    shards = sorted((tmp_path / "resumed.partial" / "shards").rglob("*.arrow"))
    assert [p.name for p in shards] == ["round_0000.arrow", "round_0001.arrow"]

    # 2. Other settings are refused, naming what changed.
    with pytest.raises(SystemExit, match=r"resumed.partial holds rounds encoded with other settings \(latent_dtype: "):
        encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out, "--dtype", "bfloat16")

    # 3. Re-run: only the two missing rounds are encoded, and the result equals the uninterrupted run.
    monkeypatch.setattr(latent_dataset, "write_row_shard", write)
    encoded = []
    original = latent_dataset.encode_round
    monkeypatch.setattr(
        latent_dataset,
        "encode_round",
        lambda r, v, rid, split, **kw: encoded.append(rid) or original(r, v, rid, split, **kw),
    )
    assert encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out) == 0
    assert encoded == ["round_0002", "round_0000"]  # train/round_0002 and val/round_0000
    expected, found = tables(reference), tables(out)
    assert found.keys() == expected.keys() and all(found[s].equals(expected[s]) for s in expected)
    assert info_without_time(out) == info_without_time(reference)
    assert not (tmp_path / "resumed.partial").exists()


def test_a_round_replaced_between_runs_is_encoded_again(synthetic_rounds, vae_dir, tmp_path, monkeypatch):
    """Resuming must not keep the latents of a round whose file changed since its shard was written (issue 12.1)."""
    from tekken_diffusers.data.rounds import save_round

    # 1. Interrupt after two rounds (train/round_0000 and train/round_0001).
    out = tmp_path / "resumed"
    write = latent_dataset.write_row_shard
    written = []

    def interrupted(path, row):
        if len(written) == 2:
            raise KeyboardInterrupt
        written.append(path)
        return write(path, row)

    monkeypatch.setattr(latent_dataset, "write_row_shard", interrupted)
    with pytest.raises(KeyboardInterrupt):
        encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out)
    monkeypatch.setattr(latent_dataset, "write_row_shard", write)

    # 2. Replace an encoded round with another recording of the same length, under the same name.
    save_round(synthetic_rounds / "train" / "round_0000.npz", make_round(12, seed=99))
    assert encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out) == 0

    # 3. The dataset is the one a fresh encode of the folder as it is now gives.
    reference = tmp_path / "reference"
    encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", reference)
    expected, found = tables(reference), tables(out)
    assert all(found[s].equals(expected[s]) for s in expected)


def test_a_failed_encode_says_how_to_resume(synthetic_rounds, vae_dir, tmp_path):
    (synthetic_rounds / "train" / "round_0002.npz").write_bytes(b"garbage")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as error:
        encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out)
    message = str(error.value)
    assert "round_0002.npz: not a readable .npz file" in message
    assert f"kept in {tmp_path / 'out.partial'}: fix the input and re-run the same command to resume" in message


def test_a_mistyped_local_vae_path_fails_at_once(synthetic_rounds, tmp_path, monkeypatch):
    import huggingface_hub

    def no_hub(*args, **kwargs):
        raise AssertionError("a local-looking path must not reach the Hub")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", no_hub)
    for vae in (tmp_path / "no_such_vae", "./checkpoints/vae", f"{synthetic_rounds.name}/vae"):
        monkeypatch.chdir(synthetic_rounds.parent)
        with pytest.raises(SystemExit, match=r"no such folder \(nor a Hub repo id"):
            encode("--rounds", synthetic_rounds, "--vae", vae, "--out", tmp_path / "out")


def test_bfloat16_storage_and_raw_latents(synthetic_rounds, vae_dir, tmp_path):
    out = tmp_path / "bf16"
    encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out, "--dtype", "bfloat16", "--no-normalize")
    info = load_latent_info(out)
    assert info.latent_dtype == "bfloat16" and not info.normalized
    row = load_latent_dataset(out, split="val")[0]
    vae = TekkenAutoencoderDC.from_pretrained(vae_dir).eval()
    images = load_round(synthetic_rounds / "val" / "round_0000.npz").images
    with torch.no_grad():
        raw = vae.encode(frames_to_pixels(images)).latent_dist.mode()
    assert torch.equal(latents_from_row(row, dtype=torch.bfloat16), raw.bfloat16())
    assert "no (raw VAE latents)" in (out / "README.md").read_text()


def make_seed_cache(root: Path, lengths: dict[str, list[int]], seed: int = 0) -> dict[str, dict]:
    """The original cache layout with random fp16 latents (C, T, h, w), int64 actions and float64 states."""
    rng = np.random.default_rng(seed)
    contents = {}
    for split, counts in lengths.items():
        for index, num_frames in enumerate(counts):
            name = f"round_{index:03d}"
            folder = root / split / name
            arrays = {
                "latents": rng.normal(size=(4, num_frames, 3, 5)).astype(np.float16),
                "actions": rng.integers(0, 256, num_frames).astype(np.int64),
                "states": rng.normal(size=(num_frames, 3)),
            }
            for kind, array in arrays.items():
                (folder / kind).mkdir(parents=True)
                np.save(folder / kind / f"{name}_{kind}.npy", array)
            contents[f"{split}/{name}"] = arrays
    return contents


def test_import_of_the_original_cache(tmp_path, vae_dir):
    cache = make_seed_cache(tmp_path / "cache", {"train": [7, 9], "val": [6]})
    out = tmp_path / "imported"
    assert encode("--from-seed-cache", tmp_path / "cache", "--out", out) == 0
    loaded = load_latent_dataset(out)
    assert loaded["train"]["round_id"] == ["round_000", "round_001"] and loaded["val"].num_rows == 1
    for split in ("train", "val"):
        for row in loaded[split]:
            arrays = cache[f"{split}/{row['round_id']}"]
            stored = latents_from_row(row, dtype=torch.float16).numpy()
            np.testing.assert_array_equal(stored, arrays["latents"].transpose(1, 0, 2, 3))  # bit-exact fp16
            assert row["actions"] == arrays["actions"].tolist()
            np.testing.assert_array_equal(np.reshape(row["states"], (-1, 3)), arrays["states"].astype(np.float32))
    info = load_latent_info(out)
    assert not info.normalized and info.vae is None and info.latent_shape == (4, 3, 5)
    assert "unknown (imported raw cache)" in (out / "README.md").read_text()

    # With --vae, the raw cache is normalised with that VAE's statistics and the VAE is recorded.
    normalised = tmp_path / "normalised"
    encode("--from-seed-cache", tmp_path / "cache", "--out", normalised, "--vae", vae_dir)
    vae = TekkenAutoencoderDC.from_pretrained(vae_dir)
    row = load_latent_dataset(normalised, split="val")[0]
    raw = torch.from_numpy(cache["val/round_000"]["latents"].transpose(1, 0, 2, 3)).float()
    assert torch.equal(latents_from_row(row), normalize_latents(raw, vae).half().float())
    assert (
        load_latent_info(normalised).normalized
        and load_latent_info(normalised).vae.class_name == "TekkenAutoencoderDC"
    )


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing_actions", "train/round_000/actions/round_000_actions.npy: missing"),
        ("short_actions", "round_000_actions.npy: 6 actions but round_000_latents.npy has 7 latent frames"),
        ("pickled_latents", "round_000_latents.npy: not a readable .npy array without pickled objects"),
        ("bad_actions", "round_000_actions.npy: action ids must lie in [0, 255], found [-1, "),
        ("no_rounds", "no rounds found: expected"),
    ],
)
def test_bad_original_cache_files_are_named(tmp_path, damage, message):
    make_seed_cache(tmp_path / "cache", {"train": [7]})
    folder = tmp_path / "cache" / "train" / "round_000"
    if damage == "missing_actions":
        (folder / "actions" / "round_000_actions.npy").unlink()
    elif damage == "short_actions":
        np.save(folder / "actions" / "round_000_actions.npy", np.zeros(6, dtype=np.int64))
    elif damage == "pickled_latents":
        np.save(folder / "latents" / "round_000_latents.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    elif damage == "bad_actions":
        np.save(folder / "actions" / "round_000_actions.npy", np.full(7, -1, dtype=np.int64))
    elif damage == "no_rounds":
        (tmp_path / "cache" / "train").rename(tmp_path / "cache" / "other")
    with pytest.raises(SystemExit) as error:
        encode("--from-seed-cache", tmp_path / "cache", "--out", tmp_path / "out")
    assert message in str(error.value)
    assert not (tmp_path / "out").exists()


def test_bad_inputs_are_named(synthetic_rounds, vae_dir, tmp_path, capsys):
    def fails(*argv) -> str:
        with pytest.raises(SystemExit) as error:
            encode(*argv)
        return str(error.value) + capsys.readouterr().err

    out = tmp_path / "out"
    assert "--vae is required with --rounds" in fails("--rounds", synthetic_rounds, "--out", out)
    assert f"--rounds {tmp_path / 'nope'}: no such folder" in fails(
        "--rounds", tmp_path / "nope", "--vae", vae_dir, "--out", out
    )
    assert f"--vae {tmp_path}: no config.json" in fails("--rounds", synthetic_rounds, "--vae", tmp_path, "--out", out)
    assert f"--out {synthetic_rounds / 'train'}: already exists" in fails(
        "--rounds", synthetic_rounds, "--vae", vae_dir, "--out", synthetic_rounds / "train"
    )
    assert "--private only applies with --push-to-hub" in fails(
        "--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out, "--private"
    )
    assert "--batch-size must be at least 1, got 0" in fails(
        "--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out, "--batch-size", "0"
    )

    loose = tmp_path / "loose"
    (loose / "round_0000.npz").parent.mkdir()
    shutil.copy(synthetic_rounds / "val" / "round_0000.npz", loose / "round_0000.npz")
    assert "no train/ or val/ folder of rounds (1 .npz files lie directly in it" in fails(
        "--rounds", loose, "--vae", vae_dir, "--out", out
    )

    unknown = tmp_path / "unknown_vae"
    unknown.mkdir()
    (unknown / "config.json").write_text(json.dumps({"_class_name": "NoSuchVAE"}))
    assert "unknown VAE class 'NoSuchVAE'" in fails("--rounds", synthetic_rounds, "--vae", unknown, "--out", out)

    broken = tmp_path / "broken"
    (broken / "train").mkdir(parents=True)
    (broken / "train" / "round_0000.npz").write_bytes(b"garbage")
    assert f"{broken / 'train' / 'round_0000.npz'}: not a readable .npz file" in fails(
        "--rounds", broken, "--vae", vae_dir, "--out", out
    )
    assert not out.exists()


def test_a_failed_push_keeps_the_dataset_and_says_how_to_retry(synthetic_rounds, vae_dir, tmp_path, monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(latent_dataset, "push_latent_dataset_to_hub", offline)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as error:
        encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", out, "--push-to-hub", "me/x")
    message = str(error.value)
    assert f"{out} is saved, but pushing it to me/x failed (ConnectionError: no network)" in message
    assert f"push('{out}', 'me/x', private=None)" in message
    assert load_latent_info(out).splits["train"].rounds == 3


def test_pose_channel_needs_a_pose_file_per_round(synthetic_rounds, tmp_path):
    pose_vae = tmp_path / "pose_vae"
    tiny_vae(in_channels=4).save_pretrained(pose_vae)
    poses = tmp_path / "poses"
    poses.mkdir()
    for split in ("train", "val"):
        for path in list_rounds(synthetic_rounds / split):
            frames = load_round(path).num_frames
            np.savez(poses / f"{path.stem}_two_player_poses.npz", pose_images=np.zeros((frames, 3, 16, 16), np.uint8))
    (poses / "round_0002_two_player_poses.npz").unlink()  # train/round_0002 has none
    out = tmp_path / "out"
    with pytest.raises(SystemExit, match="round_0002_two_player_poses.npz: no pose file"):
        encode("--rounds", synthetic_rounds, "--vae", pose_vae, "--out", out, "--pose-dir", poses)
    with pytest.raises(SystemExit, match="the VAE takes 4 input channels"):
        encode("--rounds", synthetic_rounds, "--vae", pose_vae, "--out", tmp_path / "other")


@pytest.mark.slow
def test_recorded_boxing_rounds_to_training_windows(boxing_rounds, vae_dir, tmp_path):
    from torch.utils.data import DataLoader

    from tekken_diffusers.data.latents import LatentWindowDataset, collate_windows

    out = tmp_path / "boxing_latents"
    assert encode("--rounds", boxing_rounds, "--vae", vae_dir, "--out", out) == 0
    info = load_latent_info(out)
    assert info.fps == 15.0 and info.game == "boxing" and info.frame_size == (64, 64) and info.state_dim > 0
    assert info.latent_shape == (4, 32, 32) and info.splits["train"].rounds == 3
    windows = LatentWindowDataset(load_latent_dataset(out, split="train"), window_length=16)
    batch = next(iter(DataLoader(windows, batch_size=4, shuffle=True, collate_fn=collate_windows)))
    assert batch.latents.shape == (4, 16, 4, 32, 32) and batch.states.shape == (4, 16, info.state_dim)


@pytest.mark.slow
def test_script_help_and_two_processes_match_one(synthetic_rounds, vae_dir, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "encode_latents.py"), "--help"], capture_output=True, text=True
    )
    assert result.returncode == 0 and "--from-seed-cache" in result.stdout and "resume" in result.stdout

    single, double = tmp_path / "single", tmp_path / "double"
    encode("--rounds", synthetic_rounds, "--vae", vae_dir, "--out", single)
    env = dict(os.environ, ACCELERATE_USE_CPU="1", PYTHONPATH=str(ROOT / "src"))
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2"]
    launch += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    script = [str(ROOT / "scripts" / "encode_latents.py"), "--no-progress"]
    args = ["--rounds", str(synthetic_rounds), "--vae", str(vae_dir), "--out", str(double)]
    result = subprocess.run(launch + script + args, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "process 0 encoded" in result.stderr and "process 1 encoded" in result.stderr
    expected, found = tables(single), tables(double)
    assert all(found[s].equals(expected[s]) for s in expected)


@pytest.mark.slow
def test_script_pushes_to_the_hub(synthetic_rounds, vae_dir, tmp_path):
    """--push-to-hub through the real huggingface_hub client against `FakeHub` on 127.0.0.1 (HF_ENDPOINT)."""
    out = tmp_path / "latents"
    with FakeHub(tmp_path / "hub") as hub:
        env = dict(
            os.environ,
            HF_ENDPOINT=hub.endpoint,
            HF_TOKEN="hf_test",
            HF_HOME=str(tmp_path / "home"),
            PYTHONPATH=str(ROOT / "src"),
        )
        argv = ["--rounds", str(synthetic_rounds), "--vae", str(vae_dir), "--out", str(out), "--no-progress"]
        argv += ["--push-to-hub", "me/boxing-latents", "--private"]
        result = subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "encode_latents.py"), *argv],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
    assert result.returncode == 0, result.stderr[-3000:]
    assert hub.created[0]["visibility"] == "private" and hub.created[0]["type"] == "dataset"
    uploaded = hub.repo_dir("me/boxing-latents")
    assert sorted(p.name for p in uploaded.iterdir()) == ["README.md", "data", LATENT_INFO_FILE]
    assert load_latent_info(uploaded) == load_latent_info(out)
    for split in ("train", "val"):
        assert load_latent_dataset(uploaded, split=split).data.table.equals(
            load_latent_dataset(out, split=split).data.table
        )
