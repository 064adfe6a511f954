"""`TekkenAutoencoderDC`: a per-frame deep-compression autoencoder with the `AutoencoderKL` interface.

Why per frame: the original system found that a 2D autoencoder with no temporal compression works for a fighting game
and video VAEs do not: the world model needs one latent per frame to answer each input on the exact frame.

The architecture is diffusers' `AutoencoderDC` (DC-AE, arXiv 2410.10733): residual conv blocks, space-to-channel
downsampling (`pixel_unshuffle`) whose shortcut averages channel groups, and the mirror image in the decoder
(channel-to-space with a repeated-channel shortcut). It is a subclass, so its weight names are `AutoencoderDC`'s and
a diffusers `AutoencoderDC` checkpoint loads into it unchanged (`from_autoencoder_dc`, or `from_pretrained` on it).
What it adds:

- the `AutoencoderKL` interface: `encode(x).latent_dist` is an `IdentityDistribution` (the autoencoder is
  deterministic, as the original's in eval mode; `.sample(generator)` and `.mode()` both return the latents, which is
  diffusers' own precedent for deterministic autoencoders, Cosmos), and `decode(z).sample` is a `DecoderOutput`;
- clips: `[B, C, H, W]` frames and `[B, C, T, H, W]` clips (diffusers' video layout), clips encoded frame by frame;
- the config fields `shift_factor`, `latents_mean`, `latents_std` (per-channel, measured by `training/train_vae.py`);
  `tekken_diffusers.models.autoencoders.latent_norm` applies them;
- the pose channel: with `in_channels=4` the input is RGB + pose (`tekken_diffusers.data.pose`) and the decoder
  returns 4 channels.

The defaults are the shipped Atari Boxing model: 64×64 RGB → 8×8×16 latents.
"""

from __future__ import annotations

import os

import torch
from diffusers import AutoencoderDC, ModelMixin  # noqa: F401  (ModelMixin by name: the diffusers loader probes for it)
from diffusers.configuration_utils import register_to_config
from diffusers.models.autoencoders.vae import DecoderOutput, IdentityDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.utils.accelerate_utils import apply_forward_hook

from .cpu_convolution import use_onednn_convolutions
from .temporal import TemporalCompressionMixin

__all__ = ["TekkenAutoencoderDC"]


class TekkenAutoencoderDC(TemporalCompressionMixin, AutoencoderDC):
    r"""
    A DC-AE that encodes each frame to a latent image, with the interface of `AutoencoderKL`.

    Pixels are in [-1, 1] (`tekken_diffusers.data.frames.frames_to_pixels`). Frames `[B, C, H, W]` give latents
    `[B, latent_channels, H / f, W / f]` with `f = 2 ** (len(encoder_block_out_channels) - 1)`; clips
    `[B, C, T, H, W]` give `[B, latent_channels, T, H / f, W / f]` (no temporal compression:
    `temporal_compression_ratio` is 1, so `num_latent_frames(T) == T` and `pool_actions` passes ids through).

    Args:
        in_channels (`int`, defaults to 3): 3 for RGB, 4 for RGB + pose. The decoder returns the same count.
        latent_channels (`int`, defaults to 16): latent channels; must divide the last encoder/decoder width.
        attention_head_dim (`int`, defaults to 32): head size of `EfficientViTBlock`s (unused by `ResBlock`s).
        encoder_block_types (`str | tuple[str]`): `"ResBlock"` or `"EfficientViTBlock"` per stage.
        decoder_block_types (`str | tuple[str]`): likewise for the decoder.
        encoder_block_out_channels (`tuple[int, ...]`): width of each encoder stage; each stage after the first
            halves the resolution.
        decoder_block_out_channels (`tuple[int, ...]`): width of each decoder stage (listed from high resolution).
        encoder_layers_per_block (`tuple[int, ...]`): blocks per encoder stage.
        decoder_layers_per_block (`tuple[int, ...]`): blocks per decoder stage.
        encoder_qkv_multiscales (`tuple[tuple[int, ...], ...]`): multi-scale kernels of `EfficientViTBlock`s.
        decoder_qkv_multiscales (`tuple[tuple[int, ...], ...]`): likewise for the decoder.
        upsample_block_type (`str`, defaults to `"pixel_shuffle"`): `"pixel_shuffle"` or `"interpolate"`.
        downsample_block_type (`str`, defaults to `"pixel_unshuffle"`): `"pixel_unshuffle"` or `"conv"` (strided).
        decoder_norm_types (`str | tuple[str]`): normalisation of the decoder blocks.
        decoder_act_fns (`str | tuple[str]`): activation of the decoder blocks.
        encoder_out_shortcut (`bool`): channel-averaging shortcut around the encoder's output conv.
        decoder_in_shortcut (`bool`): channel-repeating shortcut around the decoder's input conv.
        decoder_conv_act_fn (`str`): activation before the decoder's output conv.
        scaling_factor (`float`, defaults to 1.0): latent scale (see `latent_norm`).
        shift_factor (`float`, *optional*): latent shift used when there are no per-channel statistics.
        latents_mean (`list[float]`, *optional*): per-channel mean of the training latents.
        latents_std (`list[float]`, *optional*): per-channel standard deviation of the training latents.
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        latent_channels: int = 16,
        attention_head_dim: int = 32,
        encoder_block_types: str | tuple[str, ...] = "ResBlock",
        decoder_block_types: str | tuple[str, ...] = "ResBlock",
        encoder_block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
        decoder_block_out_channels: tuple[int, ...] = (16, 32, 64, 128),
        encoder_layers_per_block: tuple[int, ...] = (1, 1, 2, 2),
        decoder_layers_per_block: tuple[int, ...] = (1, 2, 2, 2),
        encoder_qkv_multiscales: tuple[tuple[int, ...], ...] = ((), (), (), ()),
        decoder_qkv_multiscales: tuple[tuple[int, ...], ...] = ((), (), (), ()),
        upsample_block_type: str = "pixel_shuffle",
        downsample_block_type: str = "pixel_unshuffle",
        decoder_norm_types: str | tuple[str, ...] = "rms_norm",
        decoder_act_fns: str | tuple[str, ...] = "silu",
        encoder_out_shortcut: bool = True,
        decoder_in_shortcut: bool = True,
        decoder_conv_act_fn: str = "relu",
        scaling_factor: float = 1.0,
        shift_factor: float | None = None,
        latents_mean: list[float] | None = None,
        latents_std: list[float] | None = None,
    ) -> None:
        # 1. Check what AutoencoderDC would otherwise fail on deep inside a reshape.
        for name, widths in (("encoder", encoder_block_out_channels), ("decoder", decoder_block_out_channels)):
            if widths[-1] % latent_channels != 0:
                raise ValueError(
                    f"latent_channels={latent_channels} must divide the last {name} width {widths[-1]} "
                    f"({name}_block_out_channels={tuple(widths)}): the DC-AE shortcut averages/repeats channel groups"
                )
            for low, high in zip(widths[:-1], widths[1:]):
                # space-to-channel turns `low` channels into 4·low, averaged in groups down to `high` (and back).
                if (4 * low) % high:
                    raise ValueError(
                        f"{name}_block_out_channels={tuple(widths)}: 4·{low} must be divisible by {high} "
                        "(the space-to-channel shortcut between stages)"
                    )
        for name, stats in (("latents_mean", latents_mean), ("latents_std", latents_std)):
            if stats is not None and len(stats) != latent_channels:
                raise ValueError(f"{name} has {len(stats)} values but latent_channels is {latent_channels}")
        if (latents_mean is None) != (latents_std is None):
            raise ValueError("latents_mean and latents_std must be given together")

        # 2. Build the AutoencoderDC body (registers nothing: our own decorator recorded the config above).
        super().__init__(
            in_channels=in_channels,
            latent_channels=latent_channels,
            attention_head_dim=attention_head_dim,
            encoder_block_types=encoder_block_types,
            decoder_block_types=decoder_block_types,
            encoder_block_out_channels=encoder_block_out_channels,
            decoder_block_out_channels=decoder_block_out_channels,
            encoder_layers_per_block=encoder_layers_per_block,
            decoder_layers_per_block=decoder_layers_per_block,
            encoder_qkv_multiscales=encoder_qkv_multiscales,
            decoder_qkv_multiscales=decoder_qkv_multiscales,
            upsample_block_type=upsample_block_type,
            downsample_block_type=downsample_block_type,
            decoder_norm_types=decoder_norm_types,
            decoder_act_fns=decoder_act_fns,
            encoder_out_shortcut=encoder_out_shortcut,
            decoder_in_shortcut=decoder_in_shortcut,
            decoder_conv_act_fn=decoder_conv_act_fn,
            scaling_factor=scaling_factor,
        )
        # 3. The world model decodes one frame at a time: its small batch-1 convolutions run faster in oneDNN than on
        # PyTorch's default CPU path for them (`cpu_convolution`; same weights and state dict).
        use_onednn_convolutions(self.decoder)

    @classmethod
    def from_autoencoder_dc(cls, path_or_model: str | os.PathLike | AutoencoderDC, **kwargs) -> TekkenAutoencoderDC:
        """Load a diffusers `AutoencoderDC` (a model, a local folder or a Hub id) as a `TekkenAutoencoderDC`.

        The weights are used unchanged; the result encodes exactly like the source model and decodes like it to float
        rounding (its decoder's convolutions may run in oneDNN where `AutoencoderDC`'s run on PyTorch's own path).

        Args:
            path_or_model: an `AutoencoderDC` instance, or anything `AutoencoderDC.from_pretrained` accepts
                (e.g. `"mit-han-lab/dc-ae-f32c32-sana-1.1-diffusers"`).
            kwargs: passed to `from_pretrained` (`subfolder`, `dtype`, `revision`, …) when loading from a path.
        """
        if isinstance(path_or_model, AutoencoderDC):
            source = path_or_model
            parameter = next(source.parameters(), None)
            model = cls.from_config(dict(source.config))
            model.load_state_dict(source.state_dict(), strict=True)
            if parameter is not None:
                model.to(device=parameter.device, dtype=parameter.dtype)
            return model.train(source.training)
        return cls.from_pretrained(path_or_model, **kwargs)

    # --- shapes -------------------------------------------------------------------------------------------------

    def _check_pixels(self, pixels: torch.Tensor) -> None:
        if pixels.ndim not in (4, 5):
            raise ValueError(
                f"{type(self).__name__}.encode expects frames [B, C, H, W] or clips [B, C, T, H, W], "
                f"got shape {tuple(pixels.shape)}"
            )
        if pixels.shape[1] != self.config.in_channels:
            pose_hint = " (RGB + pose)" if self.config.in_channels == 4 else ""
            raise ValueError(
                f"{type(self).__name__} takes {self.config.in_channels} channels{pose_hint} at dim 1, "
                f"got shape {tuple(pixels.shape)}"
            )
        height, width = pixels.shape[-2:]
        ratio = self.spatial_compression_ratio
        if height % ratio or width % ratio:
            raise ValueError(f"frame size {height}×{width} must be divisible by the spatial compression {ratio}")

    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim not in (4, 5) or latents.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"{type(self).__name__}.decode expects latents [B, {self.config.latent_channels}, H, W] or "
                f"[B, {self.config.latent_channels}, T, H, W], got shape {tuple(latents.shape)}"
            )

    @staticmethod
    def _frames_of(clips: torch.Tensor) -> torch.Tensor:
        return clips.transpose(1, 2).flatten(0, 1)  # [B, C, T, H, W] -> [B*T, C, H, W]

    @staticmethod
    def _clips_of(frames: torch.Tensor, batch_size: int) -> torch.Tensor:
        return frames.unflatten(0, (batch_size, -1)).transpose(1, 2)  # [B*T, C, H, W] -> [B, C, T, H, W]

    # --- AutoencoderKL interface --------------------------------------------------------------------------------

    @apply_forward_hook
    def encode(self, x: torch.Tensor, return_dict: bool = True) -> AutoencoderKLOutput | tuple[IdentityDistribution]:
        """Encode frames `[B, C, H, W]` or clips `[B, C, T, H, W]` (pixels in [-1, 1]) to latents.

        Args:
            x: pixels; `C` is `in_channels`.
            return_dict: return an `AutoencoderKLOutput` (else a one-element tuple).

        Returns:
            `AutoencoderKLOutput(latent_dist=IdentityDistribution(latents))`; `.mode()` / `.sample()` are the
            latents `[B, latent_channels, (T,) h, w]`.
        """
        self._check_pixels(x)
        if x.ndim == 5:
            latents = super().encode(self._frames_of(x), return_dict=False)[0]  # [B*T, c, h, w]
            latents = self._clips_of(latents, x.shape[0])  # [B, c, T, h, w]
        else:
            latents = super().encode(x, return_dict=False)[0]  # [B, c, h, w]
        distribution = IdentityDistribution(latents)
        if not return_dict:
            return (distribution,)
        return AutoencoderKLOutput(latent_dist=distribution)

    @apply_forward_hook
    def decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode raw (denormalised) latents `[B, c, h, w]` or `[B, c, T, h, w]` to pixels.

        Args:
            z: latents; denormalise world-model latents first (`latent_norm.denormalize_latents`).
            return_dict: return a `DecoderOutput` (else a one-element tuple).

        Returns:
            `DecoderOutput(sample=pixels)`, pixels `[B, in_channels, (T,) H, W]`, roughly in [-1, 1] (not clamped).
        """
        self._check_latents(z)
        if z.ndim == 5:
            pixels = super().decode(self._frames_of(z), return_dict=False)[0]  # [B*T, C, H, W]
            pixels = self._clips_of(pixels, z.shape[0])  # [B, C, T, H, W]
        else:
            pixels = super().decode(z, return_dict=False)[0]  # [B, C, H, W]
        if not return_dict:
            return (pixels,)
        return DecoderOutput(sample=pixels)

    def forward(
        self,
        sample: torch.Tensor,
        sample_posterior: bool = False,
        return_dict: bool = True,
        generator: torch.Generator | None = None,
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Reconstruct `sample` (encode then decode), as `AutoencoderKL.forward`.

        Args:
            sample: pixels `[B, C, H, W]` or `[B, C, T, H, W]`.
            sample_posterior: accepted for interface parity; the latent distribution is deterministic.
            return_dict: return a `DecoderOutput` (else a one-element tuple).
            generator: accepted for interface parity.
        """
        distribution = self.encode(sample).latent_dist
        latents = distribution.sample(generator) if sample_posterior else distribution.mode()
        return self.decode(latents, return_dict=return_dict)
