import zipfile

import numpy as np
import pytest

from tekken_diffusers.data import rounds as rounds_module
from tekken_diffusers.data.rounds import Round, RoundFormatError, load_round, save_round, validate_round
from tests.conftest import make_round


def write_raw(path, **arrays):
    np.savez(path, **arrays)
    return path


def good_arrays(num_frames=6):
    return make_round(num_frames).to_arrays()


def test_save_load_round_trip(tmp_path):
    original = make_round(10, actions_p2=np.arange(10, dtype=np.uint8))
    loaded = load_round(save_round(tmp_path / "r.npz", original))
    for key, value in original.to_arrays().items():
        np.testing.assert_array_equal(loaded.to_arrays()[key], value, err_msg=key)
    assert loaded.fps == 15.0 and loaded.game == "synthetic"


def test_writes_are_deterministic(tmp_path):
    a = save_round(tmp_path / "a.npz", make_round(8))
    b = save_round(tmp_path / "b.npz", make_round(8))
    assert a.read_bytes() == b.read_bytes()


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(rounds_module.np.lib.format, "write_array", broken)
    with pytest.raises(OSError, match="disk full"):
        save_round(tmp_path / "r.npz", make_round(4))
    assert list(tmp_path.iterdir()) == []


def test_seed_names_and_dtypes_accepted(tmp_path):
    arrays = good_arrays()
    arrays["attention_mask"] = np.array([1, 1, 1, 1, 0, 0], dtype=np.int64)
    del arrays["valid_frames"]
    arrays["actions_p1"] = arrays["actions_p1"].astype(np.int64)
    loaded = load_round(write_raw(tmp_path / "seed.npz", **arrays))
    assert loaded.actions_p1.dtype == np.uint8 and loaded.valid_frames.dtype == np.bool_
    # valid_frames convention: the valid prefix, through the last valid frame inclusive.
    assert loaded.num_valid == 4 and loaded.trimmed().num_frames == 4
    np.testing.assert_array_equal(loaded.trimmed().images, arrays["images"][:4])


def _case(name):
    arrays = good_arrays()
    if name == "missing images":
        del arrays["images"]
        return arrays, "images", "no such key"
    if name == "missing actions_p1":
        del arrays["actions_p1"]
        return arrays, "actions_p1", "no such key"
    if name == "missing valid_frames":
        del arrays["valid_frames"]
        return arrays, "valid_frames", "no such key"
    if name == "float images":
        arrays["images"] = arrays["images"].astype(np.float32)
        return arrays, "images", "dtype uint8"
    if name == "float actions":
        arrays["actions_p1"] = arrays["actions_p1"].astype(np.float32)
        return arrays, "actions_p1", "integer action ids"
    if name == "actions out of range":
        arrays["actions_p1"] = np.full(6, 300, dtype=np.int64)
        return arrays, "actions_p1", r"\[0, 255\].*300"
    if name == "rank-3 images":
        arrays["images"] = arrays["images"][:, 0]
        return arrays, "images", "rank 4"
    if name == "channel-last images":
        arrays["images"] = arrays["images"].transpose(0, 2, 3, 1)
        return arrays, "images", "channel-last"
    if name == "rank-2 actions":
        arrays["actions_p1"] = arrays["actions_p1"][:, None]
        return arrays, "actions_p1", "rank 1"
    if name == "short actions":
        arrays["actions_p1"] = arrays["actions_p1"][:5]
        return arrays, "actions_p1", "6 frames like images.*found 5 frames"
    if name == "short actions_p2":
        arrays["actions_p2"] = np.zeros(7, dtype=np.uint8)
        return arrays, "actions_p2", "found 7 frames"
    if name == "short states":
        arrays["states"] = arrays["states"][:3]
        return arrays, "states", "found 3 frames"
    if name == "rank-1 states":
        arrays["states"] = arrays["states"][:, 0]
        return arrays, "states", "rank 2"
    if name == "short mask":
        arrays["valid_frames"] = arrays["valid_frames"][:2]
        return arrays, "valid_frames", "found 2 frames"
    if name == "float mask":
        arrays["valid_frames"] = np.ones(6, dtype=np.float32)
        return arrays, "valid_frames", "bool"
    if name == "hole in mask":
        arrays["valid_frames"] = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
        return arrays, "valid_frames", "hole at frame 2"
    if name == "no valid frame":
        arrays["valid_frames"] = np.zeros(6, dtype=bool)
        return arrays, "valid_frames", "empty round"
    if name == "zero frames":
        arrays = make_round(1).to_arrays()
        for key in ("images", "actions_p1", "valid_frames", "states"):
            arrays[key] = arrays[key][:0]
        return arrays, "images", "empty round"
    if name == "bad fps":
        arrays["fps"] = np.float32(-1)
        return arrays, "fps", "positive scalar"
    if name == "infinite fps":
        arrays["fps"] = np.float32(np.inf)
        return arrays, "fps", "positive scalar"
    if name == "NaN states":  # issue 12.4: passed the loader and poisoned the dataset
        arrays["states"] = arrays["states"].copy()
        arrays["states"][4, 1] = np.nan
        return arrays, "states", r"finite values.*NaN or inf at frame 4 \(column 1\)"
    if name == "infinite states":
        arrays["states"] = arrays["states"].copy()
        arrays["states"][0, 0] = -np.inf
        return arrays, "states", r"NaN or inf at frame 0 \(column 0\)"
    raise KeyError(name)


MALFORMED = [
    "missing images",
    "missing actions_p1",
    "missing valid_frames",
    "float images",
    "float actions",
    "actions out of range",
    "rank-3 images",
    "channel-last images",
    "rank-2 actions",
    "short actions",
    "short actions_p2",
    "short states",
    "rank-1 states",
    "short mask",
    "float mask",
    "hole in mask",
    "no valid frame",
    "zero frames",
    "bad fps",
    "infinite fps",
    "NaN states",
    "infinite states",
]


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_round_names_file_and_key(tmp_path, case):
    arrays, key, detail = _case(case)
    path = write_raw(tmp_path / "round_0007.npz", **arrays)
    with pytest.raises(RoundFormatError) as error:
        load_round(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {key}: expected "), message
    assert pytest.importorskip("re").search(detail, message), message


def test_malformed_round_is_also_refused_on_save(tmp_path):
    bad = make_round(6)
    bad.actions_p1 = bad.actions_p1[:4]
    with pytest.raises(RoundFormatError, match=r"out\.npz: actions_p1: expected 6 frames"):
        save_round(tmp_path / "out.npz", bad)
    assert not (tmp_path / "out.npz").exists()


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(RoundFormatError, match="junk.npz: not a readable .npz"):
        load_round(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        load_round(tmp_path / "nope.npz")


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "pickled.npz"
    with zipfile.ZipFile(path, "w") as archive, archive.open("images.npy", "w") as handle:
        np.lib.format.write_array(handle, np.array([object()]), allow_pickle=True)
    with pytest.raises(RoundFormatError, match="pickled.npz"):
        load_round(path)


def test_extras_survive_a_round_trip(tmp_path):
    original = make_round(5, extras={"state_names": np.array(["a", "b", "c"])})
    loaded = load_round(save_round(tmp_path / "r.npz", original))
    np.testing.assert_array_equal(loaded.extras["state_names"], ["a", "b", "c"])
    assert isinstance(validate_round(loaded.to_arrays()), Round)
