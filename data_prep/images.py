"""Reading, validating and encoding raw matting images.

Raw datasets are messy (RGBA foregrounds, 16-bit alphas, palette PNGs, truncated files), so every image goes
through `load_rgb` / `load_alpha`, which either return a clean 8-bit array or raise `BadInputError` naming the
file and the problem. Encoding goes through OpenCV (fast, deterministic bytes for the same input).
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from formats.encoding import RGB_MEMBERS, MemberError, decode_npy, encode_npy
from formats.images import is_image_name

PNG_LEVEL = 3  # zlib level: level 3 is ~3x faster than 9 for ~5 % larger files
JPEG_QUALITY = 95

Image.MAX_IMAGE_PIXELS = 20000 * 20000  # big matting photos are legitimate; refuse only absurd ones


class BadInputError(ValueError):
    """A raw input file that cannot be used; `path` and `problem` go into the manifest's "skipped" list."""

    def __init__(self, path: str | Path, problem: str) -> None:
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{path}: {problem}")


def _open(path: Path) -> Image.Image:
    """Open and fully decode an image, turning every PIL failure into a BadInputError."""
    if not is_image_name(path):
        raise BadInputError(path, f"not an image file (extension {path.suffix or 'none'!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            im = Image.open(path)
            im.load()  # decodes everything: truncated files fail here, not later in a worker
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombWarning) as exc:
        raise BadInputError(path, f"corrupt or truncated image ({exc})") from exc
    return im


def check_min_size(path: Path, width: int, height: int, min_size: int) -> None:
    """Reject images whose shorter side is below `min_size` pixels (too small to crop for training)."""
    if min(width, height) < min_size:
        raise BadInputError(path, f"image too small ({width}x{height}, minimum side {min_size} px)")


def load_rgb(path: Path, min_size: int = 1) -> np.ndarray:
    """Read any supported image as H x W x 3 uint8 RGB (palette, grayscale, RGBA and 16-bit are converted)."""
    im = _open(path)
    check_min_size(path, im.width, im.height, min_size)
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        arr = np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)  # 65535 -> 255 exactly
        return np.repeat(arr[:, :, None], 3, axis=2)
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8))


def load_alpha(path: Path, min_size: int = 1) -> np.ndarray:
    """Read an alpha matte as H x W uint8.

    16-bit mattes are scaled (v / 257, rounded) rather than truncated; RGB(A) mattes are accepted only when their
    colour channels are equal (a grey matte saved as RGB), otherwise it is an error, because guessing which channel
    holds the matte silently corrupts training. An image with an alpha channel (LA, RGBA) that is not opaque
    everywhere holds the matte there when its grey is flat (a cut-out's transparency over a white or black fill) or
    equal to it; a grey and an alpha channel that both vary, differently, are an error for the same reason.
    """
    im = _open(path)
    check_min_size(path, im.width, im.height, min_size)
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        if arr.max() > 65535 or arr.min() < 0:
            raise BadInputError(path, f"alpha values outside 0..65535 (mode {mode})")
        if 0 < arr.max() <= 255:  # scaled, it would be 0 and 1 only
            raise BadInputError(path, f"16-bit alpha (mode {mode}) whose values are all 0..255: 8-bit values "
                                      "saved in a 16-bit file? Save the matte as an 8-bit image")
        return np.clip(np.rint(arr / 257.0), 0, 255).astype(np.uint8)
    if mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return np.clip(np.rint(arr * scale), 0, 255).astype(np.uint8)
    if mode in ("1", "L"):
        return np.asarray(im.convert("L"), dtype=np.uint8)
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("LA", "RGB", "RGBA", "RGBX"):
        rgb = np.asarray(im.convert("RGB"), dtype=np.uint8)
        if not (np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])):
            raise BadInputError(path, f"alpha has {len(mode)} channels whose colours differ (expected a grey matte)")
        grey = np.ascontiguousarray(rgb[..., 0])
        if mode in ("LA", "RGBA"):
            alpha = np.asarray(im.getchannel("A"), dtype=np.uint8)
            if alpha.min() < 255 and not np.array_equal(alpha, grey):
                if grey.min() != grey.max():
                    raise BadInputError(path, f"alpha image ({mode}) has a grey matte and a transparency channel "
                                              "that differ: save the matte alone as a grey image")
                return np.ascontiguousarray(alpha)
        return grey
    raise BadInputError(path, f"unsupported alpha image mode {mode!r}")


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the header only."""
    with Image.open(path) as im:
        return im.width, im.height


def passthrough_format(path: Path) -> str | None:
    """'png'/'jpg' when the file can be stored byte-for-byte as an RGB / L member, else None (needs re-encoding)."""
    try:
        with Image.open(path) as im:
            fmt, mode = im.format, im.mode
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - anything unreadable gets re-encoded (and will fail loudly there)
        return None
    if orientation not in (0, 1):
        # DALI's decoder applies EXIF orientation (adjust_orientation=True), PIL and the alpha do not: storing
        # the pixels as they are keeps fg and alpha aligned for every reader.
        return None
    if fmt == "JPEG" and mode in ("RGB", "L"):
        return f"jpg-{mode}"
    if fmt == "PNG" and mode in ("RGB", "L"):
        return f"png-{mode}"
    return None


def encode_png(arr: np.ndarray) -> bytes:
    """PNG bytes of an H x W (grey) or H x W x 3 (RGB) uint8 array."""
    img = arr if arr.ndim == 2 else cv2.cvtColor(arr, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
    if not ok:
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def encode_jpg(arr: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    """JPEG bytes of an H x W x 3 uint8 RGB array."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(arr, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def decode(data: bytes, member: str = "") -> np.ndarray:
    """Decode a PNG/JPEG member with PIL (the reference decoder for verify/stats), or a raw `.npy` member (`member`
    ends with ".npy"): RGB -> HxWx3, grey -> HxW."""
    if member.endswith(".npy"):
        arr = decode_npy(data)
        return arr[:, :, 0] if arr.shape[2] == 1 else arr
    im = Image.open(io.BytesIO(data))
    im.load()
    if im.mode not in ("RGB", "L"):
        raise ValueError(f"unexpected image mode {im.mode}")
    return np.asarray(im)


def to_raw_sample(sample: dict) -> dict:
    """The same sample in the raw encoding: each PNG/JPEG member `<name>.png|jpg` becomes `<name>.npy` holding the
    pixels it decodes to (JPEG backgrounds are decoded, not re-encoded: both encodings hold the same pixels)."""
    out = {}
    for ext, data in sample.items():
        name, _, kind = ext.partition(".")
        if kind not in ("png", "jpg"):
            out[ext] = data
            continue
        arr = decode(data)
        if (arr.ndim == 3) != (name in RGB_MEMBERS):
            raise MemberError(f"{ext} decodes to {arr.shape}, not the {'RGB' if name in RGB_MEMBERS else 'grey'} "
                              "image the raw encoding stores")
        out[f"{name}.npy"] = encode_npy(arr)
    return out
