"""Test-time augmentation (flip, d4) and the padding choice of model/inference.py."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from model.inference import predict_alpha, predict_raw, prepare_input
from tests.test_model.test_inference import LocalConvNet, Recorder, make_pair


class PointwiseNet(nn.Module):
    """1×1 convolutions only: commutes exactly with every flip and rotation."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(1)
        self.body = nn.Sequential(nn.Conv2d(4, 8, 1), nn.Tanh(), nn.Conv2d(8, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MirrorSymmetricNet(nn.Module):
    """3×3 convolutions whose kernels are left-right symmetric (zero padding on both sides): commutes with the
    horizontal mirror, not with rotations."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(2)
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 1, 3, padding=1))
        with torch.no_grad():
            for m in self.body:
                if isinstance(m, nn.Conv2d):
                    m.weight.copy_((m.weight + m.weight.flip(-1)) / 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


@pytest.mark.parametrize("pad", ["reflect", "zero"])
@pytest.mark.parametrize("tta", ["flip", "d4"])
@pytest.mark.parametrize("max_pixels", [1 << 20, 96 * 96])  # untiled, and tiled (overlap 32)
def test_tta_is_exactly_the_plain_output_for_an_equivariant_net(pad: str, tta: str, max_pixels: int) -> None:
    image, trimap = make_pair(150, 203, seed=3)
    net = PointwiseNet()
    plain = predict_raw(net, image, trimap, pad=pad, max_pixels=max_pixels, overlap=32)
    augmented = predict_raw(net, image, trimap, pad=pad, tta=tta, max_pixels=max_pixels, overlap=32)
    np.testing.assert_array_equal(augmented, plain)


def test_flip_tta_on_a_mirror_symmetric_input_equals_the_plain_output() -> None:
    half_image, half_trimap = make_pair(32, 16, seed=4)
    image = np.concatenate([half_image, half_image[:, ::-1]], axis=1)  # 32×32, a multiple of 16: no padding
    trimap = np.concatenate([half_trimap, half_trimap[:, ::-1]], axis=1)
    net = MirrorSymmetricNet()
    plain = predict_raw(net, image, trimap)
    np.testing.assert_allclose(predict_raw(net, image, trimap, tta="flip"), plain, rtol=0, atol=1e-6)
    # a net without the symmetry gives a different flip average: the mirror really is applied and undone
    other = LocalConvNet()
    assert np.abs(predict_raw(other, image, trimap, tta="flip") - predict_raw(other, image, trimap)).max() > 1e-4


def test_d4_feeds_the_net_all_eight_symmetries() -> None:
    image, trimap = make_pair(16, 32, seed=5)
    net = Recorder(lambda x: x[:, 3:4])
    out = predict_raw(net, image, trimap, tta="d4")
    x = prepare_input(image, trimap)
    seen = [c["input"] for c in net.calls]
    assert len(seen) == 8 and sum(s.shape[2:] == (32, 16) for s in seen) == 4  # four of them rotated by 90°
    expected = [torch.rot90(torch.flip(x, (3,)) if m else x, k, (2, 3)) for k in range(4) for m in (False, True)]
    for e in expected:
        assert any(s.shape == e.shape and torch.equal(s, e) for s in seen)
    np.testing.assert_array_equal(out, trimap.astype(np.float32) / 255.0)  # every output undone before averaging


def test_d4_on_a_real_a2u_net_runs_and_stays_in_range() -> None:
    from model.net import A2UMatting

    torch.manual_seed(0)
    net = A2UMatting().eval()
    image, trimap = make_pair(40, 56, seed=6)
    raw = predict_raw(net, image, trimap, tta="d4")
    assert raw.shape == (40, 56) and np.isfinite(raw).all()
    assert np.abs(raw - predict_raw(net, image, trimap)).max() > 0  # the average is not the plain output
    alpha = predict_alpha(net, image, trimap, tta="d4")
    assert alpha.dtype == np.uint8 and alpha.shape == (40, 56)
    np.testing.assert_array_equal(alpha, np.rint(np.clip(raw, 0, 1) * 255).astype(np.uint8) * (trimap == 128)
                                  + trimap * (trimap != 128))


def test_zero_padding_leaves_the_margin_at_zero() -> None:
    image, trimap = make_pair(20, 25, seed=7)
    zero, reflect = prepare_input(image, trimap, pad="zero"), prepare_input(image, trimap, pad="reflect")
    assert zero.shape == reflect.shape == (1, 4, 32, 32)
    torch.testing.assert_close(zero[:, :, :20, :25], reflect[:, :, :20, :25], rtol=0, atol=0)
    assert torch.count_nonzero(zero[:, :, 20:]) == 0 and torch.count_nonzero(zero[:, :, :, 25:]) == 0
    assert torch.count_nonzero(reflect[:, :, 20:]) > 0


@pytest.mark.parametrize("option", [{"tta": "rot"}, {"pad": "edge"}])
def test_unknown_options_are_refused(option: dict) -> None:
    image, trimap = make_pair(16, 16)
    with pytest.raises(ValueError, match=f"must be one of .*{list(option.values())[0]!r}"):
        predict_raw(PointwiseNet(), image, trimap, **option)
