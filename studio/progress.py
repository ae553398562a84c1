"""Progress events that stages yield, and the control object the caller uses to pause/cancel."""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Generator

from .errors import Cancelled


def clock_text(seconds: float | None) -> str:
    """Seconds as m:ss, or h:mm:ss from an hour on ("?" for None): the CLI's progress lines and `run`'s notes."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


@dataclass
class Progress:
    """One progress event from a running stage.

    The CLI prints it as a progress bar; the GUI turns it into a Qt signal.
    """

    stage: str
    """Name of the stage that emitted it (e.g. "track")."""
    step: int
    """Steps done so far in the current part."""
    total: int
    """Steps in the current part (0 when unknown)."""
    part: str = ""
    """Sub-part of the stage (e.g. "decode", "prior", "invert"); empty for single-part stages."""
    message: str = ""
    """A short line for the user."""
    losses: dict[str, float] = field(default_factory=dict)
    """Current loss values by name, for the dashboard curves."""
    preview: Any = None
    """Optional preview image, HxWx3 uint8 numpy array."""
    elapsed: float = 0.0
    """Seconds of work in the current part in this run (pauses excluded)."""
    rate: float = 0.0
    """Steps per second in this run (0 while unknown)."""

    @property
    def fraction(self) -> float:
        return min(1.0, self.step / self.total) if self.total else 0.0

    def eta(self) -> float | None:
        """Seconds left at the current rate, or None while unknown."""
        if not self.total or self.step <= 0:
            return None
        if self.rate > 0:
            return max(0, self.total - self.step) / self.rate
        if self.elapsed <= 0:
            return None
        return self.elapsed / self.step * max(0, self.total - self.step)


class Control:
    """Pause / resume / cancel a stage from another thread.

    Stages call `checkpoint()` between steps; it blocks while paused and raises
    `Cancelled` once `cancel()` was called.
    """

    def __init__(self) -> None:
        self._cancel = threading.Event()
        self._running = threading.Event()
        self._running.set()

    def cancel(self) -> None:
        self._cancel.set()
        self._running.set()

    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def checkpoint(self) -> None:
        while not self._running.wait(0.1):
            pass
        if self._cancel.is_set():
            raise Cancelled()


def run_to_end(gen: Generator[Any, None, Any], on_event: Callable[[Any], None] | None = None) -> Any:
    """Drive a generator of progress events (a stage, `iter_evaluate`, `export`) to its end and return
    what it returns; each event it yields goes to `on_event` when one is given."""
    while True:
        try:
            ev = next(gen)
        except StopIteration as stop:
            return stop.value
        if on_event is not None:
            on_event(ev)
