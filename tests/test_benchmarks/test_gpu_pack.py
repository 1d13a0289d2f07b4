"""benchmarks/gpu_pack.sh and gpu_unpack.sh, offline: wheels cut into transfer-sized pieces, stashed one transfer at
a time, reassembled byte for byte, checked against their SHA-256 sums and installed into an importable site."""
from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_wheel(folder: Path, name: str, payload: bytes) -> Path:
    """A minimal valid wheel: one package whose data.bin holds `payload`."""
    files = {f"{name}/__init__.py": b"VALUE = 42\n", f"{name}/data.bin": payload,
             f"{name}-1.0.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n".encode(),
             f"{name}-1.0.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                            b"Tag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()]
    files[f"{name}-1.0.dist-info/RECORD"] = ("\n".join(record + [f"{name}-1.0.dist-info/RECORD,,"]) + "\n").encode()
    path = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


def run(script: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", f"benchmarks/{script}", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_pieces_travel_one_transfer_at_a_time_and_install(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    big = make_wheel(wheels, "bigpkg", os.urandom(2_500_000))  # cut into three 1 MiB parts
    make_wheel(wheels, "smallpkg", b"x" * 1000)
    packed, landed, root = tmp_path / "packed", tmp_path / "landed", tmp_path / "root"
    env = {**os.environ, "GPU_PACK_WHEELS": str(wheels), "GPU_PIECE_MIB": "1", "GPU_PACK_DIR": str(packed),
           "GPU_UNPACK_ROOT": str(root), "PYTHON": sys.executable}
    proc = run("gpu_pack.sh", "dali", env={**env, "GPU_PACK_DIR": str(packed)})
    assert proc.returncode == 0, proc.stderr
    pieces = sorted((packed / "dali").glob("piece-*"))
    assert len(pieces) >= 3
    for piece in pieces:  # every transfer fits the limit
        assert sum(f.stat().st_size for f in piece.iterdir()) <= 1024 * 1024 + 4096
    for piece in pieces:  # one transfer: the piece lands in the tree, the stash moves it out
        shutil.copytree(piece, landed / "dali" / piece.name)
        proc = run("gpu_unpack.sh", "--stash", env={**env, "GPU_PACK_DIR": str(landed)})
        assert proc.returncode == 0, proc.stderr
        assert not any(p.is_file() for p in (landed / "dali").rglob("*"))
    proc = run("gpu_unpack.sh", "dali", env=env)
    assert proc.returncode == 0, proc.stderr
    site = Path(proc.stdout.strip())
    assert (site / "bigpkg" / "data.bin").read_bytes() == zipfile.ZipFile(big).read("bigpkg/data.bin")
    check = subprocess.run([sys.executable, "-c", "import bigpkg, smallpkg; print(bigpkg.VALUE + smallpkg.VALUE)"],
                           env={**os.environ, "PYTHONPATH": str(site)}, capture_output=True, text=True)
    assert check.stdout.strip() == "84"


def test_a_damaged_or_missing_piece_is_named(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    make_wheel(wheels, "bigpkg", os.urandom(2_500_000))
    packed, root = tmp_path / "packed", tmp_path / "root"
    env = {**os.environ, "GPU_PACK_WHEELS": str(wheels), "GPU_PIECE_MIB": "1", "GPU_PACK_DIR": str(packed),
           "GPU_UNPACK_ROOT": str(root), "PYTHON": sys.executable}
    assert run("gpu_pack.sh", "dali", env=env).returncode == 0
    assert run("gpu_unpack.sh", "--stash", env=env).returncode == 0
    parts = sorted((root / "a2u-pieces" / "dali").glob("*.part*"))
    data = bytearray(parts[1].read_bytes())
    data[100] ^= 0xFF
    parts[1].write_bytes(bytes(data))
    proc = run("gpu_unpack.sh", "dali", env=env)
    assert proc.returncode == 2 and "differs from the packed one" in proc.stderr
    for part in parts:
        part.unlink()
    proc = run("gpu_unpack.sh", "dali", env=env)
    assert proc.returncode == 2 and "no pieces of bigpkg-1.0-py3-none-any.whl" in proc.stderr
