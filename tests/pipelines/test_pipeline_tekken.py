import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch

from tekken_diffusers import TekkenWorldModelPipeline
from tekken_diffusers.actions import LP, RIGHT, ids_to_bits
from tekken_diffusers.pipelines import build_random_pipeline

STEPS = 2
PAIR = object()  # stands in (in parametrize) for a batch of two copies of the context fixture


@pytest.fixture(scope="module")
def pipe():
    pipe = build_random_pipeline("tiny", seed=0)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def context():
    return np.random.default_rng(0).integers(0, 256, (3, 3, 8, 8), dtype=np.uint8)


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def run(pipe, context, actions="f,f,1+2,n", seed=0, **kwargs):
    kwargs.setdefault("output_type", "np")
    return pipe(context=context, actions=actions, num_inference_steps=STEPS, generator=gen(seed), **kwargs).frames


def test_save_load_reproduces_output(pipe, context, tmp_path):
    expected = run(pipe, context)
    pipe.save_pretrained(tmp_path / "pipe")
    index = json.loads((tmp_path / "pipe" / "model_index.json").read_text())
    assert index["transformer"] == ["tekken_diffusers.models.transformer_tekken", "TekkenWorldModelTransformer"]
    assert (tmp_path / "pipe" / "README.md").read_text().startswith("---\nlibrary_name: diffusers")
    loaded = TekkenWorldModelPipeline.from_pretrained(tmp_path / "pipe")
    loaded.set_progress_bar_config(disable=True)
    np.testing.assert_array_equal(run(loaded, context), expected)


def test_generic_loading_through_the_bundled_shim(pipe, context, tmp_path):
    from diffusers import DiffusionPipeline

    folder = tmp_path / "pipe"
    pipe.save_pretrained(folder)
    with pytest.raises(ValueError, match="trust_remote_code"):
        DiffusionPipeline.from_pretrained(folder, custom_pipeline=str(folder))
    loaded = DiffusionPipeline.from_pretrained(folder, custom_pipeline=str(folder), trust_remote_code=True)
    assert type(loaded).__name__ == "TekkenWorldModelPipeline"
    loaded.set_progress_bar_config(disable=True)
    # This route builds the pipeline without TekkenWorldModelPipeline.from_pretrained (and without its checks); the
    # weights are memory-mapped from the same aligned files, so the outputs agree.
    np.testing.assert_allclose(run(loaded, context), run(pipe, context), atol=1e-6)


def test_memory_mapped_loading_stays_available(pipe, context, tmp_path):
    """Memory-mapped loading is diffusers' default and `from_pretrained` keeps it; `disable_mmap=False` still works."""
    pipe.save_pretrained(tmp_path / "pipe")
    mapped = TekkenWorldModelPipeline.from_pretrained(tmp_path / "pipe", disable_mmap=False)
    mapped.set_progress_bar_config(disable=True)
    np.testing.assert_allclose(run(mapped, context), run(pipe, context), atol=1e-6)  # the last bits may differ


def test_saved_weights_are_aligned_so_mapped_loading_is_exact(context, tmp_path):
    """Memory-mapped weights lie where the file puts them; at unaligned offsets the CPU matmul kernels took another
    path and a loaded pipeline differed from the saved one in the last bits. `save_pretrained` aligns every tensor."""
    from diffusers import DiffusionPipeline

    pipe = build_random_pipeline("compact", vae=None, seed=0)  # large enough for the matmul kernels to differ
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "pipe")
    latents = torch.randn(1, 4, 16, 8, 8, generator=gen(1))

    def latent_run(pipeline):
        return pipeline(context_latents=latents, actions="f,1", num_inference_steps=1, generator=gen()).frames

    expected = latent_run(pipe)
    for loaded in (
        TekkenWorldModelPipeline.from_pretrained(tmp_path / "pipe"),
        DiffusionPipeline.from_pretrained(
            tmp_path / "pipe", custom_pipeline=str(tmp_path / "pipe"), trust_remote_code=True
        ),
    ):
        assert all(parameter.data_ptr() % 64 == 0 for parameter in loaded.transformer.parameters())
        loaded.set_progress_bar_config(disable=True)
        torch.testing.assert_close(latent_run(loaded), expected, rtol=0, atol=0)


def test_align_safetensors_keeps_every_tensor(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from tekken_diffusers.pipelines.saved_folder import align_safetensors

    tensors = {
        "a.bias": torch.arange(3, dtype=torch.float32),  # 12 bytes: every tensor after it would be unaligned
        "b.weight": torch.randn(16, 16),
        "c.scale": torch.randn(5).to(torch.bfloat16),
        "d.weight": torch.randn(32, 8).to(torch.bfloat16),
        "e.empty": torch.zeros(0),
    }
    path = tmp_path / "weights.safetensors"
    save_file(tensors, str(path), metadata={"format": "pt"})
    assert align_safetensors(path) and not align_safetensors(path)  # a second pass finds nothing to change
    loaded = load_file(str(path))
    assert loaded.keys() == tensors.keys() and all(torch.equal(loaded[name], tensors[name]) for name in tensors)
    with safe_open(str(path), framework="pt") as handle:
        assert handle.metadata() == {"format": "pt"}
    header_size = int.from_bytes(path.read_bytes()[:8], "little")
    assert (8 + header_size) % 64 == 0
    header = json.loads(path.read_bytes()[8 : 8 + header_size])
    assert all(header[name]["data_offsets"][0] % 64 == 0 for name in ("b.weight", "d.weight", "a.bias"))


def test_bf16_loading(pipe, context, tmp_path):
    pipe.save_pretrained(tmp_path / "pipe")
    loaded = TekkenWorldModelPipeline.from_pretrained(tmp_path / "pipe", dtype={"transformer": torch.bfloat16})
    loaded.set_progress_bar_config(disable=True)
    assert loaded.transformer.dtype == torch.bfloat16
    frames = run(loaded, context)
    assert np.abs(frames - run(pipe, context)).mean() < 0.05


def test_output_types(pipe, context):
    pil = run(pipe, context, output_type="pil")
    assert len(pil) == 1 and len(pil[0]) == 4 and isinstance(pil[0][0], PIL.Image.Image) and pil[0][0].size == (8, 8)
    array = run(pipe, context, output_type="np")
    assert array.shape == (1, 4, 8, 8, 3) and array.dtype == np.float32 and 0 <= array.min() and array.max() <= 1
    tensor = run(pipe, context, output_type="pt")
    assert tuple(tensor.shape) == (1, 4, 3, 8, 8)
    np.testing.assert_allclose(tensor.permute(0, 1, 3, 4, 2).numpy(), array, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(pil[0][1]), (array[0, 1] * 255).round().astype(np.uint8))
    latents = run(pipe, context, output_type="latent")
    assert tuple(latents.shape) == (1, 4, 4, 4, 4)
    (frames,) = pipe(context=context, actions="f", num_inference_steps=1, output_type="np", return_dict=False)
    assert frames.shape == (1, 1, 8, 8, 3)


def test_batch_equals_single_calls(pipe, context):
    other = context[::-1].copy()
    batch = pipe(
        context=[context, other],
        actions=["f,f,1+2,n", "b,b,3,n"],
        num_inference_steps=STEPS,
        generator=[gen(0), gen(1)],
        output_type="np",
    ).frames
    np.testing.assert_allclose(batch[0], run(pipe, context, "f,f,1+2,n", seed=0)[0], atol=1e-5)
    np.testing.assert_allclose(batch[1], run(pipe, other, "b,b,3,n", seed=1)[0], atol=1e-5)


def test_action_forms_agree_and_actions_matter(pipe, context):
    ids = np.array([RIGHT, RIGHT, LP, 0], dtype=np.uint8)
    by_notation = run(pipe, context, "f,f,1,n")
    np.testing.assert_array_equal(run(pipe, context, ids), by_notation)
    np.testing.assert_array_equal(run(pipe, context, list(ids.tolist())), by_notation)
    np.testing.assert_array_equal(run(pipe, context, torch.from_numpy(ids_to_bits(ids)).bool()), by_notation)
    np.testing.assert_array_equal(run(pipe, context, ["f", "f", "1", "n"][::1] and "f*2,1,n"), by_notation)
    assert np.abs(run(pipe, context, "b,b,4,d") - by_notation).max() > 1e-3
    assert np.abs(run(pipe, context, "b,b,1,n", side="right") - by_notation).max() == 0  # b on the right = Right


def test_vae_none_returns_latents(pipe, context):
    latent_pipe = TekkenWorldModelPipeline(transformer=pipe.transformer, scheduler=pipe.scheduler, vae=None)
    latent_pipe.set_progress_bar_config(disable=True)
    context_latents = pipe.encode_frames(pipe._frames_to_tensor(context)[None])
    out = latent_pipe(context_latents=context_latents, actions="f,f,1+2,n", num_inference_steps=STEPS, generator=gen())
    expected = run(pipe, context, output_type="latent")
    assert torch.allclose(out.frames, expected, atol=1e-5)
    with pytest.raises(ValueError, match="needs a VAE"):
        latent_pipe(context_latents=context_latents, actions="f", output_type="np")


def test_vae_none_is_saved_and_loaded(pipe, tmp_path):
    latent_pipe = TekkenWorldModelPipeline(transformer=pipe.transformer, scheduler=pipe.scheduler, vae=None)
    latent_pipe.save_pretrained(tmp_path / "latent")
    loaded = TekkenWorldModelPipeline.from_pretrained(tmp_path / "latent")
    assert loaded.vae is None


def test_callback_sees_every_step_and_can_replace_latents(pipe, context):
    seen = []

    def callback(pipeline, step, timestep, kwargs):
        seen.append((step, float(timestep), tuple(kwargs["latents"].shape)))
        return {}

    run(pipe, context, callback_on_step_end=callback)
    assert [s[0] for s in seen] == list(range(4 * STEPS))
    assert all(shape == (1, 1, 4, 4, 4) for _, _, shape in seen)
    assert seen[0][1] == pytest.approx(1000.0)

    def zero(pipeline, step, timestep, kwargs):
        return {"latents": torch.zeros_like(kwargs["latents"])}

    latents = run(pipe, context, callback_on_step_end=zero, output_type="latent")
    assert torch.count_nonzero(latents) == 0


def test_session_equals_call(pipe, context):
    actions = ["f", "f", "1+2", "n", "d/b", "3"]
    expected = run(pipe, context, ",".join(actions))[0]
    session = pipe.start_session(context=context, num_inference_steps=STEPS, generator=gen(), output_type="np")
    frames = np.stack([session.step(a) for a in actions])
    np.testing.assert_allclose(frames, expected, atol=1e-5)


def test_sessions_are_independent_and_reset(pipe, context):
    actions = ["f", "1", "n", "b"]
    alone = pipe.start_session(context=context, num_inference_steps=STEPS, generator=gen(), output_type="latent")
    alone_frames = [alone.step(a) for a in actions]
    first = pipe.start_session(context=context, num_inference_steps=STEPS, generator=gen(), output_type="latent")
    second = pipe.start_session(context=context[:1], num_inference_steps=STEPS, generator=gen(5), output_type="latent")
    interleaved = []
    for action in actions:
        interleaved.append(first.step(action))
        second.step("d/f+4")
    for a, b in zip(alone_frames, interleaved):
        assert torch.allclose(a, b, atol=1e-6)
    # After reset the cache is as it was after the context; the same noise gives the same first frame.
    noise = torch.randn(1, 1, 4, 4, 4, generator=gen(9))
    first.reset()
    after_reset = first.step("f", noise=noise)
    fresh = pipe.start_session(context=context, num_inference_steps=STEPS, generator=gen(), output_type="latent")
    assert torch.allclose(after_reset, fresh.step("f", noise=noise), atol=1e-6)


def test_session_memory_is_constant(pipe, context):
    session = pipe.start_session(context=context, num_inference_steps=1, generator=gen(), output_type="latent")
    sizes = []
    for step in range(40):
        session.step("f" if step % 2 else "1")
        sizes.append(session.cache.memory_bytes())
    windows = pipe.transformer.layer_windows
    assert max(windows) < 20 and len(set(sizes[20:])) == 1
    assert session.cache.next_frame == 3 + 40


def test_guidance_changes_the_output(pipe, context):
    plain = run(pipe, context)
    guided = run(pipe, context, guidance_scale=3.0)
    assert guided.shape == plain.shape and np.abs(guided - plain).max() > 1e-4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(context=None), "exactly one of `context`"),
        (dict(context_latents=torch.zeros(1, 2, 4, 4, 4)), "exactly one of `context`"),
        (dict(actions=None), "pass `actions`"),
        (dict(num_frames=0), "`num_frames` must be >= 1, got 0"),
        (dict(num_frames=3), r"one input per generated frame \(3\), got \[4\]"),
        (dict(num_inference_steps=0), "`num_inference_steps` must be >= 1, got 0"),
        (dict(guidance_scale=0.5), "`guidance_scale` must be >= 1"),
        (dict(context_noise=1.0), r"`context_noise` must lie in \[0, 1\), got 1.0"),
        (dict(attention_window=0), "`attention_window` must be >= 1 frame, got 0"),
        (dict(output_type="gif"), "`output_type` must be one of"),
        (dict(latents=torch.zeros(1, 4, 4, 4)), "must be 5-D"),
        (dict(latents=torch.zeros(1, 3, 4, 4, 4)), r"must have shape \(1, 4, 4, 4, 4\)"),
        (dict(callback_on_step_end_tensor_inputs=["noise"]), r"\['noise'\] are not in \['latents'\]"),
        (dict(generator=[]), "`generator` is an empty list"),
        (dict(generator=[torch.Generator(), torch.Generator()]), "list of 2 but the batch has 1"),
        (dict(actions="f,x"), "unknown token 'x'"),
        (dict(actions=np.array([300, 2])), r"\[0, 255\]"),
        (dict(actions=np.zeros((4, 5), dtype=np.float32)), r"bit vectors must have shape \(N, 8\)"),
        (dict(actions=["f,f,1,n", "b,b,b,b"]), "`actions` has 2 clips but `context` has 1"),
        (dict(context_actions="f,f"), "must give 3 inputs for each of the 1 context clips"),
        (dict(context=np.zeros((3, 3, 16, 16), dtype=np.uint8)), r"frames are \(16, 16\) but this model works on"),
        (dict(context=np.zeros((3, 3, 8, 8), dtype=np.float32)), "numpy frames must be uint8"),
        (dict(context=torch.full((3, 3, 8, 8), 2.0)), r"must lie in \[0, 1\]"),
        (dict(context=np.zeros((3, 8, 8, 5), dtype=np.uint8)), "expected uint8"),
        (dict(context=[PIL.Image.new("RGB", (8, 8)), np.zeros((8, 8, 3), np.uint8)]), "must hold PIL images"),
        (dict(context=torch.zeros(3, 3, 8, 8, dtype=torch.uint8)), "tensor frames must be float in"),
        (dict(context=torch.zeros(3, 4, 8, 8)), r"expected a float \(T, 3, H, W\) tensor"),
        (dict(context="frames.png"), r"context: expected PIL images, .* or a list of those \(a batch\); got str"),
        (dict(context=[np.zeros((3, 3, 8, 8), np.uint8), np.zeros((2, 3, 8, 8), np.uint8)]), "the same shape"),
        (dict(context=None, context_latents=torch.zeros(1, 2, 4, 8, 8)), r"shape \(batch, frames, 4, 4, 4\)"),
        (dict(context=None, context_latents=torch.zeros(1, 0, 4, 4, 4)), "at least one frame"),
        (dict(actions=torch.zeros(4, 3)), r"bit vectors must have shape \(N, 8\), got \(4, 3\)"),
        (dict(context=PAIR, actions=[[1, 2], [3]]), r"one input per generated frame \(2\), got \[2, 1\]"),
        (dict(actions=3.5), r"actions: expected Tekken notation, .*; got float"),
    ],
)
def test_check_inputs_errors(pipe, context, kwargs, message):
    kwargs = {key: [context] * 2 if value is PAIR else value for key, value in kwargs.items()}
    call = dict(context=context, actions="f,f,1,n", num_inference_steps=1, output_type="np")
    if "context_latents" in kwargs:
        call["context"] = context
    call.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pipe(**call)


def test_context_frames_need_a_vae(pipe, context):
    latent_pipe = TekkenWorldModelPipeline(transformer=pipe.transformer, scheduler=pipe.scheduler, vae=None)
    with pytest.raises(ValueError, match="`context` frames need a VAE to encode them"):
        latent_pipe(context=context, actions="f", output_type="latent")


def test_session_errors(pipe, context):
    with pytest.raises(ValueError, match="one clip, got a batch of 2"):
        pipe.start_session(context=[context, context])
    session = pipe.start_session(context=context, num_inference_steps=1)
    with pytest.raises(ValueError, match="one input per step, got 2"):
        session.step("f,b")
    assert isinstance(session.step(RIGHT), PIL.Image.Image)


def test_push_to_hub_uploads_the_saved_folder(pipe, tmp_path, monkeypatch):
    import huggingface_hub

    calls = {}

    class Repo:
        repo_id = "user/boxing"

    def create_repo(repo_id, exist_ok, private, token):
        calls["create"] = repo_id
        return Repo()

    def upload(self, folder, repo_id, token=None, commit_message=None, create_pr=False):
        calls["upload"] = (repo_id, sorted(p.name for p in folder.iterdir()))

    monkeypatch.setattr(huggingface_hub, "create_repo", create_repo)
    monkeypatch.setattr(TekkenWorldModelPipeline, "_upload_folder", upload)
    pipe.save_pretrained(tmp_path / "boxing", push_to_hub=True)
    assert calls["create"] == "boxing"
    assert calls["upload"] == (
        "user/boxing",
        ["README.md", "model_index.json", "pipeline.py", "scheduler", "transformer", "vae"],
    )


NAN = float("nan")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        # Issue 12.4: NaN/inf inputs gave NaN frames, or silently turned guidance off.
        (dict(context=None, context_latents=torch.full((1, 2, 4, 4, 4), NAN)), "`context_latents` holds NaN or inf"),
        (dict(context=None, context_latents=torch.full((1, 2, 4, 4, 4), float("inf"))), "holds NaN or inf"),
        (dict(latents=torch.full((1, 4, 4, 4, 4), NAN)), r"`latents` \(initial noise\) holds NaN or inf"),
        (dict(context=torch.full((3, 3, 8, 8), NAN)), "tensor frames hold NaN or inf"),
        (dict(actions=np.full((4, 8), NAN, np.float32)), r"bit vectors must hold values in \[0, 1\]"),
        (dict(actions=np.full((4, 8), 5.0, np.float32)), r"bit vectors must hold values in \[0, 1\], found \[5, 5\]"),
        (dict(guidance_scale=float("inf")), "`guidance_scale` must be >= 1 and finite"),
        (dict(guidance_scale=NAN), "`guidance_scale` must be >= 1 and finite"),
        # Issue 12.5: bounded requests.
        (dict(actions=None, num_frames=10**6), "`num_frames` must be at most pipe.max_frames_per_call = 10000"),
        (dict(actions="f*1000000000"), r"more than 10000 inputs \(at 'f\*1000000000'\)"),
        (dict(actions=np.zeros(10_001, np.uint8)), "asks for 10001 frames, more than pipe.max_frames_per_call"),
        # Issue 12.8: messages that named the wrong thing.
        (dict(actions=[1.0, 2.0, 3.0, 4.0]), r"actions: action ids must be integers in \[0, 255\], got floats"),
        (dict(actions=np.ones(4)), r"actions: bit vectors must have shape \(N, 8\), got \(4,\) \(float/bool inputs"),
        (dict(actions=torch.ones(3, 8, dtype=torch.int64)), r"integer \(3, 8\) array is read as 3 clips of 8 action"),
        (dict(context=np.zeros((0, 3, 8, 8), np.uint8)), r"expected at least one context frame, got shape \(0, 3,"),
    ],
)
def test_bad_values_are_refused(pipe, context, kwargs, message):
    test_check_inputs_errors(pipe, context, kwargs, message)


def test_session_step_refuses_bad_noise(pipe, context):
    session = pipe.start_session(context=context, num_inference_steps=1, output_type="latent")
    with pytest.raises(ValueError, match="`noise`: holds NaN or inf values"):
        session.step("f", noise=torch.full((1, 1, 4, 4, 4), NAN))
    with pytest.raises(
        ValueError, match=r"`noise`: expected a tensor of shape \(1, 1, 4, 4, 4\).*got \(1, 1, 3, 4, 4\)"
    ):
        session.step("f", noise=torch.zeros(1, 1, 3, 4, 4))
    assert torch.isfinite(session.step("f")).all()  # the refused steps left the session as it was


def test_a_batch_of_contexts_is_encoded_in_bounded_chunks(pipe, context, monkeypatch):
    from tekken_diffusers.pipelines import vae_io

    frames = torch.rand(5, 3, 3, 8, 8) * 2 - 1  # 15 frames
    whole = pipe.encode_frames(frames)
    sizes = []
    encode = pipe.vae.encode
    monkeypatch.setattr(vae_io, "VAE_CHUNK_FRAMES", 4)
    monkeypatch.setattr(pipe.vae, "encode", lambda x: sizes.append(len(x)) or encode(x))
    torch.testing.assert_close(pipe.encode_frames(frames), whole)
    assert sizes == [4, 4, 4, 3]


def test_diffusers_callback_properties_and_examples(pipe, context):
    """`num_timesteps` and `guidance_scale` are what diffusers callbacks read; `timestep` is a scheduler timestep."""
    seen = []

    def callback(pipeline, step, timestep, kwargs):
        seen.append((step, pipeline.num_timesteps, pipeline.guidance_scale, pipeline.do_classifier_free_guidance))
        seen_timesteps.append(float(timestep))
        return {}

    seen_timesteps = []
    run(pipe, context, guidance_scale=2.0, callback_on_step_end=callback)
    assert seen == [(step, 4 * STEPS, 2.0, True) for step in range(4 * STEPS)]
    pipe.scheduler.set_timesteps(STEPS)
    assert seen_timesteps == pipe.scheduler.timesteps.tolist() * 4
    run(pipe, context, actions="f")
    assert pipe.num_timesteps == STEPS and pipe.guidance_scale == 1.0 and not pipe.do_classifier_free_guidance

    doc = TekkenWorldModelPipeline.__call__.__doc__
    examples = doc[doc.index("Examples:") :]
    assert "TekkenWorldModelPipeline.from_pretrained" in examples and "start_session" in examples


def test_damaged_pipeline_folders_are_named(pipe, tmp_path):
    """Issue 12.8: these failed with an AttributeError, a message about another folder, a warning, or NaN frames."""
    from pathlib import Path

    with pytest.raises(FileNotFoundError, match="no such pipeline folder"):
        TekkenWorldModelPipeline.from_pretrained(Path(tmp_path / "missing"))
    pipe.save_pretrained(tmp_path / "pipe")

    no_vae = tmp_path / "no_vae"
    shutil.copytree(tmp_path / "pipe", no_vae)
    shutil.rmtree(no_vae / "vae")
    with pytest.raises(FileNotFoundError, match=r"no_vae/vae: missing or without its config \(model_index.json lists"):
        TekkenWorldModelPipeline.from_pretrained(no_vae)

    deeper = tmp_path / "deeper"
    shutil.copytree(tmp_path / "pipe", deeper)
    config = json.loads((deeper / "transformer" / "config.json").read_text())
    config["num_layers"] += 1
    (deeper / "transformer" / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"deeper/transformer: config.json and the weights describe different models"):
        TekkenWorldModelPipeline.from_pretrained(deeper)

    damaged = tmp_path / "damaged"
    shutil.copytree(tmp_path / "pipe", damaged)
    weights = damaged / "transformer" / "diffusion_pytorch_model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-64:] = b"\xff" * 64  # NaN bit patterns in the last tensor's data
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"damaged: transformer/.* holds NaN or inf weights"):
        TekkenWorldModelPipeline.from_pretrained(damaged)


# ---------------------------------------------------------------------------------------------------------------------
# Two-player models: `actions_p2`, `context_actions_p2`, `session.step(p1, p2)`, guidance per player
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pipe2():
    pipe = build_random_pipeline("tiny", seed=0, num_players=2)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run2(pipe, context, actions="f,f,1,n", actions_p2="f,n,b,1", seed=0, **kwargs):
    return run(pipe, context, actions, seed, actions_p2=actions_p2, **kwargs)


def test_two_player_input_forms_agree_with_each_players_own_forward(pipe2, context):
    from tekken_diffusers.actions import LEFT

    by_notation = run2(pipe2, context, actions_p2="f,n,b,1")
    # Player 2 stands on the right: its forward is Left, its back is Right.
    ids_p2 = np.array([LEFT, 0, RIGHT, LP], dtype=np.uint8)
    np.testing.assert_array_equal(run2(pipe2, context, actions_p2=ids_p2), by_notation)
    np.testing.assert_array_equal(run2(pipe2, context, actions_p2=list(ids_p2.tolist())), by_notation)
    np.testing.assert_array_equal(
        run2(pipe2, context, actions_p2=torch.from_numpy(ids_to_bits(ids_p2)).bool()), by_notation
    )
    # With player 1 on the right, player 2 stands on the left and its forward is Right.
    np.testing.assert_array_equal(
        run2(pipe2, context, actions="b,b,1,n", actions_p2="b,n,f,1", side="right"), by_notation
    )
    np.testing.assert_array_equal(
        run2(pipe2, context, context_actions="f,n,1", context_actions_p2=[LEFT, 0, LP]),
        run2(pipe2, context, context_actions="f,n,1", context_actions_p2="f,n,1"),
    )


def test_each_players_inputs_matter_and_swapping_them_changes_the_frames(pipe2, context):
    base = run2(pipe2, context, actions="f*4", actions_p2="1*4", output_type="latent")
    assert (run2(pipe2, context, actions="f*4", actions_p2="n*4", output_type="latent") - base).abs().max() > 1e-4
    assert (run2(pipe2, context, actions="n*4", actions_p2="1*4", output_type="latent") - base).abs().max() > 1e-4
    swapped = run2(pipe2, context, actions="1*4", actions_p2="b*4", output_type="latent")  # p2's b = p1's f (Right)
    assert (swapped - base).abs().max() > 1e-4
    # neither player's inputs: neutral for both, as a one-player model's `num_frames`
    neutral = pipe2(context=context, num_frames=4, num_inference_steps=STEPS, generator=gen(), output_type="latent")
    torch.testing.assert_close(neutral.frames, run2(pipe2, context, "n*4", "n*4", output_type="latent"))


def test_two_player_batch_and_session_equal_single_calls(pipe2, context):
    other = context[::-1].copy()
    batch = pipe2(
        context=[context, other], actions=["f,f,1,n", "b,b,3,n"], actions_p2=["n,n,n,1", "f,1,f,1"],
        num_inference_steps=STEPS, generator=[gen(0), gen(1)], output_type="np",
    ).frames  # fmt: skip
    np.testing.assert_allclose(batch[0], run2(pipe2, context, "f,f,1,n", "n,n,n,1", seed=0)[0], atol=1e-5)
    np.testing.assert_allclose(batch[1], run2(pipe2, other, "b,b,3,n", "f,1,f,1", seed=1)[0], atol=1e-5)

    session = pipe2.start_session(context=context, num_inference_steps=STEPS, generator=gen(), output_type="np")
    frames = np.stack([session.step(p1, p2) for p1, p2 in zip(["f", "f", "1", "n"], ["f", "n", "b", "1"])])
    np.testing.assert_allclose(frames, run2(pipe2, context)[0], atol=1e-5)
    session.reset()
    memory = []
    for step in range(20):
        session.step(RIGHT, np.eye(8, dtype=np.float32)[step % 8])
        memory.append(session.cache.memory_bytes())
    one_player = build_random_pipeline("tiny", seed=0)
    single = one_player.start_session(context=context, num_inference_steps=1, output_type="latent")
    for _ in range(20):
        single.step(RIGHT)
    assert memory[-1] == single.cache.memory_bytes()  # a second player costs nothing in the cache


def test_guidance_per_player(pipe2, context):
    plain = run2(pipe2, context, output_type="latent")
    joint = run2(pipe2, context, guidance_scale=3.0, output_type="latent")
    assert (joint - plain).abs().max() > 1e-4
    torch.testing.assert_close(run2(pipe2, context, guidance_scale=(3.0, 3.0), output_type="latent"), joint)
    torch.testing.assert_close(run2(pipe2, context, guidance_scale=(1.0, 1.0), output_type="latent"), plain)
    p1_guided = run2(pipe2, context, guidance_scale=(3.0, 1.0), output_type="latent")
    p2_guided = run2(pipe2, context, guidance_scale=(1.0, 3.0), output_type="latent")
    assert min((p1_guided - joint).abs().max(), (p2_guided - p1_guided).abs().max()) > 1e-5
    assert pipe2.guidance_scale == (1.0, 3.0) and pipe2.do_classifier_free_guidance


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(actions_p2=None), r"`actions_p2`: .*two-player model \(num_players=2\) and got `actions` without"),
        (dict(actions=None, num_frames=4), "got `actions_p2` without `actions`"),
        (dict(context_actions="f,f,f"), "got `context_actions` without `context_actions_p2`"),
        (dict(actions_p2="f,f"), r"`actions_p2` must give one input per generated frame \(4\), got \[2\]"),
        (dict(actions_p2="f,x,n,n"), "unknown token 'x'"),
        (dict(context_actions="n*3", context_actions_p2="f"), "`context_actions_p2` must give 3 inputs"),
        (dict(guidance_scale=(3.0, 0.5)), "`guidance_scale` must be >= 1"),
        (dict(guidance_scale=(3.0, 2.0, 1.0)), "a pair .* and two values"),
    ],
)
def test_two_player_input_errors(pipe2, context, kwargs, message):
    call = dict(context=context, actions="f,f,1,n", actions_p2="n*4", num_inference_steps=1, output_type="latent")
    call.update(kwargs)
    with pytest.raises(ValueError, match=message):
        pipe2(**call)


def test_player_count_mismatches_are_one_clear_error(pipe, pipe2, context):
    with pytest.raises(ValueError, match=r"`actions_p2`: .*player 1 only \(num_players=1\)"):
        run(pipe, context, actions_p2="f*4")
    with pytest.raises(ValueError, match=r"`context_actions_p2`: .*player 1 only"):
        run(pipe, context, context_actions_p2="f*3")
    with pytest.raises(ValueError, match="a pair .* needs a two-player model"):
        run(pipe, context, guidance_scale=(2.0, 2.0))
    with pytest.raises(ValueError, match="player 1 only"):
        pipe.start_session(context=context, context_actions_p2="n*3")
    with pytest.raises(ValueError, match="action_p2: .*player 1 only"):
        pipe.start_session(context=context, num_inference_steps=1).step("f", "f")
    session = pipe2.start_session(context=context, num_inference_steps=1)
    with pytest.raises(ValueError, match=r"action_p2: .*two-player model .*step\(action, action_p2\)"):
        session.step("f")
    with pytest.raises(ValueError, match="action_p2: one input per step, got 2"):
        session.step("f", "f,b")
    with pytest.raises(ValueError, match="got `context_actions` without `context_actions_p2`"):
        pipe2.start_session(context=context, context_actions="n*3")
