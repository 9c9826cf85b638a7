"""The original authors' own networks: paper-scale runs by the paper's authors, read safely (protocol §10).

The gnosis repository (github: samuelstanton/gnosis, MIT licence) held, at commit `COMMIT`
(2020-12-24; later commits deleted them), 12 PreResNet-20 teachers and 6 students trained on the full
CIFAR-100: for m = 1, 2 and 3 teachers, two trials each, every teacher trained independently and one
student distilled from the run's m teachers. `NETWORKS` lists the 18 (`Network`: role, ensemble size,
trial, member, and the files of its run). Their files are found by the same rule as the data
(`root`): `$KDLIB_GNOSIS`, else the project's offline copy `LOCAL_COPY` if it exists, else a copy
fetched from the repository at `COMMIT` into ``kdlib_home()/"gnosis-da81dad"``.

Every file is checked against the sha256 in `SHA256` before it is parsed; a file that differs is
refused. The checkpoints are legacy-format pickles of a state dict (`torch.load(weights_only=True)`
refuses them, and `weights_only=False` would run whatever code a tampered file carries): they are read
by a restricted unpickler that allows exactly the three globals they use, each tensor storage loaded
with `weights_only=True` (`state_dict`). Their parameter names are gnosis' and map one to one onto
kdlib's PreResNet-20 (`to_kdlib`): the same network, 278,132 parameters.

`load(dataset)` evaluates every network on the test set once (its logits cached under
``kdlib_home()/"authors"``, keyed by the checkpoint's sha256 and the data) and gives `AuthorsRun`s:
run-like objects (test logits, predictions, metrics, the logged history) that kdlib.claims reads as
it reads kdlib's own runs.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import os
import re
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import torch
import yaml

from kdlib import data as kdata
from kdlib import metrics
from kdlib.device import CHANNELS_LAST, resolve_device
from kdlib.evaluate import predict
from kdlib.files import CorruptFileError, atomic_write_bytes, kdlib_home, load_tensors, save_tensors
from kdlib.identity import canonical
from kdlib.losses import ensemble_logits
from kdlib.models import PreResNet, preresnet20
from kdlib.progress import Progress
from kdlib.unpickle import restricted_load

REPOSITORY = "samuelstanton/gnosis"
COMMIT = "da81dadf450e49c861e6bf0328f44cb083532f23"
# where the checkpoints lie in the repository; every path of SHA256 is relative to it
FOLDER = "data/experiments/image_classification/classifier_checkpoints/preresnet20_cifar100_unitcube"
URL = "https://raw.githubusercontent.com/{repository}/{commit}/{path}"
# The project's offline copy, relative to the repository root (shared/data/README.md)
LOCAL_COPY = "../shared/data/gnosis-da81dad"
FETCHED = "gnosis-da81dad"  # the folder under kdlib_home() a fetched copy goes to

# sha256 of every file kdlib reads, by its path under FOLDER (the repository's SHA256SUMS at COMMIT).
SHA256 = {
    "preresnet20_1-preresnet20_1-cifar100/trial_0/2020-12-16_02-38-17/.hydra/config.yaml":
        "61ee355456f14bf017e1b65ac51ab0313cd521637592d7b11fa3248b28ea87eb",
    "preresnet20_1-preresnet20_1-cifar100/trial_0/2020-12-16_02-38-17/student.ckpt":
        "f90ca76281c4bb04e6547bd2bb0bb0872bfd7bfef1b840eac6f318e31414cfb3",
    "preresnet20_1-preresnet20_1-cifar100/trial_0/2020-12-16_02-38-17/student_train_metrics.csv":
        "a643a70b32d7adffa9181395a79e9af877c795eb199313381213a732ea5c27f9",
    "preresnet20_1-preresnet20_1-cifar100/trial_0/2020-12-16_02-38-17/teacher_0.ckpt":
        "225666b6609aa514a86975275639f1e255d4843b9ca506814436fffe3b09a5ff",
    "preresnet20_1-preresnet20_1-cifar100/trial_0/2020-12-16_02-38-17/teacher_0_train_metrics.csv":
        "e39668fd75fba1e04b82a8908251fd5b22db9bd9541c03ae877be74ac758bbfa",
    "preresnet20_1-preresnet20_1-cifar100/trial_1/2020-12-16_02-38-17/.hydra/config.yaml":
        "e3fbc7d08394e91418051ee9e67aaee00057a11babfb6f19e18a633a683603a9",
    "preresnet20_1-preresnet20_1-cifar100/trial_1/2020-12-16_02-38-17/student.ckpt":
        "56b42b9cb29cb2ffee577e1bb1ff49a52e5c710d333444c64d250da453cfdab1",
    "preresnet20_1-preresnet20_1-cifar100/trial_1/2020-12-16_02-38-17/student_train_metrics.csv":
        "a0b158d1dd1765a134beeb194a2d7018582bb8822bbe6556a36ddebd04a080b8",
    "preresnet20_1-preresnet20_1-cifar100/trial_1/2020-12-16_02-38-17/teacher_0.ckpt":
        "a809409a021a004c3cd6a5ce09fd3d43348885fdca121d7b3d2844657186259c",
    "preresnet20_1-preresnet20_1-cifar100/trial_1/2020-12-16_02-38-17/teacher_0_train_metrics.csv":
        "b102de8696fdb3d09f69e0c0f07d805072ff26b5bb73700db423b02cae5dd8be",
    "preresnet20_2-preresnet20_1-cifar100/trial_0/2020-12-16_02-39-27/.hydra/config.yaml":
        "2295545d22ff57991127cf518d5db1837307c8a92617210d0ea54fc2e443c039",
    "preresnet20_2-preresnet20_1-cifar100/trial_0/2020-12-16_02-39-27/student.ckpt":
        "a66cdaa783e96e598ff092c696f1df47b7a9dbf8ef82cfa8667d5c5a3bb3f7e8",
    "preresnet20_2-preresnet20_1-cifar100/trial_0/2020-12-16_02-39-27/student_train_metrics.csv":
        "3cdfbe30a50d68eb42d13fbe30424f47a8b5bfedebc28429cdc274fb57b2a862",
    "preresnet20_2-preresnet20_1-cifar100/trial_0/2020-12-16_02-39-27/teacher_0.ckpt":
        "6420e0451723af97dfa02ed60e4760ff46e46d0b1d1d129ce689f05655e45dcd",
    "preresnet20_2-preresnet20_1-cifar100/trial_0/2020-12-16_02-39-27/teacher_0_train_metrics.csv":
        "e8d680d1be760d1339f2d7c77271fba47b76109b8fb847b5483eea3aa9fde5af",
    "preresnet20_2-preresnet20_1-cifar100/trial_0/2020-12-16_02-39-27/teacher_1.ckpt":
        "480f8e899856b5640314c305428a9ab312f69d246461d3341b7a786404da8b9d",
    "preresnet20_2-preresnet20_1-cifar100/trial_0/2020-12-16_02-39-27/teacher_1_train_metrics.csv":
        "cdf16dc1212ba6136e0919aa926ea7ae6991b633bf37c61cf345be4ea1dd1cef",
    "preresnet20_2-preresnet20_1-cifar100/trial_1/2020-12-16_02-39-27/.hydra/config.yaml":
        "6464198202120494a5f25d735b11ff23396346ce70f5e1182a9345bc8718f1e3",
    "preresnet20_2-preresnet20_1-cifar100/trial_1/2020-12-16_02-39-27/student.ckpt":
        "32a9d5a140a90e7e8c0c45b1620643cf36f918ce15ba33d73aba9586ef910c63",
    "preresnet20_2-preresnet20_1-cifar100/trial_1/2020-12-16_02-39-27/student_train_metrics.csv":
        "afed437903f84ed0743f9ad63fdbe48c887e6894c7f89b8a9c51288661ad251a",
    "preresnet20_2-preresnet20_1-cifar100/trial_1/2020-12-16_02-39-27/teacher_0.ckpt":
        "a8e42efaebf513b199e190cfc616d363cc9db522f07a2feb7dba885ddfb7b45d",
    "preresnet20_2-preresnet20_1-cifar100/trial_1/2020-12-16_02-39-27/teacher_0_train_metrics.csv":
        "4c40b41a0d157852bb0f2b2c55e68cc2529685c891ae282bf0a51e652ae45dde",
    "preresnet20_2-preresnet20_1-cifar100/trial_1/2020-12-16_02-39-27/teacher_1.ckpt":
        "8feb1d14a6a4c117bdcc4979a3fe32b5e41cf58989664e56a245046c7f1a16b7",
    "preresnet20_2-preresnet20_1-cifar100/trial_1/2020-12-16_02-39-27/teacher_1_train_metrics.csv":
        "30d44bb01e6fdba3f588c5f96c62b1561eeeaeeb22564fb739f9686c20ea5e73",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/.hydra/config.yaml":
        "287808c6a409186277fee1e66d930f72bf3d49ac6fb4076551233ffd7d37192d",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/student.ckpt":
        "4c5701ed2af57dd767b24bfacc74c96ce167006b138ba8684aacc61f2896dec3",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/student_train_metrics.csv":
        "83fbcb6867f59bfdc3ed5a2ff339ee0982ef11fc1ddaf3f38a096fe0115ed261",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/teacher_0.ckpt":
        "d4915cc4baad487dc8ed6c83b4f522dd86464b292dd34dd59fca9a26a82d39a7",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/teacher_0_train_metrics.csv":
        "4c8fc4bc469c6d81534155d83bd442533657f59fc8300bfc34af343e0363ea36",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/teacher_1.ckpt":
        "6bafd237bd9b67e1e731d02c1d73dbf45ac3b567355e4a133044ef0bd528363e",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/teacher_1_train_metrics.csv":
        "f079c939c98b167f0c92e312d6a01e1615c7695798547d0c3cce89e6ffd39be8",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/teacher_2.ckpt":
        "fd39701648441b4977ae54361b3bbd8d763de71c2bfecd4e4cca0b54ad092839",
    "preresnet20_3-preresnet20_1-cifar100/trial_0/2020-12-16_02-40-44/teacher_2_train_metrics.csv":
        "307e4511a1d5366c5c05952f1b9466dfc55d38417131d6b1b89d961a980ceeb3",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/.hydra/config.yaml":
        "3837c8ac4b4613785f8d0eb4e70a6b18d9f12d5e14d9d450123bd18e8b7db14a",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/student.ckpt":
        "952357514d0694df9d8e6390b2d2e7a2fdb694924d2be569219cf445efd6e59c",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/student_train_metrics.csv":
        "c46050c6e6267f442f42c3b585c47aa2a58d4aa97a42af0ab99bfe7a8be71bc0",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/teacher_0.ckpt":
        "e28dee4e8637ee0c35076191acb57f820541d5b3a2f5cdb91f0562ef42c497c3",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/teacher_0_train_metrics.csv":
        "21e214a93713a56c257c9c93e43e855adfb2fd76efd6cc86010ae96ac2ec1206",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/teacher_1.ckpt":
        "757943198e6bb6582b48b39ad8b8b89003081d6f4c31add6d8a8987ad885f146",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/teacher_1_train_metrics.csv":
        "dcd903f5568415aa9fabbbc7fcf86f9ddf3a593d4fda2d17a0b7715cf32d135d",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/teacher_2.ckpt":
        "742989ebd1221a195b423e549d9c603be6eb965b3c73f1aba7c7dbd7db68bfce",
    "preresnet20_3-preresnet20_1-cifar100/trial_1/2020-12-16_02-40-44/teacher_2_train_metrics.csv":
        "f2e7f37f01d94afee9268be4e76e1bdb6d2e059a1bed7f669dde26f969a8381b",
}


ROLES = ("teacher", "student")


@dataclass(frozen=True)
class Network:
    """One of the authors' networks: which run it belongs to, and which network of that run."""

    ensemble: int  # m: the run's number of teachers (its student learned from their ensemble)
    trial: int     # 0 or 1
    role: str      # "teacher" or "student"
    member: int = 0  # a teacher's index among its run's teachers (0 for the student)

    @property
    def run_folder(self) -> str:
        prefix = f"preresnet20_{self.ensemble}-preresnet20_1-cifar100/trial_{self.trial}/"
        (date,) = {p[len(prefix):].split("/")[0] for p in SHA256 if p.startswith(prefix)}
        return prefix + date

    @property
    def stem(self) -> str:
        return f"teacher_{self.member}" if self.role == "teacher" else "student"

    @property
    def checkpoint(self) -> str:
        return f"{self.run_folder}/{self.stem}.ckpt"

    @property
    def log(self) -> str:
        return f"{self.run_folder}/{self.stem}_train_metrics.csv"

    @property
    def config(self) -> str:
        return f"{self.run_folder}/.hydra/config.yaml"

    @property
    def sha256(self) -> str:
        return SHA256[self.checkpoint]

    @property
    def name(self) -> str:
        who = f"teacher {self.member}" if self.role == "teacher" else "student"
        return f"m = {self.ensemble}, trial {self.trial}, {who}"

    @property
    def teachers(self) -> tuple["Network", ...]:
        """The teachers of this network's run (a student learned from their ensemble)."""
        return tuple(Network(self.ensemble, self.trial, "teacher", i) for i in range(self.ensemble))


NETWORKS = tuple(n for m in (1, 2, 3) for k in (0, 1)
                 for n in (*Network(m, k, "student").teachers, Network(m, k, "student")))


# ---------------------------------------------------------------------------------------------
# Where the files are, and reading one (checked before it is parsed)

def root() -> Path:
    """The folder holding the repository's files at COMMIT: $KDLIB_GNOSIS if set, else LOCAL_COPY if it
    exists (relative to the current directory: run from the repository root), else the fetched copy
    under kdlib_home() (`fetch` fills it)."""
    env = os.environ.get("KDLIB_GNOSIS")
    if env:
        return Path(env).expanduser()
    if Path(LOCAL_COPY).is_dir():
        return Path(LOCAL_COPY)
    return kdlib_home() / FETCHED


def read_file(path: str, where: Path | None = None) -> bytes:
    """The bytes of `path` (a key of SHA256) under `where` (default `root()`), checked against its
    sha256 before anything parses them. A fetched copy fetches a missing file first; a file whose
    sha256 differs raises CorruptFileError, a missing one (in a given copy) FileNotFoundError."""
    where = root() if where is None else Path(where)
    if path not in SHA256:
        raise ValueError(f"path must be one of the {len(SHA256)} files of kdlib.authors.SHA256, got {path!r}")
    file = where / FOLDER / path
    if not file.exists() and where.resolve() == (kdlib_home() / FETCHED).resolve():
        fetch(where, [path])
    if not file.exists():
        raise FileNotFoundError(f"{file} does not exist: the authors' files are read from $KDLIB_GNOSIS, else "
                                f"{LOCAL_COPY}, else fetched into {kdlib_home() / FETCHED} (kdlib.authors.root)")
    data = file.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != SHA256[path]:
        raise CorruptFileError(f"{file} has sha256 {digest[:16]}..., not the {SHA256[path][:16]}... the repository "
                               f"held at commit {COMMIT[:7]}: it is refused before it is parsed")
    return data


def fetch(where: Path | None = None, paths=None, progress: bool = True) -> Path:
    """Download the files `paths` (default: all of SHA256) from the repository at COMMIT into `where`
    (default the fetched copy), each checked against its sha256 and written atomically; a file that is
    there and checks is kept. Returns `where`."""
    where = kdlib_home() / FETCHED if where is None else Path(where)
    todo = [p for p in (SHA256 if paths is None else paths)
            if not (where / FOLDER / p).exists()
            or hashlib.sha256((where / FOLDER / p).read_bytes()).hexdigest() != SHA256[p]]
    with Progress(len(todo), "fetching the authors' networks", unit="file", enabled=progress and bool(todo)) as bar:
        for path in todo:
            url = URL.format(repository=REPOSITORY, commit=COMMIT, path=f"{FOLDER}/{path}")
            try:
                with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 -- a fixed https URL
                    data = response.read()
            except OSError as e:
                raise RuntimeError(f"fetching {url} failed ({e}); set KDLIB_GNOSIS to a copy of the repository's "
                                   f"files at commit {COMMIT[:7]}") from e
            if hashlib.sha256(data).hexdigest() != SHA256[path]:
                raise CorruptFileError(f"{url} does not have the sha256 kdlib expects; nothing was written")
            atomic_write_bytes(where / FOLDER / path, data)
            bar.update()
    return where


# ---------------------------------------------------------------------------------------------
# The checkpoints: a restricted unpickler, and gnosis' names mapped onto kdlib's

def _storage(data: bytes):
    """A tensor storage pickled inside the checkpoint (a nested legacy torch.save), read with
    weights_only=True onto the CPU (the networks were saved on a GPU)."""
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


# The only globals the checkpoints use, each resolved to the function that rebuilds it safely.
CHECKPOINT_GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict,
                      ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
                      ("torch.storage", "_load_from_bytes"): _storage}


def state_dict(network: Network, where: Path | None = None) -> dict[str, torch.Tensor]:
    """The network's weights under gnosis' names, checked by sha256 and read without running code."""
    obj = restricted_load(read_file(network.checkpoint, where), CHECKPOINT_GLOBALS, f"the checkpoint of {network.name}")
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CorruptFileError(f"the checkpoint of {network.name} does not hold a state dict of tensors")
    return dict(obj)


_NORMS = {"bn1": "norm1", "bn2": "norm2"}


def to_kdlib(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """gnosis' PreResNet names -> kdlib.models.PreResNet's: conv1 (the stem) -> stem, layerI.J.bnK ->
    stages.(I-1).J.normK, layerI.J.convK -> stages.(I-1).J.convK, layerI.0.downsample.0 ->
    stages.(I-1).0.shortcut, bn (the final norm) -> final_norm, fc -> fc. An unknown name raises."""
    out = {}
    for key, value in state.items():
        m = re.fullmatch(r"layer([123])\.(\d+)\.(bn1|bn2|conv1|conv2|downsample\.0)\.(\w+)", key)
        if m:
            layer = _NORMS.get(m[3], "shortcut" if m[3] == "downsample.0" else m[3])
            name = f"stages.{int(m[1]) - 1}.{m[2]}.{layer}.{m[4]}"
        elif key == "conv1.weight":
            name = "stem.weight"
        elif key.startswith("bn."):
            name = "final_norm." + key[len("bn."):]
        elif key.startswith("fc."):
            name = key
        else:
            raise KeyError(f"{key!r} is not a parameter of gnosis' PreResNet-20")
        out[name] = value
    return out


def model(network: Network, where: Path | None = None, device="cpu") -> PreResNet:
    """The network as kdlib's PreResNet-20 (BatchNorm, 100 classes), in eval mode and channels_last.
    Its state dict must match kdlib's exactly (every name, every shape)."""
    net = preresnet20(100, "batch")
    net.load_state_dict(to_kdlib(state_dict(network, where)), strict=True)
    return net.to(device).eval().to(memory_format=CHANNELS_LAST)


# ---------------------------------------------------------------------------------------------
# What the authors logged, and how they trained

def logged(network: Network, where: Path | None = None) -> list[dict]:
    """The network's per-epoch log (its *_train_metrics.csv), one dict of floats per epoch; accuracies
    in %, as logged."""
    text = read_file(network.log, where).decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    if not rows:
        raise CorruptFileError(f"the log of {network.name} has no epochs")
    return [{k: float(v) for k, v in row.items()} for row in rows]


def recipe(network: Network, where: Path | None = None) -> dict:
    """The run's configuration as it trained (its .hydra/config.yaml, read with yaml.safe_load): epochs,
    optimiser, learning rate, weight decay, momentum, schedule, batch, augmentation, normalisation,
    the loss and the seed."""
    config = yaml.safe_load(read_file(network.config, where).decode())
    trainer, optimizer = config["trainer"], config["trainer"]["optimizer"]
    return {"epochs": int(trainer["num_epochs"]), "optimizer": optimizer["_target_"].split(".")[-1],
            "lr": float(optimizer["lr"]), "weight_decay": float(optimizer["weight_decay"]),
            "momentum": float(optimizer["momentum"]), "nesterov": bool(optimizer.get("nesterov", False)),
            "schedule": trainer["lr_scheduler"]["_target_"].split(".")[-1],
            "batch_size": int(config["dataloader"]["batch_size"]),
            "augmentation": config["augmentation"]["transforms_list"],
            "normalisation": config["augmentation"]["normalization"],
            "loss": config["loss"]["init"]["_target_"].split(".")[-1], "teachers": int(config["teacher"]["num_components"]),
            "seed": int(config["seed"]), "trial": int(config["trial_id"])}


# ---------------------------------------------------------------------------------------------
# Evaluated once, read as runs

@dataclass
class AuthorsRun:
    """One of the authors' networks, evaluated: what kdlib.claims reads from a run (test logits and
    predictions, metrics, a history, a spec with its seed), and what the authors logged."""

    network: Network
    logits: torch.Tensor                   # (N, 100) float32 test logits
    metrics: dict                          # test_acc, test_nll, test_ece (ours); logged_test_acc; students' teacher_test_acc
    history: list[dict]                    # per epoch: test_acc as a fraction (their log)
    spec: SimpleNamespace = field(repr=False)  # seed (the run's), kind, recipe.epochs

    @property
    def id(self) -> str:
        return self.network.sha256[:16]

    def test_logits(self) -> torch.Tensor:
        return self.logits

    def stored_logits(self, split: str) -> torch.Tensor | None:
        return self.logits if split == "test" else None

    def predictions(self, split: str) -> torch.Tensor:
        if split != "test":
            raise KeyError(f"the authors' networks are evaluated on the test set only, not on {split!r}")
        return self.logits.argmax(1)


def evaluation_file(network: Network, dataset: kdata.Dataset) -> Path:
    """Where a network's test logits on `dataset` are cached: keyed by the checkpoint's sha256 and the data."""
    data = hashlib.sha256(canonical(dataset.cache_key())).hexdigest()[:16]
    return kdlib_home() / "authors" / f"{network.sha256[:16]}-{data}-test.pt"


def test_logits(network: Network, dataset: kdata.Dataset, where: Path | None = None, device="auto") -> torch.Tensor:
    """The network's logits on the test set of `dataset` (the full CIFAR-100 test set for the report),
    from the cache if they are there (checked), else computed in fp32 and cached."""
    path = evaluation_file(network, dataset)
    if path.exists():
        try:
            return load_tensors(path)["test"]
        except (CorruptFileError, KeyError):
            pass  # a damaged cache entry is recomputed and rewritten
    dev = resolve_device(device)
    logits = predict(model(network, where, dev), dataset.test.x, dev).cpu()
    save_tensors(path, {"test": logits, "network": network.checkpoint, "sha256": network.sha256})
    return logits


def check_dataset(dataset: kdata.Dataset) -> None:
    """The authors' networks tell the 100 classes of CIFAR-100 apart: the dataset must have them all."""
    if dataset.num_classes != 100:
        raise ValueError(f"dataset must have CIFAR-100's 100 classes (the authors' networks have 100 outputs), "
                         f"got {dataset.num_classes}")


def load(dataset: kdata.Dataset, where: Path | None = None, device="auto", progress: bool = True
         ) -> dict[Network, AuthorsRun]:
    """Every network of NETWORKS evaluated on `dataset`'s test set, as AuthorsRuns (cached evaluations
    are read, missing ones computed)."""
    check_dataset(dataset)
    y = dataset.test.y
    logits = {}
    with Progress(len(NETWORKS), "evaluating the authors' networks", unit="net", enabled=progress) as bar:
        for n in NETWORKS:
            logits[n] = test_logits(n, dataset, where, device)
            bar.update()
    out = {}
    for n in NETWORKS:
        log = logged(n, where)
        config = recipe(n, where)
        m = {"test_acc": metrics.accuracy(logits[n], y), "test_nll": metrics.nll(logits[n], y),
             "test_ece": metrics.ece(logits[n], y), "logged_test_acc": log[-1]["test_acc"] / 100}
        if n.role == "student":
            ensemble = ensemble_logits(torch.stack([logits[t] for t in n.teachers]))
            m["teacher_test_acc"] = metrics.accuracy(ensemble, y)
            m["logged_teacher_test_acc"] = log[-1]["teacher_test_acc"] / 100
        history = [{"epoch": int(r["epoch"]), "test_acc": r["test_acc"] / 100} for r in log]
        spec = SimpleNamespace(seed=config["seed"], kind=n.role, recipe=SimpleNamespace(epochs=config["epochs"]))
        out[n] = AuthorsRun(n, logits[n], m, history, spec)
    return out

