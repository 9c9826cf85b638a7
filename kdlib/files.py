"""Files that are never half-written and never read as good when damaged.

Every write goes to a temporary file beside its destination, is fsynced and renamed over it, so a
crash leaves the previous file or the new one, never a mix. Tensors are saved with a sha256 header
line; reading checks it (and, where the caller knows it, that it is the file it expects), and
unpickles nothing but tensors and plain containers (`weights_only`).
`kdlib_home()` is the one place that resolves $KDLIB_HOME, the root of kdlib's on-disk caches.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path

import torch

_HEADER_LEN = 65  # 64 hex digits and a newline


def kdlib_home() -> Path:
    """Root of kdlib's on-disk caches: $KDLIB_HOME, default ~/.cache/kdlib."""
    return Path(os.environ.get("KDLIB_HOME") or "~/.cache/kdlib").expanduser()


class CorruptFileError(RuntimeError):
    """A stored file failed its checksum, is not the file expected, or could not be parsed."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, fsync, then rename over it.

    If anything fails the previous file under `path` is left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptFileError(f"{path} is not valid JSON: {e}") from e


def save_tensors(path: Path, obj) -> str:
    """torch.save `obj` (tensors, numbers, strings, lists, dicts) with a checksum header.

    Returns the payload's sha256.
    """
    buf = io.BytesIO()
    torch.save(obj, buf)
    payload = buf.getvalue()
    digest = hashlib.sha256(payload).hexdigest()
    atomic_write_bytes(path, digest.encode() + b"\n" + payload)
    return digest


def checked_payload(raw: bytes, where, expected: str | None = None) -> tuple[str, bytes]:
    """(sha256, payload) of the bytes of a file written by `save_tensors`, checksum verified; with
    `expected`, also that the file is the one whose sha256 was recorded elsewhere (result.json)."""
    header, payload = raw[:_HEADER_LEN - 1], raw[_HEADER_LEN:]
    if len(raw) < _HEADER_LEN or raw[_HEADER_LEN - 1:_HEADER_LEN] != b"\n" \
            or hashlib.sha256(payload).hexdigest().encode() != header:
        raise CorruptFileError(f"{where} failed its checksum (truncated or damaged)")
    if expected is not None and header.decode() != expected:
        raise CorruptFileError(f"{where} is not the file that was recorded (its sha256 differs)")
    return header.decode(), payload


def load_tensors(path: Path, map_location="cpu", expected: str | None = None):
    """Load a file written by `save_tensors`, verifying its checksum (and that its sha256 is
    `expected`, when given). Uses `weights_only=True`."""
    _, payload = checked_payload(Path(path).read_bytes(), path, expected)
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
