"""The run cache: one folder per run, named by a hash of everything that determines it.

A run folder holds
    spec.json        the full configuration (spec, data key, code version) that was hashed
    checkpoint.pt    the latest end-of-epoch training state, while the run is unfinished
    model.pt         final weights (a plain state_dict)
    logits.pt        final test-set logits (float32), for analyses that need no model
    result.json      history, final metrics and file checksums; written last, so its presence
                     means the run is complete

Every binary file is written as a sha256 header line followed by the payload, through a
temporary file and an atomic rename: a crash never leaves a half-written file under the real
name, and a file damaged later fails its checksum instead of being read as a good one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from kdlib.config import Spec, spec_from_dict, spec_to_dict

# Bump when a change to kdlib changes what a run computes, so old results are not reused.
CODE_VERSION = 1
_HEADER_LEN = 65  # 64 hex digits and a newline


class CorruptFileError(RuntimeError):
    """A cached file failed its checksum or could not be parsed."""


def runs_home() -> Path:
    """Where runs are cached: $KDLIB_RUNS, else $KDLIB_HOME/runs, else ~/.cache/kdlib/runs."""
    if os.environ.get("KDLIB_RUNS"):
        return Path(os.environ["KDLIB_RUNS"]).expanduser()
    home = os.environ.get("KDLIB_HOME") or Path.home() / ".cache" / "kdlib"
    return Path(home).expanduser() / "runs"


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


def load_tensors(path: Path, map_location="cpu"):
    """Load a file written by `save_tensors`, verifying its checksum.

    Uses `weights_only=True`: nothing but tensors and plain containers is unpickled.
    """
    raw = Path(path).read_bytes()
    header, payload = raw[:_HEADER_LEN - 1], raw[_HEADER_LEN:]
    if len(raw) < _HEADER_LEN or raw[_HEADER_LEN - 1:_HEADER_LEN] != b"\n" \
            or hashlib.sha256(payload).hexdigest().encode() != header:
        raise CorruptFileError(f"{path} failed its checksum (truncated or damaged)")
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)


def run_payload(spec: Spec, data_key: dict) -> dict:
    """Everything a run's results depend on, as hashed into its id."""
    return {"code_version": CODE_VERSION, "data": data_key, "spec": spec_to_dict(spec)}


def run_id(spec: Spec, data_key: dict) -> str:
    canonical = json.dumps(run_payload(spec, data_key), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass
class Run:
    """A finished run, as read back from its folder."""

    id: str
    path: Path
    spec: Spec
    data_key: dict
    history: list[dict]   # one entry per evaluated epoch (see kdlib.train)
    metrics: dict         # final evaluation (see kdlib.evaluate.final_metrics)
    info: dict            # wall time, device, versions

    def state_dict(self, map_location="cpu") -> dict:
        return load_tensors(self.path / "model.pt", map_location)

    def load_model(self, device="cpu"):
        from kdlib.models import build_model
        model = build_model(self.spec.norm, seed=0)
        model.load_state_dict(self.state_dict())
        return model.to(device).eval()

    def test_logits(self) -> torch.Tensor:
        """Final logits on the whole test set, (N_test, classes) float32."""
        return load_tensors(self.path / "logits.pt")["test"]


class RunCache:
    """Folders of runs under `root` (default `runs_home()`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else runs_home()

    def folder(self, rid: str) -> Path:
        return self.root / rid

    def load(self, rid: str) -> Run | None:
        """The finished run `rid`, or None if it has not finished."""
        folder = self.folder(rid)
        if not (folder / "result.json").exists():
            return None
        result = read_json(folder / "result.json")
        return Run(id=rid, path=folder, spec=spec_from_dict(result["spec"]), data_key=result["data"],
                   history=result["history"], metrics=result["metrics"], info=result["info"])

    @contextlib.contextmanager
    def lock(self, rid: str):
        """Hold an exclusive lock on run `rid` across processes (blocks until it is free)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{rid}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def write_result(self, rid: str, spec: Spec, data_key: dict, state_dict: dict,
                     test_logits: torch.Tensor, history: list[dict], metrics: dict, info: dict) -> Run:
        folder = self.folder(rid)
        write_json(folder / "spec.json", run_payload(spec, data_key))
        files = {
            "model.pt": save_tensors(folder / "model.pt", {k: v.detach().cpu() for k, v in state_dict.items()}),
            "logits.pt": save_tensors(folder / "logits.pt", {"test": test_logits.detach().float().cpu()}),
        }
        write_json(folder / "result.json", {"id": rid, "spec": spec_to_dict(spec), "data": data_key,
                                            "history": history, "metrics": metrics, "info": info,
                                            "sha256": files})
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        return self.load(rid)
