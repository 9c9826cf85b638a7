"""Progress: tqdm in a terminal; under the report runner, events in a file that the runner shows."""

import io
import json

import pytest

from kdlib import progress


def test_without_the_channel_it_is_a_plain_bar(monkeypatch, tmp_path):
    monkeypatch.delenv(progress.ENV, raising=False)
    with progress.Progress(3, "teacher 1234abcd", unit="epoch") as bar:
        bar.update(1, train_loss=0.5)
        assert bar.path is None and not bar.bar.disable
    assert progress.Progress(3, "x", enabled=False).bar.disable


def test_under_the_runner_events_go_to_the_file_and_the_bar_is_silent(monkeypatch, tmp_path):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setattr(progress, "EVERY", 0.0)
    with progress.Progress(3, "student 1234abcd", unit="epoch", initial=1) as bar:
        assert bar.bar.disable  # nothing for the notebook's output
        bar.update(1, test_agreement=0.61)
        bar.update(1)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    assert [e["n"] for e in events] == [1, 2, 3] and all(e["total"] == 3 for e in events)
    assert events[1]["info"] == {"test_agreement": 0.61} and events[1]["rate"] > 0 and events[1]["eta"] >= 0
    assert events[0]["rate"] is None  # nothing done yet: no rate, no ETA


def test_events_are_thinned_but_the_last_is_always_written(monkeypatch, tmp_path):
    path = tmp_path / "progress.jsonl"
    monkeypatch.setenv(progress.ENV, str(path))
    monkeypatch.setattr(progress, "EVERY", 3600.0)
    bar = progress.Progress(1000, "decoding train", unit="img")
    for _ in range(1000):
        bar.update()
    assert [json.loads(line)["n"] for line in path.read_text().splitlines()] == [0, 1000]


def test_describe_and_clock():
    event = {"bar": "student 3f2a1b0c", "n": 45, "total": 90, "unit": "epoch", "rate": 1.1, "eta": 41}
    assert progress.describe(event) == "student 3f2a1b0c: epoch 45/90, 1.1 epoch/s, ETA 0:41"
    assert progress.describe({**event, "n": 90, "rate": None}) == "student 3f2a1b0c: epoch 90/90"
    assert (progress.clock(None), progress.clock(3725)) == ("?", "1:02:05")


class Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("stream", [io.StringIO, Terminal])
def test_the_follower_shows_runs_done_and_the_latest_bar(stream, tmp_path):
    path = tmp_path / "progress.jsonl"
    out = stream()
    events = [{"bar": "runs", "n": 0, "total": 2, "unit": "run", "rate": None, "eta": None, "info": {}},
              {"bar": "teacher aaaa1111", "n": 1, "total": 2, "unit": "epoch", "rate": 2.0, "eta": 0.5, "info": {}},
              {"bar": "teacher aaaa1111", "n": 2, "total": 2, "unit": "epoch", "rate": 2.0, "eta": 0.0, "info": {}},
              {"bar": "runs", "n": 1, "total": 2, "unit": "run", "rate": 0.5, "eta": 2, "info": {}}]
    with progress.Follower(path, "[2/10] e0_teachers", out, every=3600.0, interval=0.01) as follower:
        with open(path, "a") as f:
            f.write("".join(json.dumps(e) + "\n" for e in events) + '{"bar": "half a li')  # an unfinished line
    text = out.getvalue()
    assert follower.line() == "[2/10] e0_teachers · runs 1/2 done · teacher aaaa1111: epoch 2/2, 2 epoch/s"
    assert "teacher aaaa1111: epoch 2/2" in text and "runs 1/2 done" in text
    if stream is Terminal:
        assert "\r" in text and "\n" not in text  # redrawn in place, then cleared
    else:
        assert "\r" not in text and text.count("\n") >= 2  # lines for a log: starts and ends of bars
