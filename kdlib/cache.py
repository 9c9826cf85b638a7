"""The run cache: one folder per run, named by a hash of everything that determines it.

A run folder holds
    spec.json        the full configuration (spec, data key, code version) that was hashed
    checkpoint.pt    the latest end-of-epoch training state, while the run is unfinished
    model.pt         final weights (a plain state_dict)
    logits.pt        final logits (float32), for analyses that need no model: "test"; a teacher
                     also stores "train" (clean) and "train_aug" (evaluate.augmented_views), which
                     its students' final metrics reuse instead of running it again; a student
                     stores its predicted labels there ("train_pred", "train_aug_pred"), which the
                     claims' bootstrap over training images reads (kdlib.claims)
    result.json      history, final metrics, the sha256 of model.pt and logits.pt, and its own
                     checksum; written last, so its presence means the run is complete

Every binary file is written as a sha256 header line followed by the payload, through a
temporary file and an atomic rename: a crash never leaves a half-written file under the real
name, and a file damaged later fails its checksum instead of being read as a good one.

`RunCache.load` checks a finished run as a whole before returning it: result.json parses and
matches its own checksum, its spec and data hash to the folder's run id, spec.json says the same,
and model.pt and logits.pt pass their checksums and are the files result.json recorded. A run that
fails any check raises `CorruptRunError` naming the run and the file; it is never used. What to do
then is the caller's choice: `kdlib.executor.run_all` moves it aside (`RunCache.move_aside`) with a
warning and trains it again.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from kdlib.config import Spec, spec_from_dict, spec_to_dict

# Bump when a change to kdlib changes what a run computes, so old results are not reused.
CODE_VERSION = 2  # 2: students store their training-set predictions; K-class data
_HEADER_LEN = 65  # 64 hex digits and a newline


# A finished run's files, in the order they are written: result.json last marks it complete.
RUN_FILES = ("spec.json", "model.pt", "logits.pt", "result.json")


class CorruptFileError(RuntimeError):
    """A cached file failed its checksum or could not be parsed."""


class CorruptRunError(CorruptFileError):
    """A finished run's folder is damaged or inconsistent; `run` and `file` say where."""

    def __init__(self, run: str, file: str, problem: str):
        super().__init__(f"run {run}: {file} {problem}; the run is not used (move it aside with "
                         f"RunCache.move_aside({run!r}) or delete its folder to train it again)")
        self.run, self.file = run, file


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


def checked_payload(raw: bytes, where) -> tuple[str, bytes]:
    """(sha256, payload) of the bytes of a file written by `save_tensors`, checksum verified."""
    header, payload = raw[:_HEADER_LEN - 1], raw[_HEADER_LEN:]
    if len(raw) < _HEADER_LEN or raw[_HEADER_LEN - 1:_HEADER_LEN] != b"\n" \
            or hashlib.sha256(payload).hexdigest().encode() != header:
        raise CorruptFileError(f"{where} failed its checksum (truncated or damaged)")
    return header.decode(), payload


def load_tensors(path: Path, map_location="cpu"):
    """Load a file written by `save_tensors`, verifying its checksum.

    Uses `weights_only=True`: nothing but tensors and plain containers is unpickled.
    """
    _, payload = checked_payload(Path(path).read_bytes(), path)
    return torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)


def run_payload(spec: Spec, data_key: dict, variant: dict | None = None) -> dict:
    """Everything a run's results depend on, as hashed into its id.

    `variant` holds the non-default numerics of a run (kdlib.train.run_variant: bf16 precision,
    cached 16-bit teacher logits). It is left out when empty, so default runs keep their ids.
    """
    payload = {"code_version": CODE_VERSION, "data": data_key, "spec": spec_to_dict(spec)}
    if variant:
        payload["variant"] = dict(variant)
    return payload


def _canonical(obj) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def run_id(spec: Spec, data_key: dict, variant: dict | None = None) -> str:
    return hashlib.sha256(_canonical(run_payload(spec, data_key, variant))).hexdigest()[:16]


def _result_checksum(result: dict) -> str:
    """sha256 of result.json's content without its own "checksum" field (canonical JSON)."""
    return hashlib.sha256(_canonical({k: v for k, v in result.items() if k != "checksum"})).hexdigest()


def verify_run(rid: str, files: dict[str, bytes]) -> dict:
    """Check a finished run's files (name -> bytes) as a whole; returns result.json's content.

    Raises CorruptRunError naming the run and the first file that fails. A result.json written
    before results carried a "checksum" gets every check but that one.
    """
    for name in RUN_FILES:
        if name not in files:
            raise CorruptRunError(rid, name, "is missing")
    try:
        result = json.loads(files["result.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptRunError(rid, "result.json", f"is not valid JSON ({e})") from e
    keys = {"id", "spec", "data", "history", "metrics", "info", "sha256"}
    if not isinstance(result, dict) or not keys <= result.keys():
        raise CorruptRunError(rid, "result.json", f"lacks some of the fields {sorted(keys)}")
    if "checksum" in result and result["checksum"] != _result_checksum(result):
        raise CorruptRunError(rid, "result.json", "failed its checksum (edited or damaged)")
    try:
        spec, variant = spec_from_dict(result["spec"]), result.get("variant") or {}
        payload = run_payload(spec, result["data"], variant)
        same_run = result["id"] == rid and run_id(spec, result["data"], variant) == rid
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptRunError(rid, "result.json", f"holds an invalid spec ({e})") from e
    if not same_run:
        raise CorruptRunError(rid, "result.json", "describes another run (its spec and data do not hash "
                                                  "to this run's id)")
    try:
        recorded = json.loads(files["spec.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptRunError(rid, "spec.json", f"is not valid JSON ({e})") from e
    if recorded != json.loads(_canonical(payload)):
        raise CorruptRunError(rid, "spec.json", "does not match result.json's spec and data")
    for name in ("model.pt", "logits.pt"):
        try:
            digest, _ = checked_payload(files[name], name)
        except CorruptFileError as e:
            raise CorruptRunError(rid, name, "failed its checksum (truncated or damaged)") from e
        if not isinstance(result["sha256"], dict) or digest != result["sha256"].get(name):
            raise CorruptRunError(rid, name, "is not the file result.json recorded (its sha256 differs)")
    return result


@dataclass
class Run:
    """A finished run, as read back from its folder."""

    id: str
    path: Path
    spec: Spec
    data_key: dict
    history: list[dict]   # one entry per evaluated epoch (see kdlib.train)
    metrics: dict         # final evaluation (see kdlib.evaluate.final_metrics)
    info: dict            # wall time, device, precision, versions
    variant: dict = field(default_factory=dict)  # non-default numerics, part of the id
    _logits: dict | None = field(default=None, init=False, repr=False, compare=False)

    def state_dict(self, map_location="cpu") -> dict:
        return load_tensors(self.path / "model.pt", map_location)

    def load_model(self, device="cpu"):
        from kdlib.models import build_model
        state = self.state_dict()
        model = build_model(self.spec.norm, seed=0, num_classes=state["fc.weight"].shape[0])
        model.load_state_dict(state)
        return model.to(device).eval()

    def test_logits(self) -> torch.Tensor:
        """Final logits on the whole test set, (N_test, classes) float32."""
        return self.stored_logits("test")

    def predictions(self, split: str) -> torch.Tensor:
        """Predicted labels (N,) int64 on `split` ("test", "train" or "train_aug"): the argmax of the
        stored logits, or the labels a student stored (`evaluate.final_metrics`)."""
        logits = self.stored_logits(split)
        if logits is not None:
            return logits.argmax(1)
        labels = self._logits.get(f"{split}_pred")
        if labels is None:
            raise KeyError(f"run {self.id} stored no predictions on {split!r}; it has {sorted(self._logits)}")
        return labels.long()

    def stored_logits(self, split: str) -> torch.Tensor | None:
        """Final logits on `split` ("test", "train" or "train_aug"), or None if the run did not store them.

        logits.pt is read and checked once per Run object (a teacher's holds its train-set logits
        too: 44 MB at the paper scale); treat the returned tensors as read-only.
        """
        if self._logits is None:
            self._logits = load_tensors(self.path / "logits.pt")
        return self._logits.get(split)


class RunCache:
    """Folders of runs under `root` (default `runs_home()`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else runs_home()
        self._held: dict[str, int] = {}  # run id -> depth of the locks this object holds

    def folder(self, rid: str) -> Path:
        return self.root / rid

    def load(self, rid: str) -> Run | None:
        """The finished run `rid`, or None if it has not finished.

        Every file is checked first (`verify_run`): a damaged run raises CorruptRunError.
        """
        folder = self.folder(rid)
        if not (folder / "result.json").exists():
            return None
        result = verify_run(rid, self._read_files(rid))
        return Run(id=rid, path=folder, spec=spec_from_dict(result["spec"]), data_key=result["data"],
                   history=result["history"], metrics=result["metrics"], info=result["info"],
                   variant=result.get("variant", {}))

    def _read_files(self, rid: str) -> dict[str, bytes]:
        folder = self.folder(rid)
        return {name: (folder / name).read_bytes() for name in RUN_FILES if (folder / name).exists()}

    def export_run(self, rid: str) -> dict[str, bytes]:
        """The files of the finished run `rid` (name -> bytes), checked, e.g. to send elsewhere."""
        files = self._read_files(rid)
        if "result.json" not in files:
            raise FileNotFoundError(f"run {rid} has not finished in {self.root}")
        verify_run(rid, files)
        return files

    def import_run(self, rid: str, files: dict[str, bytes]) -> Run:
        """Add run `rid` finished elsewhere (the files `export_run` gave there), checked first.

        Writes under the run's lock, each file atomically and result.json last, so a reader sees
        no run or the whole run. If the run has finished here meanwhile, that copy is kept.
        """
        verify_run(rid, files)
        with self.lock(rid):
            if self.load(rid) is None:
                for name in RUN_FILES:
                    atomic_write_bytes(self.folder(rid) / name, files[name])
                (self.folder(rid) / "checkpoint.pt").unlink(missing_ok=True)
        return self.load(rid)

    def move_aside(self, rid: str) -> Path:
        """Move run `rid`'s folder to <root>/damaged/<rid>-<time in ns>, where nothing looks for
        runs, and return that path: the run counts as missing again, and its files are kept."""
        aside = self.root / "damaged" / f"{rid}-{time.time_ns()}"
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(self.folder(rid), aside)
        return aside

    @contextlib.contextmanager
    def lock(self, rid: str, blocking: bool = True):
        """Hold an exclusive lock on run `rid` across processes.

        Blocks until the lock is free, or with blocking=False raises BlockingIOError if another
        process (or another RunCache object) holds it. Re-entrant within one RunCache object: the
        Ray executor holds a run's lock while the run trains and while it imports the result.
        """
        if rid in self._held:
            self._held[rid] += 1
            try:
                yield
            finally:
                self._held[rid] -= 1
            return
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / f".{rid}.lock", "w") as f:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            self._held[rid] = 1
            try:
                yield
            finally:
                del self._held[rid]
                fcntl.flock(f, fcntl.LOCK_UN)

    def write_result(self, rid: str, spec: Spec, data_key: dict, state_dict: dict,
                     test_logits: torch.Tensor, history: list[dict], metrics: dict, info: dict,
                     variant: dict | None = None, extra_logits: dict[str, torch.Tensor] | None = None) -> Run:
        """Writes a finished run; `extra_logits` (split -> logits, or "<split>_pred" -> predicted
        labels) are stored beside the test logits."""
        folder = self.folder(rid)
        write_json(folder / "spec.json", run_payload(spec, data_key, variant))
        logits = {"test": test_logits, **(extra_logits or {})}
        files = {
            "model.pt": save_tensors(folder / "model.pt", {k: v.detach().cpu() for k, v in state_dict.items()}),
            # logits as float32; predicted labels ("<split>_pred") keep their integer dtype
            "logits.pt": save_tensors(folder / "logits.pt", {
                k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu() for k, v in logits.items()}),
        }
        result = {"id": rid, "spec": spec_to_dict(spec), "data": data_key, "variant": dict(variant or {}),
                  "history": history, "metrics": metrics, "info": info, "sha256": files}
        # over the content as it reads back (JSON turns tuples into lists)
        result["checksum"] = _result_checksum(json.loads(json.dumps(result)))
        write_json(folder / "result.json", result)
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        return self.load(rid)
