"""PSNR and SSIM against values computed by hand and by a direct loop over windows."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tekken_diffusers.evaluation.metrics import MAX_PSNR, psnr, ssim


def test_psnr_hand_values():
    target = torch.zeros(2, 3, 4, 4)
    prediction = torch.full((2, 3, 4, 4), 0.1)  # MSE 0.01 → 10·log10(1 / 0.01) = 20 dB
    torch.testing.assert_close(psnr(prediction, target), torch.tensor([20.0, 20.0]))
    # uint8 frames off by one everywhere: 10·log10(255²) = 48.1308 dB
    frames = torch.randint(0, 255, (1, 3, 8, 8))
    assert psnr((frames + 1).float(), frames.float(), data_range=255.0).item() == pytest.approx(48.1308, abs=1e-4)
    # half the pixels off by 0.2: MSE 0.02 → 16.9897 dB
    half = torch.zeros(1, 1, 2, 2)
    half[..., 0, :] = 0.2
    assert psnr(half, torch.zeros(1, 1, 2, 2)).item() == pytest.approx(10 * math.log10(1 / 0.02), abs=1e-5)


def test_psnr_is_per_image_and_capped():
    target = torch.rand(2, 5, 3, 8, 8)
    prediction = target.clone()
    prediction[1, 2] += 0.1
    values = psnr(prediction, target)
    assert values.shape == (2, 5)
    assert values[0].eq(MAX_PSNR).all() and values[1, 2].item() == pytest.approx(20.0, abs=1e-4)
    with pytest.raises(ValueError, match=r"prediction has shape \(1, 3, 8, 8\) but target has \(1, 3, 8, 7\)"):
        psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 7))


def test_ssim_of_constant_images_is_the_luminance_term():
    # no variance: SSIM = (2ab + C1) / (a² + b² + C1) · (0 + C2) / (0 + C2)
    a, b = 0.5, 0.25
    c1 = 0.01**2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    value = ssim(torch.full((1, 3, 16, 16), a), torch.full((1, 3, 16, 16), b))
    assert value.item() == pytest.approx(expected, abs=1e-6)
    assert expected == pytest.approx(0.80006, abs=1e-5)


def test_ssim_identity_and_anticorrelation():
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(images, images), torch.ones(3))
    # a negated image (around 0.5) keeps means and variances but flips the covariance: SSIM is close to -1
    assert (ssim(1 - images, images) < -0.9).all()


def reference_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 1.0) -> float:
    """SSIM by explicit loops over 11×11 windows (Wang et al. 2004), one channel."""
    offsets = np.arange(11) - 5
    g = np.exp(-(offsets**2) / (2 * 1.5**2))
    g /= g.sum()
    w = np.outer(g, g)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(x.shape[0] - 10):
        for j in range(x.shape[1] - 10):
            px, py = x[i : i + 11, j : j + 11], y[i : i + 11, j : j + 11]
            mx, my = (w * px).sum(), (w * py).sum()
            vx, vy = (w * (px - mx) ** 2).sum(), (w * (py - my) ** 2).sum()
            cov = (w * (px - mx) * (py - my)).sum()
            values.append(((2 * mx * my + c1) * (2 * cov + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def test_ssim_matches_a_direct_window_loop():
    rng = np.random.default_rng(1)
    x = rng.random((14, 13))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    value = ssim(torch.tensor(y)[None, None], torch.tensor(x)[None, None]).item()
    assert value == pytest.approx(reference_ssim(y, x), abs=1e-6)
    # uint8 range: the same images scaled by 255 give the same SSIM with data_range=255
    scaled = ssim(torch.tensor(y * 255)[None, None], torch.tensor(x * 255)[None, None], data_range=255.0).item()
    assert scaled == pytest.approx(value, abs=1e-6)


def test_ssim_averages_channels_and_keeps_batch_shape():
    x = torch.rand(2, 4, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    y = (x + 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))).clamp(0, 1)
    values = ssim(y, x)
    assert values.shape == (2, 4)
    per_channel = [ssim(y[:, :, c : c + 1], x[:, :, c : c + 1]) for c in range(3)]
    torch.testing.assert_close(values, torch.stack(per_channel).mean(0))
