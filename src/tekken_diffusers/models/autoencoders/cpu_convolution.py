"""Batch-1 fp32 convolutions on a CPU through oneDNN.

PyTorch runs a CPU fp32 `conv2d` on its own im2col + matmul path ("slow_conv2d") when the batch is 1 and the input is
small (at most 20,480 elements, no groups, kernels up to 3×3), expecting oneDNN's set-up cost not to pay there. For
the DC-AE decoder's 8×8 and 16×16 stages at batch 1, which is how the world model's sessions decode each frame, it
does: oneDNN ran those convolutions 1.4–1.9× faster, and the decoder of a 64×64 frame took 2.54 instead of 2.97 ms
on two threads, 3.67 instead of 4.72 on one (AMD EPYC, avx512_bf16, 2026-11-30, medians of interleaved calls).
Larger inputs and batches already go to oneDNN, so only the small calls change. Results agree with the default path
to float rounding (~1e-6).

[`OneDNNConv2d`] is an `nn.Conv2d` (same parameters, same state dict) whose `_conv_forward` calls
`torch.mkldnn_convolution` for fp32 CPU inputs outside autograd and autocast, and `nn.Conv2d`'s own path otherwise;
[`use_onednn_convolutions`] turns a module's plain `nn.Conv2d` layers into it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["OneDNNConv2d", "use_onednn_convolutions"]


def _onednn_applies(x: torch.Tensor, weight: torch.Tensor) -> bool:
    return (
        x.device.type == "cpu"
        and x.dtype == weight.dtype == torch.float32
        and x.ndim == 4
        and not (torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad))
        and not torch.is_autocast_enabled("cpu")  # autocast casts F.conv2d's inputs, not the oneDNN call's
        and torch.backends.mkldnn.is_available()
        and torch.backends.mkldnn.enabled
    )


class OneDNNConv2d(nn.Conv2d):
    """`nn.Conv2d` that runs fp32 CPU inference through oneDNN at every batch size (see the module docstring)."""

    def _conv_forward(self, input: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.padding_mode == "zeros" and not isinstance(self.padding, str) and _onednn_applies(input, weight):
            return torch.mkldnn_convolution(input, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(input, weight, bias)


def use_onednn_convolutions(module: nn.Module) -> int:
    """Make every plain `nn.Conv2d` inside `module` an [`OneDNNConv2d`] in place (parameters, buffers and state-dict
    keys unchanged); returns how many layers changed."""
    changed = 0
    for layer in module.modules():
        if type(layer) is nn.Conv2d:
            layer.__class__ = OneDNNConv2d
            changed += 1
    return changed
