"""Precision and threads chosen for the machine (issue 11, items 2 and 3): the detector on faked CPUs and GPUs, the
resolution of "auto", the thread count from affinity, topology and quota, and the CLIs and the app passing
--dtype/--threads through."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from tekken_diffusers import runtime
from tekken_diffusers.data.rounds import save_round
from tekken_diffusers.pipelines import TekkenWorldModelPipeline, build_random_pipeline
from tests.conftest import make_round

ZEN3_FLAGS = {"fpu", "sse4_2", "avx", "avx2", "fma"}  # the 2-core laptop CPU: no AVX-512
ZEN4_FLAGS = ZEN3_FLAGS | {"avx512f", "avx512_bf16"}
SAPPHIRE_RAPIDS_FLAGS = ZEN3_FLAGS | {"avx512f", "amx_tile", "amx_bf16"}


@pytest.fixture
def fake_cpu(monkeypatch):
    """Set the CPU's flags (and torch's dispatch level) that the detector sees."""

    def set_cpu(flags: set[str], capability: str = "AVX2") -> None:
        monkeypatch.setattr(runtime, "cpu_flags", lambda: set(flags))
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
        for name in runtime.ISA_LIMIT_VARIABLES:  # a limit in the caller's environment would change the answers
            monkeypatch.delenv(name, raising=False)

    return set_cpu


@pytest.fixture
def one_thread_after():
    """Tests that change torch's threads put back the suite's single thread (tests/conftest.py)."""
    yield
    torch.set_num_threads(1)


def test_cpu_flags_reads_x86_and_arm(tmp_path):
    x86 = tmp_path / "x86"
    x86.write_text("processor\t: 0\nmodel name\t: AMD EPYC\nflags\t\t: fpu avx2 avx512_bf16\n\nprocessor\t: 1\n")
    arm = tmp_path / "arm"
    arm.write_text("processor\t: 0\nFeatures\t: fp asimd bf16 i8mm\n")
    assert runtime.cpu_flags(x86) == {"fpu", "avx2", "avx512_bf16"}
    assert runtime.cpu_flags(arm) == {"fp", "asimd", "bf16", "i8mm"}
    assert runtime.cpu_flags(tmp_path / "missing") == set()


def test_native_bf16_only_with_the_cpu_flags(fake_cpu):
    fake_cpu(ZEN3_FLAGS)
    assert runtime.native_bf16("cpu") is None
    assert runtime.native_bf16("cpu", flags=ZEN4_FLAGS) == "CPU flag avx512_bf16"
    assert runtime.native_bf16("cpu", flags=SAPPHIRE_RAPIDS_FLAGS) == "CPU flag amx_bf16"
    fake_cpu(set(), capability="AVX512")  # no /proc/cpuinfo: AVX-512 alone does not mean bf16 (Skylake-X)
    assert runtime.native_bf16("cpu") is None
    fake_cpu(set(), capability="AVX512_BF16")
    assert runtime.native_bf16("cpu") == "torch CPU capability AVX512_BF16"


def test_instruction_set_limits_take_native_bf16_away(fake_cpu, monkeypatch, caplog):
    fake_cpu(ZEN4_FLAGS)
    assert runtime.cpu_isa_limits() == {} and runtime.bf16_isa_limit() is None
    assert runtime.native_bf16("cpu") == "CPU flag avx512_bf16"
    # tekken-benchmark --cpu-isa avx2: every library kept to AVX2, so bf16 would be emulated.
    for name, value in runtime.CPU_ISA_LIMITS["avx2"].items():
        monkeypatch.setenv(name, value)
    assert runtime.cpu_isa_limits() == runtime.CPU_ISA_LIMITS["avx2"]
    assert runtime.bf16_isa_limit() == "ATEN_CPU_CAPABILITY=avx2"
    assert runtime.native_bf16("cpu") is None
    with caplog.at_level(logging.INFO, logger="tekken_diffusers.runtime"):
        assert runtime.resolve_dtype("auto") == torch.float32
        assert runtime.resolve_mixed_precision("auto", "cpu") == "no"
    assert "no native bf16 on this cpu under ATEN_CPU_CAPABILITY=avx2" in caplog.text
    # Each library's limit counts on its own; limits that still allow bf16 do not.
    cases = {
        ("ATEN_CPU_CAPABILITY", "default"): "ATEN_CPU_CAPABILITY=default",
        ("ATEN_CPU_CAPABILITY", "avx512"): None,
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE"): "ONEDNN_MAX_CPU_ISA=AVX512_CORE",
        ("DNNL_MAX_CPU_ISA", "avx2_vnni"): "DNNL_MAX_CPU_ISA=avx2_vnni",
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_BF16"): None,
        ("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX"): None,
        ("ONEDNN_MAX_CPU_ISA", "ALL"): None,
        ("MKL_ENABLE_INSTRUCTIONS", "AVX2"): None,  # MKL computes no bf16 here
    }
    for (name, value), expected in cases.items():
        assert runtime.bf16_isa_limit({name: value}) == expected, (name, value)
        assert (runtime.native_bf16("cpu", environ={name: value}) is None) == (expected is not None)


def test_native_bf16_on_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    assert runtime.native_bf16("cuda") == "CUDA compute capability 9.0"
    assert runtime.resolve_dtype("auto", "cuda") == torch.bfloat16
    assert runtime.resolve_dtype("float16", "cuda") == torch.float16  # fine on a GPU, refused on a CPU
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))  # Turing: emulated
    assert runtime.native_bf16("cuda") is None
    assert runtime.resolve_dtype("auto", "cuda") == torch.float32


def test_auto_is_bf16_only_with_native_bf16(fake_cpu, caplog):
    fake_cpu(ZEN3_FLAGS)
    with caplog.at_level(logging.INFO, logger="tekken_diffusers.runtime"):
        assert runtime.resolve_dtype("auto") == torch.float32
    assert "dtype auto -> float32 (no native bf16 on this cpu" in caplog.text
    fake_cpu(ZEN4_FLAGS)
    assert runtime.resolve_dtype("auto") == torch.bfloat16
    assert runtime.resolve_dtype("float32") == torch.float32


def test_auto_keeps_fp32_for_narrow_models_at_batch_1_on_a_cpu(fake_cpu, caplog):
    fake_cpu(ZEN4_FLAGS)
    with caplog.at_level(logging.INFO, logger="tekken_diffusers.runtime"):
        assert runtime.resolve_dtype("auto", "cpu", model_width=128) == torch.float32
    assert "128-wide model gains nothing from bf16" in caplog.text
    assert runtime.resolve_dtype("auto", "cpu", model_width=runtime.BF16_MIN_CPU_WIDTH) == torch.bfloat16
    assert runtime.resolve_dtype("auto", "cpu", model_width=256) == torch.bfloat16  # the shipped model's width
    assert runtime.resolve_dtype("bfloat16", "cpu", model_width=128) == torch.bfloat16  # explicit wins
    fake_cpu(ZEN3_FLAGS)
    assert runtime.resolve_dtype("auto", "cpu", model_width=2048) == torch.float32


def test_explicit_choices_override_auto(fake_cpu, caplog):
    fake_cpu(ZEN3_FLAGS)
    with caplog.at_level(logging.WARNING, logger="tekken_diffusers.runtime"):
        assert runtime.resolve_dtype("bfloat16") == torch.bfloat16
    assert "bfloat16 on this cpu is emulated" in caplog.text
    fake_cpu(ZEN4_FLAGS)
    assert runtime.resolve_dtype("float32") == torch.float32
    assert runtime.resolve_dtype(torch.bfloat16) == torch.bfloat16


@pytest.mark.parametrize(
    ("dtype", "message"),
    [
        ("float16", "float16 on a CPU has no native matmul"),
        ("fp16", "float16 on a CPU has no native matmul"),
        ("half", "unknown dtype 'half'; known: auto, float32, bfloat16"),
        (torch.int8, "unsupported dtype torch.int8"),
    ],
)
def test_bad_dtypes_are_refused_with_a_reason(dtype, message):
    with pytest.raises(ValueError, match=message):
        runtime.resolve_dtype(dtype, "cpu")


def test_mixed_precision_resolution(fake_cpu, monkeypatch):
    fake_cpu(ZEN3_FLAGS)
    assert runtime.resolve_mixed_precision("auto", "cpu") == "no"
    assert runtime.resolve_mixed_precision("bf16", "cpu") == "bf16"
    assert runtime.resolve_mixed_precision("no", "cpu") == "no"
    fake_cpu(ZEN4_FLAGS)
    assert runtime.resolve_mixed_precision("auto", "cpu") == "bf16"
    assert runtime.resolve_mixed_precision("no", "cpu") == "no"
    with pytest.raises(ValueError, match="float16 on a CPU"):
        runtime.resolve_mixed_precision("fp16", "cpu")
    with pytest.raises(ValueError, match="mixed_precision must be one of auto, no, bf16; got 'fp8'"):
        runtime.resolve_mixed_precision("fp8", "cpu")
    # The device accelerate will pick: the CPU when asked to, even with a GPU present.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "true")
    assert runtime.default_device() == "cpu"
    monkeypatch.delenv("ACCELERATE_USE_CPU")
    assert runtime.default_device() == "cuda"


def fake_sysfs(root: Path, cores: list[tuple[int, int]]) -> Path:
    """`/sys/devices/system/cpu` with one (package, core) pair per logical CPU."""
    for cpu, (package, core) in enumerate(cores):
        topology = root / f"cpu{cpu}" / "topology"
        topology.mkdir(parents=True)
        (topology / "physical_package_id").write_text(f"{package}\n")
        (topology / "core_id").write_text(f"{core}\n")
    return root


def test_default_threads_count_physical_cores_of_this_process(tmp_path, monkeypatch):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    no_quota = tmp_path / "cpu.max"
    no_quota.write_text("max 100000\n")
    # 4 logical CPUs, 2 cores with 2 SMT threads each: 2 threads, not 4.
    sysfs = fake_sysfs(tmp_path / "smt", [(0, 0), (0, 0), (0, 1), (0, 1)])
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert runtime.default_num_threads(sysfs, no_quota) == 2
    # Pinned to one core's two siblings (taskset -c 0,1): 1 thread.
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1})
    assert runtime.default_num_threads(sysfs, no_quota) == 1
    # 32 cores: capped.
    sysfs = fake_sysfs(tmp_path / "big", [(0, core) for core in range(32)])
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: set(range(32)))
    assert runtime.default_num_threads(sysfs, no_quota) == runtime.MAX_DEFAULT_THREADS
    # A container quota of 3 CPUs (cgroup v2) on that machine: 3.
    quota = tmp_path / "quota"
    quota.write_text("250000 100000\n")
    assert runtime.default_num_threads(sysfs, quota) == 3
    # Two training processes on this machine share the cores.
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert runtime.default_num_threads(sysfs, quota) == 1
    # No topology readable: one thread per logical CPU of the affinity set.
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setattr(runtime.os, "sched_getaffinity", lambda pid: {0, 1})
    assert runtime.default_num_threads(tmp_path / "missing", no_quota) == 2


def test_configure_threads_sets_a_passive_wait_policy_and_the_threads(monkeypatch, one_thread_after):
    monkeypatch.setenv("OMP_WAIT_POLICY", "unset")  # recorded, so that the teardown removes what the test sets
    monkeypatch.delenv("OMP_WAIT_POLICY")
    monkeypatch.delenv(runtime.THREADS_ENV, raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(runtime, "default_num_threads", lambda: 2)
    assert runtime.configure_threads() == 2 and torch.get_num_threads() == 2
    assert runtime.os.environ["OMP_WAIT_POLICY"] == "PASSIVE"
    # The user's choices win: an explicit wait policy, then --threads, TEKKEN_NUM_THREADS, OMP_NUM_THREADS.
    monkeypatch.setenv("OMP_WAIT_POLICY", "ACTIVE")
    monkeypatch.setenv("OMP_NUM_THREADS", "3,1")
    assert runtime.configure_threads() == 3 and torch.get_num_threads() == 3
    monkeypatch.setenv(runtime.THREADS_ENV, "1")
    assert runtime.configure_threads() == 1 and torch.get_num_threads() == 1
    assert runtime.configure_threads(2) == 2 and torch.get_num_threads() == 2
    assert runtime.os.environ["OMP_WAIT_POLICY"] == "ACTIVE"
    monkeypatch.setenv(runtime.THREADS_ENV, "two")
    with pytest.raises(ValueError, match="TEKKEN_NUM_THREADS must be an integer >= 1, got 'two'"):
        runtime.configure_threads()
    with pytest.raises(ValueError, match="threads must be >= 1, got 0"):
        runtime.configure_threads(0)


# ---------------------------------------------------------------------------------------------------------------------
# The generate CLI and the app pass --dtype and --threads through
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runtime")
    build_random_pipeline("tiny", seed=0).save_pretrained(root / "pipe")
    save_round(root / "rounds" / "round_0000.npz", make_round(16, size=(8, 8)))
    return {"root": root, "pipe": root / "pipe", "round": root / "rounds" / "round_0000.npz"}


@pytest.fixture
def loaded(monkeypatch) -> list[TekkenWorldModelPipeline]:
    """Every pipeline the CLIs load, to read the dtype they chose."""
    pipes = []
    original = TekkenWorldModelPipeline.from_pretrained

    def from_pretrained(*args, **kwargs):
        pipes.append(original(*args, **kwargs))
        return pipes[-1]

    monkeypatch.setattr(TekkenWorldModelPipeline, "from_pretrained", from_pretrained)
    return pipes


def generate_argv(tiny, *argv) -> list[str]:
    return ["--pipeline", str(tiny["pipe"]), "--context", str(tiny["round"]), "--context-frames", "4",
            "--frames", "2", "--steps", "1", "--out", str(tiny["root"] / "out.mp4"), *argv]  # fmt: skip


def test_generate_picks_the_dtype_for_the_cpu(tiny, loaded, fake_cpu, monkeypatch):
    from tekken_diffusers.cli.generate import main as generate

    fake_cpu(ZEN3_FLAGS)
    assert generate(generate_argv(tiny)) == 0
    fake_cpu(ZEN4_FLAGS)
    assert generate(generate_argv(tiny)) == 0  # the 32-wide tiny model is too narrow for bf16 to pay
    monkeypatch.setattr(runtime, "BF16_MIN_CPU_WIDTH", 32)  # as if it were wide enough
    assert generate(generate_argv(tiny)) == 0
    assert generate(generate_argv(tiny, "--dtype", "float32")) == 0
    expected = [torch.float32, torch.float32, torch.bfloat16, torch.float32]
    assert [pipe.transformer.dtype for pipe in loaded] == expected
    # The timestep embedding stays fp32 in a bf16 transformer (`_keep_in_fp32_modules`).
    assert {p.dtype for p in loaded[2].transformer.time_embed.parameters()} == {torch.float32}
    assert loaded[2].vae.dtype == torch.float32


def test_generate_passes_threads(tiny, loaded, one_thread_after):
    from tekken_diffusers.cli.generate import main as generate

    assert generate(generate_argv(tiny, "--threads", "2", "--dtype", "bfloat16")) == 0
    assert torch.get_num_threads() == 2 and loaded[0].transformer.dtype == torch.bfloat16


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--dtype", "float16"], "--dtype float16: float16 on a CPU has no native matmul (about 200x slower)"),
        (["--dtype", "half"], "--dtype half: unknown dtype 'half'"),
        (["--threads", "0"], "--threads must be >= 1, got 0"),
    ],
)
def test_generate_and_app_refuse_bad_dtype_and_threads(tiny, argv, message, capsys):
    from tekken_diffusers.cli.generate import main as generate
    from tekken_diffusers.cli.play import main as app

    for main, common in (
        (generate, generate_argv(tiny)),
        (app, ["--pipeline", str(tiny["pipe"]), "--rounds", str(tiny["root"] / "rounds")]),
    ):
        with pytest.raises(SystemExit) as exit_info:
            main([*common, *argv])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        lines = [line for line in err.splitlines() if "error:" in line]
        assert "Traceback" not in err and len(lines) == 1 and message in lines[0], err


class FakeDemo:
    """Stands in for the Gradio app: records that it would have been served."""

    def queue(self, **kwargs):
        return self

    def launch(self, **kwargs):
        self.launched = kwargs


def test_app_picks_the_dtype_and_threads(tiny, loaded, fake_cpu, monkeypatch, one_thread_after):
    import tekken_diffusers.demo as demo
    from tekken_diffusers.cli import play

    # `tekken-play` looks `build_demo` up on the page module at call time.
    monkeypatch.setattr(demo, "build_demo", lambda pipe, contexts, **kwargs: FakeDemo())
    argv = ["--pipeline", str(tiny["pipe"]), "--rounds", str(tiny["root"] / "rounds"), "--context-frames", "4"]
    fake_cpu(ZEN3_FLAGS)
    assert play.main(argv) == 0
    fake_cpu(ZEN4_FLAGS)
    assert play.main(argv) == 0  # too narrow for bf16
    monkeypatch.setattr(runtime, "BF16_MIN_CPU_WIDTH", 32)
    assert play.main(argv) == 0
    assert play.main([*argv, "--dtype", "float32", "--threads", "2"]) == 0
    expected = [torch.float32, torch.float32, torch.bfloat16, torch.float32]
    assert [pipe.transformer.dtype for pipe in loaded] == expected
    assert torch.get_num_threads() == 2


def test_thread_tuner_keeps_the_faster_count_and_changes_when_the_machine_does():
    """Times each candidate, keeps the fastest; re-probes after `probe_every` frames or once the kept count slows
    down (a neighbour started), and switches when another count is then faster."""
    applied = []
    speed = {1: 30.0, 2: 20.0}  # ms per frame at each count; changed below
    now = [0.0]

    def clock():
        return now[0]

    tuner = runtime.ThreadTuner([2, 1], probe_every=20, probe_frames=3, warmup=1, set_threads=applied.append,
                                clock=clock)  # fmt: skip

    def frames(n):
        for _ in range(n):
            with tuner.frame() as count:
                now[0] += speed[count] / 1000

    frames(8)  # the first probe: 1 + 3 frames at each count, the kept count last
    assert tuner.chosen == 2 and tuner.current == 2 and tuner.switches == 1
    frames(10)
    assert applied[-1] == 2 and len(applied) == 18  # set before every frame
    speed[2] = 45.0  # a neighbour: two threads now fight it for the cores
    frames(3 + 8)  # the kept count's recent median passes 1.3x what it was: probe at once, and switch
    assert tuner.chosen == 1 and tuner.switches == 2
    speed[2] = 20.0  # the neighbour is gone: found at the next periodic probe
    frames(20 + 8)
    assert tuner.chosen == 2 and tuner.switches == 3

    def frames_until(probing: bool) -> int:
        count = 0
        while tuner.probing != probing:
            frames(1)
            count += 1
        return count

    assert frames_until(True) <= 20 and frames_until(False) == 8  # a periodic probe that keeps the count...
    assert tuner.switches == 3 and frames_until(True) == 40  # ...so the next one waits twice as long
    assert runtime.ThreadTuner([3]).candidates == [3]
    with pytest.raises(ValueError, match="candidates must be thread counts >= 1"):
        runtime.ThreadTuner([0, 2])


def test_generating_commands_tune_threads_unless_the_user_chose(monkeypatch):
    for name in (runtime.THREADS_ENV, "OMP_NUM_THREADS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(runtime, "default_num_threads", lambda: 4)
    assert runtime.generation_thread_tuner().candidates == [1, 2, 4]
    assert runtime.generation_thread_tuner(2) is None
    assert runtime.user_thread_count() is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert runtime.user_thread_count() == 2 and runtime.generation_thread_tuner() is None
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(runtime, "default_num_threads", lambda: 1)
    assert runtime.generation_thread_tuner() is None


class _Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(4, 4)

    def forward(self, x):
        return torch.nn.functional.gelu(self.linear(x))


def test_compile_for_training_falls_back_or_refuses_where_the_backend_does_not_work(monkeypatch, caplog):
    """Without a working backend, "auto" leaves the blocks eager and says why, "yes" refuses, "no" never probes."""
    blocks = [_Block(), _Block()]
    monkeypatch.setattr(runtime, "compile_problem", lambda device=None: "InvalidCxxCompiler: no working C++ compiler")
    with caplog.at_level(logging.WARNING, logger="tekken_diffusers.runtime"):
        assert runtime.compile_for_training(blocks, "auto") is False
    assert "InvalidCxxCompiler" in caplog.text and "eagerly" in caplog.text
    assert all("forward" not in vars(block) for block in blocks)  # nothing wrapped
    with pytest.raises(RuntimeError, match="torch_compile=yes.*InvalidCxxCompiler"):
        runtime.compile_for_training(blocks, "yes")

    def must_not_probe(device=None):
        raise AssertionError("mode 'no' probed the backend")

    monkeypatch.setattr(runtime, "compile_problem", must_not_probe)
    assert runtime.compile_for_training(blocks, "no") is False
    with pytest.raises(ValueError, match="torch_compile must be one of auto, yes, no; got 'sometimes'"):
        runtime.compile_for_training(blocks, "sometimes")


def test_compiled_blocks_run_compiled_only_while_gradients_are_recorded(monkeypatch):
    """A compiled block's forward goes to the compiled function under autograd and to the eager one without it."""
    monkeypatch.setattr(runtime, "compile_problem", lambda device=None: None)
    block = _Block()
    assert runtime.compile_for_training([block], "yes") is True
    calls = []
    wrapper = block.forward
    wrapper.compiled = lambda *args: calls.append("compiled") or wrapper.eager(*args)
    x = torch.randn(3, 4)
    expected = torch.nn.functional.gelu(block.linear(x))
    with torch.no_grad():
        torch.testing.assert_close(block(x), expected)
    assert calls == []
    block(x).sum().backward()
    assert calls == ["compiled"] and block.linear.weight.grad is not None
    assert runtime.compile_for_training([block], "yes") and block.forward is wrapper  # not wrapped twice
