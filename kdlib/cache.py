"""The run cache: one folder per run, named by its key's id (kdlib.identity.RunKey).

A run folder holds
    spec.json        the run's key as hashed into its id (spec, data key, code version, numerics)
    checkpoint.pt    the latest end-of-epoch training state, while the run is unfinished
    model.pt         final weights (a plain state_dict)
    logits.pt        final outputs, for analyses that need no model: "test" logits (float32); a
                     teacher also stores "train" (clean) and "train_aug" (evaluate.augmented_views)
                     logits, which its students' final metrics reuse instead of running it again; a
                     student stores its predicted labels there ("train_pred", "train_aug_pred"), which
                     what the claims read on the training images (kdlib.claims)
    result.json      history, final metrics, the sha256 of model.pt and logits.pt, and its own
                     checksum; written last, so its presence means the run is complete

Every file is written atomically with a checksum (kdlib.files). `RunCache.load` checks a finished
run as a whole before returning it: result.json parses and matches its own checksum, its key hashes
to the folder's id, spec.json says the same, and model.pt and logits.pt pass their checksums and
are the files result.json recorded. A run that fails any check raises `CorruptRunError` naming the
run and the file; it is never used (kdlib.execute moves it aside with a warning and trains it again).
A `Run` checks its files against result.json's sha256 again whenever it reads them.

`RunCache.lock` is an exclusive lock per run (a file lock): safe across processes, across threads
sharing one RunCache, and re-entrant within a thread.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import filelock
import torch

from kdlib.config import Spec
from kdlib.files import (CorruptFileError, atomic_write_bytes, checked_payload, kdlib_home, load_tensors,
                         save_tensors, write_json)
from kdlib.identity import RunKey, canonical
from kdlib.models import build_model

# A finished run's files, in the order they are written: result.json last marks it complete.
RUN_FILES = ("spec.json", "model.pt", "logits.pt", "result.json")
CHECKED = ("model.pt", "logits.pt")  # the binary files whose sha256 result.json records


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
    return kdlib_home() / "runs"


def _result_checksum(result: dict) -> str:
    """sha256 of result.json's content without its own "checksum" field (canonical JSON)."""
    return hashlib.sha256(canonical({k: v for k, v in result.items() if k != "checksum"})).hexdigest()


def verify_run(rid: str, files: dict[str, bytes]) -> dict:
    """Check a finished run's files (name -> bytes) as a whole; returns result.json's content.

    Raises CorruptRunError naming the run and the first file that fails.
    """
    for name in RUN_FILES:
        if name not in files:
            raise CorruptRunError(rid, name, "is missing")
    try:
        result = json.loads(files["result.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptRunError(rid, "result.json", f"is not valid JSON ({e})") from e
    keys = {"id", "spec", "data", "history", "metrics", "info", "sha256", "checksum"}
    if not isinstance(result, dict) or not keys <= result.keys():
        missing = sorted(keys - set(result)) if isinstance(result, dict) else sorted(keys)
        raise CorruptRunError(rid, "result.json", f"lacks the field(s) {missing}")
    if result["checksum"] != _result_checksum(result):
        raise CorruptRunError(rid, "result.json", "failed its checksum (edited or damaged)")
    try:
        key = RunKey.from_record(result["spec"], result["data"], result.get("variant"))
        same_run = result["id"] == rid == key.id
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CorruptRunError(rid, "result.json", f"holds an invalid spec ({e})") from e
    if not same_run:
        raise CorruptRunError(rid, "result.json", "describes another run (its spec and data do not hash "
                                                  "to this run's id)")
    try:
        recorded = json.loads(files["spec.json"])
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CorruptRunError(rid, "spec.json", f"is not valid JSON ({e})") from e
    if recorded != json.loads(canonical(key.payload())):
        raise CorruptRunError(rid, "spec.json", "does not match result.json's spec and data")
    for name in CHECKED:
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

    key: RunKey           # what the run is
    path: Path            # its folder
    history: list[dict]   # one entry per evaluated epoch (see kdlib.train)
    metrics: dict         # final evaluation (see kdlib.evaluate.final_metrics)
    info: dict            # wall time, device, precision, versions
    sha256: dict          # file name -> the sha256 result.json recorded (checked at every read)
    _outputs: dict | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def id(self) -> str:
        return self.key.id

    @property
    def spec(self) -> Spec:
        return self.key.spec

    @property
    def data_key(self) -> dict:
        return self.key.data_key

    @property
    def variant(self) -> dict:
        return self.key.variant

    @property
    def weights_sha256(self) -> str:
        """The sha256 of the final weights: what the run's predictions are a function of."""
        return self.sha256["model.pt"]

    def _read(self, name: str, map_location="cpu"):
        try:
            return load_tensors(self.path / name, map_location, expected=self.sha256[name])
        except CorruptFileError as e:
            raise CorruptFileError(f"run {self.id}: {e}") from e

    def state_dict(self, map_location="cpu") -> dict:
        return self._read("model.pt", map_location)

    def load_model(self, device="cpu"):
        state = self.state_dict()
        model = build_model(self.spec.norm, seed=0, num_classes=state["fc.weight"].shape[0], depth=self.spec.depth)
        model.load_state_dict(state)
        return model.to(device).eval()

    def test_logits(self) -> torch.Tensor:
        """Final logits on the whole test set, (N_test, classes) float32."""
        return self.stored_logits("test")

    def stored_logits(self, split: str) -> torch.Tensor | None:
        """Final logits on `split` ("test", "train" or "train_aug"), or None if the run did not store them.

        logits.pt is read and checked once per Run object (a teacher's holds its train-set logits
        too: 44 MB at the paper scale); treat the returned tensors as read-only.
        """
        if self._outputs is None:
            self._outputs = self._read("logits.pt")
        return self._outputs.get(split)

    def predictions(self, split: str) -> torch.Tensor:
        """Predicted labels (N,) int64 on `split` ("test", "train" or "train_aug"): the argmax of the
        stored logits, or the labels a student stored (`evaluate.final_metrics`)."""
        logits = self.stored_logits(split)
        if logits is not None:
            return logits.argmax(1)
        labels = self._outputs.get(f"{split}_pred")
        if labels is None:
            raise KeyError(f"run {self.id} stored no predictions on {split!r}; it has {sorted(self._outputs)}")
        return labels.long()


class RunCache:
    """Folders of runs under `root` (default `runs_home()`)."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else runs_home()
        self._locks: dict[str, filelock.FileLock] = {}  # run id -> its lock, shared by this object's threads

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
        return Run(key=RunKey.from_record(result["spec"], result["data"], result.get("variant")), path=folder,
                   history=result["history"], metrics=result["metrics"], info=result["info"],
                   sha256=result["sha256"])

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
        """Hold an exclusive lock on run `rid`: against other processes, other RunCache objects and
        other threads of this one; re-entrant within a thread.

        Blocks until the lock is free, or with blocking=False raises BlockingIOError when it is held.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        lock = self._locks.setdefault(rid, filelock.FileLock(self.root / f".{rid}.lock", thread_local=True))
        try:
            lock.acquire(timeout=-1 if blocking else 0)
        except filelock.Timeout:
            raise BlockingIOError(f"run {rid} is locked (being trained by another process or thread)") from None
        try:
            yield
        finally:
            lock.release()

    def write_result(self, key: RunKey, state_dict: dict, outputs: dict[str, torch.Tensor], history: list[dict],
                     metrics: dict, info: dict) -> Run:
        """Writes a finished run. `outputs`: split -> logits (stored as float32; "test" required), or
        "<split>_pred" -> predicted labels (integer dtype kept)."""
        if "test" not in outputs:
            raise ValueError("outputs must hold the test logits ('test')")
        folder = self.folder(key.id)
        write_json(folder / "spec.json", key.payload())
        sha256 = {
            "model.pt": save_tensors(folder / "model.pt", {k: v.detach().cpu() for k, v in state_dict.items()}),
            "logits.pt": save_tensors(folder / "logits.pt", {
                k: (v.detach().float() if v.is_floating_point() else v.detach()).cpu() for k, v in outputs.items()}),
        }
        result = {"id": key.id, "spec": key.payload()["spec"], "data": key.data_key, "variant": key.variant,
                  "history": history, "metrics": metrics, "info": info, "sha256": sha256}
        # over the content as it reads back (JSON turns tuples into lists)
        result["checksum"] = _result_checksum(json.loads(json.dumps(result)))
        write_json(folder / "result.json", result)
        (folder / "checkpoint.pt").unlink(missing_ok=True)
        return self.load(key.id)
