"""`aspp_dilations`: on small training crops the default 6/12/18 taps read only padding and never train."""
from __future__ import annotations

import pytest
import torch

from model.net import A2UMatting, count_parameters


def _trained_tap_share(dilations: tuple[int, int, int] | None, crop: int) -> list[float]:
    torch.manual_seed(0)
    net = A2UMatting(aspp_dilations=dilations).train()
    net(torch.randn(2, 4, crop, crop)).sum().backward()
    shares = []
    for branch in ("aspp2", "aspp3", "aspp4"):
        grad = getattr(net.dconv_pp, branch).atrous_conv[0].weight.grad.clone()
        grad[:, :, 1, 1] = 0  # keep the off-centre taps only
        shares.append(float((grad.abs().flatten(1).sum(1) > 0).float().mean()))
    return shares


def test_default_dilations_leave_off_centre_taps_untrained_on_64px_crops() -> None:
    assert _trained_tap_share(None, 64) == [0.0, 0.0, 0.0]


def test_small_dilations_train_every_tap_on_64px_crops() -> None:
    assert _trained_tap_share((1, 2, 3), 64) == [1.0, 1.0, 1.0]


def test_dilations_change_no_parameter_and_are_validated() -> None:
    assert count_parameters(A2UMatting(aspp_dilations=(1, 2, 3))) == count_parameters(A2UMatting())
    assert A2UMatting(aspp_dilations=[1, 2, 3]).dconv_pp.aspp4.atrous_conv[0].dilation == (3, 3)
    with pytest.raises(ValueError, match="dilations"):
        A2UMatting(aspp_dilations=(0, 2, 3))
