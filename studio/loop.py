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
  (it/s) and ETA; a preview image every ``preview_every`` steps;
- **loss history**: each run keeps its losses in the stage folder (``train.losses.jsonl`` beside
  ``train.ckpt``: JSON lines, every step up to `LOSS_LOG_ROWS` rows a part, thinned evenly past that),
  written with each checkpoint, so a resumed run's history matches its checkpoint and the window can
  draw a finished run's curves; a fresh run starts a new one. With ``AVATAR_STUDIO_LOSS_LOG=FILE``
  every step's losses are also appended to FILE (to compare runs);
- **several processes** (`studio.distributed`, started by torchrun or ``--nproc N``): the stage
  draws its global batch from ``loop.rng`` as in one process and passes the indices through
  ``loop.shard`` (each process keeps its share); per-sample randomness uses torch's generator
  (seed + rank) or ``loop.local_rng``; a decision on a batch value goes through
  ``loop.all_mean`` / ``loop.batch_std``. The loop averages the gradients of the registered
  optimisers over the processes, starts every process from rank 0's weights (or the checkpoint,
  read by rank 0), makes time-based decisions (checkpoint now, the wall-clock cap) on rank 0 for
  all, reports losses averaged over the processes, and lets rank 0 alone write. In one process
  all of this is skipped: ``shard`` returns its argument, ``local_rng`` is ``rng``.

Usage inside a stage's run generator::

    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s,
                        max_minutes=cfg.time_budget_min)
    loop.track("G", G); loop.track("opt", opt)        # loads them when resuming
    def step(i):                                       # i = steps done before this one
        ...; return {"l1": loss.item()}
    yield from loop.part("train", cfg.steps, step, preview=lambda: grid, preview_every=100)
    loop.finish()                                      # figures for the summary

with a batch sampled as ``idx = loop.shard(loop.rng.integers(0, n, size=cfg.batch))``.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Callable, Generator

import numpy as np

from .atomic import atomic_path
from .compute import apply_threads, autocast, release_memory, resolve_precision, tune_allocator
from .errors import ProjectError, StudioError
from .progress import Progress

CHECKPOINT_FORMAT = 2
StepFn = Callable[[int], "dict[str, float] | None"]
LOSS_LOG_ROWS = 4000
"""Rows of the stage folder's loss history per part at most (a longer part logs every k-th step)."""


def loss_log_of(checkpoint: Path) -> Path:
    """The loss history kept beside a training checkpoint (``train.ckpt`` → ``train.losses.jsonl``)."""
    return checkpoint.with_suffix(".losses.jsonl")


def stage_loss_log(project, stage: str) -> Path:
    """The loss history of a stage's last run in `project` (the file may not exist)."""
    return loss_log_of(Path(project.root) / stage / "train.ckpt")


class TrainingLoop:
    def __init__(self, ctx, *, seed: int = 0, checkpoint_every_s: float = 45.0, max_minutes: float = 0.0,
                 threads: int = 0, file: str = "train.ckpt", precision: str = "fp32"):
        import torch

        from . import distributed

        self.ctx = ctx
        self.path = Path(ctx.workdir) / file
        self.checkpoint_every_s = float(checkpoint_every_s)
        self.max_s = float(max_minutes) * 60.0
        self.requested_threads = int(threads)
        self.seed = int(seed)
        self.dist = distributed.current()
        """The process group (`studio.distributed.World`) or None when training alone."""
        self.world = self.dist.size if self.dist else 1
        self.rank = self.dist.rank if self.dist else 0
        torch.manual_seed(distributed.rank_seed(seed, self.rank))
        self.rng = np.random.default_rng(seed)
        """The stage's numpy random generator (checkpointed with torch's). The same on every
        process: draw global decisions and global batches from it."""
        self.local_rng = self.rng if self.dist is None else distributed.local_generator(seed, self.rank)
        """This process's own numpy generator, for per-sample randomness (``rng`` in one process)."""
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
        self._share = 1.0 / self.world
        self._part = ""
        self._batches: dict[str, tuple[int, list[int]]] = {}
        self._averager = distributed.GradientAverager(self.world) if self.dist else None
        self._loss_log = os.environ.get("AVATAR_STUDIO_LOSS_LOG", "")
        self.loss_path = loss_log_of(self.path)
        """This run's loss history (JSON lines, written with each checkpoint; see the module's text)."""
        self._loss_rows: list[str] = []
        if self.dist and not self.requested_threads and str(ctx.device) == "cpu":
            from .compute import fixed_threads  # the cores are shared by the processes on this machine

            self.requested_threads = fixed_threads() or max(1, (os.cpu_count() or 1) // self.dist.local_size)
        self.threads = apply_threads(ctx.device, self.requested_threads)
        self.precision = resolve_precision(precision, ctx.device, ctx.stage)
        """"bf16" or "fp32": how each step's arithmetic runs (`studio.compute.resolve_precision`)."""
        tune_allocator()
        if self.dist is not None:
            self._load_shared()
        elif self.path.exists():
            self._load()
        if not self.resumed and self.rank == 0:  # a fresh run: the history of an earlier one goes
            try:
                self.loss_path.unlink(missing_ok=True)
            except OSError:
                pass

    # ------------------------------------------------------------------ state
    @property
    def resumed(self) -> bool:
        """True when this run continues a checkpoint."""
        return bool(self.resumed_from) or bool(self.done)

    def _read(self, map_location) -> dict | None:
        import torch

        try:
            ck = torch.load(self.path, map_location=map_location, weights_only=True)
        except Exception as exc:  # a damaged checkpoint: say so, keep the file for inspection
            raise ProjectError(f"the checkpoint {self.path.name} of stage '{self.ctx.stage}' cannot be read (damaged "
                               f"or not a checkpoint: {type(exc).__name__})",  # torch's text runs to 8 lines
                               f"delete {self.path} to restart this stage from the beginning") from None
        if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
            # written by an older version: its layout is not ours, so start this stage afresh
            self.path.unlink(missing_ok=True)
            return None
        return ck

    def _load(self) -> None:
        ck = self._read(self.ctx.device)
        if ck is not None:
            self._apply(ck)

    def _load_shared(self) -> None:
        """Several processes: rank 0 reads the checkpoint (on the CPU) and sends it to the others."""
        from .distributed import MirroredError, broadcast_object

        msg = None
        if self.dist.main:
            try:
                msg = ("ok", self._read("cpu")) if self.path.exists() else ("ok", None)
            except ProjectError as exc:
                broadcast_object(("error", exc.message, exc.hint))
                raise
        msg = broadcast_object(msg)
        if msg[0] == "error":
            raise MirroredError(msg[1], msg[2])
        if msg[1] is not None:
            self._apply(msg[1])

    def _apply(self, ck: dict) -> None:
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
        elif self.dist is not None:  # a fresh start: every process begins with rank 0's weights
            from .distributed import broadcast_state

            broadcast_state(obj)
        if self._averager is not None:
            import torch

            if isinstance(obj, torch.optim.Optimizer):
                self._averager.add(obj)
        return obj

    def has_saved(self, name: str) -> bool:
        return name in (self._pending or {}).get("objects", {})

    def fresh(self, part: str) -> bool:
        """True when `part` has not started yet (neither done nor partly run)."""
        return part not in self.done and self.steps.get(part, 0) == 0

    def is_done(self, part: str) -> bool:
        return part in self.done

    def save(self) -> None:
        """Write the checkpoint now (atomically). Several processes: every rank calls it at the same
        step; rank 0 writes, with each rank's random state (used when resumed with as many processes)."""
        import torch

        ranks = None
        if self.dist is not None:
            from .distributed import gather_objects

            self._averager.check_in_sync()
            ranks = gather_objects(self._rank_rng_state())
            if not self.dist.main:
                self._last_save = time.perf_counter()
                return
        objects = {}
        for name, obj in self._objects.items():
            objects[name] = _plain(obj.state_dict()) if hasattr(obj, "state_dict") else obj.detach().clone()
        state = {"format": CHECKPOINT_FORMAT, "objects": objects, "vars": _plain(self.vars), "steps": self.steps,
                 "done": self.done, "active_s": self.active_s, "part_s": self.part_s, "cut_short": self.cut_short,
                 "torch_rng": torch.get_rng_state(), "numpy_rng": json.dumps(self.rng.bit_generator.state)}
        if torch.cuda.is_available() and str(self.ctx.device).startswith("cuda"):
            state["cuda_rng"] = torch.cuda.get_rng_state()
        if ranks is not None:
            state["world"] = self.world
            state["ranks"] = ranks
        with atomic_path(self.path) as tmp:
            with open(tmp, "wb") as f:  # a Python file: a full disk raises OSError (ENOSPC), which
                torch.save(state, f)    # atomic_path turns into "the disk is full"; a path gives a RuntimeError
        self._last_save = time.perf_counter()
        self._flush_losses()
        self.ctx.note_step(self.steps)

    def _flush_losses(self) -> None:
        """Append the rows logged since the last checkpoint to the loss history. The history only serves
        the window's curves: a failed write drops them and never stops training."""
        if not self._loss_rows:
            return
        rows, self._loss_rows = self._loss_rows, []
        try:
            with open(self.loss_path, "a", encoding="utf-8") as f:
                f.write("".join(rows))
        except OSError:
            pass

    def _rank_rng_state(self) -> dict:
        import torch

        out = {"torch": torch.get_rng_state(), "local": json.dumps(self.local_rng.bit_generator.state)}
        if torch.cuda.is_available() and str(self.ctx.device).startswith("cuda"):
            out["cuda"] = torch.cuda.get_rng_state()
        return out

    def _restore_rng(self) -> None:
        import torch

        ck = self._pending or {}
        if "torch_rng" in ck:
            torch.set_rng_state(ck["torch_rng"])
        if "cuda_rng" in ck and torch.cuda.is_available():
            torch.cuda.set_rng_state(ck["cuda_rng"])
        if "numpy_rng" in ck:
            self.rng.bit_generator.state = json.loads(ck["numpy_rng"])
        if self.dist is not None:
            self._restore_rank_rng(ck)
        self._rng_pending = False

    def _restore_rank_rng(self, ck: dict) -> None:
        """Each rank's own random state: the saved one when resumed with as many processes as wrote
        the checkpoint, else one derived from (seed, rank, steps done) (rank 0 keeps the saved
        main state, which is also what one process resumes with)."""
        import torch

        from .distributed import local_generator, rank_seed

        ranks = ck.get("ranks")
        if ranks and ck.get("world") == self.world and len(ranks) == self.world:
            mine = ranks[self.rank]
            torch.set_rng_state(mine["torch"])
            if "cuda" in mine and torch.cuda.is_available():
                torch.cuda.set_rng_state(mine["cuda"])
            self.local_rng.bit_generator.state = json.loads(mine["local"])
            return
        done = sum(self.steps.values())
        if self.rank:
            torch.manual_seed(rank_seed(self.seed, self.rank, done))
        self.local_rng = local_generator(self.seed, self.rank, done)

    def stop_part(self) -> None:
        """Called by a step function: end the current part after this step (e.g. a target reached)."""
        self._stop = True

    # ------------------------------------------------------------------ several processes
    def shard(self, batch):
        """This process's share of a global batch: `batch` itself in one process; with N processes
        a contiguous slice (sizes differ by at most one; gradients are weighted by each share).
        `batch` is an index array / tensor / list drawn the same on every process (from ``rng``),
        or an int n meaning "all n items" (returns a slice; ``slice(None)`` in one process)."""
        if isinstance(batch, (int, np.integer)):
            n = int(batch)
            if self.dist is None:
                return slice(None)
            a, b = self._split(n)
            return slice(a, b)
        if self.dist is None:
            return batch
        a, b = self._split(len(batch))
        return batch[a:b]

    def _split(self, n: int) -> tuple[int, int]:
        if n < self.world:
            raise StudioError(f"a batch of {n} cannot be shared by {self.world} training processes",
                              f"use at most --nproc {n}, or a larger batch")
        base, extra = divmod(n, self.world)
        sizes = [base + (r < extra) for r in range(self.world)]
        a = sum(sizes[: self.rank])
        self._set_share(sizes[self.rank] / n)
        self._batches[self._part] = (n, sizes)
        return a, a + sizes[self.rank]

    def _set_share(self, share: float) -> None:
        """This process's part of the current step's batch: weights its gradients and losses."""
        self._share = share
        if self._averager is not None:
            self._averager.share = share

    def all_mean(self, value: float) -> float:
        """A per-batch number (a loss) averaged over the processes, weighted by their shares (the
        value itself in one process). Every process must call it at the same point."""
        if self.dist is None:
            return value
        import torch

        from .distributed import all_sum

        return float(all_sum(torch.tensor([float(value) * self._share], dtype=torch.float64))[0])

    def batch_std(self, x):
        """``x.std(0)`` over the global batch (dim 0 split across the processes); ``x.std(0)`` in
        one process."""
        if self.dist is None:
            return x.std(0)
        import torch

        from .distributed import all_sum

        flat = x.detach().reshape(len(x), -1).double()
        stats = torch.cat([torch.tensor([float(len(x))], dtype=torch.float64, device=flat.device),
                           flat.sum(0), flat.pow(2).sum(0)])
        all_sum(stats)
        n, s1, s2 = stats[0], stats[1: 1 + flat.shape[1]], stats[1 + flat.shape[1]:]
        var = ((s2 - s1 * s1 / n) / (n - 1).clamp_min(1)).clamp_min(0)
        return var.sqrt().to(x.dtype).reshape(x.shape[1:])

    def _sync(self, name: str, dt: float, save_now: bool, logs: dict) -> tuple[float, bool, dict]:
        """After each step: rank 0's step time and "checkpoint now", anyone's `stop_part`, and the
        losses averaged over the processes (weighted by their shares), in one small all-reduce."""
        import torch

        from .distributed import all_sum

        keys = sorted(k for k, v in logs.items() if isinstance(v, (int, float, np.number)))
        main = 1.0 if self.dist.main else 0.0
        vec = torch.tensor([dt * main, float(save_now) * main, float(self._stop), float(len(keys)),
                            *(float(logs[k]) * self._share for k in keys)], dtype=torch.float64)
        all_sum(vec)
        if int(round(vec[3].item())) != len(keys) * self.world:
            raise StudioError(f"the training processes of stage '{self.ctx.stage}' report different losses in "
                              f"part {name}", "run the stage in one process and report this as a bug")
        self._stop = vec[2].item() > 0
        out = dict(logs)
        out.update({k: float(v) for k, v in zip(keys, vec[4:].tolist())})
        return float(vec[0]), bool(vec[1].item() > 0), out

    # ------------------------------------------------------------------ running
    def part(self, name: str, total: int, step: StepFn, *, preview: Callable[[], Any] | None = None,
             preview_every: int = 0, progress_every: int = 1, message: str = "") -> Generator[Progress, None, int]:
        """Run `step(i)` until `total` steps of part `name` are done (or the cap / `stop_part`).
        Yields progress; returns the steps done. A part finished in an earlier run is skipped."""
        if name in self.done:  # finished before a restart: say so, as a part resumed mid-way does
            n = self.steps.get(name, 0)
            yield Progress(stage=self.ctx.stage, step=n, total=max(total, n), part=name,
                           message=f"resumed: {name} was finished before ({n} of {total} steps)")
            return n
        if self._rng_pending:
            self._restore_rng()
        i = self.steps.get(name, 0)
        start = i
        part_s = 0.0
        self._stop = False
        self._part = name
        if self._averager is not None:
            self._averager.hook_new()
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
            self._set_share(1.0 / self.world)
            with autocast(self.precision, self.ctx.device):
                logs = step(i) or {}
            i += 1
            self.steps[name] = i
            if i % 50 == 0:
                self.threads = apply_threads(self.ctx.device, self.requested_threads, self.threads)
            pic = preview() if preview is not None and preview_every and (i % preview_every == 0 or i == total) \
                and self.rank == 0 else None
            now = time.perf_counter()
            dt = now - t
            save_now = now - self._last_save >= self.checkpoint_every_s
            if self.dist is not None:
                dt, save_now, logs = self._sync(name, dt, save_now, logs)
            self.active_s += dt
            self.part_s[name] = self.part_s.get(name, 0.0) + dt
            part_s += dt
            if self.rank == 0:   # before the checkpoint below: the history holds what it holds
                if i == total or i % max(1, total // LOSS_LOG_ROWS) == 0:
                    self._loss_rows.append(self._loss_row(name, i, logs) + "\n")
            if save_now:
                self.save()
            if self._loss_log and self.rank == 0:
                self._log_losses(name, i, logs)
            if pic is not None or i % max(1, progress_every) == 0 or i == total:
                rate = (i - start) / part_s if part_s > 0 else 0.0
                yield Progress(stage=self.ctx.stage, step=i, total=total, part=name, losses=dict(logs),
                               preview=pic, elapsed=part_s, rate=rate, message=message)
        self.done.append(name)
        self.save()
        return i

    def _loss_row(self, part: str, step: int, logs: dict) -> str:
        return json.dumps({"stage": self.ctx.stage, "part": part, "step": step, "processes": self.world,
                           "losses": {k: float(v) for k, v in logs.items()
                                      if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)}})

    def _log_losses(self, part: str, step: int, logs: dict) -> None:
        with open(self._loss_log, "a", encoding="utf-8") as f:
            f.write(self._loss_row(part, step, logs) + "\n")

    def finish(self) -> dict:
        """Restore the thread count; figures for the stage's summary (steps per part, training
        minutes, resume point, a wall-clock cut if any)."""
        import torch

        torch.set_num_threads(self._threads_before)
        release_memory()
        if self._averager is not None:
            self._averager.close()
            if not self.dist.main:
                from .distributed import WorkerFinished

                raise WorkerFinished()
        out: dict[str, Any] = {"steps": dict(self.steps), "train_minutes": round(self.active_s / 60, 2),
                               "part_minutes": {k: round(v / 60, 2) for k, v in self.part_s.items()}}
        if self.resumed_from:
            out["resumed_from"] = dict(self.resumed_from)
        if self.cut_short:
            out["cut_short"] = self.cut_short
        if self.precision == "bf16":
            out["precision"] = "bf16"
        return out

    def summary_figures(self, figures: dict) -> dict:
        """What every training stage's summary carries about how it trained: the precision, the
        processes (`parallel_summary`) and a wall-clock cut if any (`figures`: `finish()`'s)."""
        return {"precision": self.precision, **self.parallel_summary(),
                **({"cut_short": figures["cut_short"]} if "cut_short" in figures else {})}

    def parallel_summary(self) -> dict:
        """For the stage's summary when several processes trained: how many, the global batch of each
        part and each process's share of it, and the learning-rate rule. Empty in one process."""
        if self.dist is None:
            return {}
        out: dict[str, Any] = {"processes": self.world, "backend": self.dist.backend}
        for part, (n, sizes) in self._batches.items():
            out[f"{part}_batch"] = f"{n} = " + " + ".join(str(v) for v in sizes)
        out["lr_rule"] = ("unchanged: the global batch is the preset's, split across the processes, and the "
                          "gradients are averaged (weighted by each process's share), so each step is the "
                          "one-process step")
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
