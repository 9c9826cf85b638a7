"""Progress of long work, for whoever is waiting for it.

In a terminal or a notebook, `Progress` is a plain tqdm bar (not the auto or notebook variant: a widget
bar would be saved into the book's pages). When the report runner executes notebooks it sets
$KDLIB_PROGRESS to a file: the bars inside the kernels are then silent and each update is appended
to that file as one JSON line, which the runner follows and shows in place in its own terminal
(`Follower`), so that `make report` shows the run being trained, its epoch, rate and ETA, and how
many of the notebook's runs are done, while the executed notebooks stay free of progress bars.

An event: {"bar": its description, "n": done, "total": of, "unit": "epoch", "rate": per second or
null, "eta": seconds or null, "info": {short extra fields}}.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from tqdm import tqdm

ENV = "KDLIB_PROGRESS"
EVERY = 0.5  # seconds between events of one bar (the first and the last are always written)


class Progress:
    """A progress bar over `total` steps: tqdm here, or events to $KDLIB_PROGRESS under the runner."""

    def __init__(self, total: int, desc: str, unit: str = "it", initial: int = 0, enabled: bool = True):
        self.path = os.environ.get(ENV) if enabled else None
        self.desc, self.unit, self.total, self.n = desc, unit, total, initial
        self.started, self.start_n, self._emitted = time.perf_counter(), initial, None
        self.bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                        disable=not enabled or self.path is not None)
        self._emit({})

    def update(self, n: int = 1, **info) -> None:
        self.n += n
        self.bar.update(n)
        if info:
            self.bar.set_postfix({k: f"{v:.3g}" if isinstance(v, float) else v for k, v in info.items()})
        self._emit(info)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _emit(self, info: dict) -> None:
        now = time.perf_counter()
        if self.path is None or (self._emitted is not None and now - self._emitted < EVERY and self.n < self.total):
            return  # between the first and the last event, at most one every EVERY seconds
        self._emitted = now
        elapsed = now - self.started
        done = self.n - self.start_n
        rate = done / elapsed if done > 0 and elapsed > 0 else None
        eta = (self.total - self.n) / rate if rate else None
        event = {"bar": self.desc, "n": self.n, "total": self.total, "unit": self.unit, "rate": rate, "eta": eta,
                 "info": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in info.items()}}
        try:
            with open(self.path, "a") as f:  # one short line per write: appends do not interleave
                f.write(json.dumps(event) + "\n")
        except OSError:
            pass  # progress is a courtesy: never fail a run over it


def clock(seconds: float | None) -> str:
    """'1:02:03' / '4:05' for a duration; '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


def describe(event: dict) -> str:
    """One event as the runner shows it: 'student 3f2a1b0c: epoch 45/90, 1.1 epoch/s, ETA 0:41'."""
    rate = f", {event['rate']:.2g} {event['unit']}/s" if event.get("rate") else ""
    eta = f", ETA {clock(event['eta'])}" if event.get("eta") is not None and event["n"] < event["total"] else ""
    return f"{event['bar']}: {event['unit']} {event['n']}/{event['total']}{rate}{eta}"


class Follower:
    """Follows a progress file in a thread and shows its latest state as one line.

    On a terminal the line is redrawn in place; elsewhere (a log, CI) a line is printed when a bar
    starts or ends, when a run is done, and at most every `every` seconds in between. `prefix` names
    the notebook.
    """

    def __init__(self, path: Path, prefix: str, stream, every: float = 30.0, interval: float = 0.5):
        self.path, self.prefix, self.stream = Path(path), prefix, stream
        self.every, self.interval = every, interval
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.bars: dict[str, dict] = {}  # description -> latest event, in the order they appeared
        self._offset, self._printed, self._width = 0, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, daemon=True)

    def __enter__(self) -> "Follower":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("")
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._read()  # the last events
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()

    def line(self) -> str:
        """The state: the runs counter (a bar counting "run"s), if any, then the bar that moved last."""
        events = list(self.bars.values())
        runs = next((e for e in reversed(events) if e["unit"] == "run"), None)
        latest = next((e for e in reversed(events) if e["unit"] != "run"), None)
        parts = [self.prefix]
        if runs:
            parts.append(f"runs {runs['n']}/{runs['total']} done")
        if latest:
            parts.append(describe(latest))
        return " · ".join(parts)

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def _read(self) -> None:
        try:
            with open(self.path) as f:
                f.seek(self._offset)
                chunk = f.read()
        except OSError:
            return
        complete = chunk[:chunk.rfind("\n") + 1]  # a line being written is read next time
        self._offset += len(complete.encode())
        events = []
        for text in complete.splitlines():
            try:
                events.append(json.loads(text))
            except json.JSONDecodeError:
                continue
        for event in events:
            new = event["bar"] not in self.bars
            self.bars.pop(event["bar"], None)
            self.bars[event["bar"]] = event
            # on a log, a line when a bar starts or ends and when a run is done
            self._show(force=new or event["n"] >= event["total"] or event["unit"] == "run")

    def _show(self, force: bool) -> None:
        text = self.line()
        if self.tty:
            self.stream.write("\r" + text.ljust(self._width))  # pads over a longer previous line
            self._width = max(self._width, len(text))
        elif force or time.monotonic() - self._printed >= self.every:
            self.stream.write(text + "\n")
            self._printed = time.monotonic()
        self.stream.flush()
