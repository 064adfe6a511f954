"""LTX-Video and Wan 2.1 VAEs with the same interface as every VAE here, and their temporal compression made explicit.

Both are causal video VAEs: the first frame is encoded alone and every later group of `r` frames becomes one latent
frame, so a clip must have `1 + k·r` frames (`r` = 8 for LTX-Video 0.9.x, 4 for Wan 2.1; read from the model's config,
so tiny test configs with other ratios work too). Diffusers' own classes take other counts silently (Wan drops the
frames that do not fit: 8 frames encode to 2 latent frames and decode to 5); these wrappers raise instead, naming the
nearest valid counts. Actions are pooled to latent frames over the same groups (`pool_actions`, see
`tekken_diffusers.actions`).

The original system tried both (its notes: LTX "works okay, loses coherence", Wan "garbage"); the default
VAE is the per-frame `TekkenAutoencoderDC`. The wrappers are subclasses of the diffusers classes, so the Hub
checkpoints the original used load directly: `LTXVideoVAE.from_pretrained()` reads `Lightricks/LTX-Video`
(subfolder `vae`) and `WanVAE.from_pretrained()` reads `Wan-AI/Wan2.1-T2V-1.3B-Diffusers` (subfolder `vae`).

Interface, shared with `TekkenAutoencoderDC`:
- `encode(x).latent_dist` (a `DiagonalGaussianDistribution`: `.sample(generator)`, `.mode()`), `decode(z).sample`;
- frames `[B, C, H, W]` (a one-frame clip; latents come back as `[B, c, h, w]`) or clips `[B, C, T, H, W]`;
- `temporal_compression_ratio`, `num_latent_frames`, `num_frames_for_latents`, `latent_frame_groups`, `pool_actions`;
- normalisation statistics read by `data.latents.normalization`: LTX keeps `latents_mean`/`latents_std` as buffers
  stored in the checkpoint (plus config `scaling_factor`); Wan keeps them as config lists and has no `scaling_factor`.
"""

from __future__ import annotations

import os

import torch
from diffusers import AutoencoderKLLTXVideo, AutoencoderKLWan, ModelMixin  # noqa: F401  (ModelMixin by name: loader)
from diffusers.models.autoencoders.vae import DecoderOutput, DiagonalGaussianDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from diffusers.utils.accelerate_utils import apply_forward_hook

from .temporal import TemporalCompressionMixin

__all__ = ["LTXVideoVAE", "WanVAE"]


class _VideoVAEMixin(TemporalCompressionMixin):
    """What the video VAE wrappers share: `encode`, the body of `decode`, shape checks and frame ↔ one-frame clip.

    It comes first in each wrapper's bases, so `super()` here reaches the diffusers class (`AutoencoderKLLTXVideo`,
    `AutoencoderKLWan`).
    """

    default_pretrained_model_name_or_path: str
    default_subfolder: str = "vae"

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None, **kwargs):
        """Load weights; with no path, the Hub checkpoint the original system used (`default_...`, subfolder `vae`).

        Args:
            pretrained_model_name_or_path: a Hub id or a local folder; None for the default Hub checkpoint.
            kwargs: passed to diffusers' `ModelMixin.from_pretrained` (`subfolder`, `dtype`, `revision`, …).
        """
        if pretrained_model_name_or_path is None:
            pretrained_model_name_or_path = cls.default_pretrained_model_name_or_path
            kwargs.setdefault("subfolder", cls.default_subfolder)
        return super().from_pretrained(pretrained_model_name_or_path, **kwargs)

    @apply_forward_hook
    def encode(
        self, x: torch.Tensor, return_dict: bool = True
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        """Encode frames `[B, C, H, W]` or clips `[B, C, 1 + k·r, H, W]` (pixels in [-1, 1]).

        Args:
            x: pixels.
            return_dict: return an `AutoencoderKLOutput` (else a one-element tuple).

        Returns:
            `latent_dist` over `[B, c, h, w]` (frames) or `[B, c, 1 + k, h, w]` (clips), `c = latent_channels`.
        """
        clip, is_frame = self._as_clip(x)  # [B, C, T, H, W]
        posterior = super().encode(clip).latent_dist  # the diffusers class's encode, next in the MRO
        return self._wrap_posterior(posterior, is_frame, return_dict)

    def _decode_frames_or_clips(
        self, z: torch.Tensor, return_dict: bool, **decode_kwargs
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """The body of both wrappers' `decode` (whose signatures differ: LTX takes `temb`)."""
        clip, is_frame = self._as_latent_clip(z)  # [B, c, T_lat, h, w]
        pixels = super().decode(clip, **decode_kwargs).sample  # the diffusers class's decode, next in the MRO
        return self._wrap_pixels(pixels, is_frame, return_dict)

    def _as_clip(self, pixels: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Frames `[B, C, H, W]` → one-frame clips `[B, C, 1, H, W]`; checks channels, frame count and size."""
        name = type(self).__name__
        is_frame = pixels.ndim == 4
        clip = pixels.unsqueeze(2) if is_frame else pixels  # [B, C, T, H, W]
        if clip.ndim != 5:
            raise ValueError(f"{name}.encode expects [B, C, H, W] or [B, C, T, H, W], got shape {tuple(pixels.shape)}")
        if clip.shape[1] != self.config.in_channels:
            raise ValueError(
                f"{name} takes {self.config.in_channels} channels at dim 1, got shape {tuple(pixels.shape)}"
            )
        self.num_latent_frames(clip.shape[2])
        ratio = self.spatial_compression_ratio
        if clip.shape[-2] % ratio or clip.shape[-1] % ratio:
            raise ValueError(
                f"{name}: frame size {clip.shape[-2]}×{clip.shape[-1]} must be divisible by the spatial "
                f"compression {ratio}"
            )
        return clip, is_frame

    def _as_latent_clip(self, latents: torch.Tensor) -> tuple[torch.Tensor, bool]:
        """Latent frames `[B, c, h, w]` → `[B, c, 1, h, w]`; checks the channel count."""
        is_frame = latents.ndim == 4
        clip = latents.unsqueeze(2) if is_frame else latents  # [B, c, T_lat, h, w]
        if clip.ndim != 5 or clip.shape[1] != self.latent_channels:
            raise ValueError(
                f"{type(self).__name__}.decode expects latents [B, {self.latent_channels}, (T,) h, w], "
                f"got shape {tuple(latents.shape)}"
            )
        return clip, is_frame

    def _wrap_posterior(
        self, posterior: DiagonalGaussianDistribution, is_frame: bool, return_dict: bool
    ) -> AutoencoderKLOutput | tuple[DiagonalGaussianDistribution]:
        if is_frame:
            # [B, 2c, 1, h, w] -> [B, 2c, h, w]: a frame in gives a latent frame out.
            posterior = DiagonalGaussianDistribution(posterior.parameters.squeeze(2))
        if not return_dict:
            return (posterior,)
        return AutoencoderKLOutput(latent_dist=posterior)

    @staticmethod
    def _wrap_pixels(pixels: torch.Tensor, is_frame: bool, return_dict: bool) -> DecoderOutput | tuple[torch.Tensor]:
        if is_frame:
            pixels = pixels.squeeze(2)  # [B, C, 1, H, W] -> [B, C, H, W]
        if not return_dict:
            return (pixels,)
        return DecoderOutput(sample=pixels)


class LTXVideoVAE(_VideoVAEMixin, AutoencoderKLLTXVideo):
    r"""
    diffusers' `AutoencoderKLLTXVideo` with explicit frame-count rules, frame inputs and action pooling.

    The configuration is `AutoencoderKLLTXVideo`'s, unchanged (see its docstring); the temporal compression is
    `patch_size_t · 2 ** sum(spatio_temporal_scaling)` (8 for LTX-Video 0.9.x). Latents are normalised with the
    `latents_mean`/`latents_std` buffers and `scaling_factor` (`latent_norm`).
    """

    default_pretrained_model_name_or_path = "Lightricks/LTX-Video"

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @apply_forward_hook
    def decode(
        self, z: torch.Tensor, temb: torch.Tensor | None = None, return_dict: bool = True
    ) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode raw latents `[B, c, h, w]` or `[B, c, 1 + k, h, w]` to `[B, C, (1 + k·r,) H, W]` pixels.

        Args:
            z: latents (denormalised).
            temb: decode timestep for configs with `timestep_conditioning` (LTX-Video 0.9.1+).
            return_dict: return a `DecoderOutput` (else a one-element tuple).
        """
        return self._decode_frames_or_clips(z, return_dict, temb=temb)


class WanVAE(_VideoVAEMixin, AutoencoderKLWan):
    r"""
    diffusers' `AutoencoderKLWan` (Wan 2.1) with explicit frame-count rules, frame inputs and action pooling.

    The configuration is `AutoencoderKLWan`'s, unchanged; the temporal compression is
    `2 ** sum(temperal_downsample)` (4 for Wan 2.1; diffusers' `AutoencoderKLWan` has no attribute for it).
    Latents are normalised with the config lists `latents_mean`/`latents_std` (`latent_norm`).
    """

    default_pretrained_model_name_or_path = "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"

    @property
    def temporal_compression_ratio(self) -> int:
        return 2 ** sum(bool(flag) for flag in self.config.temperal_downsample)

    @property
    def latent_channels(self) -> int:
        return self.config.z_dim

    @apply_forward_hook
    def decode(self, z: torch.Tensor, return_dict: bool = True) -> DecoderOutput | tuple[torch.Tensor]:
        """Decode raw latents `[B, z_dim, h, w]` or `[B, z_dim, 1 + k, h, w]` to `[B, C, (1 + k·r,) H, W]` pixels.

        Args:
            z: latents (denormalised).
            return_dict: return a `DecoderOutput` (else a one-element tuple).
        """
        return self._decode_frames_or_clips(z, return_dict)
