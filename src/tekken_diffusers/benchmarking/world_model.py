"""The world model's measurements on this machine, each part of `tekken-benchmark` one function returning its
results as a dict: generation at batch 1 through the session API (`measure_generation`), the KV cache against
recomputing the window (`measure_cache`), generation beside a busy neighbour process (`measure_neighbour`), several
concurrent sessions stepped round-robin and batched (`measure_sessions`) and training tokens/s with model-FLOPs
utilisation (`measure_training`).

Every part times its configurations in interleaved rounds (`timing.interleaved_times`), and a part that measured
nothing, or a rate that is zero or not finite, raises `RuntimeError` rather than becoming a table row. `settings` is
the command's dict of sizes (its `FULL` or `QUICK`, with the options given).
"""

from __future__ import annotations

import copy
import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch

from ..runtime import native_bf16, resolve_mixed_precision
from .machine import NeighbourLoad
from .timing import interleaved_times, percentile, timed

logger = logging.getLogger(__name__)

__all__ = [
    "DTYPE_NAMES",
    "Inputs",
    "Pipelines",
    "SESSION_STEPPERS",
    "count_forwards",
    "measure_cache",
    "measure_generation",
    "measure_neighbour",
    "measure_sessions",
    "measure_training",
    "rate_row",
    "require_positive",
    "require_times",
    "start_session",
    "stepper",
    "training_flops",
    "warmup_frames",
]

DTYPE_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16"}


# ---------------------------------------------------------------------------------------------------------------------
# Pipelines and inputs
# ---------------------------------------------------------------------------------------------------------------------
class Pipelines:
    """The pipeline under test, loaded once per transformer dtype as `tekken-generate` loads it (transformer in that
    dtype, VAE and the rest in fp32)."""

    def __init__(self, folder: str):
        self.folder = folder
        self._loaded: dict[torch.dtype, object] = {}

    def get(self, dtype: torch.dtype):
        from ..pipelines import TekkenWorldModelPipeline

        if dtype not in self._loaded:
            pipe = TekkenWorldModelPipeline.from_pretrained(
                self.folder, dtype={"transformer": dtype, "default": torch.float32}
            )
            pipe.set_progress_bar_config(disable=True)
            self._loaded[dtype] = pipe
        return self._loaded[dtype]


class Inputs:
    """A seeded stream of random action ids, one per player, as a session's `step` takes them."""

    def __init__(self, num_players: int, seed: int = 0):
        self.num_players = num_players
        self.rng = np.random.default_rng(seed)

    def ids(self, count: int) -> np.ndarray:
        return self.rng.integers(0, 256, (count, self.num_players))

    def next(self) -> tuple[int, ...]:
        return tuple(int(i) for i in self.ids(1)[0])


def input_players(pipe) -> int:
    """Players whose inputs a session's `step` is given: player 1 alone where the pipeline's opponent policy plays
    player 2 (its draw is then part of every timed step, as in play)."""
    return 1 if getattr(pipe, "opponent", None) is not None else pipe.num_players


def start_session(pipe, context_frames: int, steps: int, decode: bool, seed: int = 0):
    """A session on `context_frames` random context latents (content does not change the cost), decoding each frame to
    an array when `decode` and the pipeline has a VAE, else returning latents."""
    config = pipe.transformer.config
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(1, context_frames, config.in_channels, *pipe.latent_size, generator=generator)
    ids = Inputs(input_players(pipe), seed).ids(context_frames)
    players = {"context_actions_p2": ids[:, 1]} if input_players(pipe) == 2 else {}
    return pipe.start_session(
        context_latents=latents,
        context_actions=ids[:, 0],
        num_inference_steps=steps,
        generator=generator,
        output_type="np" if decode and pipe.vae is not None else "latent",
        **players,
    )


def stepper(session, inputs: Inputs, before: Callable[[], None] | None = None) -> Callable[[], float]:
    """A timed call of `session.step` under the next input (after `before`, untimed)."""

    def call() -> float:
        if before is not None:
            before()
        action = inputs.next()
        started = time.perf_counter()
        session.step(*action)
        return time.perf_counter() - started

    return call


def warmup_frames(pipe) -> int:
    """Frames after which every layer's cache window is full: from then on a step costs the same however long the
    game runs, and that steady state is what the timings measure."""
    return max(pipe.transformer.cache_layer_windows) + 1


def rate_row(seconds: list[float], game_fps: float) -> dict:
    p50 = statistics.median(seconds)
    return {
        "ms_p50": p50 * 1e3,
        "ms_p95": percentile(seconds, 95) * 1e3,
        "frames_per_second": 1 / p50,
        "x_real_time": p50 * game_fps,
        "frames": len(seconds),
    }


def require_times(part: str, times: dict[str, list[float]]) -> None:
    """Every configuration of a part was timed at least once."""
    empty = [str(name) for name, values in times.items() if not values]
    if not times or empty:
        raise RuntimeError(f"benchmark part {part!r} measured nothing for {', '.join(empty) or 'any configuration'}")


def require_positive(part: str, rows: list[dict], fields: tuple[str, ...]) -> None:
    """A part that measured nothing, or a rate that is zero or not finite, is an error, not a table row."""
    if not rows:
        raise RuntimeError(f"benchmark part {part!r} measured nothing")
    for row in rows:
        for field in fields:
            value = row[field]
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise RuntimeError(f"benchmark part {part!r}: {field} = {value!r} in {row}")


# ---------------------------------------------------------------------------------------------------------------------
# The parts
# ---------------------------------------------------------------------------------------------------------------------
def _switch(*calls: Callable[[], object]) -> None:
    """Run `calls` in order (the untimed preparation of a timed frame)."""
    for call in calls:
        call()


class _TunedSession:
    """A session whose `step` runs under a `ThreadTuner` (what the generating commands do)."""

    def __init__(self, session, tuner):
        self.step = tuner.wrap(session.step)


def measure_generation(
    pipes: Pipelines,
    auto: torch.dtype,
    settings: dict,
    game_fps: float,
    threads: Sequence[int] | None = None,
    tune: bool = False,
) -> dict:
    """ms/frame (p50, p95) and frames/s of `session.step` at batch 1, decode included, for each step count: in the
    dtype `auto` picks at every thread count of `threads` and, with `tune`, under a `ThreadTuner` choosing among them
    (the generating commands' default, marked auto); in the other dtype as the default runs. All configurations are
    interleaved; torch's thread count is restored."""
    from ..runtime import ThreadTuner

    before = torch.get_num_threads()
    threads = list(threads or [before])
    default = "tuned" if tune else threads[0]
    other = torch.bfloat16 if auto == torch.float32 else torch.float32
    configs = [(auto, count) for count in threads] + ([(auto, "tuned")] if tune else []) + [(other, default)]
    cases, keys, tuners = {}, [], {}
    for dtype, count in configs:
        pipe = pipes.get(dtype)
        for steps in settings["steps"]:
            key = f"{DTYPE_NAMES[dtype]} {count} {steps}"
            session = start_session(pipe, 8, steps, decode=True)
            if count == "tuned":
                tuners[key] = ThreadTuner(threads)
                cases[key] = stepper(_TunedSession(session, tuners[key]), Inputs(input_players(pipe)))
            else:
                cases[key] = stepper(
                    session, Inputs(input_players(pipe)), before=partial(torch.set_num_threads, count)
                )
            keys.append((key, dtype, count, steps))
    try:
        times = interleaved_times(
            cases,
            rounds=max(1, settings["frames"] // settings["round_frames"]),
            per_round=settings["round_frames"],
            warmup=warmup_frames(pipes.get(auto)),
            desc="generation",
        )
    finally:
        torch.set_num_threads(before)
    require_times("generation", times)
    rows = []
    for key, dtype, count, steps in keys:
        row = {"dtype": DTYPE_NAMES[dtype], "threads": count, "auto": dtype == auto and count == default,
               "steps": steps, **rate_row(times[key], game_fps)}  # fmt: skip
        if key in tuners:
            row["chosen_threads"], row["switches"] = tuners[key].chosen, tuners[key].switches
        rows.append(row)
    for row in rows:
        logger.info(
            "generation %s, %s threads, %d steps: %.1f ms p50, %.1f ms p95, %.1f frames/s%s",
            row["dtype"], row["threads"], row["steps"], row["ms_p50"], row["ms_p95"], row["frames_per_second"],
            f" (kept {row['chosen_threads']})" if "chosen_threads" in row else "",
        )  # fmt: skip
    require_positive("generation", rows, ("ms_p50", "ms_p95", "frames_per_second"))
    return {
        "auto_dtype": DTYPE_NAMES[auto],
        "threads": default,
        "thread_candidates": threads,
        "context_frames": 8,
        "decode": pipes.get(auto).vae is not None,
        "rows": rows,
    }


def measure_cache(pipe, settings: dict) -> dict:
    """One new frame with the KV cache (`session.step`, 1 step, latents out) against one forward pass of the whole
    window (context + new frame) without a cache, at each context length; interleaved."""
    from ..actions import ids_to_bits

    transformer = pipe.transformer
    config = transformer.config
    context_noise = pipe.scheduler.config.context_noise
    cases, memory = {}, {}
    for frames in settings["contexts"]:
        session = start_session(pipe, frames, 1, decode=False)
        inputs = Inputs(input_players(pipe), seed=frames)
        # The first step writes the context into the cache; every timed step then starts from this same state: the
        # context in the cache and the frame just generated queued (written by the step's own forward pass, as in
        # play), so each timed step is the next frame after exactly `frames` frames.
        session.step(*inputs.next())
        state = session.rollout.state()
        # Reading the session's cache writes the queued frame into it: the size counts every frame so far.
        memory[frames] = session.cache.memory_bytes()
        cases[f"cached {frames}"] = stepper(session, inputs, before=lambda s=session, st=state: s.rollout.restore(st))

        generator = torch.Generator().manual_seed(frames)
        window = torch.randn(1, frames + 1, config.in_channels, *pipe.latent_size, generator=generator)
        sigmas = torch.full((1, frames + 1), context_noise)
        sigmas[:, -1] = 1.0  # the new frame starts from pure noise
        ids = torch.from_numpy(Inputs(pipe.num_players, seed=frames).ids(frames + 1))[None]  # (1, T, players)
        bits = ids_to_bits(ids if pipe.num_players == 2 else ids[..., 0])
        window, bits = window.to(transformer.dtype), bits.to(transformer.dtype)

        def full(window=window, sigmas=sigmas, bits=bits) -> None:
            with torch.no_grad():
                transformer(window, sigmas, actions=bits)

        cases[f"full {frames}"] = timed(full)
    times = interleaved_times(cases, rounds=settings["cache_repeats"], warmup=1, desc="cache")
    require_times("cache", times)
    rows = []
    for frames in settings["contexts"]:
        cached = statistics.median(times[f"cached {frames}"])
        full_seconds = statistics.median(times[f"full {frames}"])
        rows.append({
            "context_frames": frames, "cached_ms": cached * 1e3, "full_ms": full_seconds * 1e3,
            "speedup": full_seconds / cached, "cache_mb": memory[frames] / 1e6,
        })  # fmt: skip
        logger.info(
            "cache, %d context frames: %.1f ms cached, %.1f ms full window (%.1fx)",
            frames, cached * 1e3, full_seconds * 1e3, full_seconds / cached,
        )  # fmt: skip
    require_positive("cache", rows, ("cached_ms", "full_ms", "speedup", "cache_mb"))
    return {
        "dtype": DTYPE_NAMES[transformer.dtype],
        "steps": 1,
        "windows": transformer.cache_layer_windows,
        "rows": rows,
    }


def measure_neighbour(
    pipe,
    settings: dict,
    game_fps: float,
    neighbour_threads: int | None = None,
    threads: Sequence[int] | None = None,
    tune: bool = False,
) -> dict:
    """Generation (reference steps, decode included) with and without a neighbour process that runs an fp32 matmul
    loop on `neighbour_threads` threads (default: the most of `threads`).

    At each thread count of `threads` (default: this process's), loaded and unloaded rounds alternate, the neighbour
    paused (SIGSTOP) in the rounds alone. With `tune`, a session stepped by a `ThreadTuner` over `threads` (the
    generating commands' default) then plays `frames` frames alone and `frames` beside the neighbour, in that order,
    as a player would meet it: its adaptation (probes, a switch) is inside the loaded figure. The neighbour is started
    here and stopped (and reaped) before returning, whatever happens. `ratio` is the default's loaded / alone rate."""
    from ..runtime import ThreadTuner

    before = torch.get_num_threads()
    counts = list(threads or [before])
    neighbour_threads = neighbour_threads or max(counts)
    steps = settings["reference_steps"]
    rounds = max(1, settings["frames"] // settings["round_frames"])
    timing = dict(per_round=settings["round_frames"], warmup=warmup_frames(pipe), desc="neighbour")
    pausable = NeighbourLoad.can_pause()
    # The neighbour also stops by itself when this process exits, or after an hour (a safety net): the part takes
    # seconds to minutes.
    used: list[NeighbourLoad] = []

    def fresh() -> NeighbourLoad:  # one neighbour process per phase
        used.append(NeighbourLoad(neighbour_threads, size=settings["neighbour_size"], lifetime=3600.0))
        return used[-1]

    rows = []

    def add(count, times: dict[str, list[float]]) -> None:
        require_times("neighbour", times)
        for load, key in (("alone", "unloaded"), ("beside the neighbour", "loaded")):
            rows.append({"threads": count, "load": load, **rate_row(times[key], game_fps)})

    try:
        for count in counts:
            session, inputs = start_session(pipe, 8, steps, decode=True), Inputs(input_players(pipe))
            threads_now = partial(torch.set_num_threads, count)
            neighbour = fresh()
            if pausable:
                with neighbour:
                    cases = {
                        "unloaded": stepper(session, inputs, before=partial(_switch, neighbour.pause, threads_now)),
                        "loaded": stepper(session, inputs, before=partial(_switch, neighbour.resume, threads_now)),
                    }
                    add(count, interleaved_times(cases, rounds, **timing))
            else:  # no SIGSTOP (Windows): alone first, then beside the neighbour
                alone, loaded = (stepper(session, inputs, before=threads_now) for _ in range(2))
                times = interleaved_times({"unloaded": alone}, rounds, **timing)
                with neighbour:
                    times |= interleaved_times({"loaded": loaded}, rounds, **timing)
                add(count, times)
        if tune:
            tuner = ThreadTuner(counts)
            tuned = stepper(
                _TunedSession(start_session(pipe, 8, steps, decode=True), tuner), Inputs(input_players(pipe))
            )
            frames = rounds * settings["round_frames"]
            times = interleaved_times({"unloaded": tuned}, 1, frames, warmup=timing["warmup"], desc="neighbour")
            alone_threads = tuner.chosen
            with fresh():
                times |= interleaved_times({"loaded": tuned}, 1, frames, warmup=0, desc="neighbour")
            add("tuned", times)
            rows[-2]["chosen_threads"], rows[-1]["chosen_threads"] = alone_threads, tuner.chosen
    finally:
        torch.set_num_threads(before)
    if any(neighbour.ended_early for neighbour in used):
        raise RuntimeError("benchmark part 'neighbour': the neighbour process ended before the measurement did")
    default = "tuned" if tune else counts[0]
    neighbour = used[-1]
    matmuls = None if any(n.matmuls is None for n in used) else sum(n.matmuls for n in used)
    unloaded, loaded = [row for row in rows if row["threads"] == default]
    result = {
        "dtype": DTYPE_NAMES[pipe.transformer.dtype],
        "steps": steps,
        "threads": default,
        "neighbour": {"pid": neighbour.pid, "threads": neighbour_threads, "matmul_size": neighbour.size,
                      "matmuls": matmuls, "exit_code": neighbour.process.returncode,
                      "pids": [n.pid for n in used]},
        "method": ("alternating rounds at each thread count, the neighbour paused (SIGSTOP) in the rounds alone"
                   if pausable else "alone first, then beside the neighbour (this system cannot pause a process)")
                  + ("; the tuned session alone, then beside it" if tune else ""),
        "rows": rows,
        "ratio": loaded["frames_per_second"] / unloaded["frames_per_second"],
    }  # fmt: skip
    for row in rows:
        logger.info("neighbour, %s threads, %s: %.1f frames/s", row["threads"], row["load"], row["frames_per_second"])
    logger.info("neighbour: the default (%s threads) keeps %.2fx of its rate alone", default, result["ratio"])
    require_positive("neighbour", result["rows"], ("ms_p50", "frames_per_second"))
    require_positive("neighbour", [result], ("ratio",))
    if matmuls == 0:  # None where the system cannot ask it to report (Windows)
        raise RuntimeError("benchmark part 'neighbour': the neighbour process did no work")
    return result


SESSION_STEPPERS = ("round-robin", "batched")


def count_forwards(pipe, call: Callable[[], object]) -> int:
    """Transformer forward passes that `call()` runs."""
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda module, args, output: calls.append(1))
    try:
        call()
    finally:
        hook.remove()
    return len(calls)


def measure_sessions(pipe, settings: dict) -> dict:
    """N sessions of one process, one frame each per tick (decode included), stepped two ways: round-robin (one
    `session.step` after another) and batched (`step_sessions`: one forward of batch N per denoising step and one VAE
    call, as the demo app steps its players). Per-session and aggregate frames/s for each N and stepper, every
    configuration interleaved with the others; each stepper has its own sessions, on the same seeds and inputs."""
    from ..pipelines.batching import step_sessions

    steps = settings["reference_steps"]
    cases, ticks = {}, {}
    for count in settings["sessions"]:
        for stepper_name in SESSION_STEPPERS:
            sessions = [start_session(pipe, 8, steps, decode=True, seed=index) for index in range(count)]
            inputs = [Inputs(input_players(pipe), seed=index) for index in range(count)]
            if stepper_name == "round-robin":

                def tick(sessions=sessions, inputs=inputs) -> None:
                    for session, stream in zip(sessions, inputs):
                        session.step(*stream.next())

            else:

                def tick(sessions=sessions, inputs=inputs) -> None:
                    actions = [stream.next() for stream in inputs]
                    actions_p2 = [action[1] for action in actions] if input_players(pipe) == 2 else None
                    step_sessions(sessions, [action[0] for action in actions], actions_p2)

            cases[stepper_name, count] = timed(tick)
            ticks[stepper_name, count] = tick
    per_round = max(1, settings["round_frames"] // 2)
    times = interleaved_times(
        cases,
        rounds=max(1, settings["session_ticks"] // per_round),
        per_round=per_round,
        warmup=warmup_frames(pipe),
        desc="sessions",
    )
    require_times("sessions", times)
    rows = []
    for count in settings["sessions"]:
        round_robin = statistics.median(times["round-robin", count])
        for stepper_name in SESSION_STEPPERS:
            values = times[stepper_name, count]
            tick = statistics.median(values)
            rows.append({
                "sessions": count, "stepper": stepper_name, "tick_ms_p50": tick * 1e3,
                "tick_ms_p95": percentile(values, 95) * 1e3, "per_session_fps": 1 / tick,
                "aggregate_fps": count / tick, "speedup": round_robin / tick,
                # One more tick, untimed, after the timed ones (every cache full): the batched one is `steps`.
                "forwards_per_tick": count_forwards(pipe, ticks[stepper_name, count]),
            })  # fmt: skip
            logger.info(
                "%d sessions, %s: %.1f frames/s each, %.1f in all (%.2fx round-robin), %d forwards per tick",
                count, stepper_name, 1 / tick, count / tick, round_robin / tick, rows[-1]["forwards_per_tick"],
            )  # fmt: skip
    require_positive("sessions", rows, ("tick_ms_p50", "per_session_fps", "aggregate_fps", "forwards_per_tick"))
    return {
        "dtype": DTYPE_NAMES[pipe.transformer.dtype],
        "steps": steps,
        "steppers": list(SESSION_STEPPERS),
        "threads": torch.get_num_threads(),
        "rows": rows,
    }


def training_flops(config, batch: int, frames: int, blocks: dict[str, torch.nn.Parameter]) -> float:
    """Model FLOPs of one forward + backward step: 6 per parameter and token (forward 2, backward 4), the adaLN
    modulation once per frame rather than per token, and causal attention scores and values within the local window
    (on average half of it: a lower bound, since global layers see more)."""
    tokens_per_frame = (config.sample_size[0] // config.patch_size) * (config.sample_size[1] // config.patch_size)
    tokens = batch * frames * tokens_per_frame
    per_frame = sum(p.numel() for name, p in blocks.items() if "adaLN_modulation" in name)
    per_token = sum(p.numel() for p in blocks.values()) - per_frame
    width = config.num_attention_heads * config.attention_head_dim
    context = min(frames, config.local_window) * tokens_per_frame / 2
    attention = 6 * 2 * config.num_layers * width * tokens * context
    return 6 * per_token * tokens + 6 * per_frame * batch * frames + attention


def measure_training(transformer, ceilings: dict[str, float], settings: dict) -> dict:
    """Forward + backward + AdamW on random windows (every frame at its own noise level), in fp32 and under bf16
    autocast, and in the precision `mixed_precision: auto` picks with the blocks compiled as the trainer compiles them
    (`torch_compile: auto`, where torch.compile works here), interleaved: tokens/s and utilisation of the measured
    matmul ceiling of the dtype used."""
    from ..actions import ids_to_bits
    from ..runtime import compile_for_training
    from ..schedulers import TekkenFlowMatchScheduler

    auto = "bf16" if resolve_mixed_precision("auto", "cpu") == "bf16" else "fp32"
    models = {False: copy.deepcopy(transformer).float().train().requires_grad_(True)}
    if settings.get("train_compile", "auto") != "no":
        compiled = copy.deepcopy(models[False])
        if compile_for_training(compiled.transformer_blocks, settings.get("train_compile", "auto"), "cpu"):
            models[True] = compiled
    config = models[False].config
    scheduler = TekkenFlowMatchScheduler()
    optimizers = {key: torch.optim.AdamW(model.parameters(), lr=1e-5) for key, model in models.items()}
    batch, frames = settings["train_batch"], settings["train_frames"]
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(batch, frames, config.in_channels, *config.sample_size, generator=generator)
    ids = torch.randint(0, 256, (batch, frames, config.num_players), generator=generator)
    bits = ids_to_bits(ids if config.num_players == 2 else ids[..., 0]).float()
    flops = training_flops(config, batch, frames, dict(models[False].transformer_blocks.named_parameters()))
    tokens = (
        batch * frames * (config.sample_size[0] // config.patch_size) * (config.sample_size[1] // config.patch_size)
    )

    def step(autocast: bool, compiled: bool) -> None:
        model, optimizer = models[compiled], optimizers[compiled]
        sigmas = scheduler.sample_training_sigmas(batch, frames, generator=generator)
        noise = torch.randn(latents.shape, generator=generator)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            prediction = model(scheduler.scale_noise(latents, sigmas, noise), sigmas, actions=bits, return_dict=False)
        loss = (prediction[0].float() - (noise - latents)).pow(2).mean()
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    cases = {("fp32", False): timed(lambda: step(False, False)), ("bf16", False): timed(lambda: step(True, False))}
    if True in models:
        cases[auto, True] = timed(lambda: step(auto == "bf16", True))
    # Two untimed steps each: the compiled case compiles its forward and backward graphs in them.
    times = interleaved_times(cases, rounds=settings["train_repeats"], warmup=2, desc="training")
    require_times("training", times)
    # Emulated bf16 has no ceiling to speak of: its fallback kernel is far slower on the ceiling's large square than on
    # the model's small matmuls, so a utilisation against it would exceed 100 % and mean nothing.
    emulated = {"bf16"} if native_bf16("cpu") is None else set()
    rows = []
    for (precision, compiled), values in times.items():
        seconds = statistics.median(values)
        gflops = flops / seconds / 1e9
        mfu = None if precision in emulated else gflops / ceilings[precision]
        rows.append({
            "precision": precision, "compiled": compiled, "auto": precision == auto and compiled == (True in models),
            "emulated": precision in emulated, "batch": batch, "frames": frames, "ms_per_step": seconds * 1e3,
            "tokens_per_second": tokens / seconds, "frames_per_second": batch * frames / seconds, "gflops": gflops,
            "ceiling_gflops": ceilings[precision], "mfu": mfu,
        })  # fmt: skip
        logger.info("training %s%s: %.0f tokens/s, %.1f GFLOP/s, MFU %s", precision, ", compiled" if compiled else "",
                    tokens / seconds, gflops, "n/a (emulated)" if mfu is None else f"{100 * mfu:.0f} %")  # fmt: skip
    require_positive("training", rows, ("ms_per_step", "tokens_per_second", "gflops"))
    require_positive("training", [row for row in rows if row["mfu"] is not None], ("mfu",))
    parameters = sum(p.numel() for p in models[False].parameters())
    return {"parameters": parameters, "tokens_per_window": tokens // batch, "rows": rows}
