"""World-model evaluation on held-out latent windows, with the copy-last-frame baseline beside it.

- Teacher-forced next-frame prediction: the cache holds the *true* previous frames (re-noised to the context level as
  in sampling); each frame is generated under its recorded input, then the true frame is appended in its place.
- Open-loop rollout: after the context, the model's own frames feed back; the inputs are the recorded (held-out) ones.

Pixel metrics compare decoded frames with the VAE's decoding of the true latents, so they measure the world model and
not the VAE (the VAE's own reconstruction error is reported separately). The shipped model's results are in
docs/evaluation.md.

Everything here works on latent frames. With a video VAE (temporal compression `r`) a latent frame is `r` game
frames, its input the pooled input of those frames (as the latent windows give it), and `score_frames` decodes each
predicted latent frame after the true ones before it (see `_score_video_frames`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..pipelines.rollout import GuidanceScale, TekkenRollout
from .metrics import psnr, ssim

__all__ = ["NextFrameScores", "teacher_forced_next_frames", "rollout_latents", "score_frames"]


@dataclass
class NextFrameScores:
    """Per-frame scores, averaged over the batch.

    Args:
        model_psnr: PSNR (dB) of the model's frames against the true frames, one value per predicted frame.
        baseline_psnr: PSNR of the copy-last-frame baseline (true frame t−1 as the prediction of frame t).
        model_ssim: SSIM of the model's frames.
        baseline_ssim: SSIM of the baseline.
    """

    model_psnr: np.ndarray
    baseline_psnr: np.ndarray
    model_ssim: np.ndarray
    baseline_ssim: np.ndarray

    def summary(self) -> dict[str, float]:
        return {
            "psnr": float(self.model_psnr.mean()),
            "psnr_copy_last": float(self.baseline_psnr.mean()),
            "ssim": float(self.model_ssim.mean()),
            "ssim_copy_last": float(self.baseline_ssim.mean()),
        }


@torch.no_grad()
def teacher_forced_next_frames(
    pipe,
    latents: torch.Tensor,
    action_bits: torch.Tensor,
    context_frames: int,
    num_inference_steps: int = 4,
    context_noise: float | None = None,
    generator: torch.Generator | None = None,
    guidance_scale: GuidanceScale = 1.0,
    truth_bits: torch.Tensor | None = None,
) -> torch.Tensor:
    """Predict frames `context_frames..T-1` of each window, each from the true frames before it.

    Args:
        pipe: a `TekkenWorldModelPipeline`.
        latents: normalised true latents `(B, T, C, h, w)`.
        action_bits: their inputs `(B, T, 8)`, or both players' `(B, T, 2, 8)` for a two-player model.
        context_frames: frames given before the first prediction (>= 1).
        guidance_scale: classifier-free guidance on the inputs, as in the pipeline (1 disables it).
        truth_bits: the inputs the true frames are written into the cache under, where they differ from the inputs
            frames are generated under: with an opponent policy, `action_bits` holds NaN for player 2 (the policy
            draws it) and `truth_bits` the inputs its inverse model reads from the true frames. Default `action_bits`.

    Returns:
        Predicted latents `(B, T - context_frames, C, h, w)`.
    """
    batch, num_frames = latents.shape[:2]
    if not 1 <= context_frames < num_frames:
        raise ValueError(f"context_frames must lie in [1, {num_frames - 1}], got {context_frames}")
    rollout = TekkenRollout(
        pipe, batch, num_inference_steps, guidance_scale=guidance_scale, context_noise=context_noise
    )
    latents, action_bits = latents.to(rollout.device, torch.float32), action_bits.to(rollout.device, torch.float32)
    truth_bits = action_bits if truth_bits is None else truth_bits.to(rollout.device, torch.float32)
    rollout.append(latents[:, :context_frames], truth_bits[:, :context_frames], generator)
    predictions = []
    for t in range(context_frames, num_frames):
        predictions.append(rollout.next_frame(action_bits[:, t : t + 1], generator, append=False))
        # teacher forcing: the truth goes into the cache
        rollout.append(latents[:, t : t + 1], truth_bits[:, t : t + 1], generator)
    return torch.cat(predictions, dim=1)


@torch.no_grad()
def rollout_latents(
    pipe,
    latents: torch.Tensor,
    action_bits: torch.Tensor,
    context_frames: int,
    num_inference_steps: int = 4,
    generator: torch.Generator | None = None,
    context_noise: float | None = None,
    guidance_scale: GuidanceScale = 1.0,
) -> torch.Tensor:
    """Open-loop generation of frames `context_frames..T-1` under the recorded inputs: `(B, T - ctx, C, h, w)`;
    `context_noise=None` is the scheduler's; `guidance_scale` as in the pipeline (1 disables guidance).

    `action_bits` are `(B, T, 8)`, or `(B, T, 2, 8)` (player 1, player 2) for a two-player model: one input per latent
    frame, so this runs the rollout itself rather than the pipeline's `__call__`, which takes one input per game frame
    (the same thing for a per-frame VAE: the same calls in the same order, hence the same frames).
    """
    if not 1 <= context_frames < latents.shape[1]:
        raise ValueError(f"context_frames must lie in [1, {latents.shape[1] - 1}], got {context_frames}")
    rollout = TekkenRollout(
        pipe, latents.shape[0], num_inference_steps, guidance_scale=guidance_scale, context_noise=context_noise
    )
    latents, action_bits = latents.to(rollout.device, torch.float32), action_bits.to(rollout.device, torch.float32)
    rollout.append(latents[:, :context_frames], action_bits[:, :context_frames], generator)
    return rollout.generate(action_bits[:, context_frames:], generator)


@torch.no_grad()
def score_frames(pipe, predicted: torch.Tensor, latents: torch.Tensor, context_frames: int) -> NextFrameScores:
    """Decode predicted and true latents and score the prediction and the copy-last-frame baseline per frame.

    Args:
        predicted: `(B, N, C, h, w)` predictions of true frames `context_frames .. context_frames + N - 1`.
        latents: the true latents `(B, T, C, h, w)`.
    """
    if pipe.temporal_compression_ratio > 1:
        return _score_video_frames(pipe, predicted, latents, context_frames)
    num_predicted = predicted.shape[1]
    truth = pipe.decode_latents(latents[:, context_frames - 1 : context_frames + num_predicted])  # (B, 3, N+1, H, W)
    truth = (truth.permute(0, 2, 1, 3, 4) + 1) / 2  # (B, N+1, 3, H, W) in [0, 1]
    frames = (pipe.decode_latents(predicted).permute(0, 2, 1, 3, 4) + 1) / 2  # (B, N, 3, H, W)
    target, previous = truth[:, 1:], truth[:, :-1]
    return NextFrameScores(
        model_psnr=psnr(frames, target).mean(0).cpu().numpy(),
        baseline_psnr=psnr(previous, target).mean(0).cpu().numpy(),
        model_ssim=ssim(frames.flatten(0, 1), target.flatten(0, 1)).view(frames.shape[:2]).mean(0).cpu().numpy(),
        baseline_ssim=ssim(previous.flatten(0, 1), target.flatten(0, 1)).view(frames.shape[:2]).mean(0).cpu().numpy(),
    )


@torch.no_grad()
def _score_video_frames(pipe, predicted: torch.Tensor, latents: torch.Tensor, context_frames: int) -> NextFrameScores:
    """`score_frames` for a video VAE (temporal compression `r`): one score per predicted latent frame, the mean
    over its `r` game frames.

    A video VAE decodes a latent frame in the light of the ones before it, so predicted latent frame `t` is decoded
    as the end of the clip `[true frames 0 … t-1, prediction]`, and the target is true frame `t` decoded the same way
    (one VAE call for both). The copy-last-frame baseline holds the last true game frame before them for all `r`.
    """
    ratio = pipe.temporal_compression_ratio
    batch, num_predicted = predicted.shape[:2]
    latents = latents.to(predicted.device, predicted.dtype)
    scores: dict[str, list[float]] = {"model_psnr": [], "baseline_psnr": [], "model_ssim": [], "baseline_ssim": []}
    for index in range(num_predicted):
        t = context_frames + index
        clips = torch.cat(
            [
                torch.cat([latents[:, :t], predicted[:, index : index + 1]], dim=1),
                latents[:, : t + 1],
            ]
        )  # (2B, t + 1, C, h, w): the prediction's clip, then the truth's
        decoded = (pipe.decode_latents(clips).permute(0, 2, 1, 3, 4) + 1) / 2  # (2B, 1 + t·r, 3, H, W) in [0, 1]
        frames, target = decoded[:batch, -ratio:], decoded[batch:, -ratio:]  # (B, r, 3, H, W)
        previous = decoded[batch:, -ratio - 1 : -ratio].expand_as(target)  # the last true game frame, held
        scores["model_psnr"].append(float(psnr(frames, target).mean()))
        scores["baseline_psnr"].append(float(psnr(previous, target).mean()))
        scores["model_ssim"].append(float(ssim(frames.flatten(0, 1), target.flatten(0, 1)).mean()))
        scores["baseline_ssim"].append(float(ssim(previous.flatten(0, 1), target.flatten(0, 1)).mean()))
    return NextFrameScores(**{name: np.asarray(values, dtype=np.float32) for name, values in scores.items()})
