"""Image metrics in torch: PSNR and SSIM per image, for VAE reconstruction and next-frame quality.

Both take images `[..., C, H, W]` with values in `[0, data_range]` (e.g. 0..1 floats, or uint8 with `data_range=255`)
and return one value per image (shape `[...]`); average them yourself (the mean over frames of per-frame PSNR is the
usual video number).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["psnr", "ssim", "MAX_PSNR"]

# PSNR of a perfect reconstruction is infinite; it is capped here so that means over frames stay finite.
MAX_PSNR = 100.0


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    if prediction.shape != target.shape:
        raise ValueError(f"prediction has shape {tuple(prediction.shape)} but target has {tuple(target.shape)}")
    if prediction.ndim < 3:
        raise ValueError(f"expected images [..., C, H, W], got shape {tuple(prediction.shape)}")


def psnr(prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB per image: `10·log10(data_range² / MSE)`, capped at `MAX_PSNR`.

    Args:
        prediction: images `[..., C, H, W]`.
        target: images of the same shape.
        data_range: the value span of the images (1 for 0..1, 255 for uint8).

    Returns:
        float32 `[...]`.
    """
    _check_pair(prediction, target)
    error = prediction.double() - target.double()
    mse = error.pow(2).flatten(-3).mean(-1)  # [...]
    floor = data_range**2 * 10 ** (-MAX_PSNR / 10)
    return (10 * torch.log10(data_range**2 / mse.clamp_min(floor))).float()


def _gaussian_window(size: int, sigma: float, channels: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    offsets = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    weights = torch.exp(-(offsets**2) / (2 * sigma**2))
    weights = weights / weights.sum()
    window = weights[:, None] * weights[None, :]  # (size, size), sums to 1
    return window.expand(channels, 1, size, size).contiguous()  # depthwise


def ssim(
    prediction: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004): gaussian 11×11 window, σ = 1.5, K1 = 0.01, K2 = 0.03.

    Local statistics use the window without padding ("valid", as the reference MATLAB code), per channel; the SSIM
    map is averaged over channels and positions. Images smaller than the window use a window of their size.

    Args:
        prediction: images `[..., C, H, W]`.
        target: images of the same shape.
        data_range: the value span of the images.
        window_size: side of the gaussian window.
        sigma: standard deviation of the window.
        k1: stabiliser of the luminance term, `C1 = (k1·data_range)²`.
        k2: stabiliser of the contrast-structure term, `C2 = (k2·data_range)²`.

    Returns:
        float32 `[...]`.
    """
    _check_pair(prediction, target)
    batch_shape = prediction.shape[:-3]
    channels, height, width = prediction.shape[-3:]
    x = prediction.double().reshape(-1, channels, height, width)  # (N, C, H, W)
    y = target.double().reshape(-1, channels, height, width)
    size = min(window_size, height, width)
    window = _gaussian_window(size, sigma, channels, x.dtype, x.device)

    def local_mean(images: torch.Tensor) -> torch.Tensor:
        return F.conv2d(images, window, groups=channels)  # (N, C, H - size + 1, W - size + 1)

    mu_x, mu_y = local_mean(x), local_mean(y)
    var_x = local_mean(x * x) - mu_x**2
    var_y = local_mean(y * y) - mu_y**2
    cov_xy = local_mean(x * y) - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(-1).reshape(batch_shape).float()
