"""The DALI evaluation graph: test/val composites decoded at full size (image RGB, alpha and trimap grey).

Everything runs in DALI (PNG decoders on "cpu" or "mixed", raw `.npy` members by `decoders.numpy`); samples are fed
as encoded bytes in manifest order so each one is read exactly once, by exactly one rank.
"""
from __future__ import annotations

from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import Pipeline

from .decoding import decode_member


def eval_graph(batch_size: int, num_threads: int, device_id: int | None, device: str,
               encoding: str = "png") -> Pipeline:
    """Inputs `image`, `alpha`, `trimap` (encoded bytes in `encoding`, fed per batch); outputs HWC uint8 tensors."""

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, prefetch_queue_depth=1,
                  exec_dynamic=True)
    def graph():
        image = decode_member(fn.external_source(name="image"), device, encoding, types.RGB)
        alpha = decode_member(fn.external_source(name="alpha"), device, encoding, types.GRAY)
        trimap = decode_member(fn.external_source(name="trimap"), device, encoding, types.GRAY)
        return image, alpha, trimap

    return graph()
