"""Rectified-flow (flow matching) scheduler with a noise level per frame, for diffusion-forcing world models.

Convention (the original owl-wms model's and diffusers' `FlowMatchEulerDiscreteScheduler`'s):
`x_t = (1 - sigma) * x0 + sigma * noise`, sigma = 1 is pure noise, the model predicts the velocity
`v = noise - x0`, and an Euler step is `x_next = x + (sigma_next - sigma) * v`.

Two units, as in diffusers: sigma in [0, 1] (what the transformer takes) and `timesteps = sigma * num_train_timesteps`
(what diffusers pipelines loop over). The diffusers contract works unchanged: `set_timesteps(n)`, then
`step(model_output, t, sample)` for each `t` in `timesteps`. The extension for diffusion forcing lets every frame carry
its own noise level: `step_per_frame` and `scale_noise` take sigmas, `step(..., next_timestep=...)` and `add_noise`
take timesteps, each a scalar, `(batch,)` or `(batch, frames)` (broadcast over `(channels, H, W)`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config

# diffusers' pipeline loader finds a component's base class by looking this name up in the component's module, so
# it must be imported here under this name (an external scheduler fails to load otherwise).
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from diffusers.utils import BaseOutput, logging
from diffusers.utils.torch_utils import randn_tensor

logger = logging.get_logger(__name__)


@dataclass
class TekkenFlowMatchSchedulerOutput(BaseOutput):
    """
    Output of [`TekkenFlowMatchScheduler.step`].

    Args:
        prev_sample (`torch.Tensor`, same shape as the sample):
            The sample at the next (lower) noise level; the next model input.
        pred_original_sample (`torch.Tensor`, same shape as the sample):
            The clean sample implied by this step's velocity, `x - sigma * v`.
    """

    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor | None = None


class TekkenFlowMatchScheduler(SchedulerMixin, ConfigMixin):
    """
    Euler flow-matching scheduler with per-frame noise levels, training sigma sampling and context re-noising.

    The schedule options mirror [`~diffusers.FlowMatchEulerDiscreteScheduler`] (same names, same sigma grid for the
    same `shift` and step count; `FlowMatchEulerDiscreteScheduler.from_config(this.config)` works). The extra options
    belong to diffusion-forcing training and autoregressive sampling.

    Args:
        num_train_timesteps (`int`, defaults to `1000`):
            Scale between sigma and diffusers' `timesteps` (`timestep = sigma * num_train_timesteps`); the smallest
            default sigma is `1 / num_train_timesteps` before shifting.
        shift (`float`, defaults to `1.0`):
            Static shift of the sampling schedule, `sigma' = shift * sigma / (1 + (shift - 1) * sigma)`. The original
            owl-wms model sampled with `shift=3` (SD3's schedule). Training sigmas are not shifted.
        use_dynamic_shifting (`bool`, defaults to `False`): Shift by `mu` passed to `set_timesteps` instead.
        base_shift (`float`, defaults to `0.5`): As in diffusers (for pipelines that compute `mu`).
        max_shift (`float`, defaults to `1.15`): As in diffusers.
        base_image_seq_len (`int`, defaults to `256`): As in diffusers.
        max_image_seq_len (`int`, defaults to `4096`): As in diffusers.
        shift_terminal (`float`, *optional*): Stretch the shifted schedule so that its last sigma equals this.
        time_shift_type (`str`, defaults to `"exponential"`): Dynamic shifting formula, `"exponential"` or `"linear"`.
        logit_mean (`float`, defaults to `0.0`):
            Mean of the logit-normal training sigma distribution, `sigma = sigmoid(N(logit_mean, logit_std^2))` (the
            original owl-wms model: m = 0, s = 1, drawn independently per frame). Named as diffusers' training
            scripts name them.
        logit_std (`float`, defaults to `1.0`): Standard deviation of that distribution.
        context_noise (`float`, defaults to `0.2`):
            Sigma at which past frames are re-noised before they enter the model's cache (the original owl-wms
            model's `noise_prev`): it matches the noisy history the model sees in diffusion-forcing training.
        default_inference_steps (`int`, defaults to `8`):
            Euler steps per frame that `TekkenWorldModelPipeline` and its sessions use when the caller does not say
            (`num_inference_steps=None`). A sampling default of the trained model, kept beside `shift` and
            `context_noise`: the right count depends on the model (docs/evaluation.md measures 1, 2 and 4 steps).
            Training writes its `validation_inference_steps`; 8, the pipeline's default before this setting
            existed, keeps older saved pipelines sampling as they did.
        sigma_grid_shift (`float`, *optional*):
            The shift of the training grid whose end points bound every inference schedule. diffusers shifts that grid
            with `shift` when the scheduler is built and shifts the schedule again in `set_timesteps`, so the last
            sigma before 0 depends on the `shift` the scheduler was *built* with, not only on the one it samples with
            (`set_shift` changes only the latter): 4 steps at shift 16 end at sigma 0.204 when built with 16, at 0.046
            when built with 3 and set to 16. `None` (the default) keeps diffusers' grid (shifted by `shift`); a value
            pins the grid, so that the schedule is the same however the sampling shift was set.
    """

    _compatibles = ["FlowMatchEulerDiscreteScheduler"]
    order = 1
    init_noise_sigma = 1.0

    @register_to_config
    def __init__(
        self,
        num_train_timesteps: int = 1000,
        shift: float = 1.0,
        use_dynamic_shifting: bool = False,
        base_shift: float = 0.5,
        max_shift: float = 1.15,
        base_image_seq_len: int = 256,
        max_image_seq_len: int = 4096,
        shift_terminal: float | None = None,
        time_shift_type: Literal["exponential", "linear"] = "exponential",
        logit_mean: float = 0.0,
        logit_std: float = 1.0,
        context_noise: float = 0.2,
        default_inference_steps: int = 8,
        sigma_grid_shift: float | None = None,
    ):
        if num_train_timesteps < 1:
            raise ValueError(f"num_train_timesteps must be >= 1, got {num_train_timesteps}")
        if shift <= 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        if time_shift_type not in ("exponential", "linear"):
            raise ValueError(f"time_shift_type must be 'exponential' or 'linear', got {time_shift_type!r}")
        if logit_std <= 0:
            raise ValueError(f"logit_std must be > 0, got {logit_std}")
        if not 0.0 <= context_noise < 1.0:
            raise ValueError(f"context_noise must be in [0, 1), got {context_noise}")
        if int(default_inference_steps) != default_inference_steps or default_inference_steps < 1:
            raise ValueError(f"default_inference_steps must be an integer >= 1, got {default_inference_steps}")

        # The training grid, computed exactly as FlowMatchEulerDiscreteScheduler does: its end points (after the
        # static shift) are the end points of every inference schedule, so ours match theirs to the bit.
        timesteps = np.linspace(1, num_train_timesteps, num_train_timesteps, dtype=np.float32)[::-1].copy()
        sigmas = torch.from_numpy(timesteps).to(dtype=torch.float32) / num_train_timesteps
        if sigma_grid_shift is not None and sigma_grid_shift <= 0:
            raise ValueError(f"sigma_grid_shift must be > 0 (or None), got {sigma_grid_shift}")
        grid_shift = shift if sigma_grid_shift is None else sigma_grid_shift
        if not use_dynamic_shifting:
            sigmas = grid_shift * sigmas / (1 + (grid_shift - 1) * sigmas)
        self.sigmas = sigmas
        self.timesteps = sigmas * num_train_timesteps
        self.sigma_min = self.sigmas[-1].item()
        self.sigma_max = self.sigmas[0].item()
        self.num_inference_steps: int | None = None
        self._shift = shift
        self._step_index: int | None = None
        self._begin_index: int | None = None

    @property
    def shift(self) -> float:
        """The static shift used by `set_timesteps`."""
        return self._shift

    def set_shift(self, shift: float) -> None:
        """
        Change the static shift for the next `set_timesteps`.

        Args:
            shift (`float`): The new shift (> 0).
        """
        if shift <= 0:
            raise ValueError(f"shift must be > 0, got {shift}")
        self._shift = shift

    def time_shift(self, mu: float, sigma: float, t: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
        """
        Resolution-dependent shift of diffusers' flow-matching schedulers.

        Args:
            mu (`float`): Shift parameter (from `calculate_shift` in a pipeline).
            sigma (`float`): Exponent of the shift.
            t (`np.ndarray` or `torch.Tensor`): Sigmas to shift.
        """
        if self.config.time_shift_type == "exponential":
            return math.exp(mu) / (math.exp(mu) + (1 / t - 1) ** sigma)
        return mu / (mu + (1 / t - 1) ** sigma)

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        sigmas: list[float] | None = None,
        mu: float | None = None,
    ) -> None:
        """
        Set the sampling schedule: `self.sigmas` (`num_inference_steps + 1` values, descending, ending in 0) and
        `self.timesteps` (`sigmas[:-1] * num_train_timesteps`), and restart `step` at the schedule's beginning.

        Args:
            num_inference_steps (`int`, *optional*): Number of Euler steps per frame.
            device (`str` or `torch.device`, *optional*): Where to put `sigmas` and `timesteps`.
            sigmas (`list[float]`, *optional*):
                Custom sigmas before shifting (e.g. a distilled student's few steps); the terminal 0 is appended.
            mu (`float`, *optional*): Required with `use_dynamic_shifting`.
        """
        # 1. Base sigmas: a linear grid between the training grid's end points, or the caller's
        if self.config.use_dynamic_shifting and mu is None:
            raise ValueError("mu must be passed to set_timesteps when use_dynamic_shifting=True")
        if sigmas is None:
            if num_inference_steps is None or num_inference_steps < 1:
                raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
            num_train = self.config.num_train_timesteps
            sigmas = np.linspace(self.sigma_max * num_train, self.sigma_min * num_train, num_inference_steps)
            sigmas = sigmas / num_train
        else:
            if num_inference_steps is not None and len(sigmas) != num_inference_steps:
                raise ValueError(f"got {len(sigmas)} sigmas for num_inference_steps={num_inference_steps}")
            sigmas = np.array(sigmas, dtype=np.float32)
        self.num_inference_steps = len(sigmas)

        # 2. Shift (static or resolution-dependent), optionally stretched to end at `shift_terminal`
        if self.config.use_dynamic_shifting:
            sigmas = self.time_shift(mu, 1.0, sigmas)
        else:
            sigmas = self.shift * sigmas / (1 + (self.shift - 1) * sigmas)
        if self.config.shift_terminal:
            one_minus = 1 - sigmas
            sigmas = 1 - one_minus / (one_minus[-1] / (1 - self.config.shift_terminal))

        # 3. Tensors, with the terminal sigma 0 appended
        sigmas = torch.from_numpy(sigmas).to(dtype=torch.float32, device=device)
        self.timesteps = sigmas * self.config.num_train_timesteps
        self.sigmas = torch.cat([sigmas, torch.zeros(1, device=sigmas.device)])
        self._step_index = None
        self._begin_index = None

    def scale_model_input(self, sample: torch.Tensor, timestep: float | torch.Tensor | None = None) -> torch.Tensor:
        """
        Identity: flow-matching inputs need no scaling (kept for interchangeability with other schedulers).

        Args:
            sample (`torch.Tensor`): The model input.
            timestep (`float` or `torch.Tensor`, *optional*): Unused.
        """
        return sample

    @staticmethod
    def _expand(values: float | torch.Tensor, sample: torch.Tensor, name: str) -> torch.Tensor:
        # A scalar, or a tensor of the sample's leading dims ((B,) or per-frame (B, T)) -> broadcastable fp32 tensor.
        # A dim of size 1 broadcasts, as in diffusers: a (1,) timestep applies to the whole batch.
        values = torch.as_tensor(values, dtype=torch.float32, device=sample.device)
        leading = sample.shape[: values.ndim]
        if values.ndim > sample.ndim or any(v not in (1, s) for v, s in zip(values.shape, leading)):
            raise ValueError(
                f"{name} of shape {tuple(values.shape)} does not match the leading dims of the sample "
                f"{tuple(sample.shape)}; pass a scalar, (batch,) or (batch, frames) (size-1 dims broadcast)"
            )
        return values.reshape(values.shape + (1,) * (sample.ndim - values.ndim))

    @staticmethod
    def _check_sigma_range(sigmas: torch.Tensor, name: str) -> None:
        if sigmas.numel() and (sigmas.min() < 0 or sigmas.max() > 1):
            raise ValueError(
                f"{name} must be noise levels in [0, 1], got values in [{sigmas.min().item():g}, "
                f"{sigmas.max().item():g}]; divide diffusers timesteps by num_train_timesteps"
            )

    def scale_noise(self, sample: torch.Tensor, sigma: float | torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """
        Forward process `x_t = (1 - sigma) * x0 + sigma * noise`.

        Unlike [`~diffusers.FlowMatchEulerDiscreteScheduler.scale_noise`], which takes an entry of `timesteps` and
        looks its sigma up in the schedule, this takes the noise level itself (any value in [0, 1], per frame); a
        timestep above 1 is refused rather than read as a sigma. [`add_noise`] takes diffusers timesteps.
        Broadcasting follows diffusers: a scalar or a `(1,)` level applies to every sample of the batch.

        Args:
            sample (`torch.Tensor` of shape `(batch, frames, ...)`): Clean latents `x0`.
            sigma (`float` or `torch.Tensor`): Noise level in [0, 1]: a scalar, `(1,)`, `(batch,)` or per frame
                `(batch, frames)`.
            noise (`torch.Tensor`, same shape as `sample`): Gaussian noise.
        """
        sigma = self._expand(sigma, sample, "sigma")
        self._check_sigma_range(sigma, "sigma")
        return ((1.0 - sigma) * sample.float() + sigma * noise.float()).to(sample.dtype)

    def add_noise(
        self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: float | torch.Tensor
    ) -> torch.Tensor:
        """
        `scale_noise` in DDPM argument order with diffusers `timesteps` (`sigma * num_train_timesteps`), for generic
        training code.

        Args:
            original_samples (`torch.Tensor`): Clean latents.
            noise (`torch.Tensor`): Gaussian noise, same shape.
            timesteps (`float` or `torch.Tensor`):
                In `[0, num_train_timesteps]`: a scalar, `(1,)`, `(batch,)` or `(batch, frames)`.
        """
        sigma = torch.as_tensor(timesteps, dtype=torch.float32) / self.config.num_train_timesteps
        return self.scale_noise(original_samples, sigma, noise)

    def get_velocity_target(self, original_samples: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """
        The regression target of the model, `noise - x0` (constant along the straight path from `x0` to `noise`).

        Args:
            original_samples (`torch.Tensor`): Clean latents `x0`.
            noise (`torch.Tensor`): The noise used by `scale_noise`.
        """
        return noise - original_samples

    def sample_training_sigmas(
        self,
        batch_size: int,
        num_frames: int,
        generator: torch.Generator | list[torch.Generator] | None = None,
        device: str | torch.device | None = None,
    ) -> torch.Tensor:
        """
        Independent logit-normal noise levels for every frame (diffusion forcing):
        `sigmoid(N(logit_mean, logit_std^2))`.

        Args:
            batch_size (`int`): Number of sequences.
            num_frames (`int`): Frames per sequence.
            generator (`torch.Generator` or list of them, *optional*): For reproducible draws (one per sample if a
                list).
            device (`str` or `torch.device`, *optional*): Where to create the sigmas.

        Returns:
            `torch.Tensor` of shape `(batch_size, num_frames)`, float32, in (0, 1).
        """
        normal = randn_tensor((batch_size, num_frames), generator=generator, device=device, dtype=torch.float32)
        return torch.sigmoid(self.config.logit_mean + self.config.logit_std * normal)

    def add_context_noise(
        self,
        latents: torch.Tensor,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        context_noise: float | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Re-noise past frames to `context_noise` before they enter the model's KV cache.

        This is where "`context_noise=None` means the scheduler's value" is decided for every sampler (the pipeline,
        its sessions and the evaluation pass their `context_noise` through unchanged).

        Args:
            latents (`torch.Tensor` of shape `(batch, frames, ...)`): Clean context or finished frames.
            noise (`torch.Tensor`, *optional*): Noise to use; drawn with `generator` if not given.
            generator (`torch.Generator` or list of them, *optional*): For reproducible noise.
            context_noise (`float`, *optional*): The noise level in [0, 1]; defaults to the config's `context_noise`.

        Returns:
            `(noisy_latents, sigmas)`: the re-noised frames and their noise levels `(batch, frames)` (all
            `context_noise`), ready to pass to the transformer with `update_kv_cache=True`.
        """
        if context_noise is None:
            context_noise = self.config.context_noise
        if noise is None:
            noise = randn_tensor(latents.shape, generator=generator, device=latents.device, dtype=latents.dtype)
        sigmas = torch.full(latents.shape[:2], context_noise, dtype=torch.float32, device=latents.device)
        return self.scale_noise(latents, sigmas, noise), sigmas

    @property
    def step_index(self) -> int | None:
        """The index of the next `step` on the schedule; it grows by 1 after each scheduled step (as in diffusers)."""
        return self._step_index

    @property
    def begin_index(self) -> int | None:
        """The index of the first scheduled step, set by a pipeline with `set_begin_index`."""
        return self._begin_index

    def set_begin_index(self, begin_index: int = 0) -> None:
        """
        Start the scheduled steps at `begin_index` (e.g. after skipping the noisiest steps), as in diffusers.

        Args:
            begin_index (`int`, defaults to `0`): The index of `timesteps` the first `step` uses.
        """
        self._begin_index = begin_index

    def index_for_timestep(
        self, timestep: float | torch.Tensor, schedule_timesteps: torch.Tensor | None = None
    ) -> int:
        """
        The index of `timestep` in the schedule (diffusers' rule: of repeated values, the second).

        Args:
            timestep (`float` or `torch.Tensor`): An entry of `timesteps`.
            schedule_timesteps (`torch.Tensor`, *optional*): The schedule to search; defaults to `self.timesteps`.
        """
        if schedule_timesteps is None:
            schedule_timesteps = self.timesteps
        timestep = torch.as_tensor(timestep, dtype=schedule_timesteps.dtype, device=schedule_timesteps.device)
        indices = (schedule_timesteps == timestep.reshape(())).nonzero()
        if len(indices) == 0:
            hint = ""
            if 0 <= timestep.item() <= 1 < schedule_timesteps.max().item():
                hint = " (a sigma? timesteps are sigma * num_train_timesteps; step_per_frame takes sigmas)"
            schedule = [round(t, 3) for t in schedule_timesteps.tolist()]
            raise ValueError(
                f"timestep={timestep.item():g} is not on the schedule {schedule}{hint}; pass an entry of "
                "scheduler.timesteps"
            )
        # Repeated values occur when a schedule starts in the middle: taking the second one never skips a sigma.
        return int(indices[1 if len(indices) > 1 else 0].item())

    def _init_step_index(self, timestep: float | torch.Tensor) -> None:
        self._step_index = self.index_for_timestep(timestep) if self.begin_index is None else self.begin_index

    def step(
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        return_dict: bool = True,
        *,
        next_timestep: float | torch.Tensor | None = None,
    ) -> TekkenFlowMatchSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """
        One Euler step `x_next = x + (sigma_next - sigma) * v` in diffusers' timesteps (`sigma * num_train_timesteps`).

        Two ways to call it:

        * on the schedule, as any diffusers pipeline does: `set_timesteps(n)`, then `step(model_output, t, sample)`
          for each `t` in `timesteps`. The scheduler tracks its position (`step_index`, from the first `t` or from
          `set_begin_index`) and steps from `sigmas[step_index]` to `sigmas[step_index + 1]`, which gives exactly
          [`~diffusers.FlowMatchEulerDiscreteScheduler`]'s `prev_sample`;
        * per frame (the diffusion-forcing extension): `timestep` and `next_timestep` both given, each a scalar,
          `(batch,)` or `(batch, frames)`: every frame moves from its own level to its own next level. This is
          [`step_per_frame`] in timestep units; it does not use or move `step_index`.

        The update runs in fp32 and is returned in the sample's dtype.

        Args:
            model_output (`torch.Tensor`, same shape as `sample`): Predicted velocity `noise - x0`.
            timestep (`float` or `torch.Tensor`): An entry of `timesteps`, or per-frame levels with `next_timestep`.
            sample (`torch.Tensor` of shape `(batch, frames, ...)`): Current noisy latents.
            return_dict (`bool`, defaults to `True`): Return a [`TekkenFlowMatchSchedulerOutput`] or a tuple.
            next_timestep (`float` or `torch.Tensor`, *optional*):
                Per-frame target levels in `[0, num_train_timesteps]`, same forms as `timestep`.
        """
        if isinstance(timestep, int) or (isinstance(timestep, torch.Tensor) and not timestep.is_floating_point()):
            raise ValueError(
                "step() takes an entry of scheduler.timesteps (a float), not an integer index such as one from "
                "enumerate(timesteps)"
            )
        if next_timestep is not None:
            scale = self.config.num_train_timesteps
            sigma = torch.as_tensor(timestep, dtype=torch.float32) / scale
            sigma_next = torch.as_tensor(next_timestep, dtype=torch.float32) / scale
            return self.step_per_frame(model_output, sigma, sample, sigma_next, return_dict=return_dict)
        if torch.as_tensor(timestep).numel() != 1:
            raise ValueError(
                f"step() on the schedule takes one timestep, got shape {tuple(torch.as_tensor(timestep).shape)}; for "
                "per-frame levels pass next_timestep= as well (or use step_per_frame with sigmas)"
            )
        if self.num_inference_steps is None:
            raise ValueError("step() on the schedule needs a schedule: call set_timesteps first")
        if model_output.shape != sample.shape:
            raise ValueError(f"model_output {tuple(model_output.shape)} and sample {tuple(sample.shape)} differ")
        if self.step_index is None:
            self._init_step_index(timestep)
        if self.step_index >= self.num_inference_steps:
            raise ValueError(
                f"the schedule of {self.num_inference_steps} steps is finished: call set_timesteps again to restart"
            )

        sigma = self.sigmas[self.step_index].to(sample.device)
        sigma_next = self.sigmas[self.step_index + 1].to(sample.device)
        velocity = model_output.float()
        sample_fp32 = sample.float()
        prev_sample = (sample_fp32 + (sigma_next - sigma) * velocity).to(sample.dtype)
        pred_original_sample = (sample_fp32 - sigma * velocity).to(sample.dtype)
        self._step_index += 1
        if not return_dict:
            return prev_sample, pred_original_sample
        return TekkenFlowMatchSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def step_per_frame(
        self,
        model_output: torch.Tensor,
        sigma: float | torch.Tensor,
        sample: torch.Tensor,
        sigma_next: float | torch.Tensor,
        return_dict: bool = True,
    ) -> TekkenFlowMatchSchedulerOutput | tuple[torch.Tensor, torch.Tensor]:
        """
        One Euler step `x_next = x + (sigma_next - sigma) * v` with a noise level per frame (diffusion forcing).

        Each frame moves from its own `sigma` to its own `sigma_next`; a frame with `sigma_next == sigma` stays put.
        Stateless: it neither needs `set_timesteps` nor moves `step_index`, so several rollouts can share one
        scheduler. The update runs in fp32 and is returned in the sample's dtype.

        Args:
            model_output (`torch.Tensor`, same shape as `sample`): Predicted velocity `noise - x0`.
            sigma (`float` or `torch.Tensor`): Current noise levels in [0, 1]: a scalar, `(batch,)` or
                `(batch, frames)`.
            sample (`torch.Tensor` of shape `(batch, frames, ...)`): Current noisy latents.
            sigma_next (`float` or `torch.Tensor`): Target noise levels in [0, 1], same forms as `sigma`.
            return_dict (`bool`, defaults to `True`): Return a [`TekkenFlowMatchSchedulerOutput`] or a tuple.
        """
        if model_output.shape != sample.shape:
            raise ValueError(f"model_output {tuple(model_output.shape)} and sample {tuple(sample.shape)} differ")
        sigma = self._expand(sigma, sample, "sigma")
        sigma_next = self._expand(sigma_next, sample, "sigma_next")
        self._check_sigma_range(sigma, "sigma")
        self._check_sigma_range(sigma_next, "sigma_next")

        velocity = model_output.float()
        sample_fp32 = sample.float()
        prev_sample = (sample_fp32 + (sigma_next - sigma) * velocity).to(sample.dtype)
        pred_original_sample = (sample_fp32 - sigma * velocity).to(sample.dtype)
        if not return_dict:
            return prev_sample, pred_original_sample
        return TekkenFlowMatchSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)

    def __len__(self) -> int:
        return self.config.num_train_timesteps
