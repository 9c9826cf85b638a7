"""The original authors' networks (kdlib.authors): read safely, checked before they are parsed, mapped
onto kdlib's PreResNet-20, and, where ../shared/data is present, their logged accuracies reproduced."""

import collections
import hashlib
import io
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import torch

from kdlib import authors, landscape, metrics
from kdlib import data as kdata
from kdlib.files import CorruptFileError
from kdlib.models import build_model
from kdlib.unpickle import ForbiddenGlobalError, restricted_load

SHARED = Path(__file__).resolve().parents[1] / authors.LOCAL_COPY


def to_gnosis(name: str) -> str:
    """kdlib's parameter names -> gnosis' (the inverse of authors.to_kdlib, written out independently)."""
    if name.startswith("stem."):
        return "conv1." + name[len("stem."):]
    if name.startswith("final_norm."):
        return "bn." + name[len("final_norm."):]
    m = re.fullmatch(r"stages\.(\d)\.(\d+)\.(\w+)\.(\w+)", name)
    if m:
        layer = {"norm1": "bn1", "norm2": "bn2", "shortcut": "downsample.0"}.get(m[3], m[3])
        return f"layer{int(m[1]) + 1}.{m[2]}.{layer}.{m[4]}"
    return name


def gnosis_checkpoint(model) -> bytes:
    """A checkpoint in the authors' format: a pickled OrderedDict of tensors under gnosis' names
    (protocol 3, each storage a nested legacy torch.save), as torch 1.x wrote them."""
    state = collections.OrderedDict((to_gnosis(k), v) for k, v in model.state_dict().items())
    return pickle.dumps(state, protocol=3)


def test_the_table_holds_the_18_networks_of_six_runs():
    assert len(authors.NETWORKS) == 18 and len(set(authors.NETWORKS)) == 18
    assert sum(n.role == "student" for n in authors.NETWORKS) == 6
    assert sorted({(n.ensemble, n.trial) for n in authors.NETWORKS}) == [(m, k) for m in (1, 2, 3) for k in (0, 1)]
    assert all(n.checkpoint in authors.SHA256 and n.log in authors.SHA256 and n.config in authors.SHA256
               for n in authors.NETWORKS)
    assert len(authors.SHA256) == 42 and all(re.fullmatch(r"[0-9a-f]{64}", h) for h in authors.SHA256.values())
    student = authors.Network(3, 1, "student")
    assert [t.member for t in student.teachers] == [0, 1, 2] and student.name == "m = 3, trial 1, student"


def test_a_gnosis_state_dict_loads_into_kdlibs_preresnet20():
    """Every gnosis name maps onto kdlib's network, shape for shape: the authors' network is protocol §2's."""
    source = build_model("batch", seed=3)
    raw = restricted_load(gnosis_checkpoint(source), authors.CHECKPOINT_GLOBALS, "a test checkpoint")
    assert "layer2.0.downsample.0.weight" in raw and "conv1.weight" in raw and "bn.running_var" in raw
    model = build_model("batch", seed=0)
    model.load_state_dict(authors.to_kdlib(raw), strict=True)
    for k, v in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v)
    assert sum(p.numel() for p in model.parameters()) == 278_132
    with pytest.raises(KeyError, match="'layer4.0.conv1.weight' is not a parameter"):
        authors.to_kdlib({"layer4.0.conv1.weight": torch.zeros(1)})


def test_a_checkpoint_that_asks_for_anything_else_is_refused():
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))
    crafted = pickle.dumps(collections.OrderedDict(w=Payload()), protocol=3)
    with pytest.raises(ForbiddenGlobalError, match=r"a crafted file asks for posix.system, which is not allowed "
                                                   r"\(allowed: collections.OrderedDict, torch._utils._rebuild_tensor_v2"):
        restricted_load(crafted, authors.CHECKPOINT_GLOBALS, "a crafted file")


def test_a_nested_storage_is_loaded_with_weights_only():
    """The one allowed global that reads bytes, torch.storage._load_from_bytes, reads them with
    weights_only=True: a nested pickle that names anything else is refused there too."""
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    class Storage:
        def __reduce__(self):
            buffer = io.BytesIO()
            torch.save(Payload(), buffer, _use_new_zipfile_serialization=False)
            return (torch.storage._load_from_bytes, (buffer.getvalue(),))
    crafted = pickle.dumps(collections.OrderedDict(w=Storage()), protocol=3)
    with pytest.raises(pickle.UnpicklingError, match="Weights only load failed"):
        restricted_load(crafted, authors.CHECKPOINT_GLOBALS, "a crafted file")


@pytest.fixture
def copy_of_the_files(tmp_path, monkeypatch):
    """A copy of the authors' files of one run (m = 1, trial 0) under $KDLIB_GNOSIS; skipped without
    ../shared/data."""
    if not SHARED.is_dir():
        pytest.skip(f"the authors' files are not at {SHARED}")
    net = authors.Network(1, 0, "teacher")
    for path in (net.checkpoint, net.log, net.config):
        target = tmp_path / authors.FOLDER / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(SHARED / authors.FOLDER / path, target)
    monkeypatch.setenv("KDLIB_GNOSIS", str(tmp_path))
    return tmp_path, net


def test_a_file_whose_checksum_differs_is_refused_before_it_is_parsed(copy_of_the_files, monkeypatch):
    root, net = copy_of_the_files
    assert authors.root() == root and authors.state_dict(net)["fc.weight"].shape == (100, 64)
    file = root / authors.FOLDER / net.checkpoint
    damaged = bytearray(file.read_bytes())
    damaged[len(damaged) // 2] ^= 0x01
    file.write_bytes(bytes(damaged))

    def parsed(*args, **kwargs):
        raise AssertionError("a file that failed its checksum was parsed")
    monkeypatch.setattr(authors, "restricted_load", parsed)
    with pytest.raises(CorruptFileError, match=r"teacher_0.ckpt has sha256 .* it is refused before it is parsed"):
        authors.state_dict(net)
    (root / authors.FOLDER / net.log).unlink()
    with pytest.raises(FileNotFoundError, match="_train_metrics.csv does not exist"):
        authors.logged(net)


def test_the_log_and_the_recipe_are_read_from_the_run(copy_of_the_files):
    _, net = copy_of_the_files
    log = authors.logged(net)
    assert len(log) == 200 and log[-1]["epoch"] == 200 and log[-1]["test_acc"] == pytest.approx(65.28)
    r = authors.recipe(net)
    assert (r["epochs"], r["lr"], r["batch_size"], r["weight_decay"], r["momentum"]) == (200, 0.1, 256, 1e-4, 0.9)
    assert r["optimizer"] == "SGD" and r["schedule"] == "CosineAnnealingLR" and r["trial"] == 0
    assert r["loss"] == "SymmetrizedKLLoss" and r["augmentation"] == "crop,horizontal_flip"


def test_the_fetched_copy_is_checked_and_kept(tmp_path, monkeypatch):
    """The fetched copy: a file is downloaded from the repository at the commit, checked, written; one
    whose download has another sha256 is not written (urlopen faked: no network here)."""
    monkeypatch.setenv("KDLIB_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KDLIB_GNOSIS", raising=False)
    monkeypatch.chdir(tmp_path)  # no ../shared/data/gnosis-da81dad from here
    net = authors.Network(1, 0, "teacher")
    payload = {net.config: b"not the file"}
    asked = []

    class Response:
        def __init__(self, data):
            self.data = data

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self):
            return self.data

    def urlopen(url, timeout):
        asked.append(url)
        return Response(payload[url.split(authors.FOLDER + "/")[1]])
    monkeypatch.setattr(authors.urllib.request, "urlopen", urlopen)
    assert authors.root() == tmp_path / "home" / authors.FETCHED
    with pytest.raises(CorruptFileError, match="does not have the sha256 kdlib expects"):
        authors.read_file(net.config)
    assert asked == [f"https://raw.githubusercontent.com/samuelstanton/gnosis/{authors.COMMIT}/{authors.FOLDER}/"
                     f"{net.config}"]
    assert not (tmp_path / "home" / authors.FETCHED / authors.FOLDER / net.config).exists()
    if SHARED.is_dir():  # the real bytes: written, then read without another download
        payload[net.config] = (SHARED / authors.FOLDER / net.config).read_bytes()
        assert hashlib.sha256(authors.read_file(net.config)).hexdigest() == authors.SHA256[net.config]
        asked.clear()
        authors.read_file(net.config)
        assert asked == []


# ---------------------------------------------------------------------------------------------
# The straight line between two networks

def test_a_line_between_a_network_and_itself_is_flat_and_one_between_two_has_its_ends():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (40, 3, 32, 32), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (40,), generator=g)
    a, b = build_model("layer", 1, 10), build_model("layer", 2, 10)
    flat = landscape.line(a, build_model("layer", 1, 10), x, y, points=(0.0, 0.5, 1.0))
    assert [p["agreement_a"] for p in flat] == [1.0, 1.0, 1.0] and landscape.barrier(flat) == pytest.approx(0, abs=1e-6)
    curve = landscape.line(a, b, x, y, points=(0.0, 0.5, 1.0))
    assert curve[0]["agreement_a"] == 1.0 and curve[-1]["agreement_b"] == 1.0
    ends = [torch.nn.functional.cross_entropy(net.eval()(kdata.model_input(x)), y).item()
            for net in (build_model("layer", 1, 10), b)]
    assert [curve[0]["loss"], curve[-1]["loss"]] == pytest.approx(ends, rel=1e-5)
    assert landscape.barrier([{"t": 0.0, "loss": 1.0}, {"t": 0.5, "loss": 3.0}, {"t": 1.0, "loss": 2.0}]) == 1.5
    with pytest.raises(ValueError, match="bn_data"):
        landscape.line(build_model("batch", 1, 10), build_model("batch", 2, 10), x, y)


# ---------------------------------------------------------------------------------------------
# The real networks (slow: 18 evaluations of the full test set, cached for the session)

@pytest.mark.slow
def test_the_18_networks_reproduce_their_logged_test_accuracy(cifar_real, monkeypatch):
    if not SHARED.is_dir():
        pytest.skip(f"the authors' files are not at {SHARED}")
    monkeypatch.setenv("KDLIB_GNOSIS", str(SHARED))
    runs = authors.load(cifar_real, device="cpu", progress=False)
    assert len(runs) == 18
    for net, run in runs.items():
        assert run.metrics["test_acc"] == pytest.approx(run.metrics["logged_test_acc"], abs=1e-4), net.name
        if net.role == "student":  # the ensemble of its teachers, as the student's log recorded it
            assert run.metrics["teacher_test_acc"] == pytest.approx(run.metrics["logged_teacher_test_acc"], abs=1e-4)
    teacher = runs[authors.Network(1, 0, "teacher")]
    assert teacher.metrics["test_acc"] == pytest.approx(0.6528) and 1.2 < teacher.metrics["test_nll"] < 2.0
    assert metrics.accuracy(teacher.test_logits(), cifar_real.test.y) == teacher.metrics["test_acc"]


# ---------------------------------------------------------------------------------------------
# What the paper scale measures of them (kdlib.paper_scale), on made-up logits

def fake_paper_scale(n=60, classes=5):
    from types import SimpleNamespace

    from kdlib.paper_scale import PaperScale

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    runs = {}
    for i, net in enumerate(authors.NETWORKS):
        logits = torch.randn(n, classes, generator=g)
        spec = SimpleNamespace(seed=100 * net.ensemble + net.trial, kind=net.role, recipe=SimpleNamespace(epochs=200))
        runs[net] = authors.AuthorsRun(net, logits, {"test_acc": metrics.accuracy(logits, labels),
                                                     "test_ece": metrics.ece(logits, labels), "teacher_test_acc": 0.5},
                                       [], spec)
    dataset = SimpleNamespace(test=SimpleNamespace(y=labels))
    return PaperScale(runs, dataset)


def test_each_student_is_measured_against_its_own_teachers_and_the_ones_it_never_saw():
    from kdlib import paper_scale

    ps = fake_paper_scale()
    assert len(ps.teachers()) == 12 and len(ps.students()) == 6 and len(ps.teachers(3)) == 6
    s = ps.students(2)[1]
    assert [t.network for t in ps.own(s)] == [authors.Network(2, 1, "teacher", 0), authors.Network(2, 1, "teacher", 1)]
    assert ps.own_teachers(1) == [ps.own(x)[0] for x in ps.students(1)]
    rows = paper_scale.student_agreement(ps)
    assert [r["unseen_teachers"] for r in rows] == [11, 11, 10, 10, 9, 9]
    own = ps.ensemble_logits(s)
    assert rows[3]["agreement"] == metrics.agreement(own, s.test_logits())
    assert all(sum(v for k, v in r.items() if k != "student") == 60 for r in paper_scale.partition(ps))
    assert len(paper_scale.teacher_pairs(ps)) == 66
    cal = paper_scale.calibration(ps)
    assert cal[4]["teacher_ece"] == pytest.approx(metrics.ece(ps.ensemble_logits(ps.students(3)[0]), ps.dataset.test.y))
    gap = metrics.calibration_gap(ps.ensemble_logits(ps.students(3)[0]), ps.dataset.test.y)
    assert cal[4]["teacher_gap"] == pytest.approx(float(gap.mean())) and all(r["student_gap"] >= 0 for r in cal)
