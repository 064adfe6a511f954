"""`tekken-convert-owl-wms` against a checkpoint written by the original trainer (tests/fixtures/owl-wms-checkpoint):
the converted model reproduces the original network's outputs, EMA weights by default, and bad inputs give one-line
errors."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from tekken_diffusers.actions import ids_to_bits
from tekken_diffusers.cli.convert_owl_wms import (
    ConversionError,
    convert_owl_wms_checkpoint,
    main,
    owl_wms_to_transformer_config,
)
from tekken_diffusers.models.transformer_tekken import (
    TekkenWorldModelTransformer,
    get_owl_wms_rotary_angles,
    owl_wms_timestep_features,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "owl-wms-checkpoint"
CHECKPOINT, CONFIG = FIXTURE / "step_100.pt", FIXTURE / "config.yml"
# The fixture's README measured <= 6e-7 between equivalent attention kernels; the issue asks for 1e-4.
TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def reference() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "reference.safetensors")


@pytest.fixture(scope="module")
def fp32_model() -> TekkenWorldModelTransformer:
    return convert_owl_wms_checkpoint(CHECKPOINT, CONFIG, timestep_features_dtype="float32")


def bits(action_ids: torch.Tensor) -> torch.Tensor:
    return ids_to_bits(action_ids.long()).float()


def max_diff(model: TekkenWorldModelTransformer, reference: dict, key: str, **kwargs) -> float:
    with torch.no_grad():
        sample = model(reference["x"], reference["t"], bits(reference["action_ids"]), **kwargs).sample
    return (sample - reference[key]).abs().max().item()


def test_fixture_buttons_are_the_bits_of_the_ids_lsb_first(reference):
    # The original's slot i is bit i of the id; ours are MSB first, so the conversion flips the slots.
    assert torch.equal(bits(reference["action_ids"]).flip(-1), reference["buttons"].float())


def test_full_forward_reproduces_the_original(fp32_model, reference):
    assert max_diff(fp32_model, reference, "out") <= TOLERANCE


def test_has_controls_maps_to_the_action_mask(fp32_model, reference):
    assert max_diff(fp32_model, reference, "out_has_controls", action_mask=reference["has_controls"]) <= TOLERANCE


def test_bf16_timestep_features_are_the_default_and_reproduce_the_original(reference):
    model = convert_owl_wms_checkpoint(CHECKPOINT, CONFIG)
    assert model.config.timestep_features_dtype == "bfloat16"
    assert max_diff(model, reference, "out_bf16_sincos") <= TOLERANCE


def test_online_weights_on_request(reference):
    model = convert_owl_wms_checkpoint(CHECKPOINT, CONFIG, weights="model", timestep_features_dtype="float32")
    assert max_diff(model, reference, "out_model_weights") <= TOLERANCE
    assert max_diff(model, reference, "out") > 0.1  # the fixture's EMA weights differ on purpose


def test_intermediate_values_match(fp32_model, reference):
    t, action_ids = reference["t"].reshape(-1), reference["action_ids"]
    features = owl_wms_timestep_features(t, 512, torch.float32)
    with torch.no_grad():
        t_emb = fp32_model.time_embed(features).view(2, 8, -1)
        action_emb = fp32_model.action_embed(bits(action_ids))
    torch.testing.assert_close(t_emb, reference["t_emb"], atol=1e-5, rtol=0)
    torch.testing.assert_close(action_emb, reference["action_emb"], atol=1e-6, rtol=0)
    cos, sin = get_owl_wms_rotary_angles(0, 16, 4, 6, fp32_model.rope_axes_dim, 16, torch.device("cpu"))
    rotated = 2 * cos.shape[-1]  # the original's last quarter of angles is zero (no rotation): ours leaves it out
    torch.testing.assert_close(cos.flatten(0, 1), reference["rope_cos"][:, : rotated // 2], atol=1e-6, rtol=0)
    torch.testing.assert_close(sin.flatten(0, 1), reference["rope_sin"][:, : rotated // 2], atol=1e-6, rtol=0)
    assert torch.all(reference["rope_cos"][:, rotated // 2 :] == 1) and torch.all(reference["rope_sin"][:, 6:] == 0)


@pytest.mark.parametrize(("key", "cache_global_window"), [("step_out_masked", None), ("step_out_decoding", 16)])
def test_cached_step_reproduces_the_original(reference, key, cache_global_window):
    # step_out_masked: windows as in training (our cache); step_out_decoding: the original sampler's decoding mode,
    # where global layers attend to the whole cache.
    model = convert_owl_wms_checkpoint(
        CHECKPOINT, CONFIG, timestep_features_dtype="float32", cache_global_window=cache_global_window
    )
    cache = model.make_kv_cache()
    with torch.no_grad():
        prefill = model(
            reference["x"], reference["t"], bits(reference["action_ids"]), kv_cache=cache, update_kv_cache=True
        ).sample
        step = model(reference["step_x"], reference["step_t"], bits(reference["step_action_ids"]), kv_cache=cache)
    assert (prefill - reference["out"]).abs().max().item() <= TOLERANCE
    assert (step.sample - reference[key]).abs().max().item() <= TOLERANCE


def test_cli_writes_a_transformer_folder_with_the_ema_weights_by_default(tmp_path, reference):
    out = tmp_path / "transformer"
    assert main(["--checkpoint", str(CHECKPOINT), "--config", str(CONFIG), "--out", str(out)]) == 0
    model = TekkenWorldModelTransformer.from_pretrained(out).eval()
    assert max_diff(model, reference, "out_bf16_sincos") <= TOLERANCE
    assert json.loads((out / "config.json").read_text())["rope_style"] == "owl-wms"
    # An existing --out is refused unless --overwrite.
    with pytest.raises(SystemExit) as error:
        main(["--checkpoint", str(CHECKPOINT), "--config", str(CONFIG), "--out", str(out)])
    assert error.value.code == 2


def test_cli_writes_a_pipeline_folder_with_a_vae(tmp_path, reference):
    from tekken_diffusers import TekkenWorldModelPipeline

    from .conftest import tiny_dcae

    tiny_dcae(
        latent_channels=16, encoder_block_out_channels=(8, 16), decoder_block_out_channels=(8, 16)
    ).save_pretrained(tmp_path / "vae")
    out = tmp_path / "pipeline"
    argv = [
        "--checkpoint",
        str(CHECKPOINT),
        "--config",
        str(CONFIG),
        "--out",
        str(out),
        "--vae",
        str(tmp_path / "vae"),
    ]
    assert main([*argv, "--timestep-features-dtype", "float32"]) == 0
    pipe = TekkenWorldModelPipeline.from_pretrained(out)
    assert max_diff(pipe.transformer.eval(), reference, "out") <= TOLERANCE
    with torch.no_grad():
        video = pipe(
            context_latents=reference["x"][:1, :4], actions=[0, 1], num_inference_steps=1, output_type="latent"
        ).frames
    assert video.shape[-3:] == (16, 4, 6)


def test_cli_refuses_a_vae_with_other_latent_channels(tmp_path, caplog):
    from .conftest import tiny_dcae

    tiny_dcae().save_pretrained(tmp_path / "vae")  # 4 latent channels, the checkpoint has 16
    argv = ["--checkpoint", str(CHECKPOINT), "--config", str(CONFIG), "--out", str(tmp_path / "out")]
    with caplog.at_level(logging.ERROR):
        assert main([*argv, "--vae", str(tmp_path / "vae")]) == 2
    assert "latents have 4 channels, the checkpoint's model 16" in caplog.text
    assert not (tmp_path / "out").exists()


def write_checkpoint(tmp_path: Path, edit) -> Path:
    checkpoint = torch.load(CHECKPOINT, weights_only=True)
    edit(checkpoint)
    path = tmp_path / "step_bad.pt"
    torch.save(checkpoint, path)
    return path


def _drop_ema_key(checkpoint):
    del checkpoint["ema"]["ema_model.module._orig_mod.core.transformer.blocks.1.mlp.fc2.bias"]


def _add_ema_key(checkpoint):
    checkpoint["ema"]["ema_model.module._orig_mod.core.transformer.blocks.2.mlp.fc2.bias"] = torch.zeros(32)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (_drop_ema_key, "missing keys: transformer.blocks.1.mlp.fc2.bias"),
        (_add_ema_key, "unexpected keys: transformer.blocks.2.mlp.fc2.bias"),
        (lambda checkpoint: checkpoint.pop("ema"), "has no 'ema' weights"),
    ],
)
def test_bad_checkpoints_give_one_line_errors(tmp_path, caplog, edit, message):
    path = write_checkpoint(tmp_path, edit)
    with pytest.raises(ConversionError, match=message) as error:
        convert_owl_wms_checkpoint(path, CONFIG)
    assert "\n" not in str(error.value) and str(path) in str(error.value)
    with caplog.at_level(logging.ERROR):
        assert main(["--checkpoint", str(path), "--config", str(CONFIG), "--out", str(tmp_path / "out")]) == 2
    assert message in caplog.text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"d_model": 64}, r"has shape \(128, 512\) but the config \(d_model=64, .*does not match the weights"),
        ({"channels": 8}, r"proj_in.weight has shape \(32, 16\) but the config .*channels=8"),
        ({"n_layers": 3}, "missing keys: transformer.blocks.2"),
        ({"n_layers": 1}, "unexpected keys: transformer.blocks.1"),
        ({"tokens_per_frame": 322}, "tokens_per_frame=322 but sample_size 4x6 has 24"),
        ({"backbone": "mmdit"}, "backbone='mmdit' is not supported"),
    ],
)
def test_config_that_does_not_match_the_weights(tmp_path, caplog, change, message):
    config = yaml.safe_load(CONFIG.read_text())
    config["model"].update(change)
    path = tmp_path / "config.yml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ConversionError, match=message) as error:
        convert_owl_wms_checkpoint(CHECKPOINT, path)
    assert "\n" not in str(error.value)
    with caplog.at_level(logging.ERROR):
        assert main(["--checkpoint", str(CHECKPOINT), "--config", str(path), "--out", str(tmp_path / "out")]) == 2


def test_unreadable_files_give_one_line_errors(tmp_path):
    with pytest.raises(ConversionError, match="no such checkpoint file"):
        convert_owl_wms_checkpoint(tmp_path / "missing.pt", CONFIG)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConversionError, match=r"cannot be read with torch.load\(weights_only=True\)"):
        convert_owl_wms_checkpoint(garbage, CONFIG)


def test_original_options_compose_or_refuse():
    config = owl_wms_to_transformer_config(yaml.safe_load(CONFIG.read_text())["model"], cache_global_window=16)
    # With the copy path: a valid model (a new model trained with the original's arithmetic).
    copy = TekkenWorldModelTransformer(**config, prev_frame_conditioning=True, prediction_type="prev_frame_residual")
    latents = torch.randn(1, 3, 16, 4, 6)
    assert copy(latents, 0.5).sample.shape == latents.shape
    # Teacher forcing reproduces cached denoising only with the trained window.
    with pytest.raises(ValueError, match="cache_global_window = global_window"):
        copy(latents, 0.5, context_latents=latents, context_sigmas=0.1)
    for key, value, match in [
        ("rope_style", "owl", "rope_style must be one of integer, owl-wms"),
        ("rope_num_frames", None, "needs rope_num_frames >= 2"),
        ("timestep_style", "diffusers", "timestep_features_dtype='bfloat16' needs timestep_style='owl-wms'"),
        ("mlp_activation", "relu", "mlp_activation must be one of"),
        ("cache_global_window", 0, "cache_global_window must be >= 1"),
    ]:
        with pytest.raises(ValueError, match=match):
            TekkenWorldModelTransformer(**{**config, key: value})


def test_checkpoints_without_the_new_options_load_unchanged(tmp_path):
    torch.manual_seed(0)
    model = TekkenWorldModelTransformer.from_preset("tiny").eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0, 0.2)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    new = ("timestep_style", "timestep_features_dtype", "timestep_hidden_dim", "rope_style", "rope_num_frames")
    for key in (*new, "mlp_activation", "final_layer_silu", "cache_global_window"):
        config.pop(key)  # a checkpoint written before these options existed
    (tmp_path / "config.json").write_text(json.dumps(config))
    loaded = TekkenWorldModelTransformer.from_pretrained(tmp_path).eval()
    latents, sigmas = torch.randn(2, 5, 4, 4, 4), torch.rand(2, 5)
    actions = torch.randint(0, 2, (2, 5, 8)).float()
    with torch.no_grad():
        torch.testing.assert_close(loaded(latents, sigmas, actions).sample, model(latents, sigmas, actions).sample)
    assert loaded.config.rope_style == "integer" and loaded.config.cache_global_window is None


def test_script_help():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "convert_owl_wms.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0 and "--weights" in result.stdout
