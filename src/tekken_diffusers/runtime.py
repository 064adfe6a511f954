"""Precision and threads chosen for the machine at start-up, shared by the CLIs, the app and training.

Precision: bf16 pays only where the hardware computes it natively. On a CPU without `avx512_bf16`/`amx_bf16` torch
emulates it, and 4-step generation ran 2.4x slower in bf16 than in fp32 on a 2-core Zen 3 (issue 11), while a Zen 4
with `avx512_bf16` ran 1.3x faster in bf16 (docs/benchmarks.md). So `"auto"` means bf16 only with native support,
else fp32. fp16 is refused on a CPU (no native fp16 matmul there: ~200x slower).

Threads: a process that takes one thread per logical CPU and lets idle OpenMP threads spin fights any neighbour
process for the cores; docs/benchmarks.md measured 2 spinning threads at 50-100x slower than 1 on a busy CPU.
`configure_threads` gives torch one thread per physical core this process may use, and makes idle OpenMP threads of
child processes sleep (`OMP_WAIT_POLICY=PASSIVE`) unless the user chose otherwise; training sets that policy before
importing torch. The generating commands (generate, the play app) choose among one thread, two and one per core by
timing their frames (`ThreadTuner`): on an idle CPU two briefly spinning threads are fastest, beside a busy neighbour
one thread is, and sleeping (PASSIVE) threads are slower than one thread at these small ops, so those commands leave
GNU OpenMP's default wait policy alone.

Instruction-set limits: `ATEN_CPU_CAPABILITY`, `ONEDNN_MAX_CPU_ISA` (or `DNNL_MAX_CPU_ISA`) and
`MKL_ENABLE_INSTRUCTIONS`, set before torch starts, make torch's own kernels, oneDNN and MKL run only the instructions
they name. `CPU_ISA_LIMITS["avx2"]` runs a CPU with AVX-512 as one without it would (`tekken-benchmark --cpu-isa
avx2`), and `native_bf16` then answers for the limited CPU: its bf16 flags are of no use to kernels kept off them.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

logger = logging.getLogger(__name__)

__all__ = [
    "DTYPE_CHOICES",
    "add_runtime_arguments",
    "MAX_DEFAULT_THREADS",
    "THREADS_ENV",
    "configure_threads",
    "cpu_flags",
    "default_device",
    "default_num_threads",
    "native_bf16",
    "resolve_dtype",
    "BF16_MIN_CPU_WIDTH",
    "CPU_ISA_LIMITS",
    "ISA_LIMIT_VARIABLES",
    "bf16_isa_limit",
    "cpu_isa_limits",
    "resolve_mixed_precision",
    "user_thread_count",
    "ThreadTuner",
    "generation_thread_tuner",
    "COMPILE_CHOICES",
    "compile_problem",
    "compile_for_training",
]

DTYPE_CHOICES = ("auto", "float32", "bfloat16")
THREADS_ENV = "TEKKEN_NUM_THREADS"
# The default thread count is capped: at 16 tokens per frame each matmul is far too small to feed many threads, and
# every parallel region pays a fork/join. The cap is a guess, not a measurement; --threads or TEKKEN_NUM_THREADS
# lift it.
MAX_DEFAULT_THREADS = 8
NATIVE_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
# Batch-1 generation on a CPU: below this transformer width the matmuls are too small for bf16 to gain even with
# native support (per-call overhead and the casts around the fp32 parts dominate). Measured on an AMD EPYC with
# avx512_bf16, 2 threads, 4 steps, the shipped layout at three widths side by side (2026-11-30): bf16 ran 0.88x the
# fp32 speed at width 64, 0.96x at 128 and 1.18x at 256 (docs/benchmarks.md, "Precision and threads").
BF16_MIN_CPU_WIDTH = 256
# Environment variables that cap the instructions of torch's kernels (ATen), oneDNN (bf16 and conv kernels) and MKL
# (fp32 matmuls); read when each library starts, so they must be set before torch is imported.
ISA_LIMIT_VARIABLES = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")
CPU_ISA_LIMITS = {
    "avx2": {
        "ATEN_CPU_CAPABILITY": "avx2",
        "ONEDNN_MAX_CPU_ISA": "AVX2",
        "DNNL_MAX_CPU_ISA": "AVX2",
        "MKL_ENABLE_INSTRUCTIONS": "AVX2",
    },
}

_DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (`flags` on x86, `Features` on Arm); empty where unreadable."""
    try:
        text = Path(cpuinfo).read_text()
    except OSError:
        return set()
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):
            flags.update(value.split())
    return flags


def cpu_isa_limits(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The instruction-set limits set in the environment (`ISA_LIMIT_VARIABLES` that are set), by variable."""
    environ = os.environ if environ is None else environ
    return {name: environ[name] for name in ISA_LIMIT_VARIABLES if environ.get(name, "").strip()}


def bf16_isa_limit(environ: dict[str, str] | None = None) -> str | None:
    """The limit that keeps torch off native bf16 instructions (e.g. "ONEDNN_MAX_CPU_ISA=AVX2"), or None.

    ATen's capability counts below `avx512`; oneDNN's, which runs the bf16 matmuls, below an ISA that names BF16, AMX
    or AVX10 (or `ALL`). MKL computes no bf16 here, so its limit does not count.
    """
    limits = cpu_isa_limits(environ)
    aten = limits.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    if aten and not aten.startswith("avx512"):
        return f"ATEN_CPU_CAPABILITY={limits['ATEN_CPU_CAPABILITY']}"
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = limits.get(name, "").strip().upper()
        if value and value != "ALL" and not any(tag in value for tag in ("BF16", "AMX", "AVX10")):
            return f"{name}={limits[name]}"
    return None


def native_bf16(
    device: str | torch.device = "cpu", flags: Iterable[str] | None = None, environ: dict[str, str] | None = None
) -> str | None:
    """Why `device` computes bf16 natively (e.g. "CPU flag avx512_bf16"), or None where bf16 would be emulated.

    Args:
        device: "cpu" or a CUDA device.
        flags: the CPU's feature flags; read from /proc/cpuinfo when None.
        environ: the environment whose instruction-set limits apply (`bf16_isa_limit`); default `os.environ`.
    """
    device = torch.device(device)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            return None
        major, minor = torch.cuda.get_device_capability(device)
        # bf16 tensor cores arrived with Ampere (compute capability 8.0); older GPUs emulate it.
        return f"CUDA compute capability {major}.{minor}" if major >= 8 else None
    if device.type != "cpu":
        return None
    if bf16_isa_limit(environ) is not None:
        return None
    flags = set(cpu_flags() if flags is None else flags)
    found = [flag for flag in NATIVE_BF16_CPU_FLAGS if flag in flags]
    if found:
        return f"CPU flag {found[0]}"
    # Where /proc/cpuinfo is missing (macOS, Windows) torch's dispatch level is the only hint; "AVX512" alone does not
    # imply bf16 (Skylake-X has AVX-512 without it), so only a level that names bf16 or AMX counts.
    capability = torch.backends.cpu.get_cpu_capability()
    if "BF16" in capability.upper() or "AMX" in capability.upper():
        return f"torch CPU capability {capability}"
    return None


def default_device() -> str:
    """The device accelerate will train on: CUDA if present, unless `ACCELERATE_USE_CPU` asks for the CPU."""
    use_cpu = os.environ.get("ACCELERATE_USE_CPU", "").strip().lower() in ("1", "true", "yes")
    return "cuda" if torch.cuda.is_available() and not use_cpu else "cpu"


def _limit_note(device: torch.device) -> str:
    limit = bf16_isa_limit() if device.type == "cpu" else None
    return f" under {limit}" if limit else ""


def resolve_dtype(
    dtype: str | torch.dtype = "auto", device: str | torch.device = "cpu", model_width: int | None = None
) -> torch.dtype:
    """The compute dtype for `device`: "auto" is bf16 where `native_bf16(device)`, else fp32.

    Explicit "float32"/"bfloat16" are kept (bf16 without native support runs, emulated, with a warning); fp16 on a CPU
    raises ValueError with the reason.

    Args:
        dtype: "auto", "float32", "bfloat16" (or their short names), or a torch dtype.
        device: where the model runs.
        model_width: for batch-1 generation on a CPU, the transformer's hidden width; "auto" then keeps fp32 below
            `BF16_MIN_CPU_WIDTH`, where bf16 is slower even with native support. None (training, large batches)
            decides by the hardware alone.
    """
    device = torch.device(device)
    if isinstance(dtype, str):
        name = dtype.strip().lower()
        if name == "auto":
            reason = native_bf16(device)
            if reason and device.type == "cpu" and model_width is not None and model_width < BF16_MIN_CPU_WIDTH:
                logger.info(
                    "dtype auto -> float32 (%s, but a %d-wide model gains nothing from bf16 at batch 1; it does from "
                    "width %d)",
                    reason,
                    model_width,
                    BF16_MIN_CPU_WIDTH,
                )
                return torch.float32
            resolved = torch.bfloat16 if reason else torch.float32
            logger.info(
                "dtype auto -> %s (%s)",
                str(resolved).removeprefix("torch."),
                reason or f"no native bf16 on this {device.type}{_limit_note(device)}: it would be emulated",
            )
            return resolved
        if name not in _DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; known: {', '.join(DTYPE_CHOICES)}")
        dtype = _DTYPE_NAMES[name]
    if dtype not in (torch.float32, torch.bfloat16, torch.float16):
        raise ValueError(f"unsupported dtype {dtype}; known: {', '.join(DTYPE_CHOICES)}")
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("float16 on a CPU has no native matmul (about 200x slower): use auto, float32 or bfloat16")
    if dtype == torch.bfloat16 and not native_bf16(device):
        logger.warning("bfloat16 on this %s is emulated (slower than float32): 'auto' would pick float32", device.type)
    return dtype


COMPILE_CHOICES = ("auto", "yes", "no")


def compile_problem(device: str | torch.device | None = None) -> str | None:
    """Why `torch.compile`'s default backend (Inductor) cannot be used on `device`, or None when it compiles and runs
    a small function there (on a CPU it needs a C++ compiler; on a GPU, Triton)."""
    device = torch.device(default_device() if device is None else device)

    def probe(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.gelu(x) * x.sum()

    try:
        torch.compile(probe, dynamic=False)(torch.ones(8, device=device))
    except Exception as error:  # noqa: BLE001 - any failure of the backend means: run eagerly
        first_line = next(iter(str(error).strip().splitlines()), "")
        return f"{type(error).__name__}: {first_line}"[:300]
    return None


class _CompiledWhileTraining:
    """A module's `forward` that runs compiled while gradients are recorded and eagerly otherwise (validation,
    sampling, and the trainer's own no-grad predictions keep the eager path and its KV cache, with no recompiles)."""

    def __init__(self, forward: Callable[..., Any]):
        self.eager = forward
        self.compiled = torch.compile(forward)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return (self.compiled if torch.is_grad_enabled() else self.eager)(*args, **kwargs)


def compile_for_training(blocks: Iterable[torch.nn.Module], mode: str = "auto", device=None) -> bool:
    """
    Compile the forward (and so the backward) of each transformer block with `torch.compile` for training steps.

    The blocks are compiled one by one rather than the whole model: the model's forward plans its attention with
    Python bookkeeping that would break the graph, while a block is one graph of matmuls, norms, RoPE and modulation
    that Inductor fuses. Only passes that record gradients use the compiled code (see `_CompiledWhileTraining`); the
    parameters and state dict stay the block's own, so checkpoints, EMA and `save_pretrained` are unchanged.

    Args:
        blocks: The modules to compile (e.g. `model.transformer_blocks`).
        mode: `"no"`: do nothing. `"auto"`: compile where the backend works on `device` (else log why and stay
            eager), and let a graph the backend fails on later run eagerly. `"yes"`: compile, and raise
            `RuntimeError` if the backend does not work here.
        device: Where the blocks run (default: `default_device()`).

    Returns:
        Whether the blocks are compiled.
    """
    if mode not in COMPILE_CHOICES:
        raise ValueError(f"torch_compile must be one of {', '.join(COMPILE_CHOICES)}; got {mode!r}")
    if mode == "no":
        return False
    problem = compile_problem(device)
    if problem is not None:
        if mode == "yes":
            raise RuntimeError(f"torch_compile=yes, but torch.compile does not work on this machine: {problem}")
        logger.warning("torch.compile does not work on this machine (%s): training runs eagerly", problem)
        return False
    if mode == "auto":
        import torch._dynamo

        torch._dynamo.config.suppress_errors = True  # a graph Inductor fails on runs eagerly, with a warning
    for block in blocks:
        if not isinstance(block.forward, _CompiledWhileTraining):
            block.forward = _CompiledWhileTraining(block.forward)
    return True


def resolve_mixed_precision(mixed_precision: str, device: str | torch.device | None = None) -> str:
    """accelerate's `mixed_precision` for `device` (default: `default_device()`): "auto" → "bf16" with native bf16,
    else "no"; "no" and "bf16" are kept; "fp16" on a CPU raises ValueError."""
    device = torch.device(default_device() if device is None else device)
    names = {"auto": "auto", "no": "float32", "bf16": "bfloat16", "fp16": "float16"}
    if mixed_precision not in names:
        raise ValueError(f"mixed_precision must be one of auto, no, bf16; got {mixed_precision!r}")
    dtype = resolve_dtype(names[mixed_precision], device)
    return {torch.float32: "no", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]


def _physical_cores(cpus: Iterable[int], sysfs: Path) -> int | None:
    """Distinct (package, core) pairs among logical `cpus`: SMT siblings share one core's matmul units."""
    cores = set()
    for cpu in cpus:
        topology = sysfs / f"cpu{cpu}" / "topology"
        try:
            cores.add((topology.joinpath("physical_package_id").read_text(), topology.joinpath("core_id").read_text()))
        except OSError:
            return None
    return len(cores) or None


def _cgroup_cpu_limit(cpu_max: Path) -> int | None:
    """The CPUs a cgroup v2 quota allows (`cpu.max` "200000 100000" → 2), or None without a quota."""
    try:
        quota, period = cpu_max.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def default_num_threads(
    sysfs: str | Path = "/sys/devices/system/cpu", cpu_max: str | Path = "/sys/fs/cgroup/cpu.max"
) -> int:
    """One thread per physical core this process may run on (its CPU affinity, a cgroup quota), shared between the
    processes of a local multi-process launch (`LOCAL_WORLD_SIZE`), at most `MAX_DEFAULT_THREADS`."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        cpus = list(range(os.cpu_count() or 1))
    count = _physical_cores(cpus, Path(sysfs)) or len(cpus)
    quota = _cgroup_cpu_limit(Path(cpu_max))
    if quota is not None:
        count = min(count, quota)
    local_processes = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, min(count // local_processes, MAX_DEFAULT_THREADS))


def _threads_from_env(name: str) -> int | None:
    value = os.environ.get(name, "").strip()
    if name == "OMP_NUM_THREADS":  # OpenMP's own syntax allows a list per nesting level ("4,2"); torch takes the first
        value = value.split(",")[0].strip()
        return int(value) if value.isdigit() and int(value) >= 1 else None
    if not value:
        return None
    if not (value.isdigit() and int(value) >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _gnu_openmp_loaded(maps: str | Path = "/proc/self/maps") -> bool:
    """Whether libgomp is already loaded in this process (it read the OpenMP environment when it was)."""
    try:
        return "libgomp" in Path(maps).read_text()
    except OSError:
        return False


def user_thread_count() -> int | None:
    """The thread count the user set in the environment (`$TEKKEN_NUM_THREADS`, else `$OMP_NUM_THREADS`), if any."""
    for name in (THREADS_ENV, "OMP_NUM_THREADS"):
        threads = _threads_from_env(name)
        if threads is not None:
            return threads
    return None


def configure_threads(threads: int | None = None) -> int:
    """Choose this process's CPU threads; call once at start-up, before the first heavy torch op.

    Sets `OMP_WAIT_POLICY=PASSIVE` in the environment unless the user set it (idle OpenMP threads sleep instead of
    spinning against a neighbour process), then torch's intra-op threads to, in order: `threads`,
    `$TEKKEN_NUM_THREADS`, `$OMP_NUM_THREADS`, `default_num_threads()`. Returns the thread count.

    GNU OpenMP (torch's CPU wheels on Linux) reads `OMP_WAIT_POLICY` once, when `import torch` loads it, so in a
    process that has already imported torch the policy set here reaches only child processes and Intel OpenMP builds:
    a launcher sets it before importing torch (as `training/train_world_model.py` does), or the user exports it.
    """
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    policy = os.environ.get("OMP_WAIT_POLICY")  # what this process's OpenMP read (if torch loaded it since)
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
        if _gnu_openmp_loaded():
            logger.debug(
                "OMP_WAIT_POLICY was unset when torch loaded GNU OpenMP: idle threads of this process spin briefly "
                "between ops (fast on an idle CPU; the generating commands drop to one thread when that is faster)"
            )
    source = "--threads"
    if threads is None:
        for name in (THREADS_ENV, "OMP_NUM_THREADS"):
            threads, source = _threads_from_env(name), name
            if threads is not None:
                break
    if threads is None:
        threads, source = default_num_threads(), "physical cores available"
    torch.set_num_threads(threads)
    logger.info(
        "%d torch threads (%s), OMP_WAIT_POLICY %s here, %s for child processes",
        threads, source, policy or "unset (GNU OpenMP's default: spin briefly, then sleep)",
        os.environ.get("OMP_WAIT_POLICY"),
    )  # fmt: skip
    return threads


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """The `--dtype` and `--threads` options every generating command shares (generate, play)."""
    parser.add_argument(
        "--dtype",
        default="auto",
        metavar="{auto,float32,bfloat16}",
        help="transformer dtype (auto: bfloat16 where the CPU computes it natively, else float32)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help=f"torch CPU threads; when unset: ${THREADS_ENV}, else $OMP_NUM_THREADS, else one thread, two or one per "
        f"physical core (at most {MAX_DEFAULT_THREADS}), whichever makes frames faster, timed as they are made",
    )


def generation_thread_tuner(threads: int | None = None) -> ThreadTuner | None:
    """For a generating command: a [`ThreadTuner`] among one thread, two, and one per physical core
    (`default_num_threads()`), or None where the user chose a count (`threads`, `$TEKKEN_NUM_THREADS`,
    `$OMP_NUM_THREADS`) or the process has one core. (Measured on 2 cores only: with more, a count between may win.)"""
    if threads is not None or user_thread_count() is not None:
        return None
    full = default_num_threads()
    return ThreadTuner(sorted({1, min(2, full), full})) if full > 1 else None


class ThreadTuner:
    """
    Picks torch's intra-op thread count for a loop of alike calls (the frames of a game) by timing them.

    Which count is fastest depends on the moment, not only on the machine: on an idle 2-core CPU two threads made a
    4-step frame of the shipped model 1.25x faster than one, while beside a busy 2-thread neighbour process one thread
    was 1.3-1.5x faster than two (docs/benchmarks.md). So the tuner times a few frames at each candidate count, keeps
    the fastest, and probes the others again after `probe_every` frames (twice as long after each probe that kept
    the count, up to 8x), or at once when the frames it keeps get slower by `slowdown` than when it chose them (a
    neighbour has started). Probing a slower count costs a few frames.

    Use it where the frames are made: `torch.set_num_threads` acts on the calling thread's OpenMP team.

    Args:
        candidates (`Sequence[int]`): Thread counts to choose from (e.g. `(1, default_num_threads())`).
        probe_every (`int`, defaults to 60): Frames at the chosen count before the next probe (doubling while probes
            keep the count, back to this after a switch).
        probe_frames (`int`, defaults to 6): Timed frames per candidate in a probe (after `warmup` untimed ones).
        warmup (`int`, defaults to 1): Frames after each switch that are not timed.
        slowdown (`float`, defaults to 1.3): Probe early once the chosen count's recent median is this much slower
            than when it was chosen.
        set_threads (`Callable[[int], None]`, defaults to `torch.set_num_threads`): How a count is applied (tests).
        clock (`Callable[[], float]`, defaults to `time.perf_counter`): The clock (tests).

    Example:
        ```py
        >>> tuner = ThreadTuner([1, 2])
        >>> for action in actions:
        ...     with tuner.frame():
        ...         frame = session.step(action)
        ```
    """

    def __init__(
        self,
        candidates: Sequence[int],
        probe_every: int = 60,
        probe_frames: int = 6,
        warmup: int = 1,
        slowdown: float = 1.3,
        set_threads: Callable[[int], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ):
        self.candidates = sorted({int(c) for c in candidates})
        if not self.candidates or self.candidates[0] < 1:
            raise ValueError(f"candidates must be thread counts >= 1, got {list(candidates)}")
        if probe_every < 1 or probe_frames < 1 or warmup < 0 or slowdown <= 1:
            raise ValueError("probe_every and probe_frames must be >= 1, warmup >= 0 and slowdown > 1")
        self.probe_every, self.probe_frames, self.warmup, self.slowdown = probe_every, probe_frames, warmup, slowdown
        self._set_threads = set_threads or torch.set_num_threads
        self._clock = clock
        self.chosen = self.candidates[0]
        self._chosen_median: float | None = None
        self._recent: list[float] = []  # the chosen count's latest frame times
        self._since_probe = 0
        self._interval = probe_every
        self._plan: list[tuple[int, bool]] = []  # (count, timed) for the frames ahead
        self._probe: dict[int, list[float]] = {}
        self.switches = 0
        self._start_probe()

    def _start_probe(self) -> None:
        """Plan a probe: each candidate (the chosen one last, so it continues) for warmup + timed frames."""
        order = [c for c in self.candidates if c != self.chosen] + [self.chosen]
        self._plan = [(c, timed) for c in order for timed in [False] * self.warmup + [True] * self.probe_frames]
        self._probe = {c: [] for c in self.candidates}

    def _finish_probe(self) -> None:
        medians = {c: statistics.median(times) for c, times in self._probe.items() if times}
        best = min(medians, key=medians.get)
        self._interval = self.probe_every if best != self.chosen else min(2 * self._interval, 8 * self.probe_every)
        if best != self.chosen:
            self.switches += 1
            logger.info(
                "threads: %d (%.1f ms per frame) instead of %d (%.1f ms)",
                best, medians[best] * 1e3, self.chosen, medians[self.chosen] * 1e3,
            )  # fmt: skip
        self.chosen, self._chosen_median = best, medians[best]
        self._recent, self._since_probe = [], 0

    @property
    def probing(self) -> bool:
        """Whether the next frames try the candidate counts (a probe is running)."""
        return bool(self._plan)

    @property
    def current(self) -> int:
        """The thread count of the next frame."""
        return self._plan[0][0] if self._plan else self.chosen

    @contextlib.contextmanager
    def frame(self) -> Iterator[int]:
        """Run one frame at the count the tuner picks for it, and time it."""
        count = self.current
        self._set_threads(count)  # every frame: other code may have changed the count in between (a few µs)
        started = self._clock()
        yield count
        self.record(count, self._clock() - started)

    def wrap(self, function: Callable) -> Callable:
        """`function`, each call run as one frame (`frame()`): e.g. the play app's batched tick."""

        def tuned(*args, **kwargs):
            with self.frame():
                return function(*args, **kwargs)

        return tuned

    def record(self, count: int, seconds: float) -> None:
        """Account a frame made at `count` threads in `seconds` (what `frame()` does after each frame)."""
        if self._plan:
            planned, timed = self._plan.pop(0)
            if timed and planned == count:
                self._probe[count].append(seconds)
            if not self._plan:
                self._finish_probe()
            return
        self._recent = (self._recent + [seconds])[-self.probe_frames :]
        self._since_probe += 1
        slower = (
            len(self._recent) == self.probe_frames
            and self._chosen_median is not None
            and statistics.median(self._recent) > self.slowdown * self._chosen_median
        )
        if len(self.candidates) > 1 and (self._since_probe >= self._interval or slower):
            self._start_probe()
