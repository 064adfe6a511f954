"""Growing a trained world model into a larger one that starts out computing exactly the same outputs.

A model that has stopped improving at its size can be continued at a larger one without starting over: the grown
model's extra capacity starts switched off, so training resumes from the trained model's predictions, not from noise.

- **Depth** (`num_layers`): the trained blocks keep their order and their attention window (a global block stays at a
  global layer index, a local one at a local index) and spread evenly over the new depth; each new block is a copy of
  the trained block before it with the gate rows of its adaLN modulation set to zero, so it adds nothing until
  training opens its gates (adaLN-Zero, as every block of a fresh model starts).
- **MLP width** (`mlp_ratio`): each MLP gets new hidden units with random input weights (the model's Xavier
  initialisation) and zero output weights, so they add nothing until trained.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from .transformer_tekken import TekkenWorldModelTransformer

logger = logging.getLogger(__name__)

__all__ = ["grow_transformer", "grown_layer_positions"]


def _is_global(layer: int, global_every: int) -> bool:
    return global_every > 0 and layer % global_every == 0


def grown_layer_positions(num_layers: int, new_num_layers: int, global_every: int) -> list[int]:
    """
    Where each of `num_layers` trained blocks goes among `new_num_layers`: in order, spread evenly, each at an index
    with the same attention window as its own (layer `i` is global iff `i % global_every == 0`). Where the even spread
    runs out of room, the trained blocks keep their own indices (the windows' pattern repeats, so that always fits).

    Raises:
        ValueError: when `new_num_layers < num_layers`.
    """
    if new_num_layers < num_layers:
        raise ValueError(f"num_layers: cannot shrink the model from {num_layers} to {new_num_layers} layers")

    def fits(old: int, start: int) -> bool:  # can blocks old.. still be placed at or after index `start`?
        j = start
        for i in range(old, num_layers):
            while j < new_num_layers and _is_global(j, global_every) != _is_global(i, global_every):
                j += 1
            if j == new_num_layers:
                return False
            j += 1
        return True

    positions: list[int] = []
    for i in range(num_layers):
        j = max(positions[-1] + 1 if positions else 0, round(i * new_num_layers / num_layers))
        while j < new_num_layers and not (
            _is_global(j, global_every) == _is_global(i, global_every) and fits(i + 1, j + 1)
        ):
            j += 1
        if j >= new_num_layers:
            return list(range(num_layers))
        positions.append(j)
    return positions


@torch.no_grad()
def grow_transformer(
    model: TekkenWorldModelTransformer,
    num_layers: int | None = None,
    mlp_ratio: float | None = None,
    seed: int = 0,
) -> TekkenWorldModelTransformer:
    """
    A larger copy of `model` whose outputs equal `model`'s until it is trained (see the module docstring).

    Args:
        model ([`TekkenWorldModelTransformer`]): The trained model (left unchanged).
        num_layers (`int`, *optional*): The new depth (at least the current one); `None` keeps it.
        mlp_ratio (`float`, *optional*): The new MLP hidden width as a multiple of the model width (at least the
            current one); `None` keeps it.
        seed (`int`, defaults to 0): Seed of the new MLP units' random input weights.

    Returns:
        [`TekkenWorldModelTransformer`] in fp32 with the grown config.

    Raises:
        ValueError: when asked to shrink.
    """
    config = dict(model.config)
    old_layers, old_ratio = config["num_layers"], float(config["mlp_ratio"])
    new_layers = old_layers if num_layers is None else int(num_layers)
    new_ratio = old_ratio if mlp_ratio is None else float(mlp_ratio)
    if new_ratio < old_ratio:
        raise ValueError(f"mlp_ratio: cannot shrink the MLPs from {old_ratio} to {new_ratio}")
    positions = grown_layer_positions(old_layers, new_layers, config["global_every"])

    config.update(num_layers=new_layers, mlp_ratio=new_ratio)
    config = {key: value for key, value in config.items() if not key.startswith("_")}
    grown = TekkenWorldModelTransformer.from_config(config)  # fp32
    source = TekkenWorldModelTransformer.from_config(model.config)
    source.load_state_dict({key: value.float() for key, value in model.state_dict().items()})

    # Everything but the blocks is the same shape: copy it over.
    block_keys = {key for key in source.state_dict() if key.startswith("transformer_blocks.")}
    shared = {key: value for key, value in source.state_dict().items() if key not in block_keys}
    missing, unexpected = grown.load_state_dict(shared, strict=False)
    if unexpected or not all(key.startswith("transformer_blocks.") for key in missing):
        raise RuntimeError(f"grow_transformer: parameters that do not match the grown model: {missing + unexpected}")

    dim = grown.transformer_blocks[0].adaLN_modulation.in_features
    generator = torch.Generator().manual_seed(seed)
    old_of_new = {}  # new index -> the trained block it takes its weights from
    for new_index in range(new_layers):
        preceding = [old for old, position in enumerate(positions) if position <= new_index]
        old_of_new[new_index] = preceding[-1] if preceding else 0
    for new_index, block in enumerate(grown.transformer_blocks):
        trained = source.transformer_blocks[old_of_new[new_index]]
        _copy_block(trained, block, generator)
        if new_index not in positions:  # a new block: its gates (rows 2D:3D and 5D:6D) start at zero
            for start in (2 * dim, 5 * dim):
                block.adaLN_modulation.weight[start : start + dim] = 0
                block.adaLN_modulation.bias[start : start + dim] = 0
    logger.info(
        "grew the transformer from %d to %d layers (trained blocks at %s) and MLP ratio %g to %g: %.2f M -> %.2f M "
        "parameters",
        old_layers,
        new_layers,
        positions,
        old_ratio,
        new_ratio,
        sum(p.numel() for p in model.parameters()) / 1e6,
        sum(p.numel() for p in grown.parameters()) / 1e6,
    )
    return grown


def _copy_block(trained: nn.Module, block: nn.Module, generator: torch.Generator) -> None:
    """Copy `trained` into `block`; MLP units beyond the trained ones get random inputs and zero outputs."""
    trained_state = trained.state_dict()
    for name, target in block.state_dict().items():
        value = trained_state[name]
        if target.shape == value.shape:
            target.copy_(value)
    fc_in, fc_out = _mlp_linears(block)
    trained_in, trained_out = _mlp_linears(trained)
    hidden = trained_in.out_features
    if fc_in.out_features > hidden:
        bound = (6.0 / (fc_in.in_features + fc_in.out_features)) ** 0.5  # xavier_uniform_, as the model initialises
        fc_in.weight.uniform_(-bound, bound, generator=generator)
        fc_in.bias.zero_()
        fc_out.weight.zero_()
    fc_in.weight[:hidden] = trained_in.weight
    fc_in.bias[:hidden] = trained_in.bias
    fc_out.weight[:, :hidden] = trained_out.weight
    fc_out.bias.copy_(trained_out.bias)


def _mlp_linears(block: nn.Module) -> tuple[nn.Linear, nn.Linear]:
    linears = [module for module in block.ff.modules() if isinstance(module, nn.Linear)]
    if len(linears) != 2:
        raise ValueError(f"expected an MLP of two linear layers, found {len(linears)}")
    return linears[0], linears[1]
