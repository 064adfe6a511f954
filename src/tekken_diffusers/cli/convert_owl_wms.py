"""Convert an original owl-wms Tekken checkpoint (`tekken_rft_v2`, COMBAT) into a diffusers folder.

    tekken-convert-owl-wms --checkpoint step_100000.pt --config tekken_nopose_large.yml --out converted-transformer
    tekken-convert-owl-wms --checkpoint step_100000.pt --config tekken_nopose_large.yml --vae VAE --out converted-pipe

The checkpoint is read with `torch.load(weights_only=True)` only (tensors and plain containers, never pickled code).
Its `'ema'` weights are taken by default (`--weights model` for the online ones); the prefixes the original trainer's
wrappers write (`module.` from DDP, `_orig_mod.` from `torch.compile`, `ema_model.` from ema-pytorch) are stripped.
The result is a [`TekkenWorldModelTransformer`] whose config selects the original's arithmetic (its timestep features,
RoPE positions, SiLU MLP and final layer; docs/converting.md lists every difference), or, with `--vae`, a full
`TekkenWorldModelPipeline` folder.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import yaml

from ..models.transformer_tekken import TekkenWorldModelTransformer

logger = logging.getLogger(__name__)

# Wrappers of the original trainer, outermost first: ema-pytorch's `EMA` (`ema_model.`, `online_model.`), DDP
# (`module.`) and `torch.compile` (`_orig_mod.`); the network itself is `core.` inside the training wrapper.
WRAPPER_PREFIXES = ("ema_model.", "module.", "_orig_mod.")
CORE_PREFIX = "core."
# `model_id`s of the original whose core this converter maps (`TekkenRFTV2` / `TekkenRFTCoreV2`).
SUPPORTED_MODEL_IDS = ("tekken_rft_v2",)


class ConversionError(ValueError):
    """A checkpoint or config that cannot be converted; the message is one line naming the file and the problem."""


# ---------------------------------------------------------------------------------------------------------------------
# Reading the original's files
# ---------------------------------------------------------------------------------------------------------------------
def load_owl_wms_config(path: str | os.PathLike) -> dict:
    """The `model:` section of an original YAML config (or the whole file if it has no `model:` key)."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such config file")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise ConversionError(f"{path}: not valid YAML ({str(error).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ConversionError(f"{path}: expected a mapping with a 'model:' section")
    model = config.get("model", config)
    if not isinstance(model, dict):
        raise ConversionError(f"{path}: 'model:' is not a mapping")
    return model


def strip_prefixes(name: str) -> str:
    """`ema_model.module._orig_mod.core.x` -> `x`: drop the trainer's wrapper prefixes, then the core's."""
    stripped = True
    while stripped:
        stripped = False
        for prefix in WRAPPER_PREFIXES:
            if name.startswith(prefix):
                name, stripped = name[len(prefix) :], True
    return name[len(CORE_PREFIX) :] if name.startswith(CORE_PREFIX) else name


def load_owl_wms_state_dict(path: str | os.PathLike, weights: str = "ema") -> dict[str, torch.Tensor]:
    """
    The original network's weights from a trainer checkpoint, with every wrapper prefix stripped.

    Args:
        path: `step_N.pt` of the original trainer (a dict with `'model'` and `'ema'`), or its EMA-only export (a flat
            state dict).
        weights: `"ema"` (the EMA weights, the ones the original samples with) or `"model"` (the online weights).

    Raises:
        ConversionError: when the file cannot be read safely or holds no such weights.
    """
    path = Path(path)
    if weights not in ("ema", "model"):
        raise ConversionError(f"weights must be 'ema' or 'model', got {weights!r}")
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError, EOFError, ... by cause
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ConversionError(f"{path}: cannot be read with torch.load(weights_only=True): {first_line}") from None
    if not isinstance(checkpoint, Mapping):
        raise ConversionError(f"{path}: expected a dict, got {type(checkpoint).__name__}")

    # 1. Pick the weights: the trainer's {'model', 'ema', ...} dict, or a flat state dict (the EMA-only export)
    if "model" in checkpoint or "ema" in checkpoint:
        if weights not in checkpoint:
            raise ConversionError(
                f"{path}: has no {weights!r} weights (it holds {', '.join(map(repr, checkpoint))}); "
                f"pass --weights {'model' if weights == 'ema' else 'ema'}"
            )
        state_dict = checkpoint[weights]
        if not isinstance(state_dict, Mapping):
            raise ConversionError(f"{path}: {weights!r} is a {type(state_dict).__name__}, not a state dict")
        source = f"{path} [{weights!r}]"
        if weights == "ema":
            # ema-pytorch's state dict also holds the online copy and its bookkeeping (`initted`, `step`).
            state_dict = {name: value for name, value in state_dict.items() if name.startswith("ema_model.")}
            if not state_dict:
                raise ConversionError(f"{source}: no 'ema_model.' entries: not an ema-pytorch state dict")
    else:
        state_dict, source = checkpoint, str(path)
        logger.info("%s: a flat state dict (the EMA-only export); --weights does not apply", path)

    # 2. Strip the wrappers' prefixes
    converted: dict[str, torch.Tensor] = {}
    for name, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            raise ConversionError(f"{source}: entry {name!r} is a {type(value).__name__}, not a tensor")
        key = strip_prefixes(name)
        if key in converted:
            raise ConversionError(f"{source}: two entries map to {key!r} after stripping the wrapper prefixes")
        converted[key] = value
    logger.info("%s: %d tensors", source, len(converted))
    return converted


# ---------------------------------------------------------------------------------------------------------------------
# Config and weights mapping
# ---------------------------------------------------------------------------------------------------------------------
def _require(config: Mapping, key: str, source: str):
    if key not in config:
        raise ConversionError(f"{source}: the model config has no {key!r}")
    return config[key]


def owl_wms_to_transformer_config(
    config: Mapping,
    timestep_features_dtype: str = "bfloat16",
    cache_global_window: int | None = None,
    source: str = "config",
) -> dict:
    """
    `TekkenWorldModelTransformer` config of an original `model:` section.

    Args:
        config: The original's `model:` section.
        timestep_features_dtype: Precision of the timestep sin/cos features (`"bfloat16"`, as the original trained and
            sampled; `"float32"` for its fp32 forward).
        cache_global_window: Window of global layers against a KV cache (see the transformer's option); `None` keeps
            the window the model was trained with.
        source: Name of the config for error messages.
    """
    model_id = config.get("model_id", "tekken_rft_v2")
    if model_id not in SUPPORTED_MODEL_IDS:
        raise ConversionError(
            f"{source}: model_id {model_id!r} is not supported (known: {', '.join(SUPPORTED_MODEL_IDS)})"
        )
    for key, expected in (("backbone", "dit"), ("causal", True), ("uncond", False), ("has_audio", False)):
        if key in config and config[key] != expected:
            raise ConversionError(f"{source}: {key}={config[key]!r} is not supported (only {expected!r})")
    sample_size = _require(config, "sample_size", source)
    if not isinstance(sample_size, Sequence) or len(sample_size) != 2:
        raise ConversionError(f"{source}: sample_size must be [height, width], got {sample_size!r}")
    height, width = (int(s) for s in sample_size)
    tokens_per_frame = config.get("tokens_per_frame", height * width)
    if tokens_per_frame != height * width:
        raise ConversionError(
            f"{source}: tokens_per_frame={tokens_per_frame} but sample_size {height}x{width} has {height * width} "
            "latent pixels (the original has one token per pixel)"
        )
    d_model, n_heads = int(_require(config, "d_model", source)), int(_require(config, "n_heads", source))
    if d_model % n_heads:
        raise ConversionError(f"{source}: d_model={d_model} is not divisible by n_heads={n_heads}")
    head_dim = d_model // n_heads
    if head_dim % 8:
        raise ConversionError(f"{source}: head dim {head_dim} must be a multiple of 8 (the original's 3D RoPE)")
    return dict(
        in_channels=int(_require(config, "channels", source)),
        sample_size=(height, width),
        patch_size=1,
        num_layers=int(_require(config, "n_layers", source)),
        num_attention_heads=n_heads,
        attention_head_dim=head_dim,
        mlp_ratio=4.0,
        num_actions=int(config.get("n_buttons", 8)),
        local_window=int(_require(config, "local_window", source)),
        global_window=int(_require(config, "global_window", source)),
        # The original's `local_idx` (default 4): layer i is global iff i % local_idx == 0.
        global_every=int(config.get("local_idx", 4)),
        # A quarter of each head per axis (time, row, column); the last quarter is not rotated.
        rope_axes_dim=(head_dim // 4,) * 3,
        rope_style="owl-wms",
        rope_num_frames=int(_require(config, "n_frames", source)),
        timestep_style="owl-wms",
        timestep_freq_dim=512,
        timestep_hidden_dim=4 * d_model,
        timestep_features_dtype=timestep_features_dtype,
        # The original's RMSNorms use torch's default epsilon, finfo(float32).eps.
        norm_eps=torch.finfo(torch.float32).eps,
        qkv_bias=True,
        mlp_activation="linear-silu",
        final_layer_silu=True,
        cache_global_window=cache_global_window,
    )


def _original_shapes(config: Mapping) -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of the original core with this (converted) config."""
    d, channels = config["num_attention_heads"] * config["attention_head_dim"], config["in_channels"]
    hidden = int(config["mlp_ratio"] * d)
    shapes = {
        "t_embed.mlp.fc1.weight": (config["timestep_hidden_dim"], config["timestep_freq_dim"]),
        "t_embed.mlp.fc1.bias": (config["timestep_hidden_dim"],),
        "t_embed.mlp.fc2.weight": (d, config["timestep_hidden_dim"]),
        "t_embed.mlp.fc2.bias": (d,),
        "action_embed.button_embeddings.weight": (config["num_actions"], d),
        "proj_in.weight": (d, channels),
        "proj_out.norm.fc.weight": (2 * d, d),
        "proj_out.norm.fc.bias": (2 * d,),
        "proj_out.proj.weight": (channels, d),
        "proj_out.proj.bias": (channels,),
    }
    for i in range(config["num_layers"]):
        block = f"transformer.blocks.{i}."
        for name, (rows, cols) in {
            "attn.qkv": (3 * d, d),
            "attn.out": (d, d),
            "mlp.fc1": (hidden, d),
            "mlp.fc2": (d, hidden),
            "adaln1.fc": (2 * d, d),
            "adaln2.fc": (2 * d, d),
            "gate1.fc_c": (d, d),
            "gate2.fc_c": (d, d),
        }.items():
            shapes[f"{block}{name}.weight"] = (rows, cols)
            shapes[f"{block}{name}.bias"] = (rows,)
    return shapes


def _list(names: set[str], limit: int = 4) -> str:
    names = sorted(names)
    more = f" (+{len(names) - limit} more)" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_original_state_dict(state_dict: Mapping[str, torch.Tensor], config: Mapping, source: str) -> None:
    """
    Raise a one-line `ConversionError` unless `state_dict` holds exactly the tensors, with exactly the shapes, of the
    original core that `config` (a converted config) describes.
    """
    expected = _original_shapes(config)
    missing, unexpected = set(expected) - set(state_dict), set(state_dict) - set(expected)
    if missing or unexpected:
        problems = [f"missing keys: {_list(missing)}"] if missing else []
        problems += [f"unexpected keys: {_list(unexpected)}"] if unexpected else []
        raise ConversionError(
            f"{source}: the weights do not match a {config['num_layers']}-layer core ({'; '.join(problems)})"
        )
    for name, shape in expected.items():
        if tuple(state_dict[name].shape) != shape:
            raise ConversionError(
                f"{source}: {name} has shape {tuple(state_dict[name].shape)} but the config (d_model="
                f"{config['num_attention_heads'] * config['attention_head_dim']}, channels={config['in_channels']}, "
                f"n_buttons={config['num_actions']}) needs {shape}: the config does not match the weights"
            )


def convert_owl_wms_state_dict(state_dict: Mapping[str, torch.Tensor], config: Mapping) -> dict[str, torch.Tensor]:
    """
    Map the original core's weights (prefixes stripped, checked by [`check_original_state_dict`]) to the state dict
    of a `TekkenWorldModelTransformer` built from `config`, in fp32.

    The arithmetic is the same up to layout: the original's per-block `adaln1`, `gate1`, `adaln2`, `gate2` linears
    are the rows of one adaLN linear (ours: shift, scale, gate for attention, then for the MLP; the original's adaLN
    rows are scale then shift); `qkv` splits into `to_q`, `to_k`, `to_v`; the button embeddings (slot i = bit i of
    the id, averaged over the slots) become the weight of a linear layer on MSB-first bits, divided by the slot count;
    biases, norm gains and the null action the original does not have are zero (gains one).
    """
    sd = {name: tensor.float() for name, tensor in state_dict.items()}
    d = config["num_attention_heads"] * config["attention_head_dim"]

    def scale_shift(prefix: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        weight, bias = sd[f"{prefix}.weight"], sd[f"{prefix}.bias"]
        return weight[:d], weight[d:], bias[:d], bias[d:]  # scale rows, shift rows

    out: dict[str, torch.Tensor] = {
        "time_embed.linear_1.weight": sd["t_embed.mlp.fc1.weight"],
        "time_embed.linear_1.bias": sd["t_embed.mlp.fc1.bias"],
        "time_embed.linear_2.weight": sd["t_embed.mlp.fc2.weight"],
        "time_embed.linear_2.bias": sd["t_embed.mlp.fc2.bias"],
        # Our bit j (MSB first) is the original's slot n-1-j; the original averages over all n slots.
        "action_embed.weight": sd["action_embed.button_embeddings.weight"].flip(0).T / config["num_actions"],
        "action_embed.bias": torch.zeros(d),
        "null_action_embedding": torch.zeros(d),  # the original zeroes the action embedding without controls
        "proj_in.weight": sd["proj_in.weight"],
        "proj_in.bias": torch.zeros(d),
        "proj_out.weight": sd["proj_out.proj.weight"],
        "proj_out.bias": sd["proj_out.proj.bias"],
    }
    scale_w, shift_w, scale_b, shift_b = scale_shift("proj_out.norm.fc")
    out["norm_out_modulation.weight"] = torch.cat([shift_w, scale_w])
    out["norm_out_modulation.bias"] = torch.cat([shift_b, scale_b])
    for i in range(config["num_layers"]):
        src, dst = f"transformer.blocks.{i}.", f"transformer_blocks.{i}."
        for part in ("weight", "bias"):
            q, k, v = sd[f"{src}attn.qkv.{part}"].chunk(3, dim=0)
            out[f"{dst}attn.to_q.{part}"], out[f"{dst}attn.to_k.{part}"], out[f"{dst}attn.to_v.{part}"] = q, k, v
            out[f"{dst}attn.to_out.{part}"] = sd[f"{src}attn.out.{part}"]
            out[f"{dst}ff.net.0.proj.{part}"] = sd[f"{src}mlp.fc1.{part}"]
            out[f"{dst}ff.net.2.{part}"] = sd[f"{src}mlp.fc2.{part}"]
        head_dim = config["attention_head_dim"]
        out[f"{dst}attn.norm_q.weight"] = torch.ones(head_dim)  # the original's QK-norm has no gain
        out[f"{dst}attn.norm_k.weight"] = torch.ones(head_dim)
        rows = {}
        for adaln, gate, tag in (("adaln1", "gate1", "msa"), ("adaln2", "gate2", "mlp")):
            scale_w, shift_w, scale_b, shift_b = scale_shift(f"{src}{adaln}.fc")
            rows[tag] = (
                [shift_w, scale_w, sd[f"{src}{gate}.fc_c.weight"]],
                [shift_b, scale_b, sd[f"{src}{gate}.fc_c.bias"]],
            )
        out[f"{dst}adaLN_modulation.weight"] = torch.cat(rows["msa"][0] + rows["mlp"][0])
        out[f"{dst}adaLN_modulation.bias"] = torch.cat(rows["msa"][1] + rows["mlp"][1])
    return {name: tensor.contiguous() for name, tensor in out.items()}


def convert_owl_wms_checkpoint(
    checkpoint: str | os.PathLike,
    config: str | os.PathLike,
    weights: str = "ema",
    timestep_features_dtype: str = "bfloat16",
    cache_global_window: int | None = None,
) -> TekkenWorldModelTransformer:
    """
    An original checkpoint and its YAML config as a `TekkenWorldModelTransformer` (fp32, eval mode).

    Args:
        checkpoint: The trainer's `step_N.pt` (or its EMA-only export).
        config: The original YAML config (its `model:` section is read).
        weights: `"ema"` (default) or `"model"`.
        timestep_features_dtype: `"bfloat16"` (default: as the original trained and sampled) or `"float32"`.
        cache_global_window: See `TekkenWorldModelTransformer`; `None` keeps the trained window.

    Raises:
        ConversionError: a one-line message naming the file and the problem.
    """
    # 1. Read both files
    original_config = load_owl_wms_config(config)
    state_dict = load_owl_wms_state_dict(checkpoint, weights)
    # 2. Build our config and check the weights against it (names and shapes)
    transformer_config = owl_wms_to_transformer_config(
        original_config, timestep_features_dtype, cache_global_window, source=str(config)
    )
    check_original_state_dict(state_dict, transformer_config, source=f"{checkpoint} [{weights!r}] with {config}")
    # 3. Map the weights and load them strictly
    try:
        model = TekkenWorldModelTransformer(**transformer_config)
    except ValueError as error:
        raise ConversionError(f"{config}: {error}") from None
    model.load_state_dict(convert_owl_wms_state_dict(state_dict, transformer_config), strict=True)
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tekken-convert-owl-wms",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--checkpoint", required=True, help="the original trainer's step_N.pt")
    parser.add_argument("--config", required=True, help="the original YAML config (its model: section is read)")
    parser.add_argument(
        "--out", required=True, help="folder to write (a transformer folder, or a pipeline with --vae)"
    )
    parser.add_argument("--weights", choices=["ema", "model"], default="ema", help="EMA or online weights")
    parser.add_argument(
        "--vae",
        default=None,
        help="a diffusers VAE folder, pipeline folder or Hub id: write a full pipeline folder with it",
    )
    parser.add_argument(
        "--timestep-features-dtype",
        choices=["bfloat16", "float32"],
        default="bfloat16",
        help="precision of the timestep sin/cos features; the original computed them in bf16 in training and sampling",
    )
    parser.add_argument(
        "--cache-global-window",
        type=int,
        default=None,
        help="frames global layers see against a KV cache (default: the trained global_window; the original sampler "
        "let them see its whole cache)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from . import setup_logging

    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging()
    out = Path(args.out)
    if out.exists() and not args.overwrite:
        parser.error(f"--out {out}: already exists (pass --overwrite to replace it)")
    if args.cache_global_window is not None and args.cache_global_window < 1:
        parser.error(f"--cache-global-window must be >= 1, got {args.cache_global_window}")
    try:
        # 1. Convert the transformer
        transformer = convert_owl_wms_checkpoint(
            args.checkpoint, args.config, args.weights, args.timestep_features_dtype, args.cache_global_window
        )
        # 2. Without a VAE: the transformer folder; with one: the whole pipeline
        from ..training_utils import save_pretrained_atomically

        if args.vae is None:
            save_pretrained_atomically(transformer, out)
        else:
            save_pretrained_atomically(build_pipeline(transformer, args.vae), out)
    except (ConversionError, FileNotFoundError) as error:
        logger.error("%s", error)
        return 2
    num_parameters = sum(p.numel() for p in transformer.parameters())
    logger.info(
        "wrote %s: %s, %s parameters, %s weights",
        out,
        "pipeline" if args.vae else "transformer",
        f"{num_parameters:,}",
        args.weights,
    )
    return 0


def build_pipeline(transformer: TekkenWorldModelTransformer, vae_path: str):
    """A `TekkenWorldModelPipeline` of the converted transformer, the VAE at `vae_path` and a default scheduler."""
    from ..pipelines.pipeline_tekken import TekkenWorldModelPipeline
    from ..schedulers.scheduling_tekken_flow_match import TekkenFlowMatchScheduler
    from .encode_latents import load_vae

    try:
        vae = load_vae(vae_path)
    except ValueError as error:
        raise ConversionError(str(error)) from None
    latent_channels = getattr(vae.config, "latent_channels", None) or getattr(vae.config, "z_dim", None)
    if latent_channels != transformer.config.in_channels:
        raise ConversionError(
            f"--vae {vae_path}: its latents have {latent_channels} channels, the checkpoint's model "
            f"{transformer.config.in_channels}"
        )
    if (getattr(vae, "temporal_compression_ratio", 1) or 1) > 1:
        raise ConversionError(
            f"--vae {vae_path}: {type(vae).__name__} compresses time, which the pipeline does not support yet; "
            "convert without --vae to get the transformer folder"
        )
    return TekkenWorldModelPipeline(transformer=transformer, scheduler=TekkenFlowMatchScheduler(), vae=vae)


if __name__ == "__main__":
    raise SystemExit(main())
