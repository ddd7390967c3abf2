"""Random-weight timm models and the fidelity check the timm adapter tests share."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


def randomize_norms(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random norm statistics and affine parameters (timm zero-inits the last BN of a branch)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)) and m.weight is not None:
                n = m.weight.numel()
                m.weight.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(0.5 + torch.rand(n, generator=g))
    return model.eval()


def make(name: str, **kwargs: Any) -> nn.Module:
    """A random-weight timm model with random norm statistics and 10 classes."""
    import timm

    torch.manual_seed(0)
    return randomize_norms(timm.create_model(name, num_classes=10, **kwargs))


def image(seed: int = 1, size: int = 64) -> torch.Tensor:
    """Two small random images."""
    return torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(seed))


def assert_forward_equals_model(model: nn.Module, topology: Any, x: torch.Tensor) -> None:
    """The topology's stem -> units -> head run gives the model's own logits (non-trivial ones)."""
    with torch.no_grad():
        expected, got = model(x), topology.forward(x)
    assert expected.shape == (2, 10) and expected.abs().max() > 1e-3
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def forward_both_seeded(
    model: nn.Module, topology: Any, x: torch.Tensor, seed: int = 5
) -> tuple[torch.Tensor, torch.Tensor]:
    """(model(x), topology.forward(x)), each from the same RNG seed: stochastic layers draw alike."""
    with torch.no_grad():
        torch.manual_seed(seed)
        expected = model(x)
        torch.manual_seed(seed)
        return expected, topology.forward(x)
