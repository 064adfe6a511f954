"""The checkpoint contents both trainers share (`tekken_diffusers.training_utils`): the EMA saved beside the model."""

from __future__ import annotations

import json

import torch
from diffusers.training_utils import EMAModel

from tekken_diffusers.models import TekkenWorldModelTransformer
from tekken_diffusers.training_utils import EMA_STATE_FILE, load_ema, save_ema


def stepped_ema(seed: int) -> EMAModel:
    """An EMA of a tiny transformer that has taken three steps, so its weights and counters are not the defaults."""
    torch.manual_seed(seed)
    model = TekkenWorldModelTransformer.from_preset("tiny")
    ema = EMAModel(model.parameters(), decay=0.9, model_cls=TekkenWorldModelTransformer, model_config=model.config)
    for _ in range(3):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
        ema.step(model.parameters())
    return ema


def assert_same_ema(found: EMAModel, expected: EMAModel) -> None:
    found_state, expected_state = found.state_dict(), expected.state_dict()
    for key in expected_state:
        if key != "shadow_params":
            assert found_state[key] == expected_state[key], key
    for found_param, expected_param in zip(found.shadow_params, expected.shadow_params, strict=True):
        assert torch.equal(found_param, expected_param)


def test_ema_round_trip(tmp_path):
    ema = stepped_ema(0)
    save_ema(ema, tmp_path, "transformer")
    assert json.loads((tmp_path / EMA_STATE_FILE).read_text())["optimization_step"] == 3
    # the EMA folder is a usable model with a clean config
    loaded_model = TekkenWorldModelTransformer.from_pretrained(tmp_path / "transformer_ema")
    assert "optimization_step" not in loaded_model.config
    other = stepped_ema(1)
    load_ema(other, tmp_path, "transformer")
    assert_same_ema(other, ema)


def test_checkpoints_with_the_counters_in_the_ema_config_still_load(tmp_path):
    """World-model checkpoints written with diffusers' `EMAModel.save_pretrained` (no ema_state.json) resume."""
    ema = stepped_ema(0)
    ema.save_pretrained(str(tmp_path / "transformer_ema"))
    other = stepped_ema(1)
    load_ema(other, tmp_path, "transformer")
    assert_same_ema(other, ema)
