"""tekken-benchmark in quick mode on a tiny random pipeline: every part measures something, the JSON and the markdown
section are written, and the neighbour process it starts is gone afterwards."""

from __future__ import annotations

import json
import math
import os

import pytest
import torch

from tekken_diffusers import runtime
from tekken_diffusers.benchmarking import NeighbourLoad, cpu_model_name, interleaved_times, markdown_table
from tekken_diffusers.cli import benchmark_world_model
from tekken_diffusers.pipelines import build_random_pipeline


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory):
    folder = tmp_path_factory.mktemp("benchmark") / "tiny"
    build_random_pipeline("tiny", seed=0).save_pretrained(folder)  # with its tiny VAE
    return folder


def positive(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value) and value > 0


def assert_gone(pid: int) -> None:
    """The process no longer exists (it was stopped and reaped, not left as a zombie)."""
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_quick_run_measures_every_part(tiny_pipeline, tmp_path, monkeypatch):
    doc, results_path = tmp_path / "benchmarks.md", tmp_path / "out" / "world_model.json"
    doc.write_text("# Benchmarks\n\n## VAE\n\nkeep me\n\n## World model\n\nold numbers\n\n## Later\n\nme too\n")
    # The training part's compiled row, through a stand-in for torch.compile that counts the blocks' calls (the real
    # compilation is tested against eager in tests/models/test_transformer_tekken.py, and takes longer than this run).
    compiled = {"calls": 0}

    def count_calls(blocks, mode, device=None):
        compiled["mode"] = mode
        for block in blocks:

            def forward(*args, eager=block.forward, **kwargs):
                compiled["calls"] += 1
                return eager(*args, **kwargs)

            block.forward = forward
        return True

    monkeypatch.setattr(runtime, "compile_for_training", count_calls)
    argv = ["--pipeline", str(tiny_pipeline), "--quick", "--out", str(doc), "--json", str(results_path)]
    assert benchmark_world_model.main([*argv, "--train-compile", "yes"]) == 0

    results = json.loads(results_path.read_text())
    assert set(results["parts"]) == set(benchmark_world_model.PARTS)
    machine = results["machine"]
    assert machine["cpu"] and machine["cpu"] != "unknown"
    assert set(machine["flags"]) == {"avx512_bf16", "amx_bf16", "avx2"}
    assert machine["torch_threads"] == 1 and machine["torch"] and machine["omp_wait_policy"]
    assert positive(machine["ceilings_gflops"]["fp32"]) and positive(machine["ceilings_gflops"]["bf16"])
    parts = results["parts"]

    # Generation: both dtypes (the auto one marked) at every step count of the quick run.
    generation = parts["generation"]["rows"]
    assert {(row["dtype"], row["steps"]) for row in generation} == {(d, s) for d in ("fp32", "bf16") for s in (1, 2)}
    assert sum(row["auto"] for row in generation) == 2 and parts["generation"]["decode"] is True
    for row in generation:
        assert all(positive(row[key]) for key in ("ms_p50", "ms_p95", "frames_per_second", "x_real_time"))
        assert row["ms_p95"] >= row["ms_p50"] and row["frames"] >= 8
        assert row["frames_per_second"] == pytest.approx(1000 / row["ms_p50"])

    # The cache against full recomputation, one row per context length, with the ratio.
    cache = parts["cache"]["rows"]
    assert [row["context_frames"] for row in cache] == [4, 8]
    for row in cache:
        assert all(positive(row[key]) for key in ("cached_ms", "full_ms", "speedup", "cache_mb"))
        assert row["speedup"] == pytest.approx(row["full_ms"] / row["cached_ms"])

    # The neighbour worked, the rate beside it is compared with the rate alone, and the process is gone.
    neighbour = parts["neighbour"]
    assert neighbour["neighbour"]["matmuls"] > 0 and neighbour["neighbour"]["exit_code"] is not None
    assert_gone(neighbour["neighbour"]["pid"])
    alone, loaded = neighbour["rows"]
    assert positive(alone["frames_per_second"]) and positive(loaded["frames_per_second"])
    assert neighbour["ratio"] == pytest.approx(loaded["frames_per_second"] / alone["frames_per_second"])

    # Sessions: per-session and aggregate rates for N = 1, 2, round-robin and batched, measured in the same run.
    sessions = parts["sessions"]
    assert sessions["steppers"] == ["round-robin", "batched"]
    rows = {(row["sessions"], row["stepper"]): row for row in sessions["rows"]}
    assert list(rows) == [(n, stepper) for n in (1, 2) for stepper in ("round-robin", "batched")]
    steps = sessions["steps"]
    for (count, stepper), row in rows.items():
        assert positive(row["per_session_fps"]) and row["tick_ms_p95"] >= row["tick_ms_p50"]
        assert row["aggregate_fps"] == pytest.approx(row["sessions"] * row["per_session_fps"])
        assert row["speedup"] == pytest.approx(rows[count, "round-robin"]["tick_ms_p50"] / row["tick_ms_p50"])
        # Round-robin: N forwards per denoising step; batched: one forward of batch N.
        assert row["forwards_per_tick"] == (count * steps if stepper == "round-robin" else steps)

    # Training against the measured ceiling of each dtype.
    training = parts["training"]["rows"]
    auto = "bf16" if runtime.resolve_mixed_precision("auto", "cpu") == "bf16" else "fp32"
    assert [(row["precision"], row["compiled"]) for row in training] == [
        ("fp32", False),
        ("bf16", False),
        (auto, True),
    ]
    assert [row["auto"] for row in training] == [False, False, True]
    assert compiled["mode"] == "yes" and compiled["calls"] > 0
    for row in training:
        assert all(positive(row[key]) for key in ("tokens_per_second", "gflops", "mfu", "ms_per_step"))
        assert row["ceiling_gflops"] == machine["ceilings_gflops"][row["precision"]]
        assert row["mfu"] == pytest.approx(row["gflops"] / row["ceiling_gflops"])

    # Loader and VAE through the other benchmarks' functions.
    assert parts["loader"]["rows"] and all(positive(row["windows_per_second"]) for row in parts["loader"]["rows"])
    assert parts["loader"]["dataset"]["latent_shape"] == [4, 4, 4]
    vae = parts["vae"]["rows"]
    assert {(row["operation"], row["precision"]) for row in vae} == {
        (op, p) for op in ("encode", "decode") for p in ("fp32", "bf16")
    }
    assert all(positive(row["frames_per_second"]) for row in vae)

    # The markdown: the section replaced, its neighbours kept, every part's table there.
    text = doc.read_text()
    assert "old numbers" not in text and "keep me" in text and "me too" in text
    assert text.count("## World model") == 1 and text.index("## VAE") < text.index("## World model")
    section = text[text.index("## World model") : text.index("## Later")]
    assert machine["cpu"] in section and "GFLOP/s" in section and "tekken-benchmark --pipeline" in section
    for caption in ("**Generation**", "**KV cache", "**Beside a busy neighbour**", "**Concurrent sessions**"):
        assert caption in section
    for caption in (
        "**Training**",
        "**Loader**",
        "**VAE**",
        "round-robin",
        "| fp32 (auto) |",
        f"| {auto} (auto) | yes |",
    ):
        assert caption in section
    assert "| 2 | batched |" in section and "| 2 | round-robin |" in section and "× round-robin" in section


def test_cpu_isa_avx2_restarts_under_the_limits_and_writes_its_own_section(tiny_pipeline, tmp_path, monkeypatch):
    """`--cpu-isa avx2` measures in a child process whose torch, oneDNN and MKL were started limited to AVX2: bf16 is
    no longer native there (auto picks fp32 for training too), torch dispatches below AVX-512, and the results go to
    their own section, leaving the native one alone."""
    for name in runtime.ISA_LIMIT_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    doc, results_path = tmp_path / "benchmarks.md", tmp_path / "avx2.json"
    doc.write_text("# Benchmarks\n\n## World model\n\nnative numbers\n")
    argv = ["--pipeline", str(tiny_pipeline), "--quick", "--parts", "generation", "training", "--threads", "1"]
    argv += ["--cpu-isa", "avx2", "--out", str(doc), "--json", str(results_path)]
    assert benchmark_world_model.main(argv) == 0
    assert runtime.cpu_isa_limits() == {}  # this process was left as it was

    results = json.loads(results_path.read_text())
    machine = results["machine"]
    assert machine["isa_limits"] == runtime.CPU_ISA_LIMITS["avx2"] and results["settings"]["cpu_isa"] == "avx2"
    assert machine["native_bf16"] is None and "AVX512" not in machine["torch_cpu_capability"].upper()
    assert results["model"]["auto_dtype"] == "fp32"
    training = {row["precision"]: row for row in results["parts"]["training"]["rows"]}
    assert training["fp32"]["auto"] and not training["bf16"]["auto"]
    # Emulated bf16 gets no utilisation: its 2048² ceiling would make the model's small matmuls exceed 100 %.
    assert training["bf16"]["emulated"] and training["bf16"]["mfu"] is None
    assert not training["fp32"]["emulated"] and 0 < training["fp32"]["mfu"]
    text = doc.read_text()
    assert "native numbers" in text and "## World model, AVX2 only (emulated)" in text
    section = text[text.index("## World model, AVX2") :]
    assert "ONEDNN_MAX_CPU_ISA=AVX2" in section and "estimate such a CPU" in section
    assert "| bf16 | no | 2×4 |" in section and "n/a (emulated)" in section
    assert benchmark_world_model.default_json("avx2") == "outputs/benchmark_world_model_avx2.json"
    assert benchmark_world_model.default_json("native") == "outputs/benchmark_world_model.json"


def test_parts_select_what_runs_and_a_missing_vae_is_reported(tmp_path):
    folder = tmp_path / "latent-only"
    build_random_pipeline("tiny", vae=None, seed=0).save_pretrained(folder)
    results_path = tmp_path / "results.json"
    argv = ["--pipeline", str(folder), "--quick", "--parts", "cache", "vae", "--contexts", "3"]
    assert benchmark_world_model.main(argv + ["--out", str(tmp_path / "b.md"), "--json", str(results_path)]) == 0
    parts = json.loads(results_path.read_text())["parts"]
    assert set(parts) == {"cache", "vae"}
    assert parts["vae"]["skipped"] == "the pipeline has no VAE"
    assert [row["context_frames"] for row in parts["cache"]["rows"]] == [3]
    assert "**VAE**: skipped" in (tmp_path / "b.md").read_text()


def test_generation_and_the_neighbour_are_timed_tuned_and_at_each_thread_count(tiny_pipeline, tmp_path, monkeypatch):
    """With no thread count from the user, generation runs at one thread, at every core, and under the
    `ThreadTuner` the generating commands use (marked auto); the neighbour part measures each count alternating with
    the neighbour paused, then the tuned session alone and beside it. The full count is restored afterwards."""
    for name in (runtime.THREADS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "default_num_threads", lambda: 2)
    results_path, doc = tmp_path / "results.json", tmp_path / "b.md"
    argv = ["--pipeline", str(tiny_pipeline), "--quick", "--parts", "generation", "neighbour", "--steps", "1"]
    try:
        assert benchmark_world_model.main(argv + ["--out", str(doc), "--json", str(results_path)]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    results = json.loads(results_path.read_text())
    assert results["machine"]["generation_threads"] == "tuned" and results["machine"]["torch_threads"] == 2
    rows = results["parts"]["generation"]["rows"]
    assert [(row["dtype"], row["threads"]) for row in rows] == [("fp32", 1), ("fp32", 2), ("fp32", "tuned"),
                                                                ("bf16", "tuned")]  # fmt: skip
    assert [(row["dtype"], row["threads"]) for row in rows if row["auto"]] == [("fp32", "tuned")]
    assert all(row["chosen_threads"] in (1, 2) for row in rows if row["threads"] == "tuned")
    neighbour = results["parts"]["neighbour"]
    assert [(row["threads"], row["load"]) for row in neighbour["rows"]] == [
        (count, load) for count in (1, 2, "tuned") for load in ("alone", "beside the neighbour")
    ]
    tuned = neighbour["rows"][-2:]
    assert neighbour["threads"] == "tuned"
    assert neighbour["ratio"] == pytest.approx(tuned[1]["frames_per_second"] / tuned[0]["frames_per_second"])
    assert len(neighbour["neighbour"]["pids"]) == 3 and neighbour["neighbour"]["matmuls"] > 0
    for pid in neighbour["neighbour"]["pids"]:
        assert_gone(pid)
    text = doc.read_text()
    assert "| fp32 | 1 | 1 |" in text and "| fp32 | 2 | 1 |" in text and "| fp32 (auto) | tuned (kept " in text


def test_sessions_part_times_both_steppers_interleaved_with_two_players(tmp_path, monkeypatch):
    """The sessions part alone on a two-player pipeline: both steppers' configurations go through one interleaved
    timing (the same rounds), and the batched one really steps all sessions in one forward per denoising step."""
    from tekken_diffusers.benchmarking import world_model

    folder = tmp_path / "two-player"
    build_random_pipeline("tiny", vae=None, seed=0, num_players=2).save_pretrained(folder)
    timed_together = []
    original = world_model.interleaved_times

    def recording(cases, *args, **kwargs):
        timed_together.append(list(cases))
        return original(cases, *args, **kwargs)

    monkeypatch.setattr(world_model, "interleaved_times", recording)
    results_path = tmp_path / "results.json"
    argv = ["--pipeline", str(folder), "--quick", "--parts", "sessions", "--sessions", "3", "--reference-steps", "2"]
    assert benchmark_world_model.main(argv + ["--out", str(tmp_path / "b.md"), "--json", str(results_path)]) == 0
    assert timed_together == [[("round-robin", 3), ("batched", 3)]]
    part = json.loads(results_path.read_text())["parts"]["sessions"]
    assert [(row["stepper"], row["forwards_per_tick"]) for row in part["rows"]] == [("round-robin", 6), ("batched", 2)]
    assert "| 3 | batched |" in (tmp_path / "b.md").read_text()


def test_a_part_that_measures_nothing_fails(tiny_pipeline, monkeypatch):
    from tekken_diffusers.benchmarking import world_model
    from tekken_diffusers.cli import benchmark_dataloader

    argv = ["--pipeline", str(tiny_pipeline), "--quick", "--no-write", "--parts"]
    with monkeypatch.context() as patch:  # no timings at all
        patch.setattr(world_model, "interleaved_times", lambda cases, *a, **k: {name: [] for name in cases})
        for part in ("generation", "cache", "sessions", "training"):
            with pytest.raises(RuntimeError, match="measured nothing"):
                benchmark_world_model.main(argv + [part])
    with monkeypatch.context() as patch:  # a reused measurement that returns no rows
        patch.setattr(benchmark_dataloader, "measure_windows", lambda *args: [])
        with pytest.raises(RuntimeError, match="'loader' measured nothing"):
            benchmark_world_model.main(argv + ["loader"])
    with pytest.raises(RuntimeError, match="mfu"):
        benchmark_world_model.require_positive("training", [{"mfu": 0.0}], ("mfu",))


def test_neighbour_is_stopped_even_when_the_measurement_fails():
    neighbour = NeighbourLoad(threads=1, size=64, lifetime=60)
    with pytest.raises(KeyError), neighbour:
        pid = neighbour.pid
        neighbour.pause()
        raise KeyError("a failing measurement")
    assert neighbour.process.returncode is not None and neighbour.matmuls is not None
    assert_gone(pid)


def test_helpers():
    assert cpu_model_name()
    calls = []
    times = interleaved_times(
        {"a": lambda: calls.append("a") or 1.0, "b": lambda: calls.append("b") or 2.0}, rounds=2, per_round=2, warmup=1
    )
    assert times == {"a": [1.0] * 4, "b": [2.0] * 4}
    assert calls == ["a", "b"] + ["a", "a", "b", "b"] * 2  # warm-up, then alternating rounds
    assert markdown_table(("x", "y"), [("1", "2")]) == "| x | y |\n|---|---:|\n| 1 | 2 |"


def test_a_pipeline_with_an_opponent_is_timed_as_played(tmp_path, monkeypatch):
    """With an opponent policy the benchmark's sessions get player 1's inputs alone, so every timed step includes the
    opponent's draw of player 2's input (and the context's player-2 inputs are read from the frames)."""
    from tekken_diffusers import TekkenOpponentPolicy, TekkenWorldModelPipeline
    from tekken_diffusers.pipelines.rollout import TekkenRollout

    base = build_random_pipeline("tiny", vae=None, seed=0, num_players=2)
    config = base.transformer.config
    opponent = TekkenOpponentPolicy(
        in_channels=config.in_channels, sample_size=base.latent_size, hidden_dim=16, conv_channels=4
    )
    folder = tmp_path / "with-opponent"
    TekkenWorldModelPipeline(base.transformer, base.scheduler, None, opponent=opponent).save_pretrained(folder)
    draws = []
    original = TekkenRollout.choose_opponent_inputs

    def counting(self, bits, generator):
        draws.append(bool(torch.isnan(bits).any()))
        return original(self, bits, generator)

    monkeypatch.setattr(TekkenRollout, "choose_opponent_inputs", counting)
    argv = ["--pipeline", str(folder), "--quick", "--parts", "generation", "cache", "sessions", "--sessions", "2"]
    results_path = tmp_path / "results.json"
    assert benchmark_world_model.main(argv + ["--out", str(tmp_path / "b.md"), "--json", str(results_path)]) == 0
    assert sum(draws) > 0  # player 2 was drawn by the policy in the timed steps
    parts = json.loads(results_path.read_text())["parts"]
    assert set(parts) >= {"generation", "cache", "sessions"}
