"""predict_alpha: padding/cropping, normalisation, known-pixel copy, rounding, validation, tiling."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from torch import nn

from model.inference import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    plan_tiles,
    predict_alpha,
    predict_raw,
    prepare_input,
    tile_weights,
)


def make_pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    trimap = rng.choice(np.array([0, 128, 128, 255], dtype=np.uint8), size=(height, width))
    return image, trimap


class Recorder(nn.Module):
    """Returns a fixed function of its input and records how it was called."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn
        self.scale = nn.Parameter(torch.ones(()))
        self.calls: list[dict] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append({"input": x.detach().clone(), "training": self.training, "grad": torch.is_grad_enabled()})
        return self.fn(x) * self.scale


class LocalConvNet(nn.Module):
    """Purely local net (three 3×3 convs: receptive-field radius 3), N×4×H×W -> N×1×H×W."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1), nn.Tanh(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh(),
                                  nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


# ---------------------------------------------------------------------------------------------------------------------
# input preparation, padding, cropping
# ---------------------------------------------------------------------------------------------------------------------
def test_prepare_input_reflect_pads_and_normalises() -> None:
    image, trimap = make_pair(37, 53)
    x = prepare_input(image, trimap)
    assert x.shape == (1, 4, 48, 64) and x.dtype == torch.float32
    padded_rgb = np.pad(image, ((0, 11), (0, 11), (0, 0)), mode="reflect").astype(np.float64) / 255
    expected = (padded_rgb - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x[0, :3].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    np.testing.assert_allclose(x[0, 3].numpy(), np.pad(trimap, ((0, 11), (0, 11)), mode="reflect") / 255, atol=1e-7)
    # reflection without repeating the edge: padded row 37 is row 35
    np.testing.assert_array_equal(x[0, :, 37], x[0, :, 35])


@pytest.mark.parametrize(("height", "width"), [(37, 53), (16, 32), (1, 1), (5, 3), (17, 1)])
def test_odd_sizes_pad_and_crop_back(height: int, width: int) -> None:
    image, trimap = make_pair(height, width, seed=height)
    # the net returns its own trimap channel: predict_raw must give back exactly trimap/255 at the original size
    net = Recorder(lambda x: x[:, 3:4])
    raw = predict_raw(net, image, trimap)
    assert raw.shape == (height, width) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, trimap / 255.0, atol=1e-7)
    seen = net.calls[0]["input"]
    assert seen.shape[2] % 16 == 0 and seen.shape[3] % 16 == 0
    assert seen.shape[2] - height < 16 and seen.shape[3] - width < 16
    alpha = predict_alpha(net, image, trimap)
    assert alpha.shape == (height, width) and alpha.dtype == np.uint8
    np.testing.assert_array_equal(alpha, trimap)


def test_unknown_pixels_get_the_prediction_rounded_not_truncated() -> None:
    image, trimap = make_pair(20, 30)
    red = image[..., 0].astype(np.float64)

    def recover_red_plus_0_7(x: torch.Tensor) -> torch.Tensor:
        # undo the normalisation of R, then add 0.7 units: v + 0.7 rounds up to v + 1, would truncate to v
        r = x[:, 0:1] * IMAGENET_STD[0] + IMAGENET_MEAN[0]
        return r + 0.7 / 255

    alpha = predict_alpha(Recorder(recover_red_plus_0_7), image, trimap)
    unknown = trimap == 128
    expected = np.minimum(red + 1, 255)
    np.testing.assert_array_equal(alpha[unknown], expected[unknown])
    np.testing.assert_array_equal(alpha[~unknown], trimap[~unknown])


def test_output_is_clipped_and_known_pixels_copied() -> None:
    image, trimap = make_pair(24, 24)
    trimap[:, :8] = 128
    high = predict_alpha(Recorder(lambda x: torch.full_like(x[:, :1], 1.7)), image, trimap)
    low = predict_alpha(Recorder(lambda x: torch.full_like(x[:, :1], -0.5)), image, trimap)
    unknown = trimap == 128
    assert (high[unknown] == 255).all() and (low[unknown] == 0).all()
    np.testing.assert_array_equal(high[~unknown], trimap[~unknown])
    np.testing.assert_array_equal(low[~unknown], trimap[~unknown])


def test_runs_in_eval_mode_without_grad_and_restores_mode() -> None:
    image, trimap = make_pair(16, 16)
    net = Recorder(lambda x: x[:, 3:4])
    net.train()
    predict_alpha(net, image, trimap)
    assert net.calls[0]["training"] is False and net.calls[0]["grad"] is False
    assert net.training is True


def test_runs_in_the_nets_dtype() -> None:
    image, trimap = make_pair(16, 16)
    net = Recorder(lambda x: x[:, 3:4]).to(torch.float64)
    predict_alpha(net, image, trimap)
    assert net.calls[0]["input"].dtype == torch.float64


# ---------------------------------------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("image", "trimap", "message"),
    [
        (np.zeros((8, 8, 3), np.float32), np.zeros((8, 8), np.uint8), "image must have dtype uint8"),
        (np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), r"image must be H×W×3"),
        (np.zeros((8, 8, 4), np.uint8), np.zeros((8, 8), np.uint8), r"image must be H×W×3"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9), np.uint8), "does not match"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 1), np.uint8), "trimap must be a 2-D"),
        (np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8), np.int32), "trimap must have dtype uint8"),
        (np.zeros((8, 8, 3), np.uint8), np.full((8, 8), 127, np.uint8), "other values: 127"),
        (np.zeros((0, 8, 3), np.uint8), np.zeros((0, 8), np.uint8), "empty"),
        (torch.zeros(8, 8, 3, dtype=torch.uint8), np.zeros((8, 8), np.uint8), "numpy"),
    ],
)
def test_bad_inputs_raise(image: object, trimap: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        predict_alpha(Recorder(lambda x: x[:, 3:4]), image, trimap)  # type: ignore[arg-type]


def test_net_with_wrong_output_shape_raises() -> None:
    image, trimap = make_pair(16, 16)
    with pytest.raises(ValueError, match="N×1×H×W"):
        predict_alpha(Recorder(lambda x: x[:, :2]), image, trimap)


# ---------------------------------------------------------------------------------------------------------------------
# tiling
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("height", "width", "max_pixels", "overlap"),
                         [(112, 128, 48 * 48, 32), (4096, 4096, 2048 * 2048, 256), (64, 1024, 64 * 200, 64),
                          (208, 48, 64 * 64, 16)])
def test_plan_tiles_covers_with_overlap(height: int, width: int, max_pixels: int, overlap: int) -> None:
    tiles = plan_tiles(height, width, max_pixels, overlap)
    assert len(tiles) > 1
    coverage = np.zeros((height, width), dtype=np.float32)
    for tile in tiles:
        assert tile.height * tile.width <= max_pixels
        assert tile.y % 16 == tile.x % 16 == tile.height % 16 == tile.width % 16 == 0
        assert tile.y + tile.height <= height and tile.x + tile.width <= width
        coverage[tile.y:tile.y + tile.height, tile.x:tile.x + tile.width] += tile_weights(tile, height, width,
                                                                                           overlap)
    assert coverage.min() > 0
    for axis_starts, size in ((sorted({t.y for t in tiles}), tiles[0].height),
                              (sorted({t.x for t in tiles}), tiles[0].width)):
        assert all(a + size - b >= overlap for a, b in zip(axis_starts, axis_starts[1:]))


def test_plan_tiles_single_tile_when_it_fits_and_rejects_tiny_budgets() -> None:
    assert len(plan_tiles(64, 64, 64 * 64, 32)) == 1
    with pytest.raises(ValueError, match="too small for overlap"):
        plan_tiles(256, 256, 32 * 32, 64)
    with pytest.raises(ValueError, match="multiple of 16"):
        plan_tiles(256, 256, 64 * 64, 40)


def test_tiled_equals_untiled_for_a_local_net(caplog: pytest.LogCaptureFixture) -> None:
    net = LocalConvNet()
    image, trimap = make_pair(100, 120, seed=3)
    full = predict_raw(net, image, trimap)
    with caplog.at_level(logging.INFO, logger="model.inference"):
        tiled = predict_raw(net, image, trimap, max_pixels=48 * 48, overlap=32)  # discard band 8 >= radius 3
    assert "tiled inference" in caplog.text
    assert len(plan_tiles(112, 128, 48 * 48, 32)) > 4
    np.testing.assert_allclose(tiled, full, atol=1e-5)
    np.testing.assert_array_equal(
        predict_alpha(net, image, trimap, max_pixels=48 * 48, overlap=32), predict_alpha(net, image, trimap))
    # without overlap the seams show: the blending above is what makes the two agree
    seams = predict_raw(net, image, trimap, max_pixels=48 * 48, overlap=0)
    assert np.abs(seams - full).max() > 1e-3


# ---------------------------------------------------------------------------------------------------------------------
# the real network
# ---------------------------------------------------------------------------------------------------------------------
def test_real_a2u_matting_through_predict_alpha() -> None:
    from model.net import A2UMatting

    torch.manual_seed(0)
    net = A2UMatting()
    image, trimap = make_pair(40, 56, seed=5)
    alpha = predict_alpha(net, image, trimap)
    assert alpha.shape == (40, 56) and alpha.dtype == np.uint8
    known = trimap != 128
    np.testing.assert_array_equal(alpha[known], trimap[known])
    raw = predict_raw(net, image, trimap)
    assert np.isfinite(raw).all()
    np.testing.assert_array_equal(alpha[~known], np.rint(np.clip(raw, 0, 1) * 255)[~known].astype(np.uint8))
    # tiled: runs, right shape, known pixels intact (values differ: the A2U generators pool globally)
    tiled = predict_alpha(net, image, trimap, max_pixels=32 * 48, overlap=16)
    assert tiled.shape == (40, 56)
    np.testing.assert_array_equal(tiled[known], trimap[known])


@pytest.mark.gpu
def test_runs_on_the_nets_cuda_device() -> None:
    net = LocalConvNet()
    image, trimap = make_pair(50, 70, seed=7)
    cpu = predict_raw(net, image, trimap)
    gpu = predict_raw(net.cuda(), image, trimap)
    assert next(net.parameters()).is_cuda
    np.testing.assert_allclose(gpu, cpu, atol=1e-4)
