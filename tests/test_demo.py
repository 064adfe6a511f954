"""The play app: session logic, and a real browser (headless Chromium) pressing keys on the served page."""

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tekken_diffusers.actions import bits_to_ids
from tekken_diffusers.demo import ContextLibrary, PlaySession, build_demo, parse_action_field
from tekken_diffusers.pipelines import build_random_pipeline
from tests.conftest import make_round

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pipe():
    pipe = build_random_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def contexts(tmp_path):
    from tekken_diffusers.data.rounds import save_round

    for index in range(2):
        save_round(tmp_path / f"round_{index:04d}.npz", make_round(12, size=(8, 8), seed=index))
    return ContextLibrary.from_folder(tmp_path, context_frames=4)


def new_play(pipe, contexts, max_frames=6, seed=0):
    frames, inputs = contexts.context(contexts.names[0])
    session = pipe.start_session(
        context=frames, context_actions=inputs, num_inference_steps=1, generator=torch.Generator().manual_seed(seed),
        output_type="np",
    )  # fmt: skip
    return PlaySession(session=session, context=frames, max_frames=max_frames)


def test_play_session_is_bounded_resettable_and_exports(pipe, contexts, tmp_path):
    play = new_play(pipe, contexts, max_frames=3)
    frames = [play.step(action) for action in (16, 16, 8)]
    assert all(f.shape == (3, 8, 8) and f.dtype == np.uint8 for f in frames)
    assert "frame 3 / 3" in play.stats() and "input 1" in play.stats()
    with pytest.raises(RuntimeError, match="limit of 3 frames"):
        play.step(0)
    video = play.export(tmp_path / "clip.mp4")
    assert video.stat().st_size > 0
    play.reset()
    assert play.frames == [] and not play.finished


def test_sessions_do_not_touch_each_other(pipe, contexts):
    alone = new_play(pipe, contexts)
    expected = [alone.step(a) for a in (16, 32, 8)]
    first, second = new_play(pipe, contexts), new_play(pipe, contexts, seed=7)
    got = []
    for action in (16, 32, 8):
        got.append(first.step(action))
        second.step(64)
    for a, b in zip(expected, got):
        np.testing.assert_array_equal(a, b)


def test_the_app_steps_concurrent_players_in_one_batch(pipe, contexts):
    """Three tabs' streams ask for frames at once: their sessions step together (one batched pass per tick) and each
    tab gets the frames its session would have given alone, under the keys it sent; the streams run concurrently."""
    import threading

    demo = build_demo(pipe, contexts, num_inference_steps=1, max_players=12)
    batcher = demo.session_batcher
    batcher.max_wait = 2.0  # a tick starts once every active tab has asked: no dependence on timing
    try:
        stream_fn = next(f for f in demo.fns.values() if f.name == "stream")
        assert stream_fn.concurrency_limit == 12
        fns = {f.name: f.fn for f in demo.fns.values()}
        starts = [(contexts.names[0], 0), (contexts.names[1], 3), (contexts.names[0], 5)]
        plays = [fns["start"](name, start)[0] for name, start in starts]
        alone = [fns["start"](name, start)[0] for name, start in starts]
        actions = [[16, 32, 8, 0, 64], [8, 8, 8, 8, 8], [0, 128, 2, 1, 16]]

        def player(play, inputs):
            frames = fns["stream"](play)
            for action in inputs:
                fns["keys"](play, str(action))  # the page sends its held keys when they change
                next(frames)
            fns["pause"](play)  # stop asking: the others' ticks do not wait for this tab
            assert next(frames, None) is None  # the stream ends at the pause

        threads = [threading.Thread(target=player, args=args) for args in zip(plays, actions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert max(batcher.batch_sizes) == 3 and batcher.active_sessions == 0
        for play, reference, inputs in zip(plays, alone, actions):
            expected = [
                (np.asarray(reference.session.step(action)) * 255).round().astype(np.uint8).transpose(2, 0, 1)
                for action in inputs
            ]
            assert len(play.frames) == len(inputs)
            for got, want in zip(play.frames, expected):
                assert np.abs(got.astype(int) - want.astype(int)).max() <= 1  # uint8 rounding of equal floats
        assert "game(s) per batch" in plays[0].stats()
    finally:
        batcher.close()


def test_frame_pacer_aligns_games_on_one_clock_and_never_rounds_a_late_frame_down():
    from tekken_diffusers.demo import FramePacer

    now = [10.02]
    clock, sleep = (lambda: now[0]), (lambda seconds: now.__setitem__(0, now[0] + seconds))
    first, second = FramePacer(10.0, clock, sleep), FramePacer(10.0, clock, sleep)
    first.wait()  # the first frame goes at once
    assert now[0] == pytest.approx(10.02)
    now[0] = 10.07  # the second game starts later in the same slot
    second.wait()
    first.wait()  # both wait for the next slot: 10.1
    assert now[0] == pytest.approx(10.1)
    second.wait()
    assert now[0] == pytest.approx(10.1)  # the same instant: their requests reach the batcher together
    now[0] = 10.35  # a frame that took 2.5 slots: the next one goes at once, not at 10.4
    first.wait()
    assert now[0] == pytest.approx(10.35)
    first.wait()
    assert now[0] == pytest.approx(10.4)  # and back on the shared grid
    with pytest.raises(ValueError, match="fps"):
        FramePacer(0.0)


def test_the_stream_stops_at_a_pause_a_new_start_and_the_frame_limit(pipe, contexts):
    demo = build_demo(pipe, contexts, num_inference_steps=1, max_frames=3, fps=1000.0)
    fns = {f.name: f.fn for f in demo.fns.values()}
    try:
        play = fns["start"](contexts.names[0], 0)[0]
        frames = fns["stream"](play)
        next(frames)
        assert "· paused" in fns["pause"](play)
        assert next(frames, None) is None and play.stream == 0
        restarted = fns["stream"](play)  # a stream begun again plays on from where the game paused
        next(restarted)
        newer = fns["start"](contexts.names[1], 0, "keyboard", play)[0]  # Start again: the old game's stream ends
        assert next(restarted, None) is None and len(play.frames) == 2
        frames = fns["stream"](newer)
        outputs = list(frames)
        assert len(newer.frames) == 3 and "limit of 3 frames" in outputs[-1][1]
        assert demo.session_batcher.active_sessions == 0
    finally:
        demo.session_batcher.close()


def test_context_library(contexts):
    frames, inputs = contexts.context(contexts.names[1], start=100)  # clamped to the last possible start
    assert frames.shape == (4, 3, 8, 8) and inputs.shape == (4,)
    assert contexts.max_start(contexts.names[0]) == 8
    with pytest.raises(ValueError, match="unknown context 'nope'"):
        contexts.context("nope")


def test_a_tampered_action_field_is_no_input():
    """Issue 12.9: "inf" raised an OverflowError whose text reached the page."""
    assert [parse_action_field(text) for text in ("16", " 255 ", "0", None, "")] == [16, 255, 0, 0, 0]
    for text in ("inf", "-inf", "nan", "1e999", "-3", "256", "9" * 5000, "٣", "1.5"):
        assert parse_action_field(text) == 0, text


def test_downloads_reuse_one_file_per_session(pipe, contexts, monkeypatch, tmp_path):
    """Issue 12.9: every "Download clip" left a temporary folder behind."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    demo = build_demo(pipe, contexts, num_inference_steps=1)
    fns = {f.name: f.fn for f in demo.fns.values()}
    first, second = new_play(pipe, contexts), new_play(pipe, contexts)
    first.step(16)
    second.step(8)
    paths = [Path(fns["download"](play)) for play in (first, first, second, first)]
    assert paths[0] == paths[1] == paths[3] != paths[2] and paths[0].parent == paths[2].parent
    assert all(p.stat().st_size > 0 for p in paths)
    ours = [p for p in (tmp_path / "tmp").iterdir() if p.name.startswith("tekken-")]
    assert len(ours) == 1  # one folder for the app, whatever the downloads
    fns["keys"](first, "inf")
    frame, stats = next(fns["stream"](first))
    assert frame.shape[-1] == 3 and "input n" in stats


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_browser_plays_with_the_keyboard(pipe, contexts, tmp_path):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver (apt-get install ...)")
    pytest.importorskip("gradio")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    from tekken_diffusers.benchmarking.app import COUNTER_JS, READ_JS, parse_stats

    pipe.save_pretrained(tmp_path / "pipe")
    rounds = tmp_path  # the contexts fixture wrote its rounds here
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "pipelines" / "app.py"), "--pipeline", str(tmp_path / "pipe"), "--rounds",
         str(rounds), "--context-frames", "4", "--steps", "1", "--max-frames", "400", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1200,900"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = chromium
    browser = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        browser = webdriver.Chrome(service=Service(driver), options=options)
        browser.get(f"http://127.0.0.1:{port}/")

        def wait_for(condition, what, timeout=60):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                value = condition()
                if value:
                    return value
                time.sleep(0.1)
            raise AssertionError(
                f"timed out waiting for {what}; page says: {browser.find_element(By.TAG_NAME, 'body').text}"
            )

        start = wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#start"), "the Start button")
        browser.execute_script(COUNTER_JS)  # counts the picture's changes in the page, as tekken-benchmark-app does
        start[0].click()
        stats = lambda: browser.find_element(By.CSS_SELECTOR, "#stats").text  # noqa: E731
        image = lambda: (browser.find_elements(By.CSS_SELECTOR, "#frame img") or [None])[0]  # noqa: E731
        wait_for(lambda: "frame " in stats() and "frames/s" in stats(), "the first frames")
        first_src = image().get_attribute("src")
        first = browser.execute_script(READ_JS)
        # Hold D (forward) and U (button 1): the page must send them with the next frames.
        ActionChains(browser).key_down("d").key_down("u").perform()
        wait_for(lambda: "input f+1" in stats(), "the held keys to reach the model")
        ActionChains(browser).key_up("d").key_up("u").perform()
        wait_for(lambda: "input n" in stats(), "the released keys to reach the model")
        frame_count = int(stats().split("frame ")[1].split(" /")[0])
        assert frame_count >= 3
        assert image().get_attribute("src") != first_src  # the picture keeps changing
        # The rate on screen: every frame the stats line counts reached the page (the context's picture, shown at
        # Start, is one more change); a frame or two may be on its way between the two readings.
        last = browser.execute_script(READ_JS)
        shown, made = last["changes"] - first["changes"], parse_stats(last["stats"])["frame"]
        assert shown > 0 and (last["now"] - first["now"]) > 0
        assert shown / ((last["now"] - first["now"]) / 1000) > 0
        assert abs(last["changes"] - (made + 1)) <= 2, (last["changes"], last["stats"])
        assert abs(shown - (made - parse_stats(first["stats"])["frame"])) <= 2
        assert not last["problems"], last["problems"]
        browser.save_screenshot(str(tmp_path / "app.png"))
        assert (tmp_path / "app.png").stat().st_size > 10_000
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)


# ---------------------------------------------------------------------------------------------------------------------
# Two players: a second person on the same keyboard, a scripted opponent, or the recorded player 2
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe2():
    pipe = build_random_pipeline("tiny", seed=0, num_players=2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture
def contexts2(tmp_path):
    from tekken_diffusers.data.rounds import save_round

    actions_p2 = (np.arange(12) * 8).astype(np.uint8)  # a recognisable recorded player 2
    save_round(tmp_path / "round_0000.npz", make_round(12, size=(8, 8), actions_p2=actions_p2))
    return ContextLibrary.from_folder(tmp_path, context_frames=4)


def test_two_player_play_session_shows_and_exports_both_inputs(pipe2, contexts2, tmp_path):
    frames, inputs = contexts2.context(contexts2.names[0])
    inputs_p2, replay = contexts2.player_2_inputs(contexts2.names[0])
    assert inputs_p2.tolist() == [0, 8, 16, 24] and replay.tolist()[:2] == [32, 40]
    session = pipe2.start_session(context=frames, context_actions=inputs, context_actions_p2=inputs_p2,
                                  num_inference_steps=1, output_type="np")  # fmt: skip
    play = PlaySession(session=session, context=frames, max_frames=3)
    play.step(16, 32)  # player 1 forward (Right), player 2 forward (Left: player 2 stands on the right)
    assert "input f" in play.stats() and "player 2 input f" in play.stats()
    assert play.export(tmp_path / "clip.mp4").stat().st_size > 0
    play.reset()
    assert play.actions_p2 == []


@pytest.mark.parametrize("mode", ["keyboard", "scripted", "replay"])
def test_the_app_takes_player_2_from_the_chosen_source(pipe2, contexts2, mode):
    demo = build_demo(pipe2, contexts2, num_inference_steps=1)
    fns = {f.name: f.fn for f in demo.fns.values()}
    play, _, ready = fns["start"](contexts2.names[0], 0, mode)
    assert "player 2" in ready
    fns["keys"](play, "16", "40")  # the page sends both players' held keys
    frames = fns["stream"](play)
    for _ in range(2):
        frame, stats = next(frames)
    frames.close()
    assert frame.shape[-1] == 3 and "player 2 input" in stats
    expected = {"keyboard": [40, 40], "replay": [32, 40]}.get(mode)
    if expected is not None:
        assert play.actions_p2 == expected
    assert all(0 <= action <= 255 for action in play.actions_p2)


@pytest.mark.parametrize("recorded_p2", [True, False], ids=["two-player-context", "one-player-context"])
def test_the_app_lets_the_pipelines_opponent_play_player_2(pipe2, tmp_path, recorded_p2):
    import gradio as gr

    from tekken_diffusers import TekkenOpponentPolicy, TekkenWorldModelPipeline
    from tekken_diffusers.data.rounds import save_round

    actions_p2 = (np.arange(12) * 8).astype(np.uint8) if recorded_p2 else None
    save_round(tmp_path / "round_0000.npz", make_round(12, size=(8, 8), actions_p2=actions_p2))
    contexts = ContextLibrary.from_folder(tmp_path, context_frames=4)
    config = pipe2.transformer.config
    policy = TekkenOpponentPolicy(in_channels=config.in_channels, sample_size=pipe2.latent_size, hidden_dim=16,
                                  conv_channels=4)  # fmt: skip
    with_opponent = TekkenWorldModelPipeline(pipe2.transformer, pipe2.scheduler, pipe2.vae, opponent=policy)
    with_opponent.set_progress_bar_config(disable=True)
    demo = build_demo(with_opponent, contexts, num_inference_steps=1)
    radio = next(block for block in demo.blocks.values() if getattr(block, "elem_id", None) == "player2")
    assert radio.value == "opponent"  # the default where the pipeline has one
    fns = {f.name: f.fn for f in demo.fns.values()}
    play, _, ready = fns["start"](contexts.names[0], 0, "opponent")
    assert "player 2: opponent" in ready
    drawn = []
    original = play.session.rollout.choose_opponent_inputs

    def recording(bits, generator):
        chosen = original(bits, generator)
        if torch.isnan(bits).any():  # a draw (later calls on the batched rollout get resolved inputs)
            drawn.append(int(bits_to_ids(chosen[0, 0, 1])))
        return chosen

    play.session.rollout.choose_opponent_inputs = recording
    fns["keys"](play, "16", "40")  # player 2's keys are ignored: the opponent plays
    frames = fns["stream"](play)
    for _ in range(2):
        frame, stats = next(frames)
    frames.close()
    assert play.actions == [16, 16] and play.actions_p2 == drawn and len(drawn) == 2
    assert "player 2 input" in stats
    # a pipeline without an opponent refuses the mode with one message
    plain = build_demo(pipe2, contexts, num_inference_steps=1)
    with pytest.raises(gr.Error, match="no opponent policy"):
        {f.name: f.fn for f in plain.fns.values()}["start"](contexts.names[0], 0, "opponent")


def test_scripted_opponent_walks_to_player_1_and_punches():
    from tekken_diffusers.actions import LEFT, LP, RIGHT
    from tekken_diffusers.demo import ScriptedOpponent

    frame = np.full((3, 64, 64), 100, dtype=np.uint8)
    frame[:, 30:35, 10:15] = 255  # the white boxer (player 1), on the left
    frame[:, 30:35, 45:50] = 0  # the black boxer (player 2), far to the right
    assert ScriptedOpponent(seed=0)(frame) & LEFT
    near = np.full((3, 64, 64), 100, dtype=np.uint8)
    near[:, 30:35, 20:25], near[:, 30:35, 32:37] = 255, 0
    script = ScriptedOpponent(seed=1)
    decisions = [script(near) for _ in range(40)]
    assert any(action & LP for action in decisions)
    assert not any(action & LEFT and action & RIGHT for action in decisions)
    assert ScriptedOpponent()(None) == 0  # nothing on screen yet: no input


@pytest.mark.slow
def test_browser_two_people_play_on_one_keyboard(pipe2, contexts2, tmp_path):
    """Player 1 holds D and U, player 2 the left arrow and numpad 1, on one keyboard; both reach the model."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip("headless browser test needs Debian's chromium and chromium-driver (apt-get install ...)")
    pytest.importorskip("gradio")
    webdriver = pytest.importorskip("selenium.webdriver")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    pipe2.save_pretrained(tmp_path / "pipe")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(ROOT / "pipelines" / "app.py"), "--pipeline", str(tmp_path / "pipe"), "--rounds",
         str(tmp_path), "--context-frames", "4", "--steps", "1", "--max-frames", "400", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    options = webdriver.ChromeOptions()
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1200,900"):  # fmt: skip
        options.add_argument(argument)
    options.binary_location = chromium
    browser = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, server.stdout.read()
                time.sleep(0.5)
        browser = webdriver.Chrome(service=Service(driver), options=options)
        browser.get(f"http://127.0.0.1:{port}/")

        def wait_for(condition, what, timeout=60):
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                value = condition()
                if value:
                    return value
                time.sleep(0.1)
            raise AssertionError(
                f"timed out waiting for {what}; page says: {browser.find_element(By.TAG_NAME, 'body').text}"
            )

        body = lambda: browser.find_element(By.TAG_NAME, "body").text  # noqa: E731
        wait_for(lambda: "Two players" in body(), "the page to load (Gradio shows 'Loading...' first)")
        wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#start"), "the Start button")[0].click()
        stats = lambda: browser.find_element(By.CSS_SELECTOR, "#stats").text  # noqa: E731
        wait_for(lambda: "frame " in stats() and "player 2 input" in stats(), "the first frames")
        # Player 1: D (forward) + U (button 1); player 2: the left arrow (its forward) + numpad 1 (button 1).
        ActionChains(browser).key_down("d").key_down("u").key_down(Keys.ARROW_LEFT).key_down(Keys.NUMPAD1).perform()
        wait_for(lambda: "input f+1 · player 2 input f+1" in stats(), "both players' held keys to reach the model")
        ActionChains(browser).key_up(Keys.NUMPAD1).key_up(Keys.ARROW_LEFT).perform()
        wait_for(lambda: "input f+1 · player 2 input n" in stats(), "player 2's release, player 1 still holding")
        ActionChains(browser).key_up("d").key_up("u").perform()
        wait_for(lambda: "input n · player 2 input n" in stats(), "both players' released keys")
    finally:
        if browser is not None:
            browser.quit()
        server.terminate()
        server.wait(timeout=30)
