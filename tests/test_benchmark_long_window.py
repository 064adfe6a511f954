"""tekken-benchmark-long-window at toy sizes: one child process per (length, path), JSON and a markdown table."""

from __future__ import annotations

import json

from tekken_diffusers.cli import benchmark_long_window


def test_benchmark_measures_both_paths_per_length_in_children(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    argv = ["--frames", "2", "4", "--latent-size", "4", "4", "--width", "32", "--heads", "2", "--layers", "2"]
    argv += ["--threads", "1", "--timeout", "120", "--output-dir", str(tmp_path)]
    assert benchmark_long_window.main(argv) == 0

    rows = json.loads((tmp_path / "long_window.json").read_text())["rows"]
    assert [(row["frames"], row["attention"]) for row in rows] == [
        (2, "dense"),
        (2, "chunked"),
        (4, "dense"),
        (4, "chunked"),
    ]
    for row in rows:
        assert row["status"] == "ok", row
        assert row["tokens"] == row["frames"] * 16 and row["threads"] == 1
        assert row["seconds"] > 0 and row["peak_rss_mib"] >= row["rss_before_mib"] > 10
    table = (tmp_path / "long_window.md").read_text()
    assert "| frames | tokens | attention |" in table and "| 4 | 64 | chunked |" in table


def test_child_failures_become_status_rows(monkeypatch):
    # an error, the out-of-memory killer's signal and a hang are reported as the row's status, not raised
    for code, status in [
        ("import sys; sys.stderr.write('Traceback\\nMemoryError\\n'); sys.exit(1)", "failed (exit 1): MemoryError"),
        ("import os, signal; os.kill(os.getpid(), signal.SIGKILL)", "killed by signal 9"),
        ("import time; time.sleep(30)", "timed out after 1 s"),
    ]:
        monkeypatch.setattr(benchmark_long_window, "CHILD_CODE", code)
        assert benchmark_long_window.measure_in_child({}, timeout=1) == {"status": status}


def test_teacher_forcing_rows_count_both_halves(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    rows = benchmark_long_window.benchmark_long_window(
        frames=[3],
        latent_size=(4, 4),
        width=32,
        heads=2,
        layers=2,
        attention=["chunked"],
        chunk_tokens=16,
        teacher_forcing=True,
        threads=1,
        timeout=120,
    )
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["tokens"] == 2 * 3 * 16
