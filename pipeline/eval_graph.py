"""The DALI evaluation graph: test/val composites decoded at full size (image RGB, alpha and trimap grey).

Everything runs in DALI (decoders on "cpu" or "mixed"); samples are fed as encoded bytes in manifest order so each
one is read exactly once, by exactly one rank.
"""
from __future__ import annotations

from nvidia.dali import fn, pipeline_def, types
from nvidia.dali.pipeline import Pipeline


def eval_graph(batch_size: int, num_threads: int, device_id: int | None, device: str) -> Pipeline:
    """Inputs `image`, `alpha`, `trimap` (encoded bytes, fed per batch); outputs HWC uint8 tensors."""

    @pipeline_def(batch_size=batch_size, num_threads=num_threads, device_id=device_id, prefetch_queue_depth=1,
                  exec_dynamic=True)
    def graph():
        dec = "mixed" if device == "cuda" else "cpu"
        image = fn.decoders.image(fn.external_source(name="image"), device=dec, output_type=types.RGB)
        alpha = fn.decoders.image(fn.external_source(name="alpha"), device=dec, output_type=types.GRAY)
        trimap = fn.decoders.image(fn.external_source(name="trimap"), device=dec, output_type=types.GRAY)
        return image, alpha, trimap

    return graph()
