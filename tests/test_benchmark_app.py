"""tekken-benchmark-app: the stats-line parsing, the rows and the table, the settings, a clear error without a
browser, the server stopped whatever happens, and (slow) a tiny end-to-end run in headless Chromium."""

from __future__ import annotations

import json
import math
import shutil

import pytest

from tekken_diffusers.benchmarking import app as app_benchmark
from tekken_diffusers.benchmarking.app import AppServer, BrowserMissing, find_browser, parse_stats, summarize_tabs
from tekken_diffusers.cli import benchmark_app

STATS = (
    "frame 123 / 2000 · 15.0 frames/s sent · model 41.5 frames/s · latency 24 ms/frame · 3 game(s) per batch · "
    "input f+1 · player 2 input n"
)


def tab(on_screen, generated=15.0, model=40.0, problems=(), keys=True, batch=2):
    return {
        "on_screen_fps": on_screen, "generated_fps": generated, "model_fps": model, "latency_ms": 20.0,
        "batch": batch, "problems": list(problems), "keys_reached": keys,
    }  # fmt: skip


def test_parse_stats():
    assert parse_stats(STATS) == {"frame": 123, "model_fps": 41.5, "latency_ms": 24.0, "batch": 3, "input": "f+1"}
    assert parse_stats("frame 0 / 2000") == {
        "frame": 0, "model_fps": None, "latency_ms": None, "batch": None, "input": None,
    }  # fmt: skip
    assert parse_stats("press Start")["frame"] is None


def test_rows_take_medians_count_refusals_and_make_a_table():
    row = summarize_tabs([tab(15.0), tab(14.0, problems=["Queue is full"], keys=False), tab(9.0, model=None)])
    assert row["tabs"] == 3 and row["on_screen_fps"] == 14.0 and row["on_screen_fps_min"] == 9.0
    assert row["model_fps"] == 40.0  # windows without the number are left out of the median
    assert row["refused"] == 1 and row["keys_reached"] == 2 and len(row["per_tab"]) == 3
    results = {
        "command": "tekken-benchmark-app --tabs 3",
        "json": "outputs/benchmark_app.json",
        "settings": {"tabs": [3], "seconds": 10.0, "warmup": 5.0, "game_fps": 15.0, "quick": False},
        "machine": {
            "date": "2026-12-01T10:00:00", "cpu": "AMD EPYC 9R14", "machine": "x86_64", "logical_cpus": 2,
            "torch": "2.13.0", "omp_wait_policy": "PASSIVE", "load_average": 0.5,
        },
        "app": {"source": "`pipelines/boxing-world-model`", "steps": 4, "threads": 2, "dtype": "auto"},
        "browser": "Chromium 140.0",
        "rows": [row],
        "load_average_after": None,
    }  # fmt: skip
    text = benchmark_app.markdown(results)
    assert text.startswith("## Play app\n") and "AMD EPYC 9R14" in text and "4 steps per frame" in text
    assert "2 torch threads" in text and "Chromium 140.0" in text and "after 5 s of play" in text
    assert "| 3 | 14.0 | 9.0 | 15.0 | 40.0 | 20 | 2 | 1 | 2/3 |" in text
    assert "unknown" not in text and "– after" in text  # no load average after: a dash


def test_settings_and_their_checks(tmp_path):
    parser = benchmark_app.build_parser()
    args = parser.parse_args([])
    assert benchmark_app.resolve_settings(args) == {"tabs": [1, 8], "seconds": 10.0, "warmup": 5.0}
    args = parser.parse_args(["--quick", "--tabs", "3", "--seconds", "4"])
    assert benchmark_app.resolve_settings(args) == {"tabs": [3], "seconds": 4.0, "warmup": 1.0}
    for argv in (["--tabs", "0"], ["--seconds", "0"], ["--warmup", "-1"], ["--steps", "0"],
                 ["--pipeline", str(tmp_path / "nope")], ["--rounds", str(tmp_path / "nope")]):  # fmt: skip
        with pytest.raises(SystemExit):
            benchmark_app.main(argv + ["--no-write"])


def test_a_missing_browser_is_one_clear_line(monkeypatch, capsys):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(BrowserMissing, match=r"not found: chromium, chromedriver \(Debian"):
        find_browser()
    with pytest.raises(SystemExit) as exit_info:
        benchmark_app.main(["--quick", "--no-write"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip().count("\n") == 0 and "chromium" in err and "Traceback" not in err


def test_the_server_is_stopped_when_it_fails_to_start():
    server = AppServer(["--pipeline", "no-such-pipeline", "--rounds", "no-such-rounds", "--steps", "0"])
    with pytest.raises(RuntimeError, match="the app exited with code 2") as error:
        with server:
            pass
    assert "--steps" in str(error.value)  # the app's own message, from its log
    assert server.process.returncode is not None  # reaped


@pytest.mark.slow
def test_tiny_end_to_end_run(tmp_path, monkeypatch):
    try:
        find_browser()
    except BrowserMissing as error:
        pytest.skip(str(error))
    pytest.importorskip("gradio")
    servers = []
    original = AppServer.__enter__

    def recording(self):
        servers.append(self)
        return original(self)

    monkeypatch.setattr(app_benchmark.AppServer, "__enter__", recording)
    doc, results_path = tmp_path / "benchmarks.md", tmp_path / "app.json"
    doc.write_text("# Benchmarks\n\n## World model\n\nkeep me\n")
    argv = ["--quick", "--tabs", "1", "2", "--steps", "1", "--threads", "1", "--out", str(doc)]
    assert benchmark_app.main(argv + ["--json", str(results_path)]) == 0
    results = json.loads(results_path.read_text())
    assert [row["tabs"] for row in results["rows"]] == [1, 2]
    for row in results["rows"]:
        assert len(row["per_tab"]) == row["tabs"] and row["refused"] == 0 and row["keys_reached"] == row["tabs"]
        for measured in row["per_tab"]:
            assert measured["on_screen_fps"] > 0 and math.isfinite(measured["on_screen_fps"])
            assert measured["changes"] > 0 and measured["generated_fps"] > 0 and measured["input"] == "f+1"
    assert results["app"]["threads"] == 1 and results["app"]["steps"] == 1 and results["machine"]["cpu"]
    text = doc.read_text()
    assert "keep me" in text and "## Play app" in text and "| 2 |" in text
    assert len(servers) == 1 and servers[0].process.returncode is not None  # the server was stopped
