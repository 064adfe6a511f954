"""`TekkenRollout`: the public rollout behind `__call__`, sessions and the evaluation."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from tekken_diffusers import TekkenFlowMatchScheduler, TekkenRollout, TekkenWorldModelPipeline
from tekken_diffusers.pipelines import build_random_pipeline

STEPS = 2


def make_pipe():
    pipe = build_random_pipeline("tiny", seed=0, vae=None)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def inputs(batch=2, context=3, frames=4):
    generator = torch.Generator().manual_seed(0)
    context_latents = torch.randn(batch, context, 4, 4, 4, generator=generator)
    bits = (torch.rand(batch, context + frames, 8, generator=generator) > 0.5).float()
    return context_latents, bits[:, :context], bits[:, context:]


def test_rollout_equals_the_pipeline_call():
    pipe = make_pipe()
    context_latents, context_bits, future_bits = inputs()
    expected = pipe(
        context_latents=context_latents,
        context_actions=list(context_bits),
        actions=list(future_bits),
        num_inference_steps=STEPS,
        generator=torch.Generator().manual_seed(3),
        output_type="latent",
    ).frames
    rollout = TekkenRollout(pipe, batch_size=2, num_inference_steps=STEPS)
    generator = torch.Generator().manual_seed(3)
    rollout.append(context_latents, context_bits, generator)
    latents = rollout.generate(future_bits, generator)
    assert latents.shape == (2, 4, 4, 4, 4)
    torch.testing.assert_close(latents, expected, rtol=0, atol=0)
    # the last frame waits (re-noised) for the next frame's first pass; flush() writes it now
    assert rollout.cache.next_frame == 3 + 3
    rollout.flush()
    assert rollout.cache.next_frame == 3 + 4


@torch.no_grad()
def test_a_frame_costs_num_inference_steps_forwards_and_equals_writing_it_in_its_own_pass():
    pipe = build_random_pipeline("tiny", seed=0, vae=None, prev_frame_conditioning=True)
    pipe.set_progress_bar_config(disable=True)
    context_latents, context_bits, future_bits = inputs(frames=6)
    calls = []
    hook = pipe.transformer.register_forward_hook(lambda module, args, output: calls.append(1))
    merged = TekkenRollout(pipe, batch_size=2, num_inference_steps=3, guidance_scale=2.0)
    generator = torch.Generator().manual_seed(4)
    merged.append(context_latents, context_bits, generator)
    fast = merged.generate(future_bits, generator)
    assert len(calls) == 6 * 3  # the context and every finished frame ride along with the next frame's first step
    hook.remove()
    separate = TekkenRollout(pipe, batch_size=2, num_inference_steps=3, guidance_scale=2.0)
    generator = torch.Generator().manual_seed(4)
    separate.append(context_latents, context_bits, generator)
    separate.flush()
    frames = []
    for t in range(6):
        frames.append(separate.next_frame(future_bits[:, t : t + 1], generator))
        separate.flush()  # its own pass, as before the merge
    torch.testing.assert_close(fast, torch.cat(frames, dim=1), rtol=1e-4, atol=1e-4)


def test_generate_counts_callback_steps_over_the_whole_call():
    pipe = make_pipe()
    context_latents, context_bits, future_bits = inputs(batch=1, frames=3)
    rollout = TekkenRollout(pipe, num_inference_steps=STEPS)
    rollout.append(context_latents, context_bits, None)
    seen = []

    def on_step(step, timestep, latents):
        seen.append((step, float(timestep)))
        return latents

    rollout.generate(future_bits, None, on_step=on_step)
    assert [step for step, _ in seen] == list(range(3 * STEPS))
    assert [timestep for _, timestep in seen] == [float(t) for t in rollout.timesteps] * 3


def test_renoising_goes_through_the_scheduler(monkeypatch):
    pipe = make_pipe()
    calls = []
    original = TekkenFlowMatchScheduler.add_context_noise

    def spy(self, latents, noise=None, generator=None, context_noise=None):
        calls.append((tuple(latents.shape), context_noise))
        return original(self, latents, noise=noise, generator=generator, context_noise=context_noise)

    monkeypatch.setattr(TekkenFlowMatchScheduler, "add_context_noise", spy)
    context_latents, context_bits, future_bits = inputs(batch=1, frames=2)
    pipe(
        context_latents=context_latents,
        context_actions=context_bits[0],
        actions=future_bits[0],
        num_inference_steps=1,
        output_type="latent",
    )
    # The context, then each generated frame; `None` is passed through for the scheduler to resolve.
    assert calls == [((1, 3, 4, 4, 4), None), ((1, 1, 4, 4, 4), None), ((1, 1, 4, 4, 4), None)]
    session = pipe.start_session(context_latents=context_latents, num_inference_steps=1, context_noise=0.05)
    session.step("f")
    assert calls[-2:] == [((1, 3, 4, 4, 4), 0.05), ((1, 1, 4, 4, 4), 0.05)]


def test_context_noise_none_means_the_schedulers_value():
    pipe = make_pipe()
    quiet = TekkenWorldModelPipeline(
        transformer=pipe.transformer,
        scheduler=TekkenFlowMatchScheduler.from_config(pipe.scheduler.config, context_noise=0.05),
    )
    quiet.set_progress_bar_config(disable=True)
    context_latents, context_bits, future_bits = inputs(batch=1)

    def run(pipeline, **kwargs):
        return pipeline(
            context_latents=context_latents,
            context_actions=context_bits[0],
            actions=future_bits[0],
            num_inference_steps=STEPS,
            generator=torch.Generator().manual_seed(1),
            output_type="latent",
            **kwargs,
        ).frames

    np.testing.assert_array_equal(run(quiet).numpy(), run(pipe, context_noise=0.05).numpy())
    assert not torch.equal(run(pipe), run(pipe, context_noise=0.05))


def test_evaluation_uses_only_public_pipeline_api():
    import tekken_diffusers.evaluation.world_model as world_model

    source = Path(world_model.__file__).read_text(encoding="utf-8")
    assert not re.search(r"\b(pipe|rollout)\._\w", source) and "_Rollout" not in source


@torch.no_grad()
def test_steps_default_to_the_schedulers_default_inference_steps(tmp_path):
    """`num_inference_steps=None` (the default of `__call__`, sessions and the rollout) samples with the scheduler's
    `default_inference_steps`, saved with the pipeline; a scheduler saved before that setting existed gives 8, the
    earlier default."""
    pipe = make_pipe()
    context_latents, context_bits, future_bits = inputs(batch=1, frames=2)
    pipe.scheduler = TekkenFlowMatchScheduler.from_config(pipe.scheduler.config, default_inference_steps=3)
    pipe(context_latents=context_latents, context_actions=list(context_bits), actions=list(future_bits),
         output_type="latent")  # fmt: skip
    assert pipe.num_timesteps == 2 * 3
    session = pipe.start_session(context_latents=context_latents, context_actions=context_bits[0])
    assert session.rollout.num_inference_steps == 3
    assert TekkenRollout(pipe).num_inference_steps == 3
    pipe(context_latents=context_latents, actions=list(future_bits), num_inference_steps=2, output_type="latent")
    assert pipe.num_timesteps == 2 * 2  # an explicit count wins
    pipe.save_pretrained(tmp_path)
    assert TekkenWorldModelPipeline.from_pretrained(tmp_path).default_inference_steps == 3
    config = tmp_path / "scheduler" / "scheduler_config.json"
    config.write_text(re.sub(r'\s*"default_inference_steps": 3,?', "", config.read_text()))
    assert TekkenWorldModelPipeline.from_pretrained(tmp_path).default_inference_steps == 8
    with pytest.raises(ValueError, match="default_inference_steps must be an integer >= 1"):
        TekkenFlowMatchScheduler(default_inference_steps=0)


def test_a_capped_cache_writes_each_frame_in_its_own_pass():
    """With `attention_window` below the trained windows, writing a frame in the next frame's first pass would let
    that pass see frames the capped cache no longer keeps; the rollout then writes each frame on its own (as the
    explicit flush below does), and the cache holds no autograd graph even with gradients enabled."""
    pipe = build_random_pipeline("tiny", seed=0, vae=None, prev_frame_conditioning=True)
    pipe.set_progress_bar_config(disable=True)
    context_latents, context_bits, future_bits = inputs(batch=1, context=5, frames=4)
    capped = TekkenRollout(pipe, batch_size=1, num_inference_steps=2, attention_window=1)
    assert not capped.merge_cache_writes and TekkenRollout(pipe).merge_cache_writes
    generator = torch.Generator().manual_seed(4)
    capped.append(context_latents, context_bits, generator)
    fast = capped.generate(future_bits, generator)
    reference = TekkenRollout(pipe, batch_size=1, num_inference_steps=2, attention_window=1)
    generator = torch.Generator().manual_seed(4)
    reference.append(context_latents, context_bits, generator)
    reference.flush()
    frames = []
    for t in range(4):
        frames.append(reference.next_frame(future_bits[:, t : t + 1], generator))
        reference.flush()
    torch.testing.assert_close(fast, torch.cat(frames, dim=1), rtol=1e-5, atol=1e-5)
    session = pipe.start_session(context_latents=context_latents, context_actions=context_bits[0])
    session.step(0)
    keys, _ = session.cache.get(0)  # reading the cache writes the queued frame, outside autograd
    assert not keys.requires_grad and keys.grad_fn is None


@torch.no_grad()
def test_a_frame_embeds_its_conditions_once_for_all_its_denoising_passes(monkeypatch):
    """The rollout computes every pass's condition and adaLN modulation of a frame in one `condition` call (the
    modulation weights read once per frame); the frames equal those of passes that each embed their own."""
    pipe = build_random_pipeline("tiny", seed=0, vae=None, prev_frame_conditioning=True)
    pipe.set_progress_bar_config(disable=True)
    for block in pipe.transformer.transformer_blocks:  # non-zero modulations, as in a trained model
        torch.nn.init.normal_(block.adaLN_modulation.weight, std=0.2)
    context_latents, context_bits, future_bits = inputs(frames=5)
    conditions, modulations = [], []
    hooks = [block.adaLN_modulation.register_forward_hook(lambda *args: modulations.append(1))
             for block in pipe.transformer.transformer_blocks]  # fmt: skip
    original = pipe.transformer.condition
    monkeypatch.setattr(pipe.transformer, "condition", lambda *a, **k: conditions.append(1) or original(*a, **k))
    ahead = TekkenRollout(pipe, batch_size=2, num_inference_steps=3, guidance_scale=2.0)
    generator = torch.Generator().manual_seed(4)
    ahead.append(context_latents, context_bits, generator)
    frames = ahead.generate(future_bits, generator)
    assert len(conditions) == 5 and not modulations
    for hook in hooks:
        hook.remove()

    class EachPassEmbedsItsOwn:
        def frames(self, start, stop):
            return None  # forward(conditioning=None): the pass embeds its own

    monkeypatch.setattr(TekkenRollout, "_conditioning", lambda self, sigmas, bits: EachPassEmbedsItsOwn())
    each = TekkenRollout(pipe, batch_size=2, num_inference_steps=3, guidance_scale=2.0)
    generator = torch.Generator().manual_seed(4)
    each.append(context_latents, context_bits, generator)
    torch.testing.assert_close(frames, each.generate(future_bits, generator), rtol=1e-5, atol=1e-5)
