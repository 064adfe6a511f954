"""`TekkenKVCache` batch operations: stacking caches along the batch, taking rows back, and moving a cache's frame
clock (`shift_frames`) without changing what the model computes next."""

import copy

import pytest
import torch

from tekken_diffusers.models.transformer_tekken import TekkenKVCache, TekkenWorldModelTransformer

CHANNELS, SIZE = 4, 4  # the tiny preset: 4x4x4 latents, patch 2 -> 4 tokens per frame


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: conftest.single_thread


def make_model(seed: int = 0, **overrides) -> TekkenWorldModelTransformer:
    """A tiny model with every weight random (the zero-initialised ones too), a stand-in for a trained one."""
    torch.manual_seed(seed)
    model = TekkenWorldModelTransformer.from_preset("tiny", **overrides).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model


def make_inputs(batch: int = 1, frames: int = 8, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, frames, CHANNELS, SIZE, SIZE, generator=generator)
    sigmas = torch.rand(batch, frames, generator=generator)
    actions = torch.randint(0, 2, (batch, frames, 8), generator=generator).float()
    return latents, sigmas, actions


def filled_cache(model, frames: int, start_frame: int = 0, seed: int = 1, batch: int = 1) -> TekkenKVCache:
    latents, sigmas, actions = make_inputs(batch, frames, seed)
    cache = model.make_kv_cache(start_frame=start_frame)
    with torch.no_grad():
        model(latents, sigmas, actions, kv_cache=cache, update_kv_cache=True)
    return cache


@torch.no_grad()
@pytest.mark.parametrize("overrides", [{}, {"prev_frame_conditioning": True}])
@pytest.mark.parametrize("delta", [37, -3, 100_000])
def test_shift_frames_leaves_the_next_frames_unchanged(overrides, delta):
    model = make_model(**overrides)
    cache = filled_cache(model, frames=9, start_frame=4)  # windows 6 / 3: layers hold 5 and 2 frames
    shifted = copy.deepcopy(cache)
    shifted.shift_frames(delta)
    assert shifted.next_frame == cache.next_frame + delta == 13 + delta
    assert [shifted.first_frame(i) for i in range(2)] == [cache.first_frame(i) + delta for i in range(2)]
    # The keys really were re-rotated (values are position-free and stay as they were).
    assert not torch.allclose(shifted.get(0)[0], cache.get(0)[0], atol=1e-3)
    assert torch.equal(shifted.get(0)[1], cache.get(0)[1])

    # The clock moved without re-rotating the keys: the next frame sees the cached frames at other distances, and
    # its output changes. So the comparison below can tell a correct shift from a clock-only one.
    clock_only = copy.deepcopy(cache)
    clock_only._end_frames = [frame + delta for frame in clock_only._end_frames]

    latents, sigmas, actions = make_inputs(frames=4, seed=2)
    for t in range(4):  # the next frame read-only, then appended, four frames on (past the local window)
        frame = (latents[:, t : t + 1], sigmas[:, t : t + 1], actions[:, t : t + 1])
        expected = model(*frame, kv_cache=cache, update_kv_cache=True).sample
        got = model(*frame, kv_cache=shifted, update_kv_cache=True).sample
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
        if t == 0:
            wrong = model(*frame, kv_cache=clock_only).sample
            assert (wrong - expected).abs().amax() > 1e-3
    assert shifted.next_frame == cache.next_frame + delta


def test_shift_frames_refuses_what_it_cannot_shift():
    model = make_model()
    cache = filled_cache(model, frames=9)  # oldest cached frame: 9 - 5 = 4
    with pytest.raises(ValueError, match=r"oldest cached frame \(4\) would move before frame 0"):
        cache.shift_frames(-5)
    assert cache.next_frame == 9  # untouched
    cache.shift_frames(-4)
    assert cache.first_frame(0) == 0

    owl = make_model(rope_style="owl-wms", rope_num_frames=16)
    owl_cache = filled_cache(owl, frames=3)
    assert not owl_cache.can_shift and cache.can_shift
    owl_cache.shift_frames(0)  # no move is always fine
    with pytest.raises(ValueError, match="rope_style='owl-wms'.*only integer RoPE positions"):
        owl_cache.shift_frames(2)
    with pytest.raises(ValueError, match="does not know its model's RoPE layout"):
        TekkenKVCache([2, 2], start_frame=3).shift_frames(1)


@torch.no_grad()
@pytest.mark.parametrize("branches", [1, 2])
def test_stacked_caches_give_each_row_its_own_output_and_split_back(branches):
    """Three caches (one clip each, `branches` copies of it as a guided rollout keeps them) stacked into one batch:
    one forward of the stack equals each cache's own forward, and the rows taken back equal the caches."""
    model = make_model(prev_frame_conditioning=True)
    caches = [filled_cache(model, frames=7, seed=seed, batch=branches) for seed in (1, 2, 3)]
    stacked = TekkenKVCache.stack(caches, branches=branches)
    assert stacked.batch_size == 3 * branches and stacked.next_frame == 7
    # Branch-major: the first branch of every cache, then the second branch of every cache.
    keys = stacked.get(0)[0].unflatten(0, (branches, 3))
    for index, cache in enumerate(caches):
        for branch in range(branches):
            assert torch.equal(keys[branch, index], cache.get(0)[0][branch])

    latents, sigmas, actions = make_inputs(batch=3, frames=1, seed=9)
    expand = (lambda x: torch.cat([x] * branches)) if branches > 1 else (lambda x: x)
    batched = model(expand(latents), expand(sigmas), expand(actions), kv_cache=stacked, update_kv_cache=True).sample
    for index, cache in enumerate(caches):
        row = slice(index, index + 1)
        alone = model(
            expand(latents[row]), expand(sigmas[row]), expand(actions[row]), kv_cache=cache, update_kv_cache=True
        ).sample
        torch.testing.assert_close(batched.unflatten(0, (branches, 3))[:, index], alone, rtol=0, atol=1e-5)

    rows = stacked.split(branches=branches)
    assert len(rows) == 3
    for row, cache in zip(rows, caches):
        assert row.next_frame == cache.next_frame == 8 and row.batch_size == branches
        for layer in range(2):
            torch.testing.assert_close(row.get(layer)[0], cache.get(layer)[0], rtol=0, atol=1e-5)
            torch.testing.assert_close(row.get(layer)[1], cache.get(layer)[1], rtol=0, atol=1e-5)
        torch.testing.assert_close(row.prev_latents, cache.prev_latents, rtol=0, atol=0)
    # Views by default (no copy until the row's next append), copies on request.
    view, copied = stacked.select(1, branches=branches), stacked.select(1, branches=branches, clone=True)
    assert view.get(0)[0].untyped_storage().data_ptr() == stacked.get(0)[0].untyped_storage().data_ptr()
    assert copied.get(0)[0].untyped_storage().data_ptr() != stacked.get(0)[0].untyped_storage().data_ptr()
    assert torch.equal(view.get(0)[0], copied.get(0)[0])


def test_stacking_mismatched_caches_is_a_clear_error():
    model = make_model()
    full, filling = filled_cache(model, frames=9), filled_cache(model, frames=3)
    with pytest.raises(ValueError, match=r"different numbers of frames per layer \(\[\(5, 2\), \(3, 2\)\]\)"):
        TekkenKVCache.stack([full, filling])
    later = filled_cache(model, frames=9, start_frame=5)
    with pytest.raises(ValueError, match=r"continue at different frames \(next_frame \[9, 14\]\).*shift_frames"):
        TekkenKVCache.stack([full, later])
    later.shift_frames(-5)
    assert TekkenKVCache.stack([full, later]).batch_size == 2  # aligned, they stack
    other_model = filled_cache(make_model(local_window=4), frames=9)
    with pytest.raises(ValueError, match="cache 1 belongs to another model or size"):
        TekkenKVCache.stack([full, other_model])
    with pytest.raises(ValueError, match="at least one cache"):
        TekkenKVCache.stack([])
    copy_path = filled_cache(make_model(prev_frame_conditioning=True), frames=9)
    with pytest.raises(ValueError, match="prev_latents"):
        TekkenKVCache.stack([full, copy_path])
    with pytest.raises(ValueError, match="not a multiple of branches=2"):
        TekkenKVCache.stack([full, full], branches=2)
