"""Evaluation: image metrics (PSNR, SSIM) and world-model evaluation helpers."""

from .metrics import MAX_PSNR, psnr, ssim
