"""The one training loop every training stage runs through.

A stage builds its networks and data, hands the loop what must survive a restart, and gives it
one step function per part; the loop owns everything else:

- **state**: the registered objects (networks, optimisers, weight averages; anything with
  ``state_dict``/``load_state_dict``, or a tensor), small values in ``loop.vars``, the step of
  each part, and the random state (torch's global generator and the loop's numpy ``rng``);
- **checkpoints**: one atomic file (``<stage dir>/train.ckpt``) written every
  ``checkpoint_every_s`` seconds and at each part's end; a rerun loads it and continues at the
  exact step with the exact random state, so a killed run ends with the same weights as one
  that never stopped (same seed, same thread count);
- **pause / cancel**: the caller pauses or cancels between steps (`Control`); time spent paused
  is not training time;
- **budgets**: parts run a number of *steps* (what the presets set). A wall-clock cap
  (``max_minutes``) is the user's option; it counts training time across resumes, never pauses,
  and when it cuts a part short the stage's summary and warnings say so (`cut_short`);
- **threads**: the CPU thread count follows the load (`studio.compute`), re-checked every 50 steps;
- **progress**: a `Progress` event per step (or every ``progress_every``) with losses, rate
  (it/s) and ETA; a preview image every ``preview_every`` steps.

Usage inside a stage's run generator::

    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s,
                        max_minutes=cfg.time_budget_min)
    loop.track("G", G); loop.track("opt", opt)        # loads them when resuming
    def step(i):                                       # i = steps done before this one
        ...; return {"l1": loss.item()}
    yield from loop.part("train", cfg.steps, step, preview=lambda: grid, preview_every=100)
    loop.finish()                                      # figures for the summary
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable, Generator

import numpy as np

from .atomic import atomic_path
from .compute import apply_threads
from .errors import ProjectError
from .progress import Progress

CHECKPOINT_FORMAT = 2
StepFn = Callable[[int], "dict[str, float] | None"]


class TrainingLoop:
    def __init__(self, ctx, *, seed: int = 0, checkpoint_every_s: float = 45.0, max_minutes: float = 0.0,
                 threads: int = 0, file: str = "train.ckpt"):
        import torch

        self.ctx = ctx
        self.path = Path(ctx.workdir) / file
        self.checkpoint_every_s = float(checkpoint_every_s)
        self.max_s = float(max_minutes) * 60.0
        self.requested_threads = int(threads)
        torch.manual_seed(seed)
        self.rng = np.random.default_rng(seed)
        """The stage's numpy random generator (checkpointed with torch's)."""
        self.vars: dict[str, Any] = {}
        """Small values that must survive a restart (numbers, strings, lists, tensors)."""
        self.steps: dict[str, int] = {}
        self.done: list[str] = []
        self.active_s = 0.0
        self.part_s: dict[str, float] = {}
        """Training seconds per part, across resumes."""
        self.cut_short: dict | None = None
        self.resumed_from: dict[str, int] = {}
        self._objects: dict[str, Any] = {}
        self._pending: dict | None = None
        self._rng_pending = False
        self._stop = False
        self._last_save = time.perf_counter()
        self._threads_before = torch.get_num_threads()
        self.threads = apply_threads(ctx.device, self.requested_threads)
        if self.path.exists():
            self._load()

    # ------------------------------------------------------------------ state
    @property
    def resumed(self) -> bool:
        """True when this run continues a checkpoint."""
        return bool(self.resumed_from) or bool(self.done)

    def _load(self) -> None:
        import torch

        try:
            ck = torch.load(self.path, map_location=self.ctx.device, weights_only=True)
        except Exception as exc:  # a damaged checkpoint: say so, keep the file for inspection
            raise ProjectError(f"the checkpoint {self.path.name} of stage '{self.ctx.stage}' cannot be read (damaged "
                               f"or not a checkpoint: {type(exc).__name__})",  # torch's text runs to 8 lines
                               f"delete {self.path} to restart this stage from the beginning") from None
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            # written by an older version: its layout is not ours, so start this stage afresh
            self.path.unlink(missing_ok=True)
            return
        self._pending = ck
        self.vars.update(ck.get("vars") or {})
        self.steps = {k: int(v) for k, v in (ck.get("steps") or {}).items()}
        self.done = list(ck.get("done") or [])
        self.active_s = float(ck.get("active_s", 0.0))
        self.part_s = {k: float(v) for k, v in (ck.get("part_s") or {}).items()}
        self.cut_short = ck.get("cut_short") or None
        self.resumed_from = dict(self.steps)
        self._rng_pending = True

    def track(self, name: str, obj: Any) -> Any:
        """Register `obj` (state_dict/load_state_dict, or a tensor) for checkpoints; when resuming,
        its saved state is loaded now. Returns `obj`."""
        self._objects[name] = obj
        saved = (self._pending or {}).get("objects", {}).get(name)
        if saved is not None:
            if hasattr(obj, "load_state_dict"):
                obj.load_state_dict(saved)
            else:
                import torch

                with torch.no_grad():
                    obj.copy_(saved)
        return obj

    def has_saved(self, name: str) -> bool:
        return name in (self._pending or {}).get("objects", {})

    def fresh(self, part: str) -> bool:
        """True when `part` has not started yet (neither done nor partly run)."""
        return part not in self.done and self.steps.get(part, 0) == 0

    def is_done(self, part: str) -> bool:
        return part in self.done

    def save(self) -> None:
        """Write the checkpoint now (atomically)."""
        import torch

        objects = {}
        for name, obj in self._objects.items():
            objects[name] = _plain(obj.state_dict()) if hasattr(obj, "state_dict") else obj.detach().clone()
        state = {"format": CHECKPOINT_FORMAT, "objects": objects, "vars": _plain(self.vars), "steps": self.steps,
                 "done": self.done, "active_s": self.active_s, "part_s": self.part_s, "cut_short": self.cut_short,
                 "torch_rng": torch.get_rng_state(), "numpy_rng": json.dumps(self.rng.bit_generator.state)}
        if torch.cuda.is_available() and str(self.ctx.device).startswith("cuda"):
            state["cuda_rng"] = torch.cuda.get_rng_state()
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:  # a Python file: a full disk raises OSError (ENOSPC), which
                torch.save(state, f)    # atomic_path turns into "the disk is full"; a path gives a RuntimeError
        self._last_save = time.perf_counter()
        self.ctx.note_step(self.steps)

    def _restore_rng(self) -> None:
        import torch

        ck = self._pending or {}
        if "torch_rng" in ck:
            torch.set_rng_state(ck["torch_rng"])
        if "cuda_rng" in ck and torch.cuda.is_available():
            torch.cuda.set_rng_state(ck["cuda_rng"])
        if "numpy_rng" in ck:
            self.rng.bit_generator.state = json.loads(ck["numpy_rng"])
        self._rng_pending = False

    def stop_part(self) -> None:
        """Called by a step function: end the current part after this step (e.g. a target reached)."""
        self._stop = True

    # ------------------------------------------------------------------ running
    def part(self, name: str, total: int, step: StepFn, *, preview: Callable[[], Any] | None = None,
             preview_every: int = 0, progress_every: int = 1, message: str = "") -> Generator[Progress, None, int]:
        """Run `step(i)` until `total` steps of part `name` are done (or the cap / `stop_part`).
        Yields progress; returns the steps done. A part finished in an earlier run is skipped."""
        if name in self.done:
            return self.steps.get(name, 0)
        if self._rng_pending:
            self._restore_rng()
        i = self.steps.get(name, 0)
        start = i
        part_s = 0.0
        self._stop = False
        if i:
            yield Progress(stage=self.ctx.stage, step=i, total=total, part=name,
                           message=f"resumed {name} at step {i} of {total}")
        while i < total and not self._stop:
            self.ctx.check()  # blocks while paused: outside the timed span, so pauses never count
            t = time.perf_counter()
            if self.max_s and self.active_s >= self.max_s:
                if self.cut_short is None:
                    self.cut_short = {"part": name, "step": i, "total": total, "minutes": round(self.max_s / 60, 2)}
                break
            logs = step(i) or {}
            i += 1
            self.steps[name] = i
            if i % 50 == 0:
                self.threads = apply_threads(self.ctx.device, self.requested_threads, self.threads)
            pic = preview() if preview is not None and preview_every and (i % preview_every == 0 or i == total) \
                else None
            now = time.perf_counter()
            self.active_s += now - t
            self.part_s[name] = self.part_s.get(name, 0.0) + now - t
            part_s += now - t
            if now - self._last_save >= self.checkpoint_every_s:
                self.save()
            if pic is not None or i % max(1, progress_every) == 0 or i == total:
                rate = (i - start) / part_s if part_s > 0 else 0.0
                yield Progress(stage=self.ctx.stage, step=i, total=total, part=name, losses=dict(logs),
                               preview=pic, elapsed=part_s, rate=rate, message=message)
        self.done.append(name)
        self.save()
        return i

    def finish(self) -> dict:
        """Restore the thread count; figures for the stage's summary (steps per part, training
        minutes, resume point, a wall-clock cut if any)."""
        import torch

        torch.set_num_threads(self._threads_before)
        out: dict[str, Any] = {"steps": dict(self.steps), "train_minutes": round(self.active_s / 60, 2),
                               "part_minutes": {k: round(v / 60, 2) for k, v in self.part_s.items()}}
        if self.resumed_from:
            out["resumed_from"] = dict(self.resumed_from)
        if self.cut_short:
            out["cut_short"] = self.cut_short
        return out

    def warnings(self) -> list[str]:
        """Sentences for the user when the wall-clock cap cut training short."""
        c = self.cut_short
        if not c:
            return []
        return [f"training was cut short by the {c['minutes']:g}-minute time cap: {c['part']} stopped at step "
                f"{c['step']} of {c['total']} (set time_budget_min=0 and rerun to train fully)"]


def _plain(obj: Any) -> Any:
    """numpy scalars (a learning rate computed with numpy, a loss) → Python numbers: the checkpoint
    is read back with ``weights_only=True``, which refuses numpy objects."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_plain(v) for v in obj)
    return obj
