"""Growing a trained transformer: the grown model computes the same outputs, keeps each block's window, and trains."""

import pytest
import torch

from tekken_diffusers.models import TekkenWorldModelTransformer, grow_transformer
from tekken_diffusers.models.growth import grown_layer_positions

pytestmark = pytest.mark.usefixtures("single_thread")  # tiny models: conftest.single_thread


def trained_stand_in(seed: int = 0, **overrides) -> TekkenWorldModelTransformer:
    """A tiny model with every weight (zero-initialised gates included) drawn at random, as if trained."""
    torch.manual_seed(seed)
    model = TekkenWorldModelTransformer.from_preset("tiny", num_layers=4, **overrides).eval()
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return model


def inputs(frames: int = 9, seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    latents = torch.randn(2, frames, 4, 4, 4, generator=generator)
    sigmas = torch.rand(2, frames, generator=generator)
    actions = torch.randint(0, 2, (2, frames, 8), generator=generator).bool()
    return latents, sigmas, actions


@pytest.mark.parametrize(
    ("num_layers", "mlp_ratio"), [(8, None), (6, None), (5, None), (None, 8.0), (7, 6.0), (4, 4.0)]
)
@torch.no_grad()
def test_a_grown_model_computes_what_the_trained_one_did(num_layers, mlp_ratio):
    model = trained_stand_in()
    grown = grow_transformer(model, num_layers=num_layers, mlp_ratio=mlp_ratio).eval()
    assert grown.config.num_layers == (num_layers or 4) and grown.config.mlp_ratio == (mlp_ratio or 4.0)
    assert sum(p.numel() for p in grown.parameters()) >= sum(p.numel() for p in model.parameters())
    # 9 frames: beyond the tiny preset's local window (3) and global window (6), so a block moved to a layer with
    # the other window would change the outputs.
    latents, sigmas, actions = inputs(frames=9)
    torch.testing.assert_close(grown(latents, sigmas, actions).sample, model(latents, sigmas, actions).sample)
    # and with the KV cache, frame by frame
    cache = grown.make_kv_cache()
    last = None
    for frame in range(latents.shape[1]):
        last = grown(latents[:, frame : frame + 1], sigmas[:, frame : frame + 1], actions[:, frame : frame + 1],
                     kv_cache=cache, update_kv_cache=True).sample  # fmt: skip
    torch.testing.assert_close(last, model(latents, sigmas, actions).sample[:, -1:], atol=1e-5, rtol=1e-5)


def test_trained_blocks_keep_their_attention_window_and_spread_evenly():
    assert grown_layer_positions(6, 12, 3) == [0, 2, 4, 6, 8, 10]  # global 0, 3 -> 0, 6
    assert grown_layer_positions(4, 8, 2) == [0, 3, 4, 7]
    assert grown_layer_positions(6, 6, 3) == list(range(6))
    for old, new, every in ((6, 9, 3), (4, 5, 2), (4, 7, 4), (6, 12, 0)):
        positions = grown_layer_positions(old, new, every)
        assert positions == sorted(set(positions)) and positions[-1] < new
        assert all((p % every == 0) == (i % every == 0) for i, p in enumerate(positions)) if every else True


def test_the_grown_capacity_trains():
    """New blocks and units start switched off but get gradients: one optimiser step changes what they compute."""
    model = trained_stand_in()
    grown = grow_transformer(model, num_layers=6, mlp_ratio=6.0).train()
    latents, sigmas, actions = inputs(frames=4)
    before = grown(latents, sigmas, actions).sample.detach()
    optimizer = torch.optim.SGD(grown.parameters(), lr=0.1)
    for _ in range(2):  # step 1 opens the zero gates and output weights; step 2 moves what they gate
        optimizer.zero_grad()
        grown(latents, sigmas, actions).sample.square().mean().backward()
        optimizer.step()
    assert grown_layer_positions(4, 6, 2) == [0, 3, 4, 5]
    new_block = grown.transformer_blocks[1]
    assert new_block.adaLN_modulation.weight.abs().sum() > 0
    hidden = 4 * grown.config.num_attention_heads * grown.config.attention_head_dim
    assert grown.transformer_blocks[0].ff.net[2].weight[:, hidden:].abs().sum() > 0
    assert not torch.allclose(grown(latents, sigmas, actions).sample, before)


def test_shrinking_or_losing_the_windows_is_refused():
    model = trained_stand_in()
    with pytest.raises(ValueError, match="cannot shrink the model from 4 to 3 layers"):
        grow_transformer(model, num_layers=3)
    with pytest.raises(ValueError, match="cannot shrink the MLPs from 4.0 to 2.0"):
        grow_transformer(model, mlp_ratio=2.0)
