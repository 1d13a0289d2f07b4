"""Shard member encodings: which file type holds each image member of a sample, and the `raw` (.npy) codec.

- "png" (the default): alpha/trimap/image as PNG, foregrounds PNG or JPEG, backgrounds JPEG. Small on disk; every
  member must be decompressed (zlib or JPEG) by whoever reads it, on the CPU unless the decoder is a GPU JPEG one.
- "raw": every image member is a NumPy `.npy` file (format version 1.0) holding the H x W x C uint8 pixels (C = 3 for
  RGB, 1 for grey), exactly the pixels the png encoding's member decodes to. Several times larger on disk; decoding
  is a header parse and a copy (DALI's `fn.decoders.numpy`, `decode_npy` here).

A dataset uses one encoding for all its shards; the manifest records it under "encoding".
"""
from __future__ import annotations

import ast
import io

import numpy as np

ENCODINGS = ("png", "raw")
DEFAULT_ENCODING = "png"
IMAGE_MEMBERS = ("fg", "alpha", "bg", "image", "trimap")
RGB_MEMBERS = ("fg", "bg", "image")
# png encoding: the accepted extensions of each image member, the usual one first
_PNG_EXTS = {"fg": ("png", "jpg"), "bg": ("jpg", "png"), "alpha": ("png",), "image": ("png",), "trimap": ("png",)}
NPY_MAGIC = b"\x93NUMPY"


class MemberError(ValueError):
    """An encoded member that cannot be decoded (truncated, garbled, wrong type or shape)."""


def member_names(base: str, encoding: str) -> tuple[str, ...]:
    """The member names (`ext` as WebDataset splits it, e.g. 'alpha.png') that may hold image `base`."""
    if base not in IMAGE_MEMBERS:
        raise ValueError(f"{base!r} is not an image member ({', '.join(IMAGE_MEMBERS)})")
    if encoding == "raw":
        return (f"{base}.npy",)
    if encoding == "png":
        return tuple(f"{base}.{e}" for e in _PNG_EXTS[base])
    raise ValueError(f"unknown shard encoding {encoding!r} (known: {', '.join(ENCODINGS)})")


def member_name(base: str, encoding: str) -> str:
    """The member name a writer uses for image `base` (for png, the usual extension; fg may also be a JPEG)."""
    return member_names(base, encoding)[0]


def encode_npy(arr: np.ndarray) -> bytes:
    """`.npy` (version 1.0, C order) bytes of an H x W (grey) or H x W x 3 (RGB) uint8 array, stored as H x W x C."""
    if arr.dtype != np.uint8 or arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3)):
        raise ValueError(f"raw members are H x W or H x W x 3 uint8 arrays, got {arr.dtype} {arr.shape}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(arr), version=(1, 0), allow_pickle=False)
    return buf.getvalue()


def _header(data: bytes | np.ndarray) -> tuple[tuple[int, ...], int]:
    """(shape, offset of the pixel data) of `.npy` bytes, checking what the raw encoding allows."""
    head = bytes(data[:10])
    if len(head) < 10 or head[:6] != NPY_MAGIC:
        raise MemberError("not a .npy member (bad magic bytes)")
    if head[6] != 1:
        raise MemberError(f".npy format version {head[6]}.{head[7]}, expected 1.0")
    hlen = int.from_bytes(head[8:10], "little")
    raw = bytes(data[10:10 + hlen])
    if len(raw) < hlen:
        raise MemberError(f"truncated .npy header ({len(raw)} of {hlen} bytes)")
    try:
        meta = ast.literal_eval(raw.decode("latin1"))
        descr, fortran, shape = meta["descr"], meta["fortran_order"], tuple(meta["shape"])
    except Exception as exc:  # noqa: BLE001 - any garbling of the header dictionary
        raise MemberError(f"garbled .npy header ({type(exc).__name__})") from exc
    if np.dtype(descr) != np.uint8 or fortran:
        raise MemberError(f".npy holds {descr} (fortran_order={fortran}), expected C-ordered uint8")
    if len(shape) != 3 or shape[2] not in (1, 3) or min(shape) < 1:
        raise MemberError(f".npy shape {shape}, expected H x W x 1 or H x W x 3")
    return shape, 10 + hlen


def npy_shape(data: bytes | np.ndarray) -> tuple[int, int, int]:
    """(H, W, C) of a raw member from its header alone (MemberError if it is not one)."""
    shape, _ = _header(data)
    return shape  # type: ignore[return-value]


def decode_npy(data: bytes | np.ndarray, channels: int | None = None) -> np.ndarray:
    """H x W x C uint8 pixels of a raw member (a view of `data` where possible); MemberError when the member is
    not a complete raw image or, if `channels` is given, has another channel count."""
    shape, start = _header(data)
    need = start + shape[0] * shape[1] * shape[2]
    if len(data) != need:
        raise MemberError(f".npy member is {len(data)} bytes, its header says {need} (truncated or padded)")
    if channels is not None and shape[2] != channels:
        raise MemberError(f".npy member has {shape[2]} channel(s), expected {channels}")
    buf = data if isinstance(data, np.ndarray) else np.frombuffer(data, np.uint8)
    return buf[start:need].reshape(shape)
