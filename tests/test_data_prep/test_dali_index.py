"""DALI's fn.readers.webdataset reads our shards through our .idx files (CPU pipeline, device_id=None)."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from data_prep.reader import iter_samples

from .conftest import manifest

dali = pytest.importorskip("nvidia.dali")


def _read_all(paths, index_paths, ext, n):
    from nvidia.dali import fn, pipeline_def, types

    @pipeline_def(batch_size=1, num_threads=1, device_id=None)
    def pipe():
        outs = fn.readers.webdataset(paths=paths, index_paths=index_paths, ext=ext, missing_component_behavior="error",
                                     random_shuffle=False, name="Reader")
        return tuple(fn.decoders.image(o, device="cpu", output_type=types.GRAY if "alpha" in e or "trimap" in e
                                       else types.RGB) for o, e in zip(outs, ext))

    p = pipe()
    p.build()
    assert p.epoch_size("Reader") == n
    got = []
    for _ in range(n):
        got.append([np.array(o.as_array()[0]) for o in p.run()])
    return got


@pytest.mark.parametrize("kind,ext", [("fg", ["fg.png;fg.jpg", "alpha.png"]),
                                      ("test", ["image.png", "trimap.png", "alpha.png"])])
def test_dali_reads_shards_with_our_index(synthetic_dataset, kind, ext):
    shards = [s for s in manifest(synthetic_dataset)["shards"] if s["kind"] == kind]
    paths = [str(synthetic_dataset / s["name"]) for s in shards]
    idx = [str((synthetic_dataset / s["name"]).with_suffix(".idx")) for s in shards]
    n = sum(s["samples"] for s in shards)
    got = _read_all(paths, idx, ext, n)
    expected = [m for p in paths for _k, m in iter_samples(p)]
    assert len(got) == len(expected) == n
    for arrays, members in zip(got, expected):
        for arr, e in zip(arrays, ext):
            name = next(x for x in e.split(";") if x in members)
            ref = np.asarray(Image.open(io.BytesIO(members[name])))
            assert np.array_equal(arr.reshape(ref.shape), ref), name
