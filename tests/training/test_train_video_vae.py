"""Video-VAE latents end to end: rounds encoded by a tiny LTX-like (time ×8) or Wan-like (time ×4) VAE train for two
steps through train_world_model.py's main, and the saved pipeline generates game frames from a pixel context and one
input per game frame, in calls and in sessions."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from tekken_diffusers.actions import DOWN, LEFT, LP, RIGHT, RK, UP, ids_to_bits

ROOT = Path(__file__).resolve().parents[2]
DEBUG = ROOT / "training" / "configs" / "debug_tiny.yaml"
RATIO = {"ltx": 8, "wan": 4}
SIZE = 32  # frames 32×32 → latents 4×4 for both tiny VAEs (spatial compression 8)
STEPS = 2


def _script_module():
    sys.path.insert(0, str(ROOT / "training"))
    try:
        import train_world_model
    finally:
        sys.path.pop(0)
    return train_world_model


@pytest.fixture(scope="module", params=["ltx", "wan"])
def trained(request, tmp_path_factory):
    """(kind, rounds folder, pipeline folder): 3 + 1 rounds of 1 + 3·8 (LTX) or 1 + 4·4 (Wan) frames and more, encoded
    by the tiny video VAE, then two training steps of the tiny transformer with action_pooling=last."""
    from tekken_diffusers.cli import encode_latents
    from tekken_diffusers.data.rounds import save_round
    from tests.conftest import make_round, tiny_video_vae

    kind = request.param
    root = tmp_path_factory.mktemp(kind)
    tiny_video_vae(kind).save_pretrained(root / "vae")
    length = 1 + 3 * 8 if kind == "ltx" else 1 + 4 * 4
    for split, count in (("train", 3), ("val", 1)):
        for index in range(count):
            round_ = make_round(length + index, size=(SIZE, SIZE), seed=index + 10 * count)
            save_round(root / "rounds" / split / f"round_{index:04d}.npz", round_)
    argv = ["--rounds", root / "rounds", "--vae", root / "vae", "--out", root / "latents", "--no-progress"]
    assert encode_latents.main([str(a) for a in argv]) == 0
    out = root / "out"
    metrics = _script_module().main(
        ["--config", str(DEBUG), "--dataset", str(root / "latents"), "--output_dir", str(out),
         "--max_train_steps", "2", "--window_length", "3", "--train_batch_size", "2",
         "--validation_context_frames", "2", "--validation_video_frames", "1", "--report_to", "none",
         "--action_pooling", "last"]
    )  # fmt: skip
    return kind, root, out, metrics


@pytest.fixture(scope="module")
def pipe(trained):
    from tekken_diffusers import TekkenWorldModelPipeline

    pipe = TekkenWorldModelPipeline.from_pretrained(trained[2])
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _round(trained):
    from tekken_diffusers.data import load_round

    return load_round(trained[1] / "rounds" / "val" / "round_0000.npz")


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_training_validates_with_the_video_vae_and_saves_its_pooling(trained, pipe):
    from tekken_diffusers.data import load_latent_info

    kind, root, out, metrics = trained
    r = RATIO[kind]
    assert load_latent_info(root / "latents").temporal_compression_ratio == r
    assert type(pipe.vae).__name__ == {"ltx": "LTXVideoVAE", "wan": "WanVAE"}[kind]
    assert pipe.temporal_compression_ratio == r and pipe.action_pooling == "last"
    assert json.loads((out / "model_index.json").read_text())["action_pooling"] == "last"
    # Validation decoded latent clips with the video VAE: teacher-forced PSNR beside the hold-the-last-frame baseline,
    # and a rollout video of r game frames per latent frame.
    assert metrics["teacher_forced_psnr"] > 0 and metrics["teacher_forced_psnr_copy_last"] > 0
    assert (out / "validation" / "step-0000002.mp4").is_file()
    steps = [json.loads(line)["step"] for line in (out / "loss_history.jsonl").read_text().splitlines()]
    assert steps == [1, 2]


def test_generation_from_pixels_gives_r_frames_per_latent_frame(trained, pipe):
    r = RATIO[trained[0]]
    round_ = _round(trained)
    context = round_.images[: 1 + r]  # 1 + 1·r frames → 2 latent frames
    actions = round_.actions_p1[1 + r : 1 + 3 * r]  # 2·r game frames → 2 latent frames
    frames = pipe(
        context=context, context_actions=round_.actions_p1[: 1 + r], actions=actions, num_inference_steps=STEPS,
        generator=gen(), output_type="np",
    ).frames  # fmt: skip
    assert frames.shape == (1, 2 * r, SIZE, SIZE, 3) and np.isfinite(frames).all()
    pil = pipe(context=context, actions=actions, num_inference_steps=STEPS, generator=gen()).frames[0]
    assert len(pil) == 2 * r and pil[0].size == (SIZE, SIZE)
    latents = pipe(context=context, num_frames=r, num_inference_steps=STEPS, output_type="latent").frames
    assert latents.shape == (1, 1, pipe.transformer.config.in_channels, 4, 4)


def test_the_pipeline_pools_each_latent_frames_inputs_by_its_rule(trained, pipe, monkeypatch):
    """action_pooling=last: a latent frame is conditioned on the input of its last game frame (hand-computed here)."""
    r = RATIO[trained[0]]
    seen = []
    forward = pipe.transformer.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["actions"].detach().clone())
        return forward(*args, **kwargs)

    monkeypatch.setattr(pipe.transformer, "forward", spy)
    context_actions = [UP] + [LP] * (r - 1) + [RIGHT]  # latent frames: [UP], [LP … LP, RIGHT]
    actions = [DOWN] * (r - 1) + [LEFT] + [RK] * r  # latent frames: [DOWN … DOWN, LEFT], [RK … RK]
    context = _round(trained).images[: 1 + r]
    pipe(
        context=context, context_actions=context_actions, actions=actions, num_inference_steps=1, output_type="latent"
    )
    # One Euler step per frame: the first forward carries the two context latent frames and the first new one, the
    # second carries the first new frame (into the cache) and the second new one.
    first, second = seen
    torch.testing.assert_close(first[0], ids_to_bits(torch.tensor([UP, RIGHT, LEFT], dtype=torch.uint8)))
    torch.testing.assert_close(second[0], ids_to_bits(torch.tensor([LEFT, RK], dtype=torch.uint8)))


def test_sessions_take_one_latent_frames_inputs_and_return_its_r_frames(trained, pipe):
    kind = trained[0]
    r = RATIO[kind]
    round_ = _round(trained)
    context = round_.images[: 1 + r]
    session = pipe.start_session(context=context, num_inference_steps=STEPS, generator=gen(), output_type="np")
    held = session.step("f")  # one input, held for the latent frame's r game frames
    assert held.shape == (r, SIZE, SIZE, 3)
    per_frame = session.step(np.full(r, LP, dtype=np.int64))  # one input per game frame
    assert per_frame.shape == (r, SIZE, SIZE, 3)
    assert len(pipe.start_session(context=context, num_inference_steps=STEPS).step(LP)) == r  # PIL images
    with pytest.raises(ValueError, match=rf"action: one step is one latent frame of {r} game frames .* got 3"):
        session.step("f*3")
    if kind == "wan":
        # Wan's decoder is causal: with a decode history that covers every earlier latent frame, a session's frames
        # are the call's frames (the same latents, decoded in the same light).
        call = pipe(
            context=context, actions=f"f*{r}, 1*{r}", num_inference_steps=STEPS, generator=gen(3),
            output_type="np",
        ).frames[0]  # fmt: skip
        session = pipe.start_session(
            context=context, num_inference_steps=STEPS, generator=gen(3), output_type="np", decode_history=8
        )
        steps = np.concatenate([session.step("f"), session.step("1")])
        np.testing.assert_allclose(steps, call, atol=1e-5)
        session.reset()
        assert session.num_steps == 0 and session.step("f").shape == (r, SIZE, SIZE, 3)


@pytest.mark.parametrize(
    ("make_kwargs", "message"),
    [
        (lambda ctx, r: {"context": ctx[:r], "num_frames": r}, "`context`: .* compresses time by {r}, so a context "
         r"clip must have 1 \+ k·{r} frames .* got {r} \(the nearest valid counts are 1 and {r1}\)"),
        (lambda ctx, r: {"context": ctx[: 1 + r], "actions": "f" + ", f" * r}, r"`actions`: .* multiple of {r} game "
         r"frames; got {r1}"),
        (lambda ctx, r: {"context": ctx[: 1 + r], "num_frames": r + 2}, "`num_frames`: .* multiple of {r}"),
        (lambda ctx, r: {"context": ctx[: 1 + r], "context_actions": [0] * r, "num_frames": r},
         r"`context_actions` must give {r1} inputs .* got \[{r}\] \(one per game frame"),
    ],
)  # fmt: skip
def test_bad_inputs_are_one_clear_error(trained, pipe, make_kwargs, message):
    r = RATIO[trained[0]]
    context = _round(trained).images
    with pytest.raises(ValueError, match=message.format(r=r, r1=r + 1)):
        pipe(**make_kwargs(context, r), num_inference_steps=1)


def test_decode_history_is_for_video_vaes_only(trained, pipe):
    from tekken_diffusers.pipelines import build_random_pipeline

    context = _round(trained).images[: 1 + RATIO[trained[0]]]
    with pytest.raises(ValueError, match="`decode_history` must be an int >= 1"):
        pipe.start_session(context=context, decode_history=0)
    per_frame = build_random_pipeline("tiny")
    with pytest.raises(ValueError, match=r"`decode_history`: only a video VAE .* \(TekkenAutoencoderDC\)"):
        per_frame.start_session(context=np.zeros((2, 8, 8, 3), dtype=np.uint8), decode_history=2)


def test_generate_and_the_app_refuse_a_video_vae_pipeline_with_one_clear_error(trained, capsys):
    """They play one frame per input; a temporally compressing VAE gets one error line, no traceback."""
    from tekken_diffusers.cli.generate import main as generate
    from tekken_diffusers.cli.play import main as play

    kind, root, folder, _ = trained
    round_ = root / "rounds" / "val" / "round_0000.npz"
    for command, argv in (
        (generate, ["--pipeline", str(folder), "--context", str(round_), "--context-frames", "1",
                    "--frames", "2", "--out", str(root / "x.mp4")]),
        (play, ["--pipeline", str(folder), "--rounds", str(root / "rounds" / "val"), "--context-frames", "1"]),
    ):  # fmt: skip
        with pytest.raises(SystemExit) as exit_info:
            command(argv)
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "its VAE compresses time" in err and f"({RATIO[kind]} frames per latent frame)" in err
        assert "Traceback" not in err
