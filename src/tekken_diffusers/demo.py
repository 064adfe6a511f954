"""Play the learned game in the browser: a Gradio app around `TekkenWorldModelPipeline.start_session`.

The page keeps a set of held keys (W/A/S/D stick, U/I/J/K buttons, or the on-screen pad) and sends them to the
server whenever they change. Start opens one streaming event per game: the server generates frames at the game's 15
frames/s (`FramePacer`) under the keys last received and pushes each to the page as it is made, so the rate on screen
does not wait for a request round trip per frame (a page that asked for every frame got one per round trip, at most
20 frames/s with its 50 ms timer, fewer with a slower link). Every browser tab has its own `PlaySession` (Gradio
state), a bounded number of frames, and can download its clip with the inputs drawn under the frames.

Many players share the model: the streams of all tabs run concurrently, paced on one clock so that their frame
requests arrive together, and a `SessionBatcher` (`tekken_diffusers.pipelines.batching`) steps every session that
asked for a frame in one batched forward pass per denoising step, so eight players cost far less than eight separate
forwards. A game joins the batch with its first frame and leaves it when paused, stopped or reset.

With a two-player pipeline (`num_players=2`) player 2 is a second person on the same keyboard (arrow keys to move,
numpad 1–4 or 7/8/9/0 for buttons 1–4), a scripted opponent that walks up to player 1 and punches, a replay of
the recorded player 2 of the chosen round, or the pipeline's learned opponent policy where it has one (the default
then: a one-player game against the opponent the model learned); the page shows both players' inputs.
"""

from __future__ import annotations

import logging
import math
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .actions import DOWN, LEFT, LP, RIGHT, UP, id_to_notation, id_to_notation_safe
from .data.rounds import list_rounds, load_round
from .pipelines.batching import SessionBatcher, step_sessions
from .visualization import compose_frames, write_video

logger = logging.getLogger(__name__)

__all__ = [
    "ContextLibrary",
    "PlaySession",
    "ClipFolder",
    "ScriptedOpponent",
    "FramePacer",
    "PLAYER_2_MODES",
    "parse_action_field",
    "build_demo",
    "KEYBOARD_JS",
]

# Who plays player 2 with a two-player pipeline.
PLAYER_2_MODES = ("keyboard", "scripted", "replay", "opponent")


class ContextLibrary:
    """Starting contexts: the first frames (and inputs) of recorded rounds.

    Args:
        paths: round files to offer.
        context_frames: frames of context given to the model.
    """

    def __init__(self, paths: list[Path], context_frames: int):
        if not paths:
            raise ValueError("no rounds to start from")
        self.context_frames = context_frames
        self._rounds = {}
        for path in paths:
            round_ = load_round(path).trimmed()
            if round_.num_frames < context_frames:
                logger.warning("%s has %d frames, fewer than %d: skipped", path, round_.num_frames, context_frames)
                continue
            self._rounds[f"{path.parent.name}/{path.stem}"] = round_
        if not self._rounds:
            raise ValueError(f"no round has the {context_frames} frames a context needs")

    @classmethod
    def from_folder(cls, folder: str | Path, context_frames: int, limit: int = 32) -> ContextLibrary:
        return cls(list_rounds(folder)[:limit], context_frames)

    @property
    def names(self) -> list[str]:
        return list(self._rounds)

    def context(self, name: str, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """`(frames (T, 3, H, W) uint8, inputs (T,) uint8)` of context `name` starting at frame `start`."""
        if name not in self._rounds:
            raise ValueError(f"unknown context {name!r}; known: {', '.join(self.names)}")
        round_ = self._rounds[name]
        start = int(np.clip(start, 0, round_.num_frames - self.context_frames))
        end = start + self.context_frames
        return round_.images[start:end], round_.actions_p1[start:end]

    def player_2_inputs(self, name: str, start: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Player 2's recorded inputs of context `name` from frame `start`: `(context (T,), the rest of the round)`,
        uint8; neutral where the round has no player 2 (a one-player recording)."""
        if name not in self._rounds:
            raise ValueError(f"unknown context {name!r}; known: {', '.join(self.names)}")
        round_ = self._rounds[name]
        start = int(np.clip(start, 0, round_.num_frames - self.context_frames))
        actions_p2 = round_.actions_p2
        if actions_p2 is None:
            actions_p2 = np.zeros(round_.num_frames, dtype=np.uint8)
        end = start + self.context_frames
        return actions_p2[start:end], actions_p2[end:]

    def has_player_2(self, name: str) -> bool:
        """Whether context `name` was recorded with player 2's inputs."""
        return self._rounds[name].actions_p2 is not None

    def max_start(self, name: str) -> int:
        return self._rounds[name].num_frames - self.context_frames


@dataclass
class PlaySession:
    """One player's game: the model session, the frames played so far, and timing.

    Args:
        session: a `TekkenWorldModelSession` (output type "np").
        context: the context frames `(T, 3, H, W)` uint8, shown before the first generated frame.
        max_frames: frames after which the game stops (bounds what one visitor can ask for).
        player_2: where player 2's inputs come from with a two-player pipeline (set by the app), else None.
        batcher: steps the session together with the app's other sessions (set by the app); None steps it alone.
    """

    session: object
    context: np.ndarray
    max_frames: int = 2000
    player_2: _Player2 | None = None
    batcher: SessionBatcher | None = None
    frames: list[np.ndarray] = field(default_factory=list)
    actions: list[int] = field(default_factory=list)
    actions_p2: list[int] = field(default_factory=list)
    latencies: deque = field(default_factory=lambda: deque(maxlen=30))
    shown_at: deque = field(default_factory=lambda: deque(maxlen=31))
    lock: threading.Lock = field(default_factory=threading.Lock)
    held: tuple[int, int] = (0, 0)  # the page's held keys (player 1, player 2's keyboard), as last received
    stream: int = 0  # the number of the stream that plays the game (0: none); a newer stream or a stop ends it
    streams: int = 0  # streams begun so far

    @property
    def finished(self) -> bool:
        return len(self.frames) >= self.max_frames

    def step(self, action_id: int, action_p2: int | None = None) -> np.ndarray:
        """Generate the next frame under `action_id` (and player 2's `action_p2` with a two-player pipeline);
        returns it as uint8 `(3, H, W)`."""
        if self.finished:
            raise RuntimeError(f"the session reached its limit of {self.max_frames} frames: reset to play again")
        with self.lock:  # one frame at a time per session, even if the browser sends two requests
            started = time.perf_counter()
            inputs = (int(action_id),) if action_p2 is None else (int(action_id), int(action_p2))
            if self.batcher is not None:  # waits for this tick's batch: the latency includes the wait
                frame = self.batcher.step(self.session, *inputs)  # (H, W, 3) float in [0, 1]
            else:
                frame = self.session.step(*inputs)
            self.latencies.append(time.perf_counter() - started)
            self.shown_at.append(time.perf_counter())
        frame = (np.asarray(frame) * 255).round().astype(np.uint8).transpose(2, 0, 1)  # (3, H, W)
        self.frames.append(frame)
        self.actions.append(int(action_id))
        if action_p2 is None and getattr(self.session, "rollout", None) is not None:
            action_p2 = self.session.last_action_p2  # the pipeline's opponent policy drew it (None without one)
        if action_p2 is not None:
            self.actions_p2.append(int(action_p2))
        return frame

    def pause(self) -> None:
        """Stop the batched ticks from waiting for this game's requests (until it asks for a frame again)."""
        if self.batcher is not None:
            self.batcher.leave(self.session)

    def begin_stream(self) -> int:
        """A new stream plays the game from now on (an older one stops at its next frame); returns its number."""
        self.streams += 1
        self.stream = self.streams
        return self.stream

    def streaming(self, stream: int) -> bool:
        """Whether stream number `stream` still plays the game."""
        return self.stream == stream

    def stop(self) -> None:
        """End the game's stream (after the frame in flight, if any) and leave the batch."""
        self.stream = 0
        self.pause()

    def reset(self) -> None:
        with self.lock:  # after the frame in flight, if any: the game leaves the batch at a frame boundary
            self.pause()
            self.session.reset()
            self.frames.clear()
            self.actions.clear()
            self.actions_p2.clear()
            self.latencies.clear()
            self.shown_at.clear()

    def stats(self) -> str:
        if not self.latencies:
            return f"frame 0 / {self.max_frames}"
        latency = float(np.median(self.latencies))
        shown = ""  # frames/s the server made for this game (the page may show fewer, if its link is slow)
        if len(self.shown_at) > 1:
            shown = f"{(len(self.shown_at) - 1) / (self.shown_at[-1] - self.shown_at[0]):.1f} frames/s sent · "
        shared = ""
        if self.batcher is not None and self.batcher.batch_sizes:
            shared = f" · {self.batcher.batch_sizes[-1]} game(s) per batch"
        return (
            f"frame {len(self.frames)} / {self.max_frames} · {shown}model {1 / latency:.1f} frames/s · "
            f"latency {latency * 1000:.0f} ms/frame{shared} · input {id_to_notation_safe(self.actions[-1])}"
            + (f" · player 2 input {_notation_p2(self.actions_p2[-1])}" if self.actions_p2 else "")
        )

    def export(self, path: str | Path, fps: float = 15.0) -> Path:
        """The clip so far as an mp4 with the inputs drawn under the frames."""
        if not self.frames:
            raise ValueError("nothing played yet")
        actions_p2 = np.array(self.actions_p2, dtype=np.uint8) if self.actions_p2 else None
        canvas = compose_frames(
            [np.stack(self.frames)], np.array(self.actions, dtype=np.uint8), actions_p2=actions_p2, scale=4, fps=fps
        )
        return write_video(path, canvas, fps=fps)


def _notation_p2(action_id: int) -> str:
    """Player 2's input in notation read from its side (the right: forward is Left)."""
    try:
        return id_to_notation(action_id, side="right")
    except ValueError:
        return id_to_notation_safe(action_id)


class ScriptedOpponent:
    """Player 2 played by a script: walk to player 1's height and punching distance, punch, sometimes step back.

    It reads both boxers' positions off the last generated frame (as a person reads the screen), so it follows what
    the world model shows; each decision is held for a few frames, as the recorder's policies do.

    Args:
        seed: seeds the script's random choices (how long it holds an input, when it punches).
        reach: punching distance as a fraction of the frame width.
    """

    def __init__(self, seed: int = 0, reach: float = 0.25):
        self.rng = np.random.default_rng(seed)
        self.reach = reach
        self._action, self._left = 0, 0

    def __call__(self, frame: np.ndarray | None) -> int:
        """The next input (an action id) given the last frame `(3, H, W)` uint8, or None before the first one."""
        if self._left > 0:
            self._left -= 1
            return self._action
        from .evaluation.heldout import boxer_positions

        action = 0
        positions = None if frame is None else boxer_positions(frame)  # (2, 2): white, black (x, y)
        if positions is not None and not np.isnan(positions).any():
            width, height = frame.shape[-1], frame.shape[-2]
            (white_x, white_y), (black_x, black_y) = positions
            dx, dy = (white_x - black_x) / width, (white_y - black_y) / height
            if abs(dy) > 0.06:
                action |= DOWN if dy > 0 else UP
            if abs(dx) > self.reach:
                action |= RIGHT if dx > 0 else LEFT
            elif abs(dx) < self.reach * 0.5 and self.rng.random() < 0.3:
                action |= LEFT if dx > 0 else RIGHT  # too close to land a punch: step back
            if abs(dy) < 0.15 and abs(dx) < self.reach * 1.3 and self.rng.random() < 0.7:
                action |= LP
        self._action, self._left = action, int(self.rng.integers(1, 5))
        return action


class FramePacer:
    """Paces one game's frames at `fps` on a clock grid that every game of the app shares.

    `wait()` returns at the start of the next slot of `1 / fps` seconds after the previous frame's slot. All games
    wait for the same instants, so their frame requests reach the `SessionBatcher` together and step in one batch.
    A game that fell behind (its frame took longer than a slot) goes at once, without waiting for a slot: the rate is
    then the model's, never rounded down to a fraction of `fps`.

    Args:
        fps: frames per second of the game.
        clock: seconds of a monotonic clock (shared by the games: `time.monotonic`).
        sleep: waits the given seconds.
    """

    def __init__(self, fps: float = 15.0, clock=time.monotonic, sleep=time.sleep):
        if not fps > 0:
            raise ValueError(f"fps must be > 0, got {fps}")
        self.period = 1.0 / fps
        self.clock = clock
        self.sleep = sleep
        self._slot: int | None = None

    def wait(self) -> None:
        """Wait until this game's next frame is due (the first frame is due at once)."""
        now = self.clock()
        if self._slot is None:
            self._slot = math.floor(now / self.period)
            return
        due = (self._slot + 1) * self.period
        if now < due:
            self.sleep(due - now)
            now = self.clock()
        self._slot = max(self._slot + 1, math.floor(now / self.period))


class _Player2:
    """Where player 2's next input comes from in one browser tab: the keyboard, the script, or the recording."""

    def __init__(self, mode: str, replay: np.ndarray, seed: int):
        if mode not in PLAYER_2_MODES:
            raise ValueError(f"player 2 mode must be one of {', '.join(PLAYER_2_MODES)}, got {mode!r}")
        self.mode = mode
        self.replay = replay if len(replay) else np.zeros(1, dtype=np.uint8)
        self.script = ScriptedOpponent(seed)

    def next(self, play: PlaySession, keyboard: int) -> int | None:
        """Player 2's next input; None when the pipeline's opponent policy chooses it."""
        if self.mode == "opponent":
            return None
        if self.mode == "keyboard":
            return keyboard
        if self.mode == "scripted":
            return self.script(play.frames[-1] if play.frames else play.context[-1])
        return int(self.replay[len(play.frames) % len(self.replay)])  # the recording, looped


def parse_action_field(text: str | None) -> int:
    """The held-keys field the page sends with each frame request → an action id. The page sends an integer in
    [0, 255]; anything else (a tampered request: "inf", "nan", "1e999", "-3") is no input rather than an error."""
    text = (text or "").strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 3):
        return 0
    action_id = int(text)
    return action_id if action_id <= 255 else 0


class ClipFolder:
    """Where "Download clip" writes: one temporary folder per app and one file per session, overwritten by the
    session's next download, so that downloads never pile up folders. The folder goes when the app exits."""

    def __init__(self):
        self._folder = tempfile.TemporaryDirectory(prefix="tekken-clips-")
        self.path = Path(self._folder.name)

    def clip_path(self, play: PlaySession) -> Path:
        return self.path / f"clip-{id(play):x}.mp4"

    def cleanup(self) -> None:
        self._folder.cleanup()


def upscale(frame: np.ndarray, scale: int = 6) -> np.ndarray:
    """`(3, H, W)` → `(H*scale, W*scale, 3)` by pixel repetition, for display."""
    return frame.transpose(1, 2, 0).repeat(scale, axis=0).repeat(scale, axis=1)


# Held keys → the current input of each player, sent to the server (a click on the hidden #tekken-keys button, whose
# event reads them) whenever they change; the game's stream plays the keys last received. Player 1: W/A/S/D and
# U/I/J/K (by key); player 2 (two-player pipelines): the arrows and numpad 1-4 or 7/8/9/0 (by code, so numpad digits
# are told apart from the digit row). `tekkenSend(true)` sends them even unchanged (a new game starts from none).
KEYBOARD_JS = """
<script>
(() => {
  const held = new Set();
  const held2 = new Set();
  const keys = {w: 128, s: 64, a: 32, d: 16, u: 8, i: 4, j: 2, k: 1};
  const keys2 = {ArrowUp: 128, ArrowDown: 64, ArrowLeft: 32, ArrowRight: 16, Numpad1: 8, Numpad2: 4, Numpad3: 2,
                 Numpad4: 1, Digit7: 8, Digit8: 4, Digit9: 2, Digit0: 1};
  const typing = (e) => e.target && ["INPUT", "TEXTAREA", "SELECT"].includes(e.target.tagName);
  let sent = null;
  window.tekkenSend = (always) => {
    const now = window.tekkenAction() + "," + window.tekkenAction2();
    const button = document.querySelector("#tekken-keys");
    if (!button || (now === sent && !always)) return;
    sent = now;
    button.click();
  };
  document.addEventListener("keydown", (e) => {
    const key = e.key.toLowerCase();
    if (typing(e)) return;
    if (key in keys) { held.add(key); e.preventDefault(); }
    else if (e.code in keys2) { held2.add(e.code); e.preventDefault(); }
    else return;
    window.tekkenSend(false);
  });
  document.addEventListener("keyup", (e) => {
    held.delete(e.key.toLowerCase());
    held2.delete(e.code);
    window.tekkenSend(false);
  });
  window.addEventListener("blur", () => { held.clear(); held2.clear(); window.tekkenSend(false); });
  window.tekkenPress = (key, down) => { down ? held.add(key) : held.delete(key); window.tekkenSend(false); };
  const clean = (id) => {
    if ((id & 128) && (id & 64)) id &= ~(128 | 64);   // opposite directions cancel, as in keys_to_id
    if ((id & 32) && (id & 16)) id &= ~(32 | 16);
    return id;
  };
  window.tekkenAction = () => {
    let id = 0;
    for (const key of held) id |= keys[key];
    return clean(id);
  };
  window.tekkenAction2 = () => {
    let id = 0;
    for (const code of held2) id |= keys2[code];
    return clean(id);
  };
})();
</script>
"""

PAD_HTML = """
<div id="tekken-pad" style="display:flex;gap:24px;align-items:center;user-select:none">
  <div style="display:grid;grid-template-columns:repeat(3,44px);gap:4px">
    <span></span><button data-key="w">↑</button><span></span>
    <button data-key="a">←</button><span></span><button data-key="d">→</button>
    <span></span><button data-key="s">↓</button><span></span>
  </div>
  <div style="display:grid;grid-template-columns:repeat(2,44px);gap:4px">
    <button data-key="u">1</button><button data-key="i">2</button>
    <button data-key="j">3</button><button data-key="k">4</button>
  </div>
</div>
"""

PAD_JS = """
() => {
  for (const button of document.querySelectorAll("#tekken-pad button")) {
    const key = button.dataset.key;
    button.addEventListener("pointerdown", () => window.tekkenPress(key, true));
    for (const up of ["pointerup", "pointerleave", "pointercancel"]) {
      button.addEventListener(up, () => window.tekkenPress(key, false));
    }
  }
}
"""

CSS = """
#frame img { image-rendering: pixelated; }
#tekken-pad button { height: 44px; font-size: 18px; border-radius: 8px; }
"""


def build_demo(
    pipe,
    contexts: ContextLibrary,
    num_inference_steps: int | None = None,
    max_frames: int = 2000,
    fps: float = 15.0,
    seed: int = 0,
    max_players: int = 16,
    batch_wait: float = 0.005,
    thread_tuner=None,
):
    """The Gradio Blocks app. `launch(server_name="127.0.0.1", head=KEYBOARD_JS, css=CSS)` serves it.
    `num_inference_steps=None` samples with the pipeline's `default_inference_steps`.

    Start opens a stream that plays the game at `fps` frames/s (the game's rate, also the downloaded clip's) and
    pushes each frame to the page as it is made, under the held keys the page last sent. Up to `max_players` streams
    play at once (the stream event's concurrency limit; more wait in Gradio's queue), and the app's `SessionBatcher`
    (`demo.session_batcher`) steps the games that asked for a frame in one batched call, a request waiting at most
    `batch_wait` seconds for the other players' requests. `thread_tuner` (a `runtime.ThreadTuner`, optional) picks the
    torch threads of those batched ticks by timing them."""
    import gradio as gr

    if max_players < 1:
        raise ValueError(f"max_players must be >= 1, got {max_players}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    clips = ClipFolder()
    batcher = SessionBatcher(
        max_wait=batch_wait, step=step_sessions if thread_tuner is None else thread_tuner.wrap(step_sessions)
    )
    two_player = getattr(pipe, "num_players", 1) == 2

    def start(name: str, start_frame: float, mode: str = "keyboard", previous: PlaySession | None = None):
        if previous is not None:
            previous.stop()  # this tab's earlier game: its stream ends, the new one takes over
        frames, inputs = contexts.context(name, int(start_frame))
        generator = torch.Generator().manual_seed(seed)
        player_2 = {}
        if two_player:
            inputs_p2, replay = contexts.player_2_inputs(name, int(start_frame))
            if mode == "opponent" and getattr(pipe, "opponent", None) is None:
                raise gr.Error("player 2: this pipeline has no opponent policy; choose another mode")
            if mode != "opponent" or contexts.has_player_2(name):
                player_2 = {"context_actions_p2": inputs_p2}  # else the opponent reads them from the frames
        session = pipe.start_session(
            context=frames, context_actions=inputs, num_inference_steps=num_inference_steps, generator=generator,
            output_type="np", **player_2,
        )  # fmt: skip
        play = PlaySession(session=session, context=frames, max_frames=max_frames, batcher=batcher)
        ready = "ready: hold W/A/S/D and U/I/J/K"
        if two_player:
            play.player_2 = _Player2(mode, replay, seed)
            ready += " (player 2: the arrows and numpad 1-4)" if mode == "keyboard" else f" (player 2: {mode})"
        return play, upscale(frames[-1]), ready

    def keys(play: PlaySession | None, action: str, action_p2: str = "0"):
        """The page's held keys changed: the game's next frames take them."""
        if play is not None:
            play.held = (parse_action_field(action), parse_action_field(action_p2))

    def stream(play: PlaySession | None):
        """Play the game at `fps` under the held keys, yielding `(picture, stats)` per frame, until it is paused,
        started again, reaches its frame limit or its tab closes (Gradio then stops asking for frames)."""
        if play is None:
            return
        number, pacer = play.begin_stream(), FramePacer(fps)
        try:
            while play.streaming(number):
                if play.finished:
                    play.stop()
                    yield gr.skip(), f"stopped at the limit of {play.max_frames} frames: reset to play again"
                    return
                pacer.wait()
                if not play.streaming(number):
                    break
                action, keyboard_p2 = play.held
                if play.player_2 is None:
                    frame = play.step(action)
                else:
                    frame = play.step(action, play.player_2.next(play, keyboard_p2))
                paused = "" if play.streaming(number) else " · paused"
                yield upscale(frame), play.stats() + paused
        finally:
            if play.streaming(number):  # closed from outside (the tab went): the batch stops waiting for it
                play.pause()

    def reset(play: PlaySession | None):
        if play is None:
            return gr.skip(), "press Start first"
        play.reset()
        return upscale(play.context[-1]), "reset: back to the context"

    def download(play: PlaySession | None):
        if play is None or not play.frames:
            raise gr.Error("nothing played yet")
        return str(play.export(clips.clip_path(play), fps=fps))

    def pause(play: PlaySession | None):
        if play is not None:
            play.stop()
        return (play.stats() + " · paused") if play else "paused"

    with gr.Blocks(title="tekken-diffusers: play the world model") as demo:
        gr.Markdown(
            "## Play the learned game\nPick a starting context and press **Start**. Hold **W/A/S/D** to move and "
            "**U/I/J/K** for buttons 1–4 (or use the pad). Every frame is generated by the world model."
            + (
                "\n\n**Two players**: player 2 (the black boxer) holds the **arrow keys** to move and **numpad 1–4** "
                "(or **7/8/9/0**) for buttons 1–4, or leaves player 2 to a script, to the round's recording or "
                "(where the pipeline has one) to its learned opponent."
                if two_player
                else ""
            )
        )
        play_state = gr.State(None)
        with gr.Row():
            with gr.Column(scale=2):
                frame = gr.Image(label="game", elem_id="frame", type="numpy", interactive=False, height=400)
                stats = gr.Markdown("press Start", elem_id="stats")
            with gr.Column(scale=1):
                context_name = gr.Dropdown(contexts.names, value=contexts.names[0], label="starting context")
                start_frame = gr.Slider(0, contexts.max_start(contexts.names[0]), value=0, step=1, label="start frame")
                modes = [m for m in PLAYER_2_MODES if m != "opponent" or getattr(pipe, "opponent", None) is not None]
                player_2_mode = gr.Radio(
                    modes,
                    value="opponent" if "opponent" in modes else "keyboard",
                    label="player 2",
                    elem_id="player2",
                    visible=two_player,
                )
                start_button = gr.Button("Start", variant="primary", elem_id="start")
                with gr.Row():
                    pause_button = gr.Button("Pause", elem_id="pause")
                    reset_button = gr.Button("Reset", elem_id="reset")
                gr.HTML(PAD_HTML)
                download_button = gr.Button("Download clip", elem_id="download")
                clip = gr.File(label="clip (mp4)")
        action = gr.Textbox(value="0", visible="hidden", elem_id="action")
        action_p2 = gr.Textbox(value="0", visible="hidden", elem_id="action_p2")
        keys_button = gr.Button("keys", visible="hidden", elem_id="tekken-keys")

        context_name.change(lambda n: gr.Slider(maximum=contexts.max_start(n), value=0), context_name, start_frame)
        read_keys = (
            "(play, action, action_p2) => [play, String(window.tekkenAction()), String(window.tekkenAction2())]"
        )
        keys_button.click(
            keys,
            [play_state, action, action_p2],
            None,
            js=read_keys,
            # The latest keys win: a change while one is on its way is sent after it, only the last of several.
            trigger_mode="always_last",
            show_progress="hidden",
            concurrency_limit=None,  # a few bytes, never held up behind the games' streams
        )
        start_button.click(
            start, [context_name, start_frame, player_2_mode, play_state], [play_state, frame, stats]
        ).then(
            None, js="() => { window.tekkenSend(true); }"  # the keys already held reach the new game
        ).then(
            stream,
            play_state,
            [frame, stats],
            show_progress="hidden",
            # Every player's stream runs at once: the batcher needs their frame requests together to step them in
            # one pass; Gradio's default limit of one would serialise the players.
            concurrency_limit=max_players,
        )  # fmt: skip
        pause_button.click(pause, play_state, stats)
        reset_button.click(reset, play_state, [frame, stats])
        download_button.click(download, play_state, clip)
        demo.load(None, None, None, js=PAD_JS)
    demo.session_batcher = batcher
    return demo
