"""Frame-chunked attention equals the dense-mask attention (outputs and gradients), in every layout the model uses."""

import pytest
import torch
import torch.nn.functional as F

from tekken_diffusers.models import attention_tekken, transformer_tekken
from tekken_diffusers.models.attention_tekken import (
    DENSE_ATTENTION_MAX_TOKENS,
    chunked_frame_attention,
    expand_to_tokens,
    frame_visibility,
    plan_frame_attention,
)
from tekken_diffusers.models.transformer_tekken import (
    TekkenWorldModelTransformer,
    frame_attention_mask,
    teacher_forcing_attention_mask,
)

CPU = torch.device("cpu")
CHANNELS, SIZE = 4, 4  # the tiny preset: 4x4x4 latents, patch 2 -> 4 tokens per frame


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: conftest.single_thread


def sdpa(query, key, value, mask):
    """Attention in diffusers' (batch, tokens, heads, head_dim) layout, as the native backend runs it."""
    query, key, value = (x.transpose(1, 2) for x in (query, key, value))
    return F.scaled_dot_product_attention(query, key, value, attn_mask=mask).transpose(1, 2)


def random_qkv(query_frames, key_frames, tokens=3, heads=2, head_dim=8, seed=0):
    generator = torch.Generator().manual_seed(seed)
    query = torch.randn(2, query_frames, tokens, heads, head_dim, generator=generator)
    key = torch.randn(2, key_frames, tokens, heads, head_dim, generator=generator)
    value = torch.randn(2, key_frames, tokens, heads, head_dim, generator=generator)
    return query, key, value


# (query frames, cached frames, window, teacher forcing): a diffusion-forcing window, a local layer, new frames
# against a cache, and the teacher-forced layout with a local and a global window.
LAYOUTS = [(7, 0, 7, False), (7, 0, 3, False), (4, 5, 3, False), (3, 2, 6, False), (6, 0, 3, True), (5, 0, 6, True)]


@pytest.mark.parametrize(("num_frames", "num_cached", "window", "teacher_forcing"), LAYOUTS)
@pytest.mark.parametrize("chunk_tokens", [1, 6, 9, 100])  # chunks of 1, 2, 3 and every frame (3 tokens each)
def test_chunked_attention_equals_dense_with_gradients(num_frames, num_cached, window, teacher_forcing, chunk_tokens):
    tokens = 3
    query_frames = 2 * num_frames if teacher_forcing else num_frames
    query, key, value = random_qkv(query_frames, query_frames if teacher_forcing else num_cached + num_frames)
    visibility = frame_visibility(num_frames, num_cached, window, teacher_forcing)
    mask, chunks = plan_frame_attention(
        num_frames, num_cached, window, tokens, CPU, teacher_forcing, dense_max_tokens=0, chunk_tokens=chunk_tokens
    )
    assert mask is None and chunks is not None
    assert [c.query_frames for c in chunks][0][0] == 0 and chunks[-1].query_frames[1] == query_frames

    def run(chunked: bool):
        leaves = [t.clone().requires_grad_() for t in (query, key, value)]
        q, k, v = leaves
        if chunked:
            out = chunked_frame_attention(q, k, v, chunks, sdpa)
        else:
            out = sdpa(q.flatten(1, 2), k.flatten(1, 2), v.flatten(1, 2), expand_to_tokens(visibility, tokens))
        out.square().sum().backward()
        return out.detach(), [leaf.grad for leaf in leaves]

    (dense, dense_grads), (chunked, chunked_grads) = run(False), run(True)
    torch.testing.assert_close(chunked, dense, rtol=0, atol=1e-5)
    for name, got, expected in zip("qkv", chunked_grads, dense_grads):
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5, msg=name)


def test_visibility_reproduces_the_dense_masks():
    # the masks keep their old names and meaning (re-exported by transformer_tekken)
    assert transformer_tekken.frame_attention_mask is attention_tekken.frame_attention_mask
    mask = frame_attention_mask(3, 1, window=2, tokens_per_frame=1, device=CPU)
    expected = torch.tensor([[True, True, False, False], [False, True, True, False], [False, False, True, True]])
    assert torch.equal(mask[0, 0], expected)
    mask = teacher_forcing_attention_mask(3, window=2, tokens_per_frame=2, device=CPU)[0, 0, ::2, ::2]
    context = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 1]]).bool()
    target_to_context = torch.tensor([[0, 0, 0], [1, 0, 0], [0, 1, 0]]).bool()
    expected = torch.cat(
        [torch.cat([context, torch.zeros_like(context)], 1), torch.cat([target_to_context, torch.eye(3).bool()], 1)]
    )
    assert torch.equal(mask, expected)


def test_long_window_plans_need_no_mask_at_the_large_presets_scale():
    """128 frames of 322 tokens (tekken-large): one-frame chunks, each seeing one contiguous run of key frames (two
    for teacher-forced targets) and no mask; one-frame decoding against a trimmed cache needs neither."""
    tokens, frames = 322, 128
    for window in (16, 128):
        mask, chunks = plan_frame_attention(frames, 0, window, tokens, CPU)
        assert mask is None and len(chunks) == frames and all(chunk.mask is None for chunk in chunks)
        assert chunks[100].key_frames == ((max(0, 100 - window + 1), 101),)
        mask, chunks = plan_frame_attention(frames, 0, window, tokens, CPU, teacher_forcing=True)
        assert mask is None and len(chunks) == 2 * frames and all(chunk.mask is None for chunk in chunks)
        assert chunks[frames + 100].key_frames == ((max(0, 100 - window + 1), 100), (frames + 100, frames + 101))
        assert plan_frame_attention(1, window - 1, window, tokens, CPU) == (None, None)
    # short windows of the shipped models stay on the dense path
    mask, chunks = plan_frame_attention(32, 0, 8, 16, CPU, teacher_forcing=True)
    assert chunks is None and mask.shape == (1, 1, 1024, 1024) and 1024 <= DENSE_ATTENTION_MAX_TOKENS


def make_model(**overrides) -> TekkenWorldModelTransformer:
    """The tiny preset (windows: layer 0 global 6, layer 1 local 3) with every weight random."""
    torch.manual_seed(0)
    model = TekkenWorldModelTransformer.from_preset("tiny", **overrides).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model


def make_inputs(frames, batch=2, seed=1):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, frames, CHANNELS, SIZE, SIZE, generator=generator)
    sigmas = torch.rand(batch, frames, generator=generator).clamp_min(0.05)
    actions = torch.randint(0, 2, (batch, frames, 8), generator=generator).bool()
    return latents, sigmas, actions


@pytest.fixture
def chunk_calls(monkeypatch):
    """Counts the forwards' chunked attention calls (so a test knows the chunked path ran)."""
    calls = []

    def counting(*args, **kwargs):
        calls.append(len(args[3]))
        return chunked_frame_attention(*args, **kwargs)

    monkeypatch.setattr(transformer_tekken, "chunked_frame_attention", counting)
    return calls


def chunked(model: TekkenWorldModelTransformer, chunk_tokens: int) -> TekkenWorldModelTransformer:
    model.attention_dense_max_tokens, model.attention_chunk_tokens = 0, chunk_tokens
    return model


def dense(model: TekkenWorldModelTransformer) -> TekkenWorldModelTransformer:
    model.attention_dense_max_tokens = 10**9
    return model


@torch.no_grad()
@pytest.mark.parametrize("chunk_tokens", [4, 12])  # one frame, three frames per chunk
@pytest.mark.parametrize(
    "overrides", [{}, {"prev_frame_conditioning": True, "prediction_type": "prev_frame_residual"}]
)
def test_model_chunked_equals_dense_for_windows_prefill_and_teacher_forcing(chunk_tokens, overrides, chunk_calls):
    model = make_model(**overrides)
    latents, sigmas, actions = make_inputs(frames=9)
    context, context_sigmas, _ = make_inputs(frames=9, seed=7)

    def outputs(model):
        full = model(latents, sigmas, actions).sample
        # prefill 3 frames, then 4 new frames in one cached forward (the global layer sees all, the local one not),
        # then 2 more of which only the first is written (cache_leading_frames)
        cache = model.make_kv_cache()
        prefill = model(latents[:, :3], sigmas[:, :3], actions[:, :3], kv_cache=cache, update_kv_cache=True).sample
        step = model(latents[:, 3:7], sigmas[:, 3:7], actions[:, 3:7], kv_cache=cache, update_kv_cache=True).sample
        leading = model(
            latents[:, 7:9],
            sigmas[:, 7:9],
            actions[:, 7:9],
            kv_cache=cache,
            update_kv_cache=True,
            cache_leading_frames=1,
        ).sample
        forced = model(latents, sigmas, actions, context_latents=context, context_sigmas=context_sigmas * 0.2).sample
        return full, torch.cat([prefill, step, leading], dim=1), forced

    expected = outputs(dense(model))
    assert not chunk_calls
    got = outputs(chunked(model, chunk_tokens))
    assert chunk_calls  # every multi-frame forward above went through chunks
    for name, g, e in zip(("window", "cached", "teacher forcing"), got, expected):
        torch.testing.assert_close(g, e, rtol=0, atol=1e-5, msg=name)
    # the cache path equals the full forward on the chunked path too
    torch.testing.assert_close(got[1], got[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("teacher_forcing", [False, True])
@pytest.mark.parametrize("checkpointing", [False, True])
def test_model_chunked_gradients_equal_dense(teacher_forcing, checkpointing, chunk_calls):
    latents, sigmas, actions = make_inputs(frames=8)
    extra = {}
    if teacher_forcing:
        context, context_sigmas, _ = make_inputs(frames=8, seed=7)
        extra = {"context_latents": context, "context_sigmas": context_sigmas * 0.2}

    def gradients(chunk_tokens: int | None) -> dict[str, torch.Tensor]:
        model = make_model().train()
        model = dense(model) if chunk_tokens is None else chunked(model, chunk_tokens)
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(latents, sigmas, actions, **extra).sample.square().mean().backward()
        return {name: param.grad for name, param in model.named_parameters()}

    expected = gradients(None)
    for chunk_tokens in (4, 8):
        got = gradients(chunk_tokens)
        assert got.keys() == expected.keys()
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=0, atol=1e-5, msg=f"{chunk_tokens}: {name}")
    assert chunk_calls
