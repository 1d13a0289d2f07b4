"""The HSV jitter as DALI arithmetic (the GPU loader's form) against DALI's `hsv` (the CPU loader's), on the CPU."""
from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest
import torch
from nvidia.dali import fn, pipeline_def, types

import pipeline
import pipeline.loader
import pipeline.train_graph
from pipeline.hsv import hsv_by_arithmetic, hsv_matrix
from pipeline.train_graph import finish_graph


def _both(images, hues, sats, vals, dtype=types.UINT8):
    n = len(images)

    @pipeline_def(batch_size=n, num_threads=1, device_id=None)
    def graph():
        x = fn.external_source(source=lambda: images, batch=True, layout="HWC")
        h, s, v = (fn.external_source(source=[[np.float32(t) for t in a]], batch=True, cycle=True)
                   for a in (hues, sats, vals))
        return fn.hsv(x, hue=h, saturation=s, value=v, dtype=dtype), hsv_by_arithmetic(x, h, s, v)

    g = graph()
    g.build()
    ref, got = g.run()
    return [np.array(ref[i]) for i in range(n)], [np.array(got[i]) for i in range(n)]


def test_arithmetic_hsv_gives_dalis_hsv_bytes() -> None:
    rng = np.random.default_rng(3)
    images = [rng.integers(0, 256, (int(rng.integers(4, 40)), int(rng.integers(4, 40)), 3)).astype(np.uint8)
              for _ in range(12)]
    hues = list(rng.uniform(-180, 180, 12))
    sats = [0.0, 2.5, *rng.uniform(0.2, 1.8, 10)]     # fully grey, oversaturated (clamps), usual
    vals = [1.0, 0.0, 3.0, *rng.uniform(0.5, 1.5, 9)]  # identity value, black, blown out
    ref, got = _both(images, hues, sats, vals)
    for r, g in zip(ref, got):
        assert r.shape == g.shape and r.dtype == g.dtype == np.uint8
        assert int(np.abs(r.astype(int) - g.astype(int)).max()) <= 1
    assert np.mean([np.mean(r == g) for r, g in zip(ref, got)]) > 0.99


def test_hsv_matrix_is_dalis_linear_map() -> None:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (8, 8, 3)).astype(np.uint8)
    for h, s, v in ((0.0, 1.0, 1.0), (0.0, 0.5, 1.0), (30.0, 0.6, 0.8), (-50.0, 1.3, 1.1)):
        (ref,), _ = _both([image], [h], [s], [v], dtype=types.FLOAT)
        mine = image.reshape(-1, 3).astype(np.float64) @ hsv_matrix(h, s, v).T
        assert np.abs(mine - ref.reshape(-1, 3)).max() < 1e-3, (h, s, v)


def test_train_loader_batches_same_with_arithmetic_hsv(synthetic_dataset: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The GPU loader's jitter form in the CPU loader: the same batches up to one level of rounding in fg."""
    def batches():
        ld = pipeline.build_train_loader(synthetic_dataset, 4, 64, seed=11, iterations_per_epoch=3)
        return list(ld)

    ref = batches()
    monkeypatch.setattr(pipeline.loader, "finish_graph", functools.partial(finish_graph, arithmetic_hsv=False))
    assert all(torch.equal(a["fg"], b["fg"]) for a, b in zip(ref, batches()))  # the CPU default is DALI's hsv
    built = []
    monkeypatch.setattr(pipeline.train_graph, "hsv_by_arithmetic", lambda *a: built.append(1) or hsv_by_arithmetic(*a))
    monkeypatch.setattr(pipeline.loader, "finish_graph", functools.partial(finish_graph, arithmetic_hsv=True))
    got = batches()
    assert built  # the arithmetic form is in the graph that made `got`
    assert len(ref) == len(got) == 3
    for a, b in zip(ref, got):
        for name in ("alpha", "trimap", "bg"):
            assert torch.equal(a[name], b[name]), name
        for name in ("fg", "image"):
            assert float((a[name] - b[name]).abs().max()) <= 1.0 / 255 + 1e-6, name
    assert all(float((a["fg"] - b["fg"]).abs().mean()) < 1e-3 for a, b in zip(ref, got))
