import json
import os

import pytest
import torch

from kdlib.cache import RunCache
from kdlib.files import CorruptFileError, atomic_write_bytes, load_tensors, read_json, save_tensors
from kdlib.config import Recipe, StudentSpec, TeacherSpec
from synthetic import run_id

R = Recipe(epochs=3, batch_size=8, lr=0.1)
T = TeacherSpec(recipe=R, seed=0)
KEY = {"fingerprint": "abc", "train_per_class": 5, "test_per_class": None, "subset_seed": 0}


def test_run_id_covers_spec_data_and_teachers():
    base = run_id(T, KEY)
    assert base == run_id(TeacherSpec(recipe=Recipe(epochs=3, batch_size=8, lr=0.1), seed=0), dict(KEY))
    assert run_id(TeacherSpec(recipe=R, seed=1), KEY) != base
    assert run_id(TeacherSpec(recipe=R, seed=0, norm="layer"), KEY) != base
    assert run_id(T, {**KEY, "fingerprint": "abd"}) != base
    assert run_id(T, {**KEY, "train_per_class": 6}) != base
    s0 = StudentSpec(recipe=R, teachers=(T,))
    s1 = StudentSpec(recipe=R, teachers=(TeacherSpec(recipe=R, seed=1),))
    assert run_id(s0, KEY) != run_id(s1, KEY)  # a teacher's identity is part of the student's
    assert run_id(s0, KEY) != run_id(StudentSpec(recipe=R, teachers=(T,), tau=2.0), KEY)


def test_checked_files_round_trip_and_detect_damage(tmp_path):
    path = tmp_path / "x.pt"
    obj = {"w": torch.arange(10.0), "epoch": 3, "history": [{"a": 1.5}]}
    save_tensors(path, obj)
    back = load_tensors(path)
    torch.testing.assert_close(back["w"], obj["w"])
    assert back["history"] == obj["history"]
    raw = path.read_bytes()
    path.write_bytes(raw[:-10])  # truncated
    with pytest.raises(CorruptFileError, match="checksum"):
        load_tensors(path)
    flipped = bytearray(raw)
    flipped[-5] ^= 0xFF  # one damaged byte
    path.write_bytes(bytes(flipped))
    with pytest.raises(CorruptFileError):
        load_tensors(path)
    path.write_bytes(b"")
    with pytest.raises(CorruptFileError):
        load_tensors(path)


def test_load_refuses_arbitrary_pickles(tmp_path):
    import hashlib
    import pickle

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    payload = pickle.dumps(Evil(), protocol=2)  # a checksum-valid file holding a malicious pickle
    path = tmp_path / "evil.pt"
    path.write_bytes(hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        load_tensors(path)


def test_failed_write_keeps_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "a.json"
    atomic_write_bytes(path, b'{"v": 1}')

    def broken_fsync(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b'{"v": 2}')
    assert read_json(path) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["a.json"]  # no temporary file left behind


def test_unfinished_run_is_not_returned(tmp_path):
    cache = RunCache(tmp_path)
    assert cache.load("0123") is None
    (tmp_path / "0123").mkdir()
    save_tensors(tmp_path / "0123" / "checkpoint.pt", {"epoch": 1})
    assert cache.load("0123") is None  # only result.json marks a finished run


def test_corrupt_result_json_is_an_error(tmp_path):
    cache = RunCache(tmp_path)
    (tmp_path / "0123").mkdir()
    (tmp_path / "0123" / "result.json").write_text('{"id": "0123", "spec"')
    with pytest.raises(CorruptFileError):
        cache.load("0123")
