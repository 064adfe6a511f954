"""Behaviour of the world-model transformer on tiny CPU configs: causality, windows, cache, actions, save/load."""

import pytest
import torch

from tekken_diffusers.models.transformer_tekken import (
    TRANSFORMER_PRESETS,
    TekkenAttnProcessor,
    TekkenKVCache,
    TekkenWorldModelTransformer,
    build_preset_on_meta,
    frame_attention_mask,
)

CHANNELS, SIZE = 4, 4  # the tiny preset: 4x4x4 latents, patch 2 -> 4 tokens per frame


pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: conftest.single_thread


def make_model(seed: int = 0, **overrides) -> TekkenWorldModelTransformer:
    torch.manual_seed(seed)
    return TekkenWorldModelTransformer.from_preset("tiny", **overrides).eval()


def randomize(model: TekkenWorldModelTransformer, seed: int = 0, std: float = 0.2) -> TekkenWorldModelTransformer:
    """Replace every weight (the zero-initialised ones included) by noise: a stand-in for a trained model."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * std)
    return model


def make_inputs(batch: int = 2, frames: int = 8, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, frames, CHANNELS, SIZE, SIZE, generator=generator)
    sigmas = torch.rand(batch, frames, generator=generator)
    actions = torch.randint(0, 2, (batch, frames, 8), generator=generator).bool()
    return latents, sigmas, actions


def perturb_frames(latents, sigmas, actions, frames):
    """New inputs that differ from the given ones exactly at `frames` (latents, noise level and buttons)."""
    latents, sigmas, actions = latents.clone(), sigmas.clone(), actions.clone()
    latents[:, frames] += 1.0
    sigmas[:, frames] = 1.0 - sigmas[:, frames]
    actions[:, frames] = ~actions[:, frames]
    return latents, sigmas, actions


@torch.no_grad()
def test_output_shape_dtype_and_tuple_return():
    model = randomize(make_model())
    latents, sigmas, actions = make_inputs(frames=3)
    output = model(latents, sigmas, actions)
    assert output.sample.shape == latents.shape and output.sample.dtype == torch.float32
    (sample,) = model(latents, sigmas, actions, return_dict=False)
    assert torch.equal(sample, output.sample)
    # a scalar sigma or one per sample broadcasts over frames
    assert torch.equal(model(latents, 0.5, actions).sample, model(latents, torch.full((2, 3), 0.5), actions).sample)


@torch.no_grad()
def test_fresh_model_outputs_zero_regardless_of_actions_until_trained():
    model = make_model()
    latents, sigmas, actions = make_inputs()
    fresh = model(latents, sigmas, actions).sample
    # adaLN-Zero: every block is the identity and the output projection is zero, so nothing reaches the output
    assert torch.equal(fresh, torch.zeros_like(fresh))
    assert torch.equal(model(latents, sigmas, ~actions).sample, fresh)

    # "training" the zero-initialised modulation and output layers lets the buttons through
    generator = torch.Generator().manual_seed(3)
    zero_init = [block.adaLN_modulation for block in model.transformer_blocks]
    for linear in zero_init + [model.norm_out_modulation, model.proj_out]:
        linear.weight.copy_(torch.randn(linear.weight.shape, generator=generator) * 0.2)
    pressed = model(latents, sigmas, actions).sample
    flipped = model(latents, sigmas, ~actions).sample
    assert (pressed - flipped).abs().amax() > 1e-3


@torch.no_grad()
def test_actions_change_the_prediction_and_the_null_action_ignores_them():
    model = randomize(make_model())
    latents, sigmas, actions = make_inputs()
    conditional = model(latents, sigmas, actions).sample
    other = actions.clone()
    other[:, -1] = ~other[:, -1]  # change the buttons of the last frame only
    changed = model(latents, sigmas, other).sample
    assert (changed[:, -1] - conditional[:, -1]).abs().amax() > 1e-3
    torch.testing.assert_close(changed[:, :-1], conditional[:, :-1], rtol=0, atol=1e-6)

    # action_mask=False puts the null action in: identical to passing no actions, whatever the buttons
    dropped = torch.zeros(2, 8, dtype=torch.bool)
    unconditional = model(latents, sigmas).sample
    torch.testing.assert_close(model(latents, sigmas, actions, action_mask=dropped).sample, unconditional)
    torch.testing.assert_close(model(latents, sigmas, other, action_mask=dropped).sample, unconditional)
    assert (unconditional - conditional).abs().amax() > 1e-3
    # a per-sample mask drops whole sequences: sample 0 conditional, sample 1 unconditional
    mixed = model(latents, sigmas, actions, action_mask=torch.tensor([True, False])).sample
    torch.testing.assert_close(mixed[0], conditional[0])
    torch.testing.assert_close(mixed[1], unconditional[1])


@torch.no_grad()
@pytest.mark.parametrize("t", [0, 3, 6])
def test_later_frames_never_change_earlier_outputs(t):
    model = randomize(make_model())
    latents, sigmas, actions = make_inputs(frames=8)
    reference = model(latents, sigmas, actions).sample
    later = list(range(t + 1, 8))
    changed = model(*perturb_frames(latents, sigmas, actions, later)).sample
    torch.testing.assert_close(changed[:, : t + 1], reference[:, : t + 1], rtol=0, atol=1e-6)
    assert (changed[:, t + 1 :] - reference[:, t + 1 :]).abs().amax() > 1e-3


@torch.no_grad()
def test_frames_within_a_frame_attend_bidirectionally():
    model = randomize(make_model())
    latents, sigmas, actions = make_inputs(frames=2)
    reference = model(latents, sigmas, actions).sample
    changed_latents = latents.clone()
    changed_latents[:, 1, :, -1, -1] += 1.0  # last patch of frame 1
    changed = model(changed_latents, sigmas, actions).sample
    assert (changed[:, 1, :, :2, :2] - reference[:, 1, :, :2, :2]).abs().amax() > 1e-4  # first patch sees it


@torch.no_grad()
def test_local_window_hides_older_frames():
    # One local layer with window 3: frame 6 sees frames 4, 5, 6 and nothing older.
    model = randomize(make_model(num_layers=1, global_every=0, local_window=3))
    latents, sigmas, actions = make_inputs(frames=8)
    reference = model(latents, sigmas, actions).sample
    older = model(*perturb_frames(latents, sigmas, actions, [0, 1, 2, 3])).sample
    torch.testing.assert_close(older[:, 6], reference[:, 6], rtol=0, atol=1e-6)
    inside = model(*perturb_frames(latents, sigmas, actions, [4])).sample
    assert (inside[:, 6] - reference[:, 6]).abs().amax() > 1e-3


@torch.no_grad()
def test_receptive_field_grows_by_window_minus_one_per_layer():
    # Two local layers with window 3: frame 7 reaches back 2 * (3 - 1) = 4 frames, to frame 3, not to frame 2.
    model = randomize(make_model(num_layers=2, global_every=0, local_window=3))
    latents, sigmas, actions = make_inputs(frames=8)
    reference = model(latents, sigmas, actions).sample
    torch.testing.assert_close(
        model(*perturb_frames(latents, sigmas, actions, [0, 1, 2])).sample[:, 7], reference[:, 7], rtol=0, atol=1e-6
    )
    assert (model(*perturb_frames(latents, sigmas, actions, [3])).sample[:, 7] - reference[:, 7]).abs().amax() > 1e-4


def test_layer_windows_follow_global_every():
    assert build_preset_on_meta("tekken-large").layer_windows == [128, 16, 16, 16] * 4
    assert make_model(num_layers=3, global_every=0).layer_windows == [3, 3, 3]


def test_frame_attention_mask():
    # one new frame against a cache trimmed to the window: nothing to mask
    assert frame_attention_mask(1, 2, window=3, tokens_per_frame=4, device=torch.device("cpu")) is None
    mask = frame_attention_mask(3, 1, window=2, tokens_per_frame=1, device=torch.device("cpu"))
    expected = torch.tensor([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask[0, 0], expected)
    assert frame_attention_mask(2, 0, window=5, tokens_per_frame=2, device=torch.device("cpu")).shape == (1, 1, 4, 4)


@torch.no_grad()
@pytest.mark.parametrize("frame_offset", [0, 37])
def test_cached_rollout_equals_full_forward_after_eviction(frame_offset):
    model = randomize(make_model())  # windows: layer 0 global 6, layer 1 local 3
    latents, sigmas, actions = make_inputs(frames=12)
    full = model(latents, sigmas, actions, frame_offset=frame_offset).sample

    cache = model.make_kv_cache(start_frame=frame_offset)
    assert cache.max_frames == (5, 2)
    outputs = [model(latents[:, :3], sigmas[:, :3], actions[:, :3], kv_cache=cache, update_kv_cache=True).sample]
    for t in range(3, 12):
        frame = (latents[:, t : t + 1], sigmas[:, t : t + 1], actions[:, t : t + 1])
        kept = [cache.get(i) for i in range(2)]
        denoise = model(*frame, kv_cache=cache).sample  # read-only: the cache is untouched
        assert all(cache.get(i)[0] is kept[i][0] and cache.get(i)[1] is kept[i][1] for i in range(2))
        outputs.append(model(*frame, frame_offset=frame_offset + t, kv_cache=cache, update_kv_cache=True).sample)
        torch.testing.assert_close(denoise, outputs[-1], rtol=0, atol=1e-6)

    assert (torch.cat(outputs, dim=1) - full).abs().amax() <= 1e-5
    # 12 frames went through, each layer holds only its window - 1
    assert cache.next_frame == frame_offset + 12
    assert [cache.num_frames(i) for i in range(2)] == [5, 2]
    assert [cache.first_frame(i) for i in range(2)] == [frame_offset + 7, frame_offset + 10]


@torch.no_grad()
def test_chunked_prefill_equals_full_forward():
    model = randomize(make_model())
    latents, sigmas, actions = make_inputs(frames=9)
    full = model(latents, sigmas, actions).sample
    cache = model.make_kv_cache()
    outputs = [
        model(latents[:, s:e], sigmas[:, s:e], actions[:, s:e], kv_cache=cache, update_kv_cache=True).sample
        for s, e in [(0, 4), (4, 6), (6, 9)]
    ]
    assert (torch.cat(outputs, dim=1) - full).abs().amax() <= 1e-5


@torch.no_grad()
def test_long_rollout_keeps_cache_size_constant_and_positions_counting():
    model = randomize(make_model())
    steps = 2000
    latents, sigmas, actions = make_inputs(batch=1, frames=steps, seed=5)
    cache = model.make_kv_cache()
    sizes = set()
    for t in range(steps):
        output = model(
            latents[:, t : t + 1], sigmas[:, t : t + 1], actions[:, t : t + 1], kv_cache=cache, update_kv_cache=True
        ).sample
        if t >= 10 and t % 10 == 0:
            sizes.add((cache.memory_bytes(), tuple(cache.num_frames(i) for i in range(2))))
    assert cache.next_frame == steps
    assert sizes == {(cache.memory_bytes(), (5, 2))}  # constant from step 10 to step 2000
    # Frames that can reach the last output: 1 + (6 - 1) + (3 - 1) = 8 (global layer, then local layer). The last
    # output equals a fresh full forward of those frames at their absolute positions 1992..1999.
    first = steps - 8
    full = model(latents[:, first:], sigmas[:, first:], actions[:, first:], frame_offset=first).sample
    assert (full[:, -1:] - output).abs().amax() <= 1e-5


@torch.no_grad()
def test_cache_misuse_raises():
    model = randomize(make_model())
    latents, sigmas, actions = make_inputs(frames=2)
    cache = model.make_kv_cache()
    model(latents, sigmas, actions, kv_cache=cache, update_kv_cache=True)
    with pytest.raises(ValueError, match="continues at frame 2"):
        model(latents[:, :1], sigmas[:, :1], actions[:, :1], frame_offset=5, kv_cache=cache)
    with pytest.raises(ValueError, match="needs a kv_cache"):
        model(latents, sigmas, actions, update_kv_cache=True)
    with pytest.raises(ValueError, match="3 layers"):
        model(latents, sigmas, actions, kv_cache=TekkenKVCache([1, 1, 1]))
    with pytest.raises(ValueError, match="batch 2"):
        model(latents[:1, :1], sigmas[:1, :1], actions[:1, :1], kv_cache=cache)
    with pytest.raises(ValueError, match="button bits"):
        model(latents, sigmas, actions[..., :4])


@torch.no_grad()
def test_save_and_load_give_identical_outputs(tmp_path):
    model = randomize(make_model())
    latents, sigmas, actions = make_inputs()
    model.save_pretrained(tmp_path)
    loaded = TekkenWorldModelTransformer.from_pretrained(tmp_path).eval()
    assert loaded.config.local_window == 3 and tuple(loaded.config.sample_size) == (4, 4)
    assert loaded.state_dict().keys() == model.state_dict().keys()
    assert all(torch.equal(loaded.state_dict()[k], v) for k, v in model.state_dict().items())
    # Same weights, but safetensors hands back tensors at other memory alignments, for which the CPU GEMM may pick
    # another kernel: allow one float32 rounding step (measured: 0 here, 6e-8 in single-frame cached steps).
    torch.testing.assert_close(
        loaded(latents, sigmas, actions).sample, model(latents, sigmas, actions).sample, rtol=0, atol=1e-6
    )


@torch.no_grad()
def test_bfloat16_loading_keeps_the_time_embedding_fp32(tmp_path):
    model = randomize(make_model(), std=0.1)
    latents, sigmas, actions = make_inputs()
    model.save_pretrained(tmp_path)
    loaded = TekkenWorldModelTransformer.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert loaded.time_embed.linear_1.weight.dtype == torch.float32
    assert loaded.proj_in.weight.dtype == torch.bfloat16
    assert loaded.transformer_blocks[0].attn.to_q.weight.dtype == torch.bfloat16
    reference = model(latents, sigmas, actions).sample
    output = loaded(latents, sigmas, actions).sample
    assert output.dtype == torch.bfloat16
    assert (output.float() - reference).norm() / reference.norm() < 0.05


@torch.no_grad()
def test_time_embedding_runs_in_fp32_under_bf16_autocast():
    model = randomize(make_model())
    seen = []
    model.time_embed.register_forward_hook(lambda module, args, output: seen.append(output.dtype))
    latents, sigmas, actions = make_inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(latents, sigmas, actions).sample
    assert seen == [torch.float32]
    assert output.dtype == torch.bfloat16


def test_gradient_checkpointing_gives_the_same_gradients():
    latents, sigmas, actions = make_inputs()

    def gradients(checkpointing: bool) -> dict[str, torch.Tensor]:
        model = randomize(make_model()).train()
        if checkpointing:
            model.enable_gradient_checkpointing()
        model(latents, sigmas, actions).sample.square().mean().backward()
        return {name: param.grad for name, param in model.named_parameters()}

    plain, checkpointed = gradients(False), gradients(True)
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=0, atol=1e-6, msg=name)


def test_attention_processors_follow_diffusers():
    model = make_model()
    assert list(model.attn_processors) == [f"transformer_blocks.{i}.attn.processor" for i in range(2)]
    model.set_attn_processor(TekkenAttnProcessor())
    assert all(isinstance(p, TekkenAttnProcessor) for p in model.attn_processors.values())


def test_presets():
    with pytest.raises(ValueError, match="known presets: tiny, small, compact, tekken-large"):
        TekkenWorldModelTransformer.from_preset("huge")
    assert set(TRANSFORMER_PRESETS) == {"tiny", "small", "compact", "tekken-large"}
    compact = build_preset_on_meta("compact")
    assert 4e6 < sum(p.numel() for p in compact.parameters()) < 8e6
    assert make_model(in_channels=8).config.in_channels == 8  # overrides win
    large = build_preset_on_meta("tekken-large")
    assert 1.15e9 < sum(p.numel() for p in large.parameters()) < 1.3e9  # the original's tekken_nopose_large: 1.24 B
    assert large.config.patch_size == 1 and tuple(large.config.sample_size) == (14, 23)


def test_invalid_config_raises():
    with pytest.raises(ValueError, match="rope_axes_dim"):
        make_model(rope_axes_dim=(6, 6, 6))  # 18 > head dim 16
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        make_model(sample_size=(5, 4))
    with pytest.raises(ValueError, match="local_window"):
        make_model(local_window=0)


def test_list_presets_command(capsys):
    from tekken_diffusers.cli.list_presets import main

    assert main([]) == 0
    table = capsys.readouterr().out
    assert all(f"`{name}`" in table for name in TRANSFORMER_PRESETS)
    assert f"{sum(p.numel() for p in make_model().parameters()):,}" in table


# ---------------------------------------------------------------------------------------------------------------------
# The copy path, the prev_frame_residual parameterisation and teacher forcing
# ---------------------------------------------------------------------------------------------------------------------
COPY = {"prev_frame_conditioning": True, "prediction_type": "prev_frame_residual"}


@torch.no_grad()
def test_copy_path_feeds_each_frame_the_previous_one():
    model = randomize(make_model(prev_frame_conditioning=True))
    latents, sigmas, actions = make_inputs(frames=4)
    base = model(latents, sigmas, actions).sample
    # Attention alone cannot explain this: with global_every=0 and local_window=1 a frame sees only itself, so any
    # dependence of frame 2 on frame 1 comes through the copy path.
    isolated = randomize(make_model(prev_frame_conditioning=True, local_window=1, global_every=0))
    plain = randomize(make_model(local_window=1, global_every=0))
    changed = latents.clone()
    changed[:, 1] += 1.0
    assert (
        isolated(changed, sigmas, actions).sample[:, 2] - isolated(latents, sigmas, actions).sample[:, 2]
    ).abs().amax() > 1e-3
    torch.testing.assert_close(
        plain(changed, sigmas, actions).sample[:, 2], plain(latents, sigmas, actions).sample[:, 2]
    )
    # frames 0 and 3 do not depend on frame 1's copy path beyond causality
    assert (model(changed, sigmas, actions).sample[:, 0] - base[:, 0]).abs().amax() == 0


@torch.no_grad()
@pytest.mark.parametrize("overrides", [{"prev_frame_conditioning": True}, COPY])
def test_copy_path_cached_rollout_equals_full_forward(overrides):
    model = randomize(make_model(**overrides), std=0.1)
    latents, sigmas, actions = make_inputs(frames=10)
    sigmas = sigmas.clamp_min(0.05)  # the residual velocity divides by sigma
    full = model(latents, sigmas, actions).sample
    cache = model.make_kv_cache()
    outputs = [model(latents[:, :3], sigmas[:, :3], actions[:, :3], kv_cache=cache, update_kv_cache=True).sample]
    for t in range(3, 10):
        frame = (latents[:, t : t + 1], sigmas[:, t : t + 1], actions[:, t : t + 1])
        denoise = model(*frame, kv_cache=cache).sample  # reads the previous frame from the cache, keeps it
        outputs.append(model(*frame, kv_cache=cache, update_kv_cache=True).sample)
        torch.testing.assert_close(denoise, outputs[-1], rtol=0, atol=1e-5)
    torch.testing.assert_close(torch.cat(outputs, dim=1), full, rtol=1e-4, atol=1e-4)
    cache.reset()
    assert cache.prev_latents is None


@torch.no_grad()
@pytest.mark.parametrize("overrides", [{}, COPY])
def test_cache_leading_frames_writes_a_frame_in_the_next_frames_pass(overrides):
    """Writing frame t into the cache in the same pass as the first step of frame t+1 equals two passes, after the
    cache is full (eviction) too, and leaves the cache as the two passes would (copy path included)."""
    model = randomize(make_model(**overrides), std=0.1)  # windows 6 and 3
    latents, sigmas, actions = make_inputs(frames=10)
    sigmas = sigmas.clamp_min(0.05)
    noisy = torch.randn(latents.shape, generator=torch.Generator().manual_seed(9))
    separate, merged = model.make_kv_cache(), model.make_kv_cache()
    for cache in (separate, merged):
        model(latents[:, :3], sigmas[:, :3], actions[:, :3], kv_cache=cache, update_kv_cache=True)
    for t in range(3, 9):
        model(
            latents[:, t : t + 1], sigmas[:, t : t + 1], actions[:, t : t + 1], kv_cache=separate, update_kv_cache=True
        )
        expected = model(noisy[:, t + 1 : t + 2], 1.0, actions[:, t + 1 : t + 2], kv_cache=separate).sample
        pair = torch.cat([latents[:, t : t + 1], noisy[:, t + 1 : t + 2]], dim=1)
        pair_sigmas = torch.cat([sigmas[:, t : t + 1], torch.ones_like(sigmas[:, :1])], dim=1)
        output = model(
            pair, pair_sigmas, actions[:, t : t + 2], kv_cache=merged, update_kv_cache=True, cache_leading_frames=1
        ).sample
        torch.testing.assert_close(output[:, 1:], expected, rtol=1e-4, atol=1e-4)
        assert merged.next_frame == separate.next_frame == t + 1
        for layer in range(2):
            torch.testing.assert_close(merged.get(layer)[0], separate.get(layer)[0], rtol=1e-4, atol=1e-5)
            torch.testing.assert_close(merged.get(layer)[1], separate.get(layer)[1], rtol=1e-4, atol=1e-5)
        if overrides:
            assert torch.equal(merged.prev_latents, separate.prev_latents)
    with pytest.raises(ValueError, match="needs update_kv_cache"):
        model(latents[:, :2], sigmas[:, :2], actions[:, :2], kv_cache=merged, cache_leading_frames=1)
    with pytest.raises(ValueError, match=r"in \[1, 2\]"):
        model(
            latents[:, :2],
            sigmas[:, :2],
            actions[:, :2],
            kv_cache=merged,
            update_kv_cache=True,
            cache_leading_frames=3,
        )


@torch.no_grad()
@pytest.mark.parametrize("overrides", [{}, COPY])
def test_teacher_forcing_equals_denoising_against_a_cache_of_the_context(overrides):
    model = randomize(make_model(**overrides), std=0.1)  # windows: global 6, local 3
    latents, sigmas, actions = make_inputs(frames=9)
    sigmas = sigmas.clamp_min(0.05)
    context, _, _ = make_inputs(frames=9, seed=7)
    context_sigmas = torch.rand(2, 9, generator=torch.Generator().manual_seed(3)) * 0.2
    mask = torch.tensor([True, False])
    output = model(latents, sigmas, actions, action_mask=mask, context_latents=context, context_sigmas=context_sigmas)
    for t in range(9):
        cache = model.make_kv_cache()
        if t:
            model(context[:, :t], context_sigmas[:, :t], actions[:, :t], action_mask=mask, kv_cache=cache,
                  update_kv_cache=True)  # fmt: skip
        step = model(latents[:, t : t + 1], sigmas[:, t : t + 1], actions[:, t : t + 1], action_mask=mask,
                     kv_cache=cache)  # fmt: skip
        torch.testing.assert_close(step.sample, output.sample[:, t : t + 1], rtol=1e-4, atol=1e-4)
        if overrides:
            torch.testing.assert_close(
                step.pred_original_sample, output.pred_original_sample[:, t : t + 1], rtol=1e-4, atol=1e-4
            )


@torch.no_grad()
def test_fresh_residual_model_predicts_the_previous_frame_from_pure_noise():
    model = make_model(**COPY)
    latents, _, actions = make_inputs(frames=5)
    noise = torch.randn_like(latents)
    output = model(noise, torch.ones(2, 5), actions, context_latents=latents, context_sigmas=torch.zeros(2, 5))
    torch.testing.assert_close(output.pred_original_sample[:, 1:], latents[:, :-1], rtol=0, atol=0)
    # the Euler step from sigma = 1 to 0 lands on that prediction
    torch.testing.assert_close(noise - output.sample, output.pred_original_sample, rtol=0, atol=1e-5)
    # at sigma = 0 the input is returned unchanged, whatever the network says
    trained = randomize(make_model(**COPY))
    clean = trained(latents, torch.zeros(2, 5), actions).pred_original_sample
    torch.testing.assert_close(clean, latents, rtol=0, atol=1e-5)


def test_prev_frame_prior_coefficients():
    from tekken_diffusers.models.transformer_tekken import prev_frame_prior

    gain, c_out = prev_frame_prior(torch.tensor([0.0, 0.5, 1.0]), variance=0.25)
    torch.testing.assert_close(gain, torch.tensor([1.0, 0.25 / (0.0625 + 0.25) * 0.5, 0.0]))
    torch.testing.assert_close(c_out, torch.tensor([0.0, 0.5 * (0.25 / 0.3125) ** 0.5, 0.5]))


def test_models_without_the_new_fields_load_unchanged(tmp_path):
    model = randomize(make_model())
    model.save_pretrained(tmp_path)
    import json

    config = json.loads((tmp_path / "config.json").read_text())
    for key in ("prev_frame_conditioning", "prediction_type", "prev_frame_variance"):
        config.pop(key)  # a checkpoint written before these fields existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = TekkenWorldModelTransformer.from_pretrained(tmp_path).eval()
    assert loaded.config.prediction_type == "flow" and not loaded.config.prev_frame_conditioning
    latents, sigmas, actions = make_inputs()
    with torch.no_grad():
        torch.testing.assert_close(loaded(latents, sigmas, actions).sample, model(latents, sigmas, actions).sample)


def test_copy_path_and_teacher_forcing_errors():
    with pytest.raises(ValueError, match="needs prev_frame_conditioning"):
        make_model(prediction_type="prev_frame_residual")
    with pytest.raises(ValueError, match="prediction_type must be one of flow, prev_frame_residual"):
        make_model(prediction_type="epsilon")
    with pytest.raises(ValueError, match="prev_frame_variance"):
        make_model(**COPY, prev_frame_variance=0.0)
    model = make_model(**COPY)
    latents, sigmas, actions = make_inputs(frames=3)
    with pytest.raises(ValueError, match="cannot be combined with a kv_cache"):
        model(latents, sigmas, actions, context_latents=latents, context_sigmas=0.1, kv_cache=model.make_kv_cache())
    with pytest.raises(ValueError, match="needs context_sigmas"):
        model(latents, sigmas, actions, context_latents=latents)
    with pytest.raises(ValueError, match="context_sigmas was given without context_latents"):
        model(latents, sigmas, actions, context_sigmas=0.1)
    with pytest.raises(ValueError, match="context_latents must have the shape"):
        model(latents, sigmas, actions, context_latents=latents[:, :2], context_sigmas=0.1)


# ---------------------------------------------------------------------------------------------------------------------
# Two players (num_players=2): each player's buttons through that player's own embedding
# ---------------------------------------------------------------------------------------------------------------------
def make_two_player_inputs(batch: int = 2, frames: int = 8, seed: int = 1):
    latents, sigmas, _ = make_inputs(batch, frames, seed)
    generator = torch.Generator().manual_seed(seed + 100)
    actions = torch.randint(0, 2, (batch, frames, 2, 8), generator=generator).bool()  # (B, T, P, 8)
    return latents, sigmas, actions


@torch.no_grad()
def test_one_player_models_are_pinned_to_their_outputs_before_num_players():
    """The output of a one-player model, recorded with the code before `num_players` existed (to fp32 rounding: the
    q/k/v projection fused and RoPE as a complex product since, the same math in another order of operations)."""
    model = randomize(make_model())
    latents, sigmas, actions = make_inputs()
    output = model(latents, sigmas, actions, action_mask=torch.tensor([True, False])).sample.double()
    assert abs(output.sum().item() - -106.10308347828686) < 1e-4
    assert abs(output.abs().sum().item() - 1028.130521679297) < 1e-4
    assert model.config.num_players == 1
    assert not [name for name in model.state_dict() if "p2" in name]  # the weights of every earlier checkpoint


def test_a_config_without_num_players_loads_as_one_player(tmp_path):
    model = randomize(make_model())
    model.save_pretrained(tmp_path)
    import json

    config = json.loads((tmp_path / "config.json").read_text())
    config.pop("num_players")  # a checkpoint written before the field existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = TekkenWorldModelTransformer.from_pretrained(tmp_path).eval()
    assert loaded.config.num_players == 1
    latents, sigmas, actions = make_inputs()
    with torch.no_grad():
        assert torch.equal(loaded(latents, sigmas, actions).sample, model(latents, sigmas, actions).sample)


def test_two_player_model_has_a_second_embedding_and_null_action(tmp_path):
    model = make_model(num_players=2)
    extra = {name for name in model.state_dict()} - set(make_model().state_dict())
    assert extra == {"action_embed_p2.weight", "action_embed_p2.bias", "null_action_embedding_p2"}
    with pytest.raises(ValueError, match="num_players must be one of 1, 2, got 3"):
        make_model(num_players=3)
    randomize(model).save_pretrained(tmp_path)
    loaded = TekkenWorldModelTransformer.from_pretrained(tmp_path).eval()
    latents, sigmas, actions = make_two_player_inputs()
    with torch.no_grad():
        assert torch.equal(loaded(latents, sigmas, actions).sample, model(latents, sigmas, actions).sample)


@torch.no_grad()
def test_each_player_has_its_own_embedding_and_null_action():
    model = randomize(make_model(num_players=2))
    latents, sigmas, actions = make_two_player_inputs()
    conditional = model(latents, sigmas, actions).sample
    # Swapping the players' inputs changes the prediction: the model knows whose input is whose.
    swapped = model(latents, sigmas, actions.flip(2)).sample
    assert (swapped - conditional).abs().amax() > 1e-3
    # Each player's inputs matter on their own.
    for player in range(2):
        other = actions.clone()
        other[:, :, player] = ~other[:, :, player]
        assert (model(latents, sigmas, other).sample - conditional).abs().amax() > 1e-3

    # A player's mask flag puts that player's null action in, whatever that player pressed.
    p1_only = torch.tensor([[True, False], [True, False]])  # (B, P)
    changed_p2 = actions.clone()
    changed_p2[:, :, 1] = ~changed_p2[:, :, 1]
    dropped_p2 = model(latents, sigmas, actions, action_mask=p1_only).sample
    torch.testing.assert_close(model(latents, sigmas, changed_p2, action_mask=p1_only).sample, dropped_p2)
    assert (dropped_p2 - conditional).abs().amax() > 1e-3
    # ... and it is not player 1's null action: dropping player 1 instead gives another prediction.
    dropped_p1 = model(latents, sigmas, actions, action_mask=~p1_only).sample
    assert (dropped_p1 - dropped_p2).abs().amax() > 1e-3
    # Both dropped = no actions at all; a per-frame (B, T, P) mask equals the per-sample one it spells out.
    unconditional = model(latents, sigmas).sample
    torch.testing.assert_close(model(latents, sigmas, actions, action_mask=False).sample, unconditional)
    per_frame = p1_only[:, None].expand(2, 8, 2)
    torch.testing.assert_close(model(latents, sigmas, actions, action_mask=per_frame).sample, dropped_p2)


@torch.no_grad()
@pytest.mark.parametrize("overrides", [{}, COPY])
def test_two_player_cached_rollout_equals_full_forward(overrides):
    model = randomize(make_model(num_players=2, **overrides), std=0.1)
    latents, sigmas, actions = make_two_player_inputs(frames=10)
    sigmas = sigmas.clamp_min(0.05)
    mask = torch.tensor([[True, True], [False, True]])
    full = model(latents, sigmas, actions, action_mask=mask).sample
    cache = model.make_kv_cache()
    assert cache.max_frames == make_model().make_kv_cache().max_frames  # the cache costs what a one-player one does
    outputs = [
        model(latents[:, :3], sigmas[:, :3], actions[:, :3], action_mask=mask, kv_cache=cache, update_kv_cache=True)
    ]
    for t in range(3, 10):
        frame = (latents[:, t : t + 1], sigmas[:, t : t + 1], actions[:, t : t + 1])
        outputs.append(model(*frame, action_mask=mask, kv_cache=cache, update_kv_cache=True))
    torch.testing.assert_close(torch.cat([o.sample for o in outputs], dim=1), full, rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_two_player_teacher_forcing_equals_denoising_against_a_cache_of_the_context():
    model = randomize(make_model(num_players=2, **COPY), std=0.1)
    latents, sigmas, actions = make_two_player_inputs(frames=6)
    sigmas = sigmas.clamp_min(0.05)
    context, _, _ = make_two_player_inputs(frames=6, seed=7)
    context_sigmas = torch.rand(2, 6, generator=torch.Generator().manual_seed(3)) * 0.2
    mask = torch.tensor([[True, False], [False, True]])
    output = model(latents, sigmas, actions, action_mask=mask, context_latents=context, context_sigmas=context_sigmas)
    for t in range(6):
        cache = model.make_kv_cache()
        if t:
            model(context[:, :t], context_sigmas[:, :t], actions[:, :t], action_mask=mask, kv_cache=cache,
                  update_kv_cache=True)  # fmt: skip
        step = model(latents[:, t : t + 1], sigmas[:, t : t + 1], actions[:, t : t + 1], action_mask=mask,
                     kv_cache=cache)  # fmt: skip
        torch.testing.assert_close(step.sample, output.sample[:, t : t + 1], rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_player_count_mismatches_are_named():
    two_player = make_model(num_players=2)
    latents, sigmas, actions = make_two_player_inputs(frames=3)
    with pytest.raises(ValueError, match=r"two-player model must be \(2, 3, 2, 8\).*one player's inputs"):
        two_player(latents, sigmas, actions[:, :, 0])
    with pytest.raises(ValueError, match=r"action_mask of a 2-player model must be .*one flag per player"):
        two_player(latents, sigmas, actions, action_mask=torch.ones(2, 3, dtype=torch.bool)[:, :, None, None])
    with pytest.raises(ValueError, match="action_mask was given without actions"):
        two_player(latents, sigmas, action_mask=torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"both players' inputs: this model has num_players=1"):
        make_model()(latents, sigmas, actions)


def test_attention_projects_q_k_v_at_once_as_the_separate_layers_would():
    """The fused q/k/v projection and the stacked q/k norm equal the separate modules; without gradients the fusion is
    kept, and redone once a weight changes in place; with gradients every separate parameter gets its gradient."""
    from tekken_diffusers.models.transformer_tekken import apply_rotary_emb, get_3d_rotary_angles

    model = randomize(make_model())
    attn = model.transformer_blocks[0].attn
    hidden = torch.randn(2, 3, 4, attn.to_q.in_features)
    angles = get_3d_rotary_angles(5, 3, 2, 2, model.rope_axes_dim, 10000.0, torch.device("cpu"))

    def separate(x):  # the layer as separate modules: q/k norms with their gains, then the rotation
        q, k, v = (layer(x).unflatten(-1, (attn.heads, -1)) for layer in (attn.to_q, attn.to_k, attn.to_v))
        q, k = (apply_rotary_emb(norm(t), angles) for norm, t in ((attn.norm_q, q), (attn.norm_k, k)))
        mix = torch.nn.functional.scaled_dot_product_attention(*(t.flatten(1, 2).transpose(1, 2) for t in (q, k, v)))
        return attn.to_out(mix.transpose(1, 2).flatten(2)).unflatten(1, (3, 4))

    with torch.no_grad():
        torch.testing.assert_close(attn(hidden, angles), separate(hidden), rtol=1e-5, atol=1e-5)
        kept = attn.qkv_projection()[0]
        assert attn.qkv_projection()[0] is kept  # no new concatenation while nothing changed
        attn.to_k.weight.mul_(-1)
        attn.norm_q.weight.add_(0.5)
        assert attn.qkv_projection()[0] is not kept
        torch.testing.assert_close(attn(hidden, angles), separate(hidden), rtol=1e-5, atol=1e-5)
    attn(hidden, angles).square().sum().backward()
    for layer in (attn.to_q, attn.to_k, attn.to_v, attn.norm_q, attn.norm_k):
        assert layer.weight.grad is not None and layer.weight.grad.abs().sum() > 0


def test_rotary_embedding_as_a_complex_product_rotates_each_pair():
    """`apply_rotary_emb` turns pair (x, y) into (x cos - y sin, x sin + y cos) and passes the channels beyond 2P."""
    from tekken_diffusers.models.transformer_tekken import apply_rotary_emb, rotary_phasors

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 2, 8, generator=generator)  # (B, T, N, H, Dh), P = 3 rotated pairs, 2 channels kept
    angles = torch.rand(3, 4, 3, generator=generator) * 6
    cos, sin = angles.cos(), angles.sin()
    real, imag = x[..., 0:6:2], x[..., 1:6:2]
    c, s = cos[:, :, None], sin[:, :, None]
    expected = torch.stack([real * c - imag * s, real * s + imag * c], dim=-1).flatten(-2)
    expected = torch.cat([expected, x[..., 6:]], dim=-1)
    torch.testing.assert_close(apply_rotary_emb(x, (cos, sin)), expected)
    torch.testing.assert_close(apply_rotary_emb(x, rotary_phasors((cos, sin))), expected)
    stacked = torch.stack([x, 2 * x], dim=3)  # queries and keys together: (B, T, N, 2, H, Dh)
    torch.testing.assert_close(apply_rotary_emb(stacked, (cos, sin)), torch.stack([expected, 2 * expected], dim=3))


@pytest.mark.parametrize("num_players", [1, 2])
def test_precomputed_conditioning_equals_embedding_in_the_pass(num_players):
    """`forward(..., conditioning=model.condition(sigmas, actions, mask))` equals the pass that embeds its own, with
    a KV cache and per-sample action masks; slices of a longer conditioning serve single frames."""
    model = randomize(make_model(num_players=num_players))
    latents, sigmas, actions = make_inputs(frames=4)
    if num_players == 2:
        actions = torch.stack([actions, actions.flip(-1)], dim=2)
        mask = torch.tensor([[True, False], [True, True]])
    else:
        mask = torch.tensor([True, False])
    with torch.no_grad():
        for use_cache in (False, True):
            cache = model.make_kv_cache() if use_cache else None
            kwargs = dict(actions=actions, action_mask=mask, kv_cache=cache, update_kv_cache=use_cache)
            expected = model(latents, sigmas, **kwargs).sample
            if cache is not None:
                cache.reset()
            conditioning = model.condition(sigmas, actions, mask)
            torch.testing.assert_close(
                model(latents, sigmas, conditioning=conditioning, **kwargs).sample, expected, rtol=1e-5, atol=1e-5
            )
        first = model(latents[:, :1], sigmas[:, :1], actions=actions[:, :1], action_mask=mask).sample
        sliced = model(latents[:, :1], sigmas[:, :1], conditioning=conditioning.frames(0, 1)).sample
        torch.testing.assert_close(sliced, first, rtol=1e-5, atol=1e-5)
        with pytest.raises(ValueError, match="conditioning covers"):
            model(latents[:, :2], sigmas[:, :2], conditioning=conditioning)


def test_replaced_projections_and_modulations_are_used_as_they_are():
    """A q/k/v projection or adaLN modulation that is not a plain `nn.Linear` (a LoRA adapter, say) is called as a
    module, not read through concatenated weights that would miss what it adds."""

    class Shifted(torch.nn.Linear):  # a Linear whose output the weights alone do not give
        def forward(self, x):
            return super().forward(x) + 0.5

    model = randomize(make_model())
    latents, sigmas, actions = make_inputs(frames=4)
    with torch.no_grad():
        before = model(latents, sigmas, actions).sample
        for block in model.transformer_blocks:
            old = block.attn.to_k
            block.attn.to_k = Shifted(old.in_features, old.out_features)
            block.attn.to_k.load_state_dict(old.state_dict())
        assert not model.transformer_blocks[0].attn.can_fuse_projections
        shifted_keys = model(latents, sigmas, actions).sample
        assert not torch.allclose(shifted_keys, before)  # the keys' shift is seen (fused weights would miss it)
        for block in model.transformer_blocks:
            old = block.adaLN_modulation
            block.adaLN_modulation = Shifted(old.in_features, old.out_features)
            block.adaLN_modulation.load_state_dict(old.state_dict())
        after = model(latents, sigmas, actions).sample
        assert not torch.allclose(after, shifted_keys)
        conditioned = model(latents, sigmas, conditioning=model.condition(sigmas, actions)).sample
        torch.testing.assert_close(conditioned, after, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_blocks_compiled_for_training_match_eager_outputs_and_gradients():
    """`runtime.compile_for_training` (what the trainer does by default): a teacher-forced training pass through the
    compiled blocks gives the eager model's outputs and gradients (the real-arithmetic RoPE included), and a pass
    without gradients runs the eager code."""
    import copy

    from tekken_diffusers.runtime import compile_for_training, compile_problem

    if (problem := compile_problem("cpu")) is not None:
        pytest.skip(f"torch.compile does not work on this machine: {problem}")
    eager = randomize(make_model(prev_frame_conditioning=True, prediction_type="prev_frame_residual")).train()
    compiled = copy.deepcopy(eager)
    assert compile_for_training(compiled.transformer_blocks, "yes", "cpu")
    latents, sigmas, actions = make_inputs(frames=4)
    generator = torch.Generator().manual_seed(3)
    context_sigmas = torch.full(sigmas.shape, 0.05)
    context = latents + 0.05 * torch.randn(latents.shape, generator=generator)
    kwargs = {"actions": actions.float(), "context_latents": context, "context_sigmas": context_sigmas}
    outputs = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        output = model(latents, sigmas, return_dict=False, **kwargs)
        (output[0].square().mean() + output[1].square().mean()).backward()
        outputs[name] = output
    for a, b in zip(outputs["eager"], outputs["compiled"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    for (name, a), b in zip(eager.named_parameters(), compiled.parameters(), strict=True):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-5, msg=name)

    def not_here(*args, **kwargs):
        raise AssertionError("the compiled code ran without gradients")

    for block in compiled.transformer_blocks:
        block.forward.compiled = not_here
    with torch.no_grad():
        torch.testing.assert_close(
            compiled(latents, sigmas, return_dict=False, **kwargs)[0], outputs["eager"][0].detach()
        )
