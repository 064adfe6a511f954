"""`TekkenOpponentPolicy`: player 2's next input (the policy) and the input behind a frame (the inverse model)."""

from __future__ import annotations

import pytest
import torch

from tekken_diffusers import TekkenOpponentPolicy
from tekken_diffusers.actions import bits_to_ids, ids_to_bits

pytestmark = pytest.mark.usefixtures("single_thread")

CONTEXT = 3


def tiny_policy(seed: int = 0, **overrides) -> TekkenOpponentPolicy:
    torch.manual_seed(seed)
    config = dict(in_channels=4, sample_size=(4, 4), context_frames=CONTEXT, hidden_dim=16, conv_channels=8)
    return TekkenOpponentPolicy(**{**config, **overrides}).eval()


def history(batch: int = 2, frames: int = 5, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, frames, 4, 4, 4, generator=generator)
    ids = torch.randint(0, 256, (batch, frames, 2), generator=generator)
    return latents, ids_to_bits(ids)


@pytest.fixture(scope="module")
def policy():
    return tiny_policy()


def test_output_shapes(policy):
    latents, bits = history(batch=2, frames=5)
    with torch.no_grad():
        assert policy(latents, bits).shape == (2, 256)
        assert policy.infer_logits(latents).shape == (2, 4, 256)
    assert policy.infer_inputs(latents).shape == (2, 5, 8)
    assert policy.sample(latents, bits, temperature=0).shape == (2, 8)
    assert policy.infer_inputs(latents).dtype == policy.sample(latents, bits).dtype == torch.float32


def test_bad_shapes_are_refused(policy):
    latents, bits = history(frames=4)
    with pytest.raises(ValueError, match=r"expected latents \(B, T, C, h, w\) and actions \(B, T', 2, 8\)"):
        policy(latents, bits[:1])
    with pytest.raises(ValueError, match=r"actions \(B, T', 2, 8\)"):
        policy(latents, bits[:, :, 0])
    with pytest.raises(ValueError, match=r"actions \(B, T', 2, 8\)"):
        policy(latents, bits[:, :0])
    with pytest.raises(ValueError, match=r"expected latents"):
        policy(latents[:, 0], bits[:, 0])
    with pytest.raises(ValueError, match="with T >= 2"):
        policy.infer_logits(latents[:, :1])


def test_only_the_last_context_frames_are_read(policy):
    latents, bits = history(frames=6)
    with torch.no_grad():
        full = policy(latents, bits)
        torch.testing.assert_close(policy(latents[:, -CONTEXT:], bits[:, -CONTEXT:]), full, rtol=0, atol=1e-6)
        older = latents.clone()
        older[:, : 6 - CONTEXT] += 5.0
        torch.testing.assert_close(policy(older, bits), full, rtol=0, atol=1e-6)
        newer = latents.clone()
        newer[:, -1] += 5.0
        assert (policy(newer, bits) - full).abs().max() > 1e-4
        flipped = bits.clone()
        flipped[:, -1, 1] = 1 - flipped[:, -1, 1]  # player 2's last input counts too
        assert (policy(latents, flipped) - full).abs().max() > 1e-4


@pytest.mark.parametrize("frames", [1, 2])
def test_a_short_history_repeats_its_first_frame_with_nothing_pressed(policy, frames):
    latents, bits = history(frames=frames)
    missing = CONTEXT - frames
    padded_latents = torch.cat([latents[:, :1].repeat(1, missing, 1, 1, 1), latents], dim=1)
    padded_bits = torch.cat([torch.zeros(2, missing, 2, 8), bits], dim=1)
    with torch.no_grad():
        short = policy(latents, bits)
        torch.testing.assert_close(short, policy(padded_latents, padded_bits), rtol=0, atol=1e-6)
        # the padding is not the first frame's inputs repeated
        repeated_bits = torch.cat([bits[:, :1].repeat(1, missing, 1, 1), bits], dim=1)
        assert (short - policy(padded_latents, repeated_bits)).abs().max() > 1e-4


def test_infer_inputs_is_nothing_for_frame_0_then_the_inverse_models_best_guess(policy):
    latents, _ = history(frames=5)
    bits = policy.infer_inputs(latents)
    assert (bits[:, 0] == 0).all()
    with torch.no_grad():
        best = policy.infer_logits(latents).argmax(-1)
    torch.testing.assert_close(bits[:, 1:], ids_to_bits(best).float(), rtol=0, atol=0)
    assert bits_to_ids(bits[:, 1:]).unique().numel() > 1  # a random model does not guess one input everywhere
    assert (policy.infer_inputs(latents[:, :1]) == 0).all()  # one frame: nothing to read


def test_sample_at_temperature_0_is_the_most_likely_input(policy):
    latents, bits = history(batch=8, frames=4)
    with torch.no_grad():
        best = policy(latents, bits).argmax(-1)
    expected = ids_to_bits(best).float()
    torch.testing.assert_close(policy.sample(latents, bits, temperature=0), expected, rtol=0, atol=0)
    # no generator needed, and none consumed
    generator = torch.Generator().manual_seed(3)
    state = generator.get_state()
    torch.testing.assert_close(policy.sample(latents, bits, generator, temperature=0.0), expected, rtol=0, atol=0)
    assert torch.equal(generator.get_state(), state)


def test_sampling_is_reproducible_with_a_seeded_generator(policy):
    latents, bits = history(batch=16, frames=4)

    def draw(seed, temperature=1.0):
        return policy.sample(latents, bits, torch.Generator().manual_seed(seed), temperature)

    first = draw(0)
    assert ((first == 0) | (first == 1)).all()
    torch.testing.assert_close(draw(0), first, rtol=0, atol=0)
    assert not torch.equal(draw(1), first)  # 16 draws from ~256 near-equal inputs
    # a hot sample is not the argmax everywhere
    assert not torch.equal(draw(0, temperature=5.0), policy.sample(latents, bits, temperature=0))


def test_a_peaked_policy_samples_its_peak_and_temperature_flattens_it():
    policy = tiny_policy()
    with torch.no_grad():
        policy.policy_head[-1].bias.zero_()
        policy.policy_head[-1].weight.zero_()
        policy.policy_head[-1].bias[37] = 8.0  # p ≈ e^8 / (e^8 + 255) ≈ 0.92 at temperature 1
    latents, bits = history(batch=64, frames=2)
    generator = torch.Generator().manual_seed(0)
    cold = bits_to_ids(policy.sample(latents, bits, generator, temperature=0.25))
    assert (cold == 37).all()
    hot = bits_to_ids(policy.sample(latents, bits, generator, temperature=4.0))  # p(37) ≈ 0.03
    assert (hot == 37).float().mean() < 0.3


def test_save_and_load_keep_the_weights_and_the_temperature(tmp_path):
    policy = tiny_policy(seed=1, temperature=0.5)
    policy.save_pretrained(tmp_path / "opponent")
    loaded = TekkenOpponentPolicy.from_pretrained(tmp_path / "opponent").eval()
    assert loaded.config.temperature == 0.5 and loaded.config.context_frames == CONTEXT
    assert tuple(loaded.config.sample_size) == (4, 4)
    latents, bits = history()
    with torch.no_grad():
        torch.testing.assert_close(loaded(latents, bits), policy(latents, bits), rtol=0, atol=0)
        torch.testing.assert_close(loaded.infer_logits(latents), policy.infer_logits(latents), rtol=0, atol=0)
    other = tiny_policy(seed=2)
    with torch.no_grad():
        assert (other(latents, bits) - policy(latents, bits)).abs().max() > 1e-4  # the seed matters


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_actions=7), "inputs are 8-bit vectors, got 7"),
        (dict(num_actions=16), "inputs are 8-bit vectors, got 16"),
        (dict(context_frames=0), "context_frames must be >= 1, got 0"),
        (dict(temperature=-0.1), "temperature must be >= 0, got -0.1"),
    ],
)
def test_bad_configs_are_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny_policy(**overrides)


def test_odd_latent_sizes_and_one_context_frame_work():
    policy = tiny_policy(sample_size=(5, 3), context_frames=1)
    latents = torch.randn(2, 3, 4, 5, 3)
    bits = torch.zeros(2, 3, 2, 8)
    with torch.no_grad():
        assert policy(latents, bits).shape == (2, 256)
    assert policy.infer_inputs(latents).shape == (2, 3, 8)


def test_a_policy_that_reads_player_1s_input_needs_it_and_uses_it():
    policy = tiny_policy(reads_player_1_input=True)
    latents, actions = history()
    with pytest.raises(ValueError, match=r"player_1_input: this policy reads player 1's input .* got None"):
        policy(latents, actions)
    with pytest.raises(ValueError, match=r"player_1_input: .*got \(2, 7\)"):
        policy(latents, actions, torch.zeros(2, 7))
    forward, back = ids_to_bits(torch.tensor([16, 16])), ids_to_bits(torch.tensor([32, 32]))
    assert not torch.allclose(policy(latents, actions, forward), policy(latents, actions, back))
    # a policy that does not read it ignores it
    plain = tiny_policy()
    torch.testing.assert_close(plain(latents, actions, forward), plain(latents, actions), rtol=0, atol=0)


def test_a_longer_input_history_reads_older_inputs_and_only_those():
    """`input_frames` > `context_frames`: the inputs of the older frames count, their latents do not, and nothing
    before the last `input_frames` counts."""
    policy = tiny_policy(input_frames=5)
    assert policy.num_input_frames == 5 and policy.config.input_frames == 5
    latents, bits = history(frames=7)
    with torch.no_grad():
        full = policy(latents, bits)
        # the latents are read as before: the last CONTEXT frames only, whatever number of inputs comes with them
        torch.testing.assert_close(policy(latents[:, -CONTEXT:], bits), full, rtol=0, atol=1e-6)
        older = bits.clone()
        older[:, 7 - 5] = 1 - older[:, 7 - 5]  # the oldest input it reads (beyond the latent frames)
        assert (policy(latents, older) - full).abs().max() > 1e-4
        oldest = bits.clone()
        oldest[:, : 7 - 5] = 1 - oldest[:, : 7 - 5]  # before the last 5: not read
        torch.testing.assert_close(policy(latents, oldest), full, rtol=0, atol=1e-6)
        # a short history of inputs is padded with nothing pressed
        padded = torch.cat([torch.zeros(2, 2, 2, 8), bits[:, -3:]], dim=1)
        torch.testing.assert_close(policy(latents, bits[:, -3:]), policy(latents, padded), rtol=0, atol=1e-6)


def test_input_frames_defaults_to_context_frames_with_the_same_weights_and_outputs():
    """Policies saved before `input_frames` existed load as they were: same parameter shapes, same outputs."""
    plain, explicit = tiny_policy(), tiny_policy(input_frames=CONTEXT)
    assert plain.num_input_frames == CONTEXT and plain.config.input_frames is None
    shapes = {name: tensor.shape for name, tensor in plain.state_dict().items()}
    assert shapes == {name: tensor.shape for name, tensor in explicit.state_dict().items()}
    explicit.load_state_dict(plain.state_dict())
    latents, bits = history(frames=6)
    with torch.no_grad():
        torch.testing.assert_close(explicit(latents, bits), plain(latents, bits), rtol=0, atol=0)
    with pytest.raises(ValueError, match=rf"input_frames must be >= context_frames \({CONTEXT}\), got 2"):
        tiny_policy(input_frames=2)
