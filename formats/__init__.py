"""formats: the on-disk contracts every room of the project reads — the dataset manifest, the shard member
encodings and the image file suffixes — in one place, so each has exactly one reader.

Why a package of its own: `data_prep/` writes datasets, `pipeline/` reads them for training and `jobs/` checks them
before it starts anything. `pipeline/` must not depend on the offline preparation code (and its PIL/webdataset
imports), and `data_prep/` must not depend on DALI, so the shared readers live here, with no third-party import but
numpy. Every package may import `formats`; `formats` imports none of them.
"""
from __future__ import annotations

from .encoding import (DEFAULT_ENCODING, ENCODINGS, RGB_MEMBERS, MemberError, decode_npy, encode_npy, member_name,
                       member_names, npy_shape)
from .images import IMAGE_SUFFIXES, is_image_name
from .manifest import FORMAT_VERSION, MANIFEST, Manifest, ManifestError, read_manifest

__all__ = ["DEFAULT_ENCODING", "ENCODINGS", "FORMAT_VERSION", "IMAGE_SUFFIXES", "MANIFEST", "Manifest",
           "ManifestError", "MemberError", "RGB_MEMBERS", "decode_npy", "encode_npy", "is_image_name", "member_name",
           "member_names", "npy_shape", "read_manifest"]
