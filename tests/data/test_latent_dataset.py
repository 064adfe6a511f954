"""Latent episodes: rows, the saved dataset and its card, windows, streaming and the Hub layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tekken_diffusers.actions import pool_actions
from tekken_diffusers.data.frames import frames_to_pixels
from tekken_diffusers.data.latents import (
    LATENT_FEATURES,
    LATENT_INFO_FILE,
    LatentDatasetInfo,
    LatentWindowDataset,
    LatentWindowIterableDataset,
    WindowBatch,
    collate_windows,
    describe_vae,
    encode_round,
    export_hub_folder,
    latent_row,
    latent_statistics,
    latents_from_row,
    load_latent_dataset,
    load_latent_info,
    normalize_latents,
    push_latent_dataset_to_hub,
    read_row_shard,
    save_latent_dataset,
    vae_config_hash,
    write_row_shard,
)
from tekken_diffusers.data.latents import episode_from_arrays as _episode
from tekken_diffusers.data.latents import row_arrays as _row_arrays
from tekken_diffusers.models.autoencoders import TekkenAutoencoderDC
from tests.conftest import make_round, tiny_dcae, tiny_ltx
from tests.fake_hub import FakeHub

ROOT = Path(__file__).resolve().parents[2]
MEAN, STD = [0.1, -0.2, 0.3, 0.05], [0.5, 2.0, 1.5, 0.25]


def tiny_vae(**overrides) -> TekkenAutoencoderDC:
    """A 16×16 → 4×8×8 DC-AE with random weights and per-channel statistics."""
    return tiny_dcae(**{"latents_mean": MEAN, "latents_std": STD, "scaling_factor": 0.7, **overrides})


@pytest.fixture(scope="module")
def vae() -> TekkenAutoencoderDC:
    return tiny_vae()


def expected_latents(vae, images: np.ndarray) -> torch.Tensor:
    """What the dataset must hold: the normalised encoder mean, through float16."""
    with torch.no_grad():
        raw = vae.encode(frames_to_pixels(images)).latent_dist.mode()  # (T, C, h, w)
    return normalize_latents(raw, vae, channel_dim=1).half().float()


def padded_round(num_frames: int, num_valid: int, seed: int, **overrides):
    valid = np.zeros(num_frames, dtype=bool)
    valid[:num_valid] = True
    return make_round(num_frames, seed=seed, valid_frames=valid, **overrides)


@pytest.fixture(scope="module")
def saved(vae, tmp_path_factory) -> tuple[Path, dict]:
    """A saved dataset: train rounds of 21, 40 (+4 padding) and 9 valid frames, val one round of 30."""
    rounds = {
        "train": {
            "round_0000": padded_round(21, 21, seed=1),
            "round_0001": padded_round(44, 40, seed=2, actions_p2=np.arange(44, dtype=np.uint8)),
            "round_0002": padded_round(9, 9, seed=3),
        },
        "val": {"round_0000": padded_round(30, 30, seed=4)},
    }
    splits = {
        split: datasets.Dataset.from_list(
            [encode_round(r, vae, rid, split, batch_size=8) for rid, r in by_id.items()], features=LATENT_FEATURES
        )
        for split, by_id in rounds.items()
    }
    info = LatentDatasetInfo(
        latent_channels=4,
        latent_height=8,
        latent_width=8,
        normalization=latent_statistics(vae),
        vae=describe_vae(vae, source="tiny"),
        frame_size=(16, 16),
        source="synthetic",
    )
    out = tmp_path_factory.mktemp("latents") / "dataset"
    save_latent_dataset(splits, out, info)
    return out, rounds


# ---------------------------------------------------------------------------------------------------------------------
# rows
# ---------------------------------------------------------------------------------------------------------------------
def test_encode_round_stores_the_normalised_encoder_output(vae):
    round_ = padded_round(13, 11, seed=5)
    row = encode_round(round_, vae, "round_0005", "train", batch_size=4)
    assert row["latents_shape"] == [11, 4, 8, 8] and row["latents_dtype"] == "float16"
    assert row["num_frames"] == 11 and row["num_valid"] == 11  # padding is not encoded
    torch.testing.assert_close(latents_from_row(row), expected_latents(vae, round_.images[:11]), rtol=0, atol=0)
    np.testing.assert_array_equal(row["actions"], round_.actions_p1[:11])
    np.testing.assert_array_equal(row["states"], round_.states[:11].reshape(-1))
    assert row["state_dim"] == 3 and row["fps"] == 15.0 and row["actions_p2"] is None


def test_batching_does_not_change_the_latents(vae):
    round_ = make_round(11, seed=6)
    one = latents_from_row(encode_round(round_, vae, "r", "train", batch_size=1))
    many = latents_from_row(encode_round(round_, vae, "r", "train", batch_size=4))
    torch.testing.assert_close(one, many, rtol=0, atol=1e-3)


def test_keep_padding_encodes_every_frame_and_marks_the_valid_prefix(vae):
    row = encode_round(padded_round(10, 7, seed=7), vae, "r", "train", keep_padding=True)
    assert row["num_frames"] == 10 and row["num_valid"] == 7 and row["latents_shape"][0] == 10


def test_bfloat16_rows_keep_the_bits(vae):
    round_ = make_round(6, seed=8)
    row = encode_round(round_, vae, "r", "train", latent_dtype="bfloat16")
    with torch.no_grad():
        raw = vae.encode(frames_to_pixels(round_.images)).latent_dist.mode()
    expected = normalize_latents(raw, vae).to(torch.bfloat16)
    assert torch.equal(latents_from_row(row, dtype=torch.bfloat16), expected)
    assert len(row["latents"]) == 6 * 4 * 8 * 8 * 2


def test_raw_latents_when_not_normalised(vae):
    round_ = make_round(5, seed=9)
    row = encode_round(round_, vae, "r", "train", normalize=False)
    with torch.no_grad():
        raw = vae.encode(frames_to_pixels(round_.images)).latent_dist.mode()
    torch.testing.assert_close(latents_from_row(row), raw.half().float(), rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(latents=torch.zeros(5, 4, 2, 2)), "round train/r7: latents have 5 frames but 6 actions"),
        (dict(latents=torch.full((6, 4, 2, 2), 7e4)), "beyond float16's range"),
        (dict(latents=torch.full((6, 4, 2, 2), float("nan"))), "round train/r7: latents contain NaN"),
        (dict(actions=np.full(6, 300)), "round train/r7: actions: action ids must lie in [0, 255]"),
        (dict(states=np.zeros((5, 2))), "round train/r7: states: expected (6, S)"),
        (dict(num_valid=0), "round train/r7: num_valid must lie in [1, 6]"),
        (dict(latent_dtype="float32"), "latent_dtype must be one of"),
    ],
)
def test_bad_rows_are_reported_with_the_round(kwargs, message):
    args = dict(latents=torch.zeros(6, 4, 2, 2), actions=np.zeros(6, dtype=np.uint8))
    args.update(kwargs)
    with pytest.raises(ValueError) as error:
        latent_row("r7", "train", args.pop("latents"), args.pop("actions"), **args)
    assert message in str(error.value)


def test_pose_channel_must_match_the_vae(vae):
    with pytest.raises(ValueError, match=r"round train/r: the VAE takes 3 input channels .*got 4"):
        encode_round(make_round(4), vae, "r", "train", pose_channel=torch.zeros(4, 1, 16, 16))
    pose_vae = tiny_vae(in_channels=4)
    with pytest.raises(ValueError, match="takes 4 input channels"):
        encode_round(make_round(4), pose_vae, "r", "train")
    row = encode_round(make_round(4), pose_vae, "r", "train", pose_channel=torch.full((4, 1, 16, 16), 255.0))
    assert row["latents_shape"] == [4, 4, 8, 8]


def test_row_shards_round_trip_and_name_a_corrupt_file(tmp_path):
    row = latent_row("r", "val", torch.randn(3, 4, 2, 2), np.arange(3), fps=15.0)
    path = write_row_shard(tmp_path / "r.arrow", row)
    back = read_row_shard(path)
    assert back["latents"] == row["latents"] and back["actions"] == [0, 1, 2] and back["fps"] == 15.0
    assert [p.name for p in tmp_path.iterdir()] == ["r.arrow"]  # no temporary file left behind
    path.write_bytes(b"not arrow")
    with pytest.raises(ValueError, match=f"{path}: not a readable row shard"):
        read_row_shard(path)


# ---------------------------------------------------------------------------------------------------------------------
# the saved dataset, its card and info
# ---------------------------------------------------------------------------------------------------------------------
def test_saved_dataset_opens_with_load_from_disk(saved, vae):
    out, rounds = saved
    loaded = datasets.load_from_disk(str(out))
    assert sorted(loaded) == ["train", "val"] and loaded["train"].features == LATENT_FEATURES
    assert loaded["train"]["round_id"] == ["round_0000", "round_0001", "round_0002"]
    row = loaded["train"][1]
    round_ = rounds["train"]["round_0001"]
    torch.testing.assert_close(latents_from_row(row), expected_latents(vae, round_.images[:40]), rtol=0, atol=0)
    assert row["actions_p2"] == list(range(40))


def test_info_and_card_record_the_vae_and_its_statistics(saved, vae):
    out, _ = saved
    info = load_latent_info(out)
    assert info.normalized and info.normalization.mean == tuple(MEAN) and info.normalization.std == tuple(STD)
    assert info.normalization.scaling_factor == pytest.approx(0.7)
    assert info.vae.class_name == "TekkenAutoencoderDC" and info.vae.source == "tiny"
    assert info.latent_shape == (4, 8, 8) and info.latent_dtype == "float16" and info.fps == 15.0
    assert info.splits["train"].rounds == 3 and info.splits["train"].latent_frames == 21 + 40 + 9
    assert info.splits["train"].frames == 70 and info.splits["val"].rounds == 1
    assert info.state_dim == 3 and info.has_actions_p2 and info.frame_size == (16, 16)
    raw = json.loads((out / LATENT_INFO_FILE).read_text())
    assert raw["normalization"]["latents_mean"] == MEAN and raw["vae"]["config_hash"] == describe_vae(vae).config_hash

    # The measured statistics are those of the stored latents.
    train = load_latent_dataset(out, split="train")
    stored = torch.cat([latents_from_row(r) for r in train]).double()
    np.testing.assert_allclose(info.measured_mean, stored.mean(dim=(0, 2, 3)).numpy(), rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(info.measured_std, stored.std(dim=(0, 2, 3), unbiased=False).numpy(), rtol=1e-5)

    card = (out / "README.md").read_text()
    assert info.vae.config_hash in card and "[0.1, -0.2, 0.3, 0.05]" in card and "| train | 3 | 70 | 70 | 70 |" in card
    assert "path: data/train-*" in card


def test_check_vae_accepts_the_encoder_and_rejects_another(saved, vae):
    info = load_latent_info(saved[0])
    info.check_vae(vae, check_weights=True)
    info.check_vae(TekkenAutoencoderDC.from_config(vae.config))  # same config, other weights: config check passes
    with pytest.raises(ValueError, match="weights_hash"):
        info.check_vae(tiny_vae(encoder_layers_per_block=(1, 1)).requires_grad_(False).apply(_perturb), True)
    with pytest.raises(ValueError, match=r"config_hash(.|\n)*normalization"):
        info.check_vae(tiny_vae(latents_std=[1.0, 1.0, 1.0, 1.0]))
    with pytest.raises(ValueError, match="latent_channels: dataset 4, VAE 8"):
        info.check_vae(tiny_vae(latent_channels=8, latents_mean=None, latents_std=None))


def test_config_hash_survives_saving_and_ignores_training_bookkeeping(vae, tmp_path):
    vae.save_pretrained(tmp_path / "vae")
    reloaded = TekkenAutoencoderDC.from_pretrained(tmp_path / "vae")
    assert vae_config_hash(reloaded) == vae_config_hash(vae)
    ema = tiny_vae()
    ema.register_to_config(decay=0.999, optimization_step=1750)  # what an EMAModel checkpoint leaves in config.json
    assert vae_config_hash(ema) == vae_config_hash(vae)
    assert vae_config_hash(tiny_vae(scaling_factor=0.5)) != vae_config_hash(vae)
    assert vae_config_hash(tiny_vae(encoder_layers_per_block=(1, 2))) != vae_config_hash(vae)


def _perturb(module: torch.nn.Module) -> None:
    for parameter in module.parameters(recurse=False):
        parameter.add_(0.01)


def test_info_json_is_validated(tmp_path, saved):
    data = json.loads((saved[0] / LATENT_INFO_FILE).read_text())
    assert LatentDatasetInfo.from_dict(data) == load_latent_info(saved[0])
    with pytest.raises(ValueError, match=r"x.json: unknown keys \['surprise'\]"):
        LatentDatasetInfo.from_dict({**data, "surprise": 1}, source="x.json")
    with pytest.raises(ValueError, match="format_version: expected at most 1, found 2"):
        LatentDatasetInfo.from_dict({**data, "format_version": 2})
    with pytest.raises(ValueError, match="latent_dtype: expected one of"):
        LatentDatasetInfo.from_dict({**data, "latent_dtype": "int8"})
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: no {LATENT_INFO_FILE}"):
        load_latent_info(tmp_path)


def test_save_refuses_to_overwrite_and_leaves_no_partial_folder(saved, tmp_path):
    splits = load_latent_dataset(saved[0])
    info = load_latent_info(saved[0])
    with pytest.raises(FileExistsError, match="already exists"):
        save_latent_dataset(splits, saved[0], info)
    bad = splits["train"].cast_column("fps", datasets.Value("float64"))
    with pytest.raises(ValueError, match="split train: features"):
        save_latent_dataset({"train": bad}, tmp_path / "new", info)
    assert list(tmp_path.iterdir()) == []


def test_load_latent_dataset_errors_name_the_path_and_split(saved, tmp_path):
    with pytest.raises(ValueError, match=r"no split 'test'; splits: \['train', 'val'\]"):
        load_latent_dataset(saved[0], split="test")
    with pytest.raises(FileNotFoundError, match=f"{tmp_path}: neither a save_to_disk folder"):
        load_latent_dataset(tmp_path)
    with pytest.raises(FileNotFoundError, match="no/such/folder: no such folder"):
        load_latent_dataset("no/such/folder")


# ---------------------------------------------------------------------------------------------------------------------
# windows
# ---------------------------------------------------------------------------------------------------------------------
def test_windows_have_the_right_shapes_dtypes_and_values(saved, vae):
    out, rounds = saved
    windows = LatentWindowDataset(load_latent_dataset(out, split="train"), window_length=8, seed=3)
    # round_0002 (9 frames) gives 2 windows, round_0000 (21) 3, round_0001 (40 valid) 5.
    assert len(windows) == 3 + 5 + 2
    for index in range(len(windows)):
        window = windows[index]
        round_ = rounds["train"][window.round_id]
        s = window.start
        assert 0 <= s and s + 8 <= round_.num_valid  # never crosses into padding
        assert window.latents.shape == (8, 4, 8, 8) and window.latents.dtype == torch.float32
        expected = expected_latents(vae, round_.images[s : s + 8])
        torch.testing.assert_close(window.latents, expected, rtol=0, atol=0)
        assert window.actions.dtype == torch.int64 and window.actions.tolist() == round_.actions_p1[s : s + 8].tolist()
        assert window.action_bits.shape == (8, 8) and window.action_bits.dtype == torch.float32
        bits = np.unpackbits(round_.actions_p1[s : s + 8, None], axis=1)  # MSB first
        np.testing.assert_array_equal(window.action_bits.numpy(), bits)
        np.testing.assert_array_equal(window.states.numpy(), round_.states[s : s + 8])
        assert window.valid.all() and window.valid.dtype == torch.bool
        assert window.actions_p2 is None  # only one round has it


def test_window_offsets_are_deterministic_random_and_move_with_the_epoch(saved):
    train = load_latent_dataset(saved[0], split="train")
    a, b = (LatentWindowDataset(train, 8, seed=1) for _ in range(2))
    starts = [a.window_start(i) for i in range(len(a))]
    assert starts == [b.window_start(i) for i in range(len(b))]
    assert starts != [LatentWindowDataset(train, 8, seed=2).window_start(i) for i in range(len(a))]
    a.set_epoch(1)
    assert starts != [a.window_start(i) for i in range(len(a))]
    assert len({s for _, s in starts}) > 3  # not all at 0


def test_tiled_windows_cover_each_round(saved):
    windows = LatentWindowDataset(load_latent_dataset(saved[0], split="train"), 8, random_offset=False)
    starts = [windows.window_start(i) for i in range(len(windows))]
    assert starts == [(0, 0), (0, 8), (0, 13), (1, 0), (1, 8), (1, 16), (1, 24), (1, 32), (2, 0), (2, 1)]


def test_short_rounds_are_skipped_or_padded(saved, vae):
    out, rounds = saved
    train = load_latent_dataset(out, split="train")
    windows = LatentWindowDataset(train, 16)
    assert {windows[i].round_id for i in range(len(windows))} == {"round_0000", "round_0001"}
    padded = LatentWindowDataset(train, 16, pad_short=True, random_offset=False)
    window = padded[len(padded) - 1]
    assert window.round_id == "round_0002" and window.valid.tolist() == [True] * 9 + [False] * 7
    assert window.latents[9:].abs().sum() == 0 and window.actions[9:].abs().sum() == 0
    torch.testing.assert_close(window.latents[:9], expected_latents(vae, rounds["train"]["round_0002"].images))
    with pytest.raises(ValueError, match="no round has 64 valid latent frames \\(longest: 40 of 3 rounds\\)"):
        LatentWindowDataset(train, 64)


def test_windows_never_cross_into_stored_padding(vae):
    row = encode_round(padded_round(12, 7, seed=13), vae, "r", "train", keep_padding=True)
    rows = datasets.Dataset.from_list([row], features=LATENT_FEATURES)
    windows = LatentWindowDataset(rows, 4, seed=0)
    assert len(windows) == 2  # ceil(7 / 4), not ceil(12 / 4)
    for epoch in range(20):
        windows.set_epoch(epoch)
        assert all(windows.window_start(i)[1] + 4 <= 7 for i in range(len(windows)))
    tiled = LatentWindowDataset(rows, 4, random_offset=False)
    assert [tiled.window_start(i) for i in range(len(tiled))] == [(0, 0), (0, 3)]
    streamed = LatentWindowIterableDataset(rows, 4, seed=0)
    for epoch in range(20):
        streamed.set_epoch(epoch)
        assert all(w.start + 4 <= 7 and w.valid.all() for w in streamed)
    assert LatentWindowDataset(rows, 8, pad_short=True)[0].valid.tolist() == [True] * 7 + [False]


def test_windows_are_read_without_copying_the_round(saved):
    train = load_latent_dataset(saved[0], split="train")
    arrow = train.with_format("arrow")
    episode = _episode(_row_arrays(arrow[1]))
    assert not episode.latents.flags.owndata and not episode.latents.flags.writeable
    assert episode.latents.dtype == np.float16 and episode.latents.shape == (40, 4, 8, 8)


def test_one_row_decoder_reads_arrow_and_python_rows_alike(saved):
    train = load_latent_dataset(saved[0], split="train")
    from_arrow = _row_arrays(train.with_format("arrow")[1])
    from_python = _row_arrays(train[1])
    assert from_arrow.keys() == from_python.keys()
    for name, value in from_arrow.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_array_equal(value, from_python[name])
        else:
            assert value == from_python[name], name
    assert torch.equal(latents_from_row(train.with_format("arrow")[1]), latents_from_row(train[1]))


def test_old_import_paths_still_work():
    from tekken_diffusers.data import latent_dataset, latent_info, latent_windows, latents
    from tekken_diffusers.models.autoencoders import latent_norm, temporal

    assert latent_dataset.save_latent_dataset is latents.save_latent_dataset
    assert latent_dataset.encode_round is latents.encode_round
    assert latent_info.LatentDatasetInfo is latents.LatentDatasetInfo
    assert latent_windows.LatentWindowDataset is latents.LatentWindowDataset
    assert latent_norm.normalize_latents is latents.normalize_latents
    assert temporal.pool_actions is pool_actions


def test_window_dtype_and_bfloat16_storage(saved, tmp_path, vae):
    train = load_latent_dataset(saved[0], split="train")
    window = LatentWindowDataset(train, 8, dtype=torch.bfloat16, seed=5)[0]
    reference = LatentWindowDataset(train, 8, seed=5)[0]
    assert window.latents.dtype == torch.bfloat16 and torch.equal(window.latents, reference.latents.bfloat16())

    round_ = make_round(10, seed=11)
    rows = datasets.Dataset.from_list(
        [encode_round(round_, vae, "r", "train", latent_dtype="bfloat16")], features=LATENT_FEATURES
    )
    window = LatentWindowDataset(rows, 10, dtype=torch.bfloat16)[0]
    with torch.no_grad():
        raw = vae.encode(frames_to_pixels(round_.images)).latent_dist.mode()
    assert torch.equal(window.latents, normalize_latents(raw, vae).bfloat16())


def test_dataloader_batches_are_typed_and_reproducible(saved):
    windows = LatentWindowDataset(load_latent_dataset(saved[0], split="train"), 8)

    def first_batch(seed: int) -> WindowBatch:
        loader = DataLoader(
            windows,
            batch_size=4,
            shuffle=True,
            generator=torch.Generator().manual_seed(seed),
            collate_fn=collate_windows,
        )
        return next(iter(loader))

    batch = first_batch(0)
    assert isinstance(batch, WindowBatch) and len(batch) == 4
    assert batch.latents.shape == (4, 8, 4, 8, 8) and batch.action_bits.shape == (4, 8, 8)
    assert batch.actions.shape == (4, 8) and batch.valid.shape == (4, 8) and batch.states.shape == (4, 8, 3)
    assert batch.starts.dtype == torch.int64 and len(batch.round_ids) == 4
    again = first_batch(0)
    assert torch.equal(batch.latents, again.latents) and batch.round_ids == again.round_ids
    moved = batch.to(dtype=torch.bfloat16)
    assert moved.latents.dtype == torch.bfloat16 and moved.action_bits.dtype == torch.float32


def test_optional_fields_come_with_every_window_or_none(saved):
    train = load_latent_dataset(saved[0], split="train")
    windows = LatentWindowDataset(train, 8, random_offset=False)  # only round_0001 has actions_p2
    assert all(windows[i].actions_p2 is None and windows[i].states is not None for i in range(len(windows)))
    two_player = LatentWindowDataset(train.select([1]), 8, random_offset=False)
    window = two_player[1]
    assert window.actions_p2.tolist() == list(range(8, 16))
    with pytest.raises(ValueError, match=r"actions_p2 is present in rounds \['round_0001'\] but missing in"):
        collate_windows([window, windows[0]])
    with pytest.raises(ValueError, match=r"optional_fields \('actions_p2',\): some rounds have no \['actions_p2'\]"):
        LatentWindowDataset(train, 8, optional_fields=["actions_p2"])
    assert LatentWindowDataset(train, 8, optional_fields=[])[0].states is None


def test_window_dataset_argument_errors(saved):
    loaded = load_latent_dataset(saved[0])
    with pytest.raises(ValueError, match=r"got a DatasetDict with splits \['train', 'val'\]"):
        LatentWindowDataset(loaded, 8)
    with pytest.raises(ValueError, match="window_length must be a positive int, got 0"):
        LatentWindowDataset(loaded["train"], 0)
    with pytest.raises(ValueError, match="missing columns"):
        LatentWindowDataset(loaded["train"].remove_columns("latents"), 8)
    with pytest.raises(ValueError, match="dtype must be a floating-point"):
        LatentWindowDataset(loaded["train"], 8, dtype=torch.int64)


def test_temporal_compression_pools_actions_per_latent_frame():
    actions = np.array([1, 2, 4, 8, 16, 32, 64, 128, 3], dtype=np.uint8)  # 1 + 4·2 frames
    states = np.arange(9 * 2, dtype=np.float32).reshape(9, 2)
    latents = torch.arange(3 * 4 * 2 * 2, dtype=torch.float32).reshape(3, 4, 2, 2)
    row = latent_row("r", "train", latents, actions, states=states, temporal_compression_ratio=4)
    window = LatentWindowDataset(datasets.Dataset.from_list([row], features=LATENT_FEATURES), 3)[0]
    assert window.actions.tolist() == [1, 2 | 4 | 8 | 16, 32 | 64 | 128 | 3]
    assert window.actions.tolist() == pool_actions(actions, 4).tolist()
    np.testing.assert_array_equal(window.states.numpy(), states[[0, 4, 8]])  # the last frame of each group
    torch.testing.assert_close(window.latents, latents)
    with pytest.raises(ValueError, match="9 actions with temporal compression 2 need 5"):
        latent_row("r", "train", latents, actions, temporal_compression_ratio=2)
    # The other pooling rules, by hand: groups [0], [1 2 3 4], [5 6 7 8] of the 9 frames' inputs.
    dataset = datasets.Dataset.from_list([row], features=LATENT_FEATURES)
    assert LatentWindowDataset(dataset, 3, action_pooling="first")[0].actions.tolist() == [1, 2, 32]
    assert LatentWindowDataset(dataset, 3, action_pooling="last")[0].actions.tolist() == [1, 16, 3]
    streamed = LatentWindowIterableDataset([row], 3, random_offset=False, action_pooling="last")
    assert next(iter(streamed)).actions.tolist() == [1, 16, 3]
    with pytest.raises(ValueError, match="action_pooling must be one of or, first, last .* got 'mean'"):
        LatentWindowDataset(dataset, 3, action_pooling="mean")


def test_encoding_with_a_video_vae_groups_frames():

    vae = tiny_ltx(seed=0)
    round_ = make_round(11, seed=12)  # 11 frames → 9 = 1 + 2·4 are encoded
    row = encode_round(round_, vae, "r", "train")
    assert row["temporal_compression_ratio"] == 4 and row["num_frames"] == 9 and row["latents_shape"] == [3, 8, 4, 4]
    with torch.no_grad():
        clip = frames_to_pixels(round_.images[:9]).permute(1, 0, 2, 3)[None]  # (1, 3, 9, 16, 16)
        raw = vae.encode(clip).latent_dist.mode()[0].permute(1, 0, 2, 3)  # (3, 8, 4, 4)
    torch.testing.assert_close(latents_from_row(row), normalize_latents(raw, vae).half().float(), rtol=0, atol=0)
    with pytest.raises(ValueError, match="keep_padding needs a VAE without temporal compression"):
        encode_round(round_, vae, "r", "train", keep_padding=True)


# ---------------------------------------------------------------------------------------------------------------------
# streaming and the Hub layout
# ---------------------------------------------------------------------------------------------------------------------
def test_iterable_windows_from_a_stream(saved):
    stream = load_latent_dataset(saved[0], split="train", streaming=True)
    assert isinstance(stream, datasets.IterableDataset)
    tiled = LatentWindowDataset(load_latent_dataset(saved[0], split="train"), 8, random_offset=False)
    expected = sorted((tiled[i].round_id, tiled[i].start) for i in range(len(tiled)))
    ordered = LatentWindowIterableDataset(stream, 8, random_offset=False, shuffle_buffer_size=1)
    windows = list(ordered)
    assert [(w.round_id, w.start) for w in windows] == expected  # buffer of 1 keeps the stream's order
    references = {(w.round_id, w.start): w for w in (tiled[i] for i in range(len(tiled)))}
    for window in windows:
        reference = references[(window.round_id, window.start)]
        assert torch.equal(window.latents, reference.latents) and torch.equal(
            window.action_bits, reference.action_bits
        )

    def order(seed: int, epoch: int = 0) -> list[tuple[str, int]]:
        shuffled = LatentWindowIterableDataset(stream, 8, shuffle_buffer_size=4, seed=seed)
        shuffled.set_epoch(epoch)
        return [(w.round_id, w.start) for w in shuffled]

    assert order(0) == order(0) and order(0) != order(1) and order(0) != order(0, epoch=1)
    assert len(order(0)) == len(tiled)
    windows = LatentWindowIterableDataset(stream, 8, optional_fields=["states"])
    batch = next(iter(DataLoader(windows, batch_size=3, collate_fn=collate_windows)))
    assert batch.latents.shape == (3, 8, 4, 8, 8) and batch.states.shape == (3, 8, 3) and batch.actions_p2 is None
    with pytest.raises(ValueError, match="round round_0000 has no actions_p2"):
        list(LatentWindowIterableDataset(stream, 8, optional_fields=["actions_p2"]))
    with pytest.raises(ValueError, match=r"optional_fields: unknown \['pose'\]"):
        LatentWindowIterableDataset(stream, 8, optional_fields=["pose"])


def test_hub_folder_loads_like_the_saved_dataset(saved, tmp_path):
    folder = export_hub_folder(saved[0], tmp_path / "repo", max_shard_size=20_000)
    assert (folder / "README.md").is_file() and (folder / LATENT_INFO_FILE).is_file()
    train_shards = sorted(p.name for p in (folder / "data").glob("train-*.parquet"))
    assert len(train_shards) > 1 and train_shards[0].endswith(f"-of-{len(train_shards):05d}.parquet")
    from_hub_layout = load_latent_dataset(folder)
    from_disk = load_latent_dataset(saved[0])
    for split in ("train", "val"):
        assert from_hub_layout[split].features == LATENT_FEATURES
        assert from_hub_layout[split].data.table.equals(from_disk[split].data.table)
    assert load_latent_info(folder) == load_latent_info(saved[0])
    stream = load_latent_dataset(folder, split="val", streaming=True)
    assert next(iter(stream))["latents"] == from_disk["val"][0]["latents"]


def test_push_to_hub_uploads_one_commit_to_a_local_server(saved, tmp_path):
    """The real huggingface_hub client talks HTTP to `tests/fake_hub.FakeHub` on 127.0.0.1 (no network)."""
    from huggingface_hub import HfApi

    with FakeHub(tmp_path / "hub") as hub:
        api = HfApi(endpoint=hub.endpoint, token="hf_test")
        url = push_latent_dataset_to_hub(saved[0], "me/boxing-latents", private=True, api=api, token="hf_test")
    assert url.endswith("/datasets/me/boxing-latents/commit/" + "0123456789abcdef0123456789abcdef01234567")
    assert hub.created == [
        {"name": "boxing-latents", "organization": "me", "visibility": "private", "type": "dataset"}
    ]
    assert [r for r in hub.requests if "commit" in r[1]] == [("POST", "/api/datasets/me/boxing-latents/commit/main")]
    uploaded = hub.repo_dir("me/boxing-latents")
    assert load_latent_info(uploaded) == load_latent_info(saved[0])
    assert (
        load_latent_dataset(uploaded, split="train")["latents"]
        == load_latent_dataset(saved[0], split="train")["latents"]
    )


@pytest.mark.slow
def test_load_by_repo_id_from_a_local_server(saved, tmp_path):
    """`load_latent_dataset("user/name")` and `load_latent_info` through the Hub client against `FakeHub`.

    datasets and huggingface_hub read HF_ENDPOINT when imported, so this runs in a fresh interpreter.
    """
    with FakeHub(tmp_path / "hub") as hub:
        export_hub_folder(saved[0], hub.repo_dir("me/boxing-latents"))
        code = (
            "from tekken_diffusers.data.latents import LatentWindowIterableDataset, load_latent_dataset\n"
            "from tekken_diffusers.data.latents import load_latent_info\n"
            "ds = load_latent_dataset('me/boxing-latents', split='train')\n"
            "print(ds.num_rows, load_latent_info('me/boxing-latents').splits['train'].rounds)\n"
            "stream = load_latent_dataset('me/boxing-latents', split='train', streaming=True)\n"
            "print(len(list(LatentWindowIterableDataset(stream, 8))))\n"
        )
        env = dict(
            os.environ,
            HF_ENDPOINT=hub.endpoint,
            HF_HOME=str(tmp_path / "hf_home"),
            HF_TOKEN="hf_test",
            PYTHONPATH=str(ROOT / "src"),
        )
        result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["3", "3", "10"]
    assert any(path.endswith("/data/train-00000-of-00001.parquet") for _, path in hub.requests)


def test_two_player_windows_give_both_players_bits(saved):
    from tekken_diffusers.actions import ids_to_bits

    train = load_latent_dataset(saved[0], split="train")
    two_player = LatentWindowDataset(train.select([1]), 8, random_offset=False)  # round_0001 has actions_p2
    batch = collate_windows([two_player[0], two_player[1]])
    bits = batch.player_action_bits(2)
    assert bits.shape == (2, 8, 2, 8) and bits.dtype == torch.float32
    assert torch.equal(bits[:, :, 0], batch.action_bits)
    assert torch.equal(bits[:, :, 1], ids_to_bits(batch.actions_p2))
    assert batch.player_action_bits(1) is batch.action_bits
    one_player = collate_windows([LatentWindowDataset(train.select([0]), 8, random_offset=False)[0]])
    with pytest.raises(ValueError, match=r"num_players=2: .* carry no player 2 inputs \(actions_p2\)"):
        one_player.player_action_bits(2)
