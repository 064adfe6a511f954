"""The machine a benchmark runs on: its model and flags, its measured matmul ceilings, and a neighbour process that
keeps its CPU busy.

A benchmark on a CPU means little without the machine beside it: its model, whether it computes bf16 natively, the
torch threads and the OpenMP wait policy. Model-FLOPs utilisation needs the machine's own matmul ceiling, measured
here rather than assumed.
"""

from __future__ import annotations

import logging
import os
import platform
import queue
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import torch

from ..runtime import cpu_flags, cpu_isa_limits, native_bf16
from .timing import interleaved_times, timed

logger = logging.getLogger(__name__)

__all__ = ["NeighbourLoad", "cpu_model_name", "machine_info", "matmul_ceilings"]

# The CPU flags a benchmark reports: native bf16 (what `runtime.resolve_dtype("auto")` looks for), and AVX2, the
# baseline of torch's fast fp32 kernels on x86.
REPORTED_FLAGS = ("avx512_bf16", "amx_bf16", "avx2")
MATMUL_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def cpu_model_name(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's marketing name ("AMD EPYC 9R14", "Apple M2"), else the architecture."""
    try:
        for line in Path(cpuinfo).read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    if sys.platform == "darwin":  # no /proc on macOS; sysctl names the chip
        try:
            name = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip()
            if name:
                return name
        except (OSError, subprocess.SubprocessError):
            pass
    return platform.processor() or platform.machine() or "unknown"


def machine_info(omp_wait_policy: str | None = None) -> dict:
    """The machine a benchmark ran on: CPU name and flags, torch version and threads, OpenMP wait policy, date.

    Args:
        omp_wait_policy: the `OMP_WAIT_POLICY` in force when torch was imported (GNU OpenMP reads it only then);
            default: the environment's value now.
    """
    flags = cpu_flags()
    if omp_wait_policy is None:
        omp_wait_policy = os.environ.get("OMP_WAIT_POLICY")
    return {
        "cpu": cpu_model_name(),
        "machine": platform.machine(),
        "logical_cpus": os.cpu_count(),
        "flags": {flag: flag in flags for flag in REPORTED_FLAGS},
        "native_bf16": native_bf16("cpu", flags),
        # Instruction-set limits in force (e.g. `--cpu-isa avx2`) and the kernel level torch dispatches to.
        "isa_limits": cpu_isa_limits(),
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_wait_policy": omp_wait_policy or "unset",
        "date": datetime.now().isoformat(timespec="seconds"),
        "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def matmul_ceilings(size: int = 2048, repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of one `size` x `size` square matmul in fp32 and in bf16: the median of `repeats` interleaved calls,
    after a warm-up. This is the machine's practical peak for each dtype, the denominator of model-FLOPs utilisation;
    bf16 on a CPU without native support is emulated, and its ceiling shows it."""
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
    operands = {name: (a.to(dtype), b.to(dtype)) for name, dtype in MATMUL_DTYPES.items()}

    def call(name: str) -> Callable[[], float]:
        left, right = operands[name]
        return timed(lambda: torch.mm(left, right))

    with torch.no_grad():
        times = interleaved_times({name: call(name) for name in operands}, rounds=repeats, warmup=1)
    flops = 2 * size**3
    return {name: flops / statistics.median(values) / 1e9 for name, values in times.items()}


# The neighbour: a square fp32 matmul in a loop, with the given torch threads, until SIGTERM, its parent's exit or the
# end of its lifetime, whichever comes first, so that it never outlives the benchmark by long even if the benchmark is
# killed. It prints "ready" after its first matmul and "done <matmuls>" when it stops. Plain torch only: importing
# this package would add seconds of start-up.
NEIGHBOUR_CODE = """
import os, signal, sys, time
import torch
threads, size, lifetime = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
torch.set_num_threads(threads)
parent, stop, count = os.getppid(), [], 0
signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
a, b = torch.randn(size, size), torch.randn(size, size)
deadline = time.monotonic() + lifetime
a @ b
sys.stdout.write("ready\\n")
sys.stdout.flush()
while not stop and time.monotonic() < deadline and os.getppid() == parent:
    a @ b
    count += 1
sys.stdout.write(f"done {count}\\n")
sys.stdout.flush()
"""


class NeighbourLoad:
    """A neighbour process that keeps the CPU busy (an fp32 matmul loop), for measuring under load.

    Use it as a context manager: entering starts the process and waits until it computes; leaving stops it (SIGTERM,
    then SIGKILL after `stop_timeout` seconds) and reaps it, whatever happened inside. `pause()` and `resume()`
    (SIGSTOP / SIGCONT, POSIX only) switch the load off and on without restarting it, so that loaded and unloaded
    measurements can be interleaved.

    Args:
        threads: the neighbour's torch threads (the benchmark's own count makes the two compete core for core).
        size: side of its square matmul (small enough that it answers SIGTERM within milliseconds).
        lifetime: seconds after which it stops by itself, should nothing stop it before.
        stop_timeout: seconds to wait for it to stop after SIGTERM before it is killed.
    """

    def __init__(self, threads: int, size: int = 512, lifetime: float = 600.0, stop_timeout: float = 10.0):
        self.threads = threads
        self.size = size
        self.lifetime = lifetime
        self.stop_timeout = stop_timeout
        self.process: subprocess.Popen | None = None
        self.matmuls: int | None = None  # matmuls done, reported by the neighbour when it stops
        self._lines: queue.Queue[str] = queue.Queue()
        self._reader: threading.Thread | None = None
        self._paused = False

    @staticmethod
    def can_pause() -> bool:
        """Whether this system can pause a process (SIGSTOP: POSIX)."""
        return hasattr(signal, "SIGSTOP")

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    def __enter__(self) -> NeighbourLoad:
        command = [sys.executable, "-c", NEIGHBOUR_CODE, str(self.threads), str(self.size), str(self.lifetime)]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.threads)}
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            line = self._lines.get(timeout=120)
        except queue.Empty:
            line = ""
        except BaseException:  # e.g. Ctrl-C while it starts: `with` calls no __exit__ when __enter__ fails
            self.stop()
            raise
        if line.strip() != "ready":
            self.stop()
            raise RuntimeError(f"the neighbour process did not start (exit code {self.process.returncode})")
        logger.info(
            "neighbour process %d: %d-thread %d x %d fp32 matmul loop", self.pid, self.threads, self.size, self.size
        )
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def _read(self) -> None:
        for line in self.process.stdout:
            self._lines.put(line)

    def pause(self) -> None:
        """Stop the load (SIGSTOP) until `resume()`."""
        if not self._paused and self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGSTOP)
            self._paused = True

    def resume(self) -> None:
        """Restart the load (SIGCONT) and give its threads a moment to reach the cores again."""
        if self._paused and self.process is not None:
            os.kill(self.process.pid, signal.SIGCONT)
            self._paused = False
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop and reap the neighbour (idempotent)."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        self.ended_early = process.poll() is not None
        try:
            if self._paused:
                os.kill(process.pid, signal.SIGCONT)  # a stopped process handles SIGTERM only once continued
                self._paused = False
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout)
            except subprocess.TimeoutExpired:
                logger.warning("neighbour process %d ignored SIGTERM; killing it", process.pid)
                process.kill()
                process.wait()
        finally:
            if process.poll() is None:  # an exception above (e.g. KeyboardInterrupt) must not leave it running
                process.kill()
                process.wait()
            if self._reader is not None:
                self._reader.join(timeout=5)
            while not self._lines.empty():
                words = self._lines.get().split()
                if len(words) == 2 and words[0] == "done":
                    self.matmuls = int(words[1])
