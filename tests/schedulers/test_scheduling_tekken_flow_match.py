"""Flow-matching scheduler with per-frame noise levels: exact expectations where the math allows."""

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from tekken_diffusers.schedulers.scheduling_tekken_flow_match import TekkenFlowMatchScheduler


def make_latents(shape=(2, 3, 4, 2, 2), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=generator), torch.randn(shape, generator=generator)


@pytest.mark.parametrize("shift", [1.0, 3.0])
@pytest.mark.parametrize("steps", [1, 4, 8, 32])
def test_sigma_grid_equals_flow_match_euler_discrete(shift, steps):
    ours = TekkenFlowMatchScheduler(shift=shift)
    theirs = FlowMatchEulerDiscreteScheduler(shift=shift)
    ours.set_timesteps(steps)
    theirs.set_timesteps(steps)
    assert torch.equal(ours.sigmas, theirs.sigmas)
    assert torch.equal(ours.timesteps, theirs.timesteps)
    assert ours.sigmas[0] == 1.0 and ours.sigmas[-1] == 0.0 and len(ours.sigmas) == steps + 1


def test_custom_sigmas_and_dynamic_shift_match_diffusers():
    for config in [{"shift": 3.0}, {"use_dynamic_shifting": True}, {"shift": 2.0, "shift_terminal": 0.1}]:
        ours, theirs = TekkenFlowMatchScheduler(**config), FlowMatchEulerDiscreteScheduler(**config)
        mu = 0.7 if config.get("use_dynamic_shifting") else None
        ours.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25], mu=mu)
        theirs.set_timesteps(sigmas=[1.0, 0.75, 0.5, 0.25], mu=mu)
        assert torch.equal(ours.sigmas, theirs.sigmas), config


def test_the_last_sigma_depends_on_the_shift_the_scheduler_was_built_with_unless_the_grid_is_pinned():
    """diffusers builds the grid with `shift` and shifts the schedule again, so `set_shift` alone does not give the
    schedule of a scheduler built with that shift; `sigma_grid_shift` pins the grid, and then it does."""
    built_with_16 = TekkenFlowMatchScheduler(shift=16.0)
    set_to_16 = TekkenFlowMatchScheduler(shift=3.0)
    set_to_16.set_shift(16.0)
    for scheduler in (built_with_16, set_to_16):
        scheduler.set_timesteps(4)
    theirs = FlowMatchEulerDiscreteScheduler(shift=16.0)
    theirs.set_timesteps(4)
    assert torch.equal(built_with_16.sigmas, theirs.sigmas)  # diffusers' behaviour by default
    assert float(built_with_16.sigmas[-2]) == pytest.approx(0.2040, abs=1e-4)
    assert float(set_to_16.sigmas[-2]) == pytest.approx(0.0458, abs=1e-4)
    pinned = TekkenFlowMatchScheduler(shift=16.0, sigma_grid_shift=3.0)
    pinned.set_timesteps(4)
    assert torch.equal(pinned.sigmas, set_to_16.sigmas) and pinned.shift == 16.0
    pinned.set_shift(8.0)
    pinned.set_timesteps(4)
    again = TekkenFlowMatchScheduler(shift=8.0, sigma_grid_shift=3.0)
    again.set_timesteps(4)
    assert torch.equal(pinned.sigmas, again.sigmas)
    with pytest.raises(ValueError, match="sigma_grid_shift must be > 0"):
        TekkenFlowMatchScheduler(sigma_grid_shift=0.0)


def test_the_original_schedule_is_a_linear_grid_shifted_once():
    # the original owl-wms sampler used sigma_k = 3s / (1 + 2s), s = (n - k) / n: 1.0, 0.9, 0.75, 0.5 -> 0 for n = 4
    scheduler = TekkenFlowMatchScheduler(shift=3.0)
    scheduler.set_timesteps(sigmas=[(4 - k) / 4 for k in range(4)])
    torch.testing.assert_close(scheduler.sigmas, torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]))


def test_euler_on_a_constant_velocity_is_exact():
    scheduler = TekkenFlowMatchScheduler(shift=3.0)
    scheduler.set_timesteps(7)
    latents, noise = make_latents()
    velocity = scheduler.get_velocity_target(latents, noise)
    sample = noise  # sigma = 1: pure noise
    for t in scheduler.timesteps:
        output = scheduler.step(velocity, t, sample)
        # every step lands on the straight path, and its x0 estimate is the true x0
        torch.testing.assert_close(output.pred_original_sample, latents, rtol=0, atol=1e-6)
        sample = output.prev_sample
        next_sigma = scheduler.sigmas[scheduler.step_index]
        torch.testing.assert_close(sample, scheduler.scale_noise(latents, next_sigma, noise), rtol=0, atol=1e-6)
    torch.testing.assert_close(sample, latents, rtol=0, atol=1e-6)


def test_scale_noise_matches_the_formula_per_frame():
    scheduler = TekkenFlowMatchScheduler()
    latents, noise = make_latents()
    sigmas = torch.tensor([[0.0, 0.3, 1.0], [0.5, 0.9, 0.1]])
    noisy = scheduler.scale_noise(latents, sigmas, noise)
    for b in range(2):
        for t in range(3):
            s = sigmas[b, t]
            torch.testing.assert_close(noisy[b, t], (1 - s) * latents[b, t] + s * noise[b, t], rtol=0, atol=1e-7)
    assert torch.equal(noisy[0, 0], latents[0, 0]) and torch.equal(noisy[0, 2], noise[0, 2])
    # add_noise: the same with diffusers timesteps (sigma * 1000) in DDPM argument order
    assert torch.equal(scheduler.add_noise(latents, noise, sigmas * 1000), noisy)
    assert torch.equal(
        scheduler.scale_noise(latents, 0.25, noise), scheduler.scale_noise(latents, [0.25, 0.25], noise)
    )
    assert torch.equal(scheduler.get_velocity_target(latents, noise), noise - latents)


def test_per_frame_steps_move_each_frame_by_its_own_sigma():
    scheduler = TekkenFlowMatchScheduler()
    sample, velocity = make_latents()
    sigma = torch.tensor([[1.0, 0.5, 0.2], [0.8, 0.2, 0.2]])
    sigma_next = torch.tensor([[0.75, 0.25, 0.2], [0.0, 0.1, 0.2]])  # frames at 0.2 -> 0.2 are context: untouched
    output = scheduler.step_per_frame(velocity, sigma, sample, sigma_next)
    for b in range(2):
        for t in range(3):
            expected = sample[b, t] + (sigma_next[b, t] - sigma[b, t]) * velocity[b, t]
            torch.testing.assert_close(output.prev_sample[b, t], expected, rtol=0, atol=1e-6)
            torch.testing.assert_close(output.pred_original_sample[b, t], sample[b, t] - sigma[b, t] * velocity[b, t])
    assert torch.equal(output.prev_sample[:, 2], sample[:, 2])
    prev, _ = scheduler.step_per_frame(velocity, sigma, sample, sigma_next, return_dict=False)
    assert torch.equal(prev, output.prev_sample)
    # the same through step() in diffusers' timestep units; per-frame steps leave the step index alone
    by_timestep = scheduler.step(velocity, sigma * 1000, sample, next_timestep=sigma_next * 1000)
    torch.testing.assert_close(by_timestep.prev_sample, output.prev_sample, rtol=0, atol=1e-6)
    assert scheduler.step_index is None


def test_step_keeps_the_sample_dtype_and_computes_in_fp32():
    scheduler = TekkenFlowMatchScheduler()
    sample, velocity = make_latents()
    output = scheduler.step_per_frame(velocity.bfloat16(), 0.5, sample.bfloat16(), 0.25)
    assert output.prev_sample.dtype == torch.bfloat16
    expected = (sample.bfloat16().float() - 0.25 * velocity.bfloat16().float()).bfloat16()
    assert torch.equal(output.prev_sample, expected)


def test_logit_normal_training_sigmas():
    scheduler = TekkenFlowMatchScheduler(logit_mean=0.3, logit_std=1.2)
    first = scheduler.sample_training_sigmas(64, 16, generator=torch.Generator().manual_seed(7))
    again = scheduler.sample_training_sigmas(64, 16, generator=torch.Generator().manual_seed(7))
    other = scheduler.sample_training_sigmas(64, 16, generator=torch.Generator().manual_seed(8))
    assert first.shape == (64, 16) and first.dtype == torch.float32
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert first.min() > 0 and first.max() < 1
    # the logits are the configured normal: exact inverse of the sigmoid of the same draws
    normal = torch.randn(64, 16, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, torch.sigmoid(0.3 + 1.2 * normal))
    # independent per frame, not one sigma per sequence
    assert (first.std(dim=1) > 0).all()


def test_context_noise_renoises_to_the_configured_sigma():
    scheduler = TekkenFlowMatchScheduler()
    latents, noise = make_latents()
    noisy, sigmas = scheduler.add_context_noise(latents, noise)
    assert torch.equal(sigmas, torch.full((2, 3), 0.2))
    torch.testing.assert_close(noisy, 0.8 * latents + 0.2 * noise, rtol=0, atol=1e-7)
    drawn, _ = scheduler.add_context_noise(latents, generator=torch.Generator().manual_seed(1))
    again, _ = scheduler.add_context_noise(latents, generator=torch.Generator().manual_seed(1))
    assert torch.equal(drawn, again)


def test_errors_name_the_problem():
    scheduler = TekkenFlowMatchScheduler()
    sample, velocity = make_latents()
    with pytest.raises(ValueError, match="call set_timesteps first"):
        scheduler.step(velocity, 1000.0, sample)
    scheduler.set_timesteps(4)
    with pytest.raises(ValueError, match="not on the schedule"):
        scheduler.step(velocity, 420.0, sample)
    with pytest.raises(ValueError, match="a sigma"):
        scheduler.step(velocity, scheduler.sigmas[1], sample)  # a sigma where a timestep belongs
    with pytest.raises(ValueError, match="integer index"):
        scheduler.step(velocity, 1, sample)
    with pytest.raises(ValueError, match="next_timestep"):
        scheduler.step(velocity, torch.full((2, 3), 750.0), sample)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        scheduler.scale_noise(sample, 750.0, velocity)  # a diffusers timestep, not a sigma
    with pytest.raises(ValueError, match="leading dims"):
        scheduler.scale_noise(sample, torch.rand(3, 2), velocity)
    with pytest.raises(ValueError, match="context_noise"):
        TekkenFlowMatchScheduler(context_noise=1.5)
    # on the schedule, sigma_next is the next grid value
    output = scheduler.step(velocity, scheduler.timesteps[1], sample)
    torch.testing.assert_close(
        output.prev_sample, sample + (scheduler.sigmas[2] - scheduler.sigmas[1]) * velocity, rtol=0, atol=1e-6
    )
    for t in scheduler.timesteps[2:]:
        scheduler.step(velocity, t, sample)
    with pytest.raises(ValueError, match="finished: call set_timesteps again"):
        scheduler.step(velocity, scheduler.timesteps[-1], sample)


def test_config_round_trip_and_diffusers_interop(tmp_path):
    scheduler = TekkenFlowMatchScheduler(shift=3.0, context_noise=0.1, logit_std=0.8)
    scheduler.save_pretrained(tmp_path)
    loaded = TekkenFlowMatchScheduler.from_pretrained(tmp_path)
    assert loaded.config.context_noise == 0.1 and loaded.config.logit_std == 0.8 and loaded.shift == 3.0
    assert TekkenFlowMatchScheduler.from_pretrained(tmp_path, shift=5.0).shift == 5.0
    theirs = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
    assert theirs.config.shift == 3.0
    assert TekkenFlowMatchScheduler.order == 1 and scheduler.init_noise_sigma == 1.0
    assert scheduler.scale_model_input(torch.ones(1), 3) is not None


def test_a_generic_diffusers_denoising_loop_matches_flow_match_euler_discrete():
    """The loop below is written as a diffusers pipeline writes it; both schedulers must give the same latents."""
    generator = torch.Generator().manual_seed(3)
    initial = torch.randn(2, 3, 4, 2, 2, generator=generator)
    weights = torch.randn(4, 4, generator=generator)

    def model(latents, timestep):  # a stand-in denoiser: depends on the input and on the timestep
        return torch.einsum("oc,btchw->btohw", weights, latents) * (timestep / 1000) + 0.1

    def denoise(scheduler, num_inference_steps, begin_index=None):
        scheduler.set_timesteps(num_inference_steps)
        timesteps = scheduler.timesteps
        if begin_index is not None:
            timesteps = timesteps[begin_index:]
            scheduler.set_begin_index(begin_index)
        latents = initial.clone()
        for i, t in enumerate(timesteps):
            noise_pred = model(latents, t)
            latents = scheduler.step(noise_pred, t, latents, return_dict=False)[0]
            assert scheduler.step_index == i + 1 + (begin_index or 0)
        return latents

    for config in [{}, {"shift": 3.0}, {"shift": 2.0, "shift_terminal": 0.1}]:
        for steps, begin_index in [(1, None), (4, None), (8, None), (8, 3)]:
            if steps == 1 and "shift_terminal" in config:
                continue  # one step cannot be stretched to end at shift_terminal (NaN in both schedulers)
            ours = denoise(TekkenFlowMatchScheduler(**config), steps, begin_index)
            theirs = denoise(FlowMatchEulerDiscreteScheduler(**config), steps, begin_index)
            assert torch.equal(ours, theirs), (config, steps, begin_index)

    # the same loop twice on one scheduler: set_timesteps restarts the step index
    scheduler = TekkenFlowMatchScheduler(shift=3.0)
    assert torch.equal(denoise(scheduler, 4), denoise(scheduler, 4))
    # a scheduler built from the other's config runs the same loop
    converted = FlowMatchEulerDiscreteScheduler.from_config(scheduler.config)
    assert torch.equal(denoise(converted, 4), denoise(scheduler, 4))


def test_add_noise_and_scale_noise_broadcast_like_diffusers():
    ours, theirs = TekkenFlowMatchScheduler(shift=3.0), FlowMatchEulerDiscreteScheduler(shift=3.0)
    ours.set_timesteps(8)
    theirs.set_timesteps(8)
    latents, noise = make_latents((4, 3, 4, 2, 2))
    t = ours.timesteps[2]
    # a (1,) timestep applies to the whole batch, as in diffusers' img2img pipelines (`timesteps[:1]`)
    expected = theirs.scale_noise(latents, theirs.timesteps[2:3], noise)
    assert torch.equal(ours.add_noise(latents, noise, ours.timesteps[2:3]), expected)
    assert torch.equal(ours.scale_noise(latents, ours.sigmas[2:3], noise), expected)
    # a (batch,) timestep: one level per sample
    batch_t = ours.timesteps[[0, 2, 5, 7]]
    expected = theirs.scale_noise(latents, theirs.timesteps[[0, 2, 5, 7]], noise)
    assert torch.equal(ours.add_noise(latents, noise, batch_t), expected)
    assert torch.equal(ours.scale_noise(latents, ours.sigmas[[0, 2, 5, 7]], noise), expected)
    # scalars (a float or a 0-d tensor) equal the (1,) form
    one = ours.add_noise(latents, noise, t[None])
    for scalar in (t, t.item()):
        assert torch.equal(ours.add_noise(latents, noise, scalar), one)
        assert torch.equal(
            ours.scale_noise(latents, scalar / 1000, noise), ours.scale_noise(latents, t[None] / 1000, noise)
        )
    # per frame, a size-1 batch dim broadcasts too
    per_frame = torch.tensor([[0.2, 0.5, 0.9]])
    assert torch.equal(
        ours.scale_noise(latents, per_frame, noise), ours.scale_noise(latents, per_frame.expand(4, 3), noise)
    )
    with pytest.raises(ValueError, match="leading dims"):
        ours.add_noise(latents, noise, torch.full((2,), 500.0))
