"""Decoding shard members, per shard encoding: DALI graph nodes for the loaders, and a host-side check that names
the member DALI failed on.

"png": PNG/JPEG through DALI's image decoders ("mixed" on the GPU: nvJPEG for JPEG, PNG on the host). "raw": `.npy`
pixel arrays through `decoders.numpy` (CPU only; a header parse and a copy), then copied to the GPU when the graph
runs there.
"""
from __future__ import annotations

import cv2
import numpy as np
from nvidia.dali import fn

from formats.encoding import MemberError, decode_npy


def _decoder_device(device: str) -> str:
    return "mixed" if device == "cuda" else "cpu"


def _raw_pixels(data):
    """H x W x C uint8 pixels of raw `.npy` members (CPU; `reshape` only attaches the layout, it copies nothing)."""
    return fn.reshape(fn.decoders.numpy(data), layout="HWC")


def decode_member(data, device: str, encoding: str, output_type):
    """An image member decoded to H x W x C uint8 on the graph's device: PNG/JPEG by DALI's image decoder ("mixed"
    on the GPU), raw `.npy` by `decoders.numpy` on the CPU, then copied to the GPU when the graph runs there."""
    if encoding == "raw":
        pixels = _raw_pixels(data)
        return pixels.gpu() if device == "cuda" else pixels
    return fn.decoders.image(data, device=_decoder_device(device), output_type=output_type)


def decode_member_window(data, start, shape, device: str, encoding: str, output_type):
    """Only the rows/columns [start, start + shape) of an image member (axes H, W): JPEG region decoding skips the
    rest of the stream; raw members are sliced after the (copy-cost) decode, before any copy to the GPU."""
    if encoding == "raw":
        window = fn.slice(_raw_pixels(data), start, shape, axis_names="HW")
        return window.gpu() if device == "cuda" else window
    return fn.decoders.image_slice(data, start, shape, axis_names="HW", device=_decoder_device(device),
                                   output_type=output_type)


def decodes(data: np.ndarray, encoding: str) -> bool:
    """Whether a member's bytes decode on the host (OpenCV for PNG/JPEG, the `.npy` checks for raw): used after a
    DALI failure to find the member to name."""
    if encoding == "raw":
        try:
            decode_npy(data)
        except MemberError:
            return False
        return True
    return cv2.imdecode(data, cv2.IMREAD_UNCHANGED) is not None
