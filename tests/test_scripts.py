"""End-to-end runs of the data scripts, as a user runs them."""

import subprocess
import sys
from pathlib import Path

import pytest

from tekken_diffusers.data.rounds import load_round

ROOT = Path(__file__).resolve().parents[1]


def run(script: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args], capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize("script", ["record_atari.py", "preview_rounds.py", "video_to_rounds.py"])
def test_help(script):
    result = run(script, "--help")
    assert result.returncode == 0 and "usage:" in result.stdout


@pytest.mark.slow
def test_record_then_preview(tmp_path):
    pytest.importorskip("ale_py")
    out = tmp_path / "boxing"
    result = run("record_atari.py", "--out", str(out), "--rounds", "2", "--max-frames", "30", "--no-progress")
    assert result.returncode == 0, result.stderr
    for split in ("train", "val"):
        assert load_round(out / split / "round_0000.npz").num_frames == 30
    result = run("preview_rounds.py", str(out / "val"), "--out-dir", str(tmp_path / "preview"))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "preview").iterdir()) == ["round_0000.mp4", "round_0000.png"]


def test_bad_arguments_are_reported(tmp_path):
    result = run("record_atari.py", "--out", str(tmp_path), "--policy", "lazy")
    assert result.returncode == 2 and "invalid choice: 'lazy'" in result.stderr
    result = run("record_atari.py", "--out", str(tmp_path), "--val-fraction", "2")
    assert result.returncode == 2 and "--val-fraction must lie in [0, 1), got 2.0" in result.stderr
    result = run("preview_rounds.py", str(tmp_path / "missing.npz"))
    assert result.returncode != 0 and "missing.npz: no such round file or folder" in result.stderr


def fails(main, capsys, *argv) -> str:
    """Run a script's `main(argv)` in-process; it must exit with argparse's code 2 and one `error:` line."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len([line for line in err.splitlines() if "error:" in line]) == 1
    return err


def test_record_atari_refuses_bad_values(tmp_path, capsys):
    """Issue 12.6/12.7: these crashed deep in the emulator or were accepted."""
    from tekken_diffusers.cli.record_atari import main

    out = tmp_path / "out"
    assert "--size must be (height, width) with both >= 8, got (0, 0)" in fails(
        main, capsys, "--out", out, "--size", 0, 0
    )
    assert "--frame-skip must be >= 1, got 0" in fails(main, capsys, "--out", out, "--frame-skip", 0)
    assert "--min-frames must be >= 1, got -5" in fails(main, capsys, "--out", out, "--min-frames", -5)
    (tmp_path / "file").write_text("")
    assert "is a file (expected a folder, or nothing)" in fails(main, capsys, "--out", tmp_path / "file")
    assert not out.exists()


def test_record_atari_refuses_a_folder_recorded_with_other_settings(tmp_path, capsys):
    """Issue 12.3: a second recording with another size and seed went into the same folder, mixing frame sizes."""
    pytest.importorskip("ale_py")
    from tekken_diffusers.cli.record_atari import main

    out = tmp_path / "boxing"
    tiny = ["--out", out, "--rounds", 1, "--max-frames", 4, "--min-frames", 2, "--val-fraction", 0, "--no-progress"]
    assert main([str(a) for a in [*tiny, "--size", 16, 16, "--seed", 5]]) == 0
    before = (out / "train" / "round_0000.npz").read_bytes()
    err = fails(main, capsys, *tiny, "--size", 8, 8, "--seed", 6)
    assert f"--out {out} holds rounds recorded with other settings (seed 5 there, 6 asked, size [16, 16] there" in err
    assert (out / "train" / "round_0000.npz").read_bytes() == before
    # The same settings resume; a folder of rounds without recording.json is checked round by round.
    assert main([str(a) for a in [*tiny, "--size", 16, 16, "--seed", 5]]) == 0
    (out / "recording.json").unlink()
    err = fails(main, capsys, *tiny, "--size", 8, 8, "--seed", 5)
    assert "round_0000.npz was recorded with other settings (size (16, 16) there, (8, 8) asked)" in err


def test_video_to_rounds_refuses_bad_values(tmp_path, capsys):
    """Issue 12.7: --split foo or ../escaped wrote outside train/val (or outside --out), --start-index -1 wrote
    round_-001.npz."""
    from tekken_diffusers.cli.video_to_rounds import main

    base = ["--video", tmp_path / "match.mp4", "--inputs", tmp_path / "match.csv", "--out", tmp_path / "out"]
    assert "argument --split: invalid choice: 'foo'" in fails(main, capsys, *base, "--split", "foo")
    assert "invalid choice: '../escaped'" in fails(main, capsys, *base, "--split", "../escaped")
    assert "--start-index must be >= 0, got -1" in fails(main, capsys, *base, "--start-index", -1)
    assert "--prefix must be a plain file name prefix" in fails(main, capsys, *base, "--prefix", "../x")
    assert not (tmp_path / "out").exists() and not (tmp_path / "escaped").exists()
