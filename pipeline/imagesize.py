"""Image sizes from encoded PNG/JPEG/.npy headers, so the sampling plan can build warp matrices before any decode."""
from __future__ import annotations

import struct

import numpy as np

from formats.encoding import NPY_MAGIC, MemberError, npy_shape


def image_size(data: np.ndarray | bytes) -> tuple[int, int]:
    """(height, width) of a PNG, baseline/progressive JPEG or raw `.npy` member, read from its header; ValueError
    if none of them."""
    b = bytes(data[:65536]) if isinstance(data, np.ndarray) else data[:65536]
    if b[:6] == NPY_MAGIC:
        try:
            h, w, _ = npy_shape(b)
        except MemberError as exc:
            raise ValueError(str(exc)) from exc
        return int(h), int(w)
    if b[:8] == b"\x89PNG\r\n\x1a\n" and b[12:16] == b"IHDR":
        w, h = struct.unpack(">II", b[16:24])
        return int(h), int(w)
    if b[:2] == b"\xff\xd8":
        i = 2
        while i + 9 < len(b):
            if b[i] != 0xFF:
                i += 1
                continue
            marker = b[i + 1]
            if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7 or marker == 0xFF:
                i += 2 if marker != 0xFF else 1
                continue
            (length,) = struct.unpack(">H", b[i + 2:i + 4])
            if marker in (0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF):
                h, w = struct.unpack(">HH", b[i + 5:i + 9])
                return int(h), int(w)
            i += 2 + length
        raise ValueError("JPEG without a frame header in its first 64 KiB")
    raise ValueError("not a PNG, JPEG or .npy stream")
