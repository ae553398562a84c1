"""Training on several processes with `torch.distributed` (GPUs with NCCL, CPU processes with gloo).

Started by ``torchrun -m studio.cli run-stage PROJECT STAGE`` or by ``avatar-studio run-stage PROJECT
STAGE --nproc N`` / ``run --nproc N``, which call torchrun's own launcher (`launch`:
``torch.distributed.run``, the elastic agent) with the multi-machine arguments passed through.
Every process runs the same stage code; what differs is said here and in `studio.loop`:

- **data**: every process draws the same *global* batch from the stage's numpy ``loop.rng`` (the
  same seed everywhere) and trains on its share of it (`TrainingLoop.shard`): the global batch is
  the preset's batch, so the learning rate is the preset's too (no scaling rule is needed);
  per-sample noise comes from each process's own torch generator (seed + rank) and
  ``loop.local_rng``;
- **gradients** are averaged over the processes after every backward pass, before the stage
  clips them or steps its optimiser (`GradientAverager`: one flattened all-reduce per backward
  over the parameters of the optimisers the stage registered with the loop, each process
  weighted by its share of the batch). This is what ``DistributedDataParallel`` does, done in
  the loop so that stages keep calling their sub-networks (``G.synthesis``, several forwards per
  step) directly; DDP's wrapper only averages what runs through its own ``forward``;
- **rank 0** holds the project's lock, writes the checkpoints, the progress notes, the manifest
  and the stage's outputs; the other ranks wait for its go (`lead_stage` / `follow_stage`), work
  in a scratch folder, read the checkpoint from rank 0 (`broadcast_object`) and stop after
  their last training step (`WorkerFinished`);
- a process that dies stops the others (torchrun's agent) and `launch` says which one and how,
  in one line; the checkpoint on disk is the last one rank 0 wrote, and the rerun resumes from
  it with any number of processes.
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from .errors import Cancelled, InputError, StudioError


class PeerLost(StudioError):
    """A collective failed because another training process stopped (killed, crashed, out of memory)."""

    def __init__(self, detail: str = ""):
        super().__init__("another training process stopped" + (f" ({detail})" if detail else ""),
                         "the last checkpoint is kept: run the same command to resume")


class MirroredError(StudioError):
    """Rank 0's error, received by another rank: rank 0 reports it, the others exit quietly."""


class WorkerFinished(BaseException):
    """Raised by `TrainingLoop.finish` on ranks other than 0: the training is over and rank 0 alone
    measures and writes the stage's outputs."""


@dataclass(frozen=True)
class World:
    rank: int
    """This process's rank, 0 .. size - 1 (0 writes everything)."""
    size: int
    """Processes taking part, over all machines."""
    local_rank: int
    """Rank on this machine (its GPU index)."""
    local_size: int
    """Processes on this machine."""
    backend: str
    """"nccl" or "gloo"."""

    @property
    def main(self) -> bool:
        return self.rank == 0


_WORLD: World | None = None


def current() -> World | None:
    """The process group this process belongs to, or None when it trains alone."""
    return _WORLD


def is_worker() -> bool:
    """True on ranks other than 0 of a distributed run."""
    return _WORLD is not None and _WORLD.rank != 0


def launched_by_torchrun() -> bool:
    """True when torchrun (or `launch`) started this process as one of several."""
    try:
        return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


@contextlib.contextmanager
def process_group(device: str) -> Iterator[World | None]:
    """Join the process group torchrun set up (``RANK``, ``WORLD_SIZE``, ``MASTER_ADDR`` … in the
    environment) for the block; a no-op yielding None when this process was not started as one of
    several. `device` is the resolved device: "cuda" → NCCL, one GPU per local rank; "cpu" → gloo."""
    global _WORLD
    if not launched_by_torchrun():
        yield None
        return
    import torch
    import torch.distributed as dist

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    local_size = int(os.environ.get("LOCAL_WORLD_SIZE", str(size)))
    backend = "gloo"
    if str(device).startswith("cuda"):
        if local_rank >= torch.cuda.device_count():
            raise StudioError(f"process {rank} would need GPU {local_rank} but this machine has "
                              f"{torch.cuda.device_count()}", "use --nproc at most the number of GPUs")
        torch.cuda.set_device(local_rank)
        backend = "nccl" if dist.is_nccl_available() else "gloo"
    minutes = float(os.environ.get("AVATAR_STUDIO_DIST_TIMEOUT_MIN", "30"))
    try:
        dist.init_process_group(backend, timeout=timedelta(minutes=minutes))
    except Exception as exc:  # the rendezvous store vanished, a port clash, a bad address
        raise StudioError(f"process {rank} could not join the others ({type(exc).__name__}: {exc})"[:300],
                          "check the --rdzv-endpoint address and that every machine can reach it") from None
    _WORLD = World(rank=rank, size=size, local_rank=local_rank, local_size=local_size, backend=backend)
    try:
        yield _WORLD
    finally:
        _WORLD = None
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def leave(code: int) -> None:
    """End a process that took part in a process group (after `process_group` closed it): flush and
    ``os._exit``. Gloo's worker threads can abort the interpreter's own shutdown (seen here once in
    a dozen runs: "terminate called without an active exception", SIGABRT; pytorch#179291), which
    torchrun would report as a failed process after a finished stage."""
    import sys

    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


# ----------------------------------------------------------------------------- collectives
@contextlib.contextmanager
def _peers() -> Iterator[None]:
    """Turn the backend's error when a peer is gone (gloo: connection closed/reset; NCCL: a
    watchdog abort) into `PeerLost`, one line, instead of a C++ traceback."""
    try:
        yield
    except RuntimeError as exc:  # torch.distributed.DistError subclasses RuntimeError
        raise PeerLost(_short(str(exc))) from None


def _short(text: str) -> str:
    """The gist of a backend error: no source locations, the first sentence of the first line."""
    import re

    first = (text.strip().splitlines() or [""])[0]
    first = re.sub(r"\[[^\]]*\.(?:cc|cpp|h)[^\]]*\]\s*", "", first).strip()
    return first.split(". ")[0][:160]


def comm_device() -> str:
    return "cuda" if _WORLD is not None and _WORLD.backend == "nccl" else "cpu"


def broadcast_object(obj: Any = None) -> Any:
    """Rank 0's `obj` on every rank (pickled; for small messages and the checkpoint at start)."""
    import torch.distributed as dist

    box = [obj if _WORLD.main else None]
    with _peers():
        dist.broadcast_object_list(box, src=0)
    return box[0]


def gather_objects(obj: Any) -> list | None:
    """Every rank's `obj` as a list on rank 0 (None on the others)."""
    import torch.distributed as dist

    out = [None] * _WORLD.size if _WORLD.main else None
    with _peers():
        dist.gather_object(obj, out, dst=0)
    return out


def all_sum(t):
    """Sum `t` over the ranks, in place (moved to the backend's device and back). Returns `t`."""
    import torch.distributed as dist

    dev = comm_device()
    buf = t if str(t.device).startswith(dev) else t.to(dev)
    with _peers():
        dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    if buf is not t:
        t.copy_(buf)
    return t


def broadcast_state(obj: Any) -> None:
    """Make `obj` on every rank equal to rank 0's: a module's parameters and buffers, a tensor, or
    anything with ``state_dict``/``load_state_dict`` (an optimiser, a fitter)."""
    import torch
    import torch.distributed as dist

    if isinstance(obj, torch.nn.Module) or isinstance(obj, torch.Tensor):
        tensors = list(obj.parameters()) + list(obj.buffers()) if isinstance(obj, torch.nn.Module) else [obj]
        dev = comm_device()
        with torch.no_grad(), _peers():
            for t in tensors:
                buf = t.data if str(t.device).startswith(dev) else t.data.to(dev)
                dist.broadcast(buf, src=0)
                if buf is not t.data:
                    t.data.copy_(buf)
    elif hasattr(obj, "state_dict") and hasattr(obj, "load_state_dict"):
        state = broadcast_object(obj.state_dict() if _WORLD.main else None)
        if not _WORLD.main:
            obj.load_state_dict(state)


class GradientAverager:
    """Averages the gradients of the registered optimisers' parameters over the ranks at the end of
    every backward pass (before the stage clips them or steps).

    Each parameter gets a post-accumulate-grad hook; the first one to fire in a backward pass
    queues a callback that the autograd engine runs when the pass ends. The callback agrees with
    the other ranks on which parameters got a gradient (one small all-reduce), then sums
    ``share x grad`` over the ranks in one flattened all-reduce per dtype (``share``: this rank's
    part of the global batch, see `TrainingLoop.shard`; a rank without a gradient for a parameter
    that others have contributes zeros). Parameters no rank touched keep no gradient, so an
    optimiser skips them exactly as in one process."""

    def __init__(self, size: int):
        self.params: list = []
        self._ids: set[int] = set()
        self._hooked: set[int] = set()
        self._handles: list = []
        self._fired: set[int] = set()
        self._queued = False
        self.share = 1.0 / size
        self.size = size
        self.reductions = 0

    def add(self, optimizer) -> None:
        for group in optimizer.param_groups:
            for p in group["params"]:
                if id(p) not in self._ids:
                    self._ids.add(id(p))
                    self.params.append(p)
        self.hook_new()

    def hook_new(self) -> None:
        """Hook parameters that require a gradient now (a stage may switch some on later)."""
        for p in self.params:
            if id(p) not in self._hooked and p.requires_grad:
                self._handles.append(p.register_post_accumulate_grad_hook(self._on_grad))
                self._hooked.add(id(p))

    def _on_grad(self, p) -> None:
        self._fired.add(id(p))
        if not self._queued:
            import torch

            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._reduce)

    def _reduce(self) -> None:
        import torch

        fired, self._fired, self._queued = self._fired, set(), False
        if not self.params:
            return
        mask = torch.tensor([1.0 if id(p) in fired and p.grad is not None else 0.0 for p in self.params],
                            dtype=torch.float64)
        all_sum(mask)
        groups: dict = {}
        for p, m in zip(self.params, mask.tolist()):
            if m > 0:
                groups.setdefault(p.dtype, []).append(p)
        with torch.no_grad():
            for dtype, ps in groups.items():
                parts = [(p.grad.detach() * self.share if id(p) in fired and p.grad is not None
                          else torch.zeros_like(p)).reshape(-1) for p in ps]
                flat = all_sum(torch.cat(parts))
                at = 0
                for p in ps:
                    n = p.numel()
                    avg = flat[at: at + n].view_as(p)
                    at += n
                    if p.grad is None:
                        p.grad = avg.clone()
                    else:
                        p.grad.copy_(avg)
        self.reductions += 1

    def check_in_sync(self) -> None:
        """All ranks must hold the same weights (same averaged gradients, same optimiser steps); a
        stage that lets them drift apart (a decision on rank-local values) is caught here."""
        import torch

        if not self.params:
            return
        with torch.no_grad():
            local = torch.stack([p.detach().double().sum() for p in self.params]).cpu()
        total = all_sum(local.clone())
        if not torch.allclose(total, local * self.size, rtol=1e-9, atol=1e-9):
            raise StudioError("the training processes' weights drifted apart (a stage decided something from one "
                              "process's values)", "run the stage in one process and report this as a bug")

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._hooked.clear()


def rank_seed(seed: int, rank: int, step: int = 0) -> int:
    """A torch seed for `rank`: ``seed + rank`` at the start (rank 0 = the one-process seed);
    resumed with a different process count at `step`, a seed drawn from (seed, rank, step)."""
    if step == 0:
        return int(seed) + int(rank)
    import numpy as np

    return int(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(rank), int(step)]).generate_state(1)[0])


def local_generator(seed: int, rank: int, step: int = 0):
    """This rank's own numpy generator (per-sample randomness that must differ between ranks)."""
    import numpy as np

    return np.random.default_rng(np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(rank), int(step), 1]))


# ----------------------------------------------------------------------------- one stage on every rank
_LEADING: list[dict] = []


@contextlib.contextmanager
def lead_stage() -> Iterator[None]:
    """Rank 0 around `studio.pipeline.run_stage`: the other ranks wait in `follow_stage` until it
    says "run" (`announce`, after it took the lock and recorded the stage as running); a stage
    that is up to date or an error before that (busy project, missing upstream stage, a bad
    setting) is sent to them instead, so nobody waits for a training that never starts."""
    if _WORLD is None or not _WORLD.main:
        yield
        return
    state = {"sent": False}
    _LEADING.append(state)
    try:
        yield
    except BaseException as exc:
        if not state["sent"]:
            msg = (exc.message, exc.hint) if isinstance(exc, StudioError) else (f"{type(exc).__name__}: {exc}", "")
            with contextlib.suppress(Exception):
                broadcast_object(("error",) + msg)
        raise
    else:
        if not state["sent"]:
            broadcast_object(("skip",))
    finally:
        _LEADING.pop()


def announce(config: dict, device: str, resumed: bool) -> None:
    """Rank 0, inside `lead_stage`: the stage starts now with this config (no-op in one process)."""
    if _LEADING and not _LEADING[-1]["sent"]:
        broadcast_object(("run", config, device, resumed))
        _LEADING[-1]["sent"] = True


class _ReadOnlyProject:
    """The project as ranks other than 0 see it: everything readable, nothing writable."""

    def __init__(self, project):
        self._project = project

    def __getattr__(self, name):
        if name in ("update_record", "save", "remove_stage_outputs", "set_source"):
            raise RuntimeError(f"rank {_WORLD.rank if _WORLD else '?'} must not call Project.{name}: only rank 0 "
                               f"writes the project")
        return getattr(self._project, name)


def follow_stage(project, name: str) -> dict:
    """Ranks other than 0: wait for rank 0's go, run the same stage in a scratch folder (rank 0
    writes the real one), stop after the last training step. Returns {}."""
    from .config import from_dict
    from .pipeline import spec
    from .stages import StageContext

    msg = broadcast_object(None)
    if msg[0] == "skip":
        return {}
    if msg[0] == "error":
        raise MirroredError(msg[1], msg[2])
    _, config, device, resumed = msg
    s = spec(name)
    cfg = from_dict(s.config_cls, config, strict=False)
    scratch = Path(tempfile.mkdtemp(prefix=f"avatar-studio-{name}-rank{_WORLD.rank}-"))
    ctx = StageContext(project=_ReadOnlyProject(project), stage=name, workdir=scratch, device=device,
                       resumed=resumed)
    try:
        for _ in s.run(ctx, cfg):
            pass
    except WorkerFinished:
        pass
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {}


# ----------------------------------------------------------------------------- launching
@dataclass
class LaunchOptions:
    """What `avatar-studio run-stage/run --nproc N` pass to torchrun's launcher."""

    nproc: int = 1
    """Processes on this machine (one per GPU; on a CPU, each gets cores / N threads)."""
    nnodes: str = "1"
    """Machines taking part ("2", or "1:4" for an elastic range)."""
    node_rank: int = 0
    """This machine's rank (static rendezvous)."""
    rdzv_endpoint: str = ""
    """HOST:PORT every machine can reach (the first machine): the rendezvous / master address."""
    rdzv_backend: str = "static"
    """torchrun's rendezvous backend: "static" (ranks from --node-rank) or "c10d"."""
    rdzv_id: str = "avatar-studio"
    """Job id shared by the machines of one run (c10d rendezvous)."""

    @property
    def several(self) -> bool:
        return self.nproc > 1 or str(self.nnodes) not in ("1", "1:1")

    @property
    def single_machine(self) -> bool:
        return str(self.nnodes) in ("1", "1:1")

    def check(self) -> None:
        if self.nproc < 1:
            raise InputError(f"--nproc must be at least 1, not {self.nproc}")
        if not self.single_machine and not self.rdzv_endpoint:
            raise InputError("training on several machines needs the address they meet at",
                             "give --rdzv-endpoint HOST:PORT (the first machine's address and a free port) "
                             "and a different --node-rank on each machine")


def options_from_args(args) -> LaunchOptions:
    """`LaunchOptions` from the CLI's --nproc/--nnodes/--node-rank/--rdzv-* arguments."""
    return LaunchOptions(nproc=int(getattr(args, "nproc", 1) or 1), nnodes=str(getattr(args, "nnodes", "1") or "1"),
                         node_rank=int(getattr(args, "node_rank", 0) or 0),
                         rdzv_endpoint=getattr(args, "rdzv_endpoint", "") or "",
                         rdzv_backend=getattr(args, "rdzv_backend", "static") or "static",
                         rdzv_id=getattr(args, "rdzv_id", "avatar-studio") or "avatar-studio")


def torchrun_argv(cli_args: Sequence[str], opts: LaunchOptions, module: str = "studio.cli") -> list[str]:
    """torchrun's argument list for ``python -m <module> <cli_args>`` under `opts`."""
    argv = [f"--nproc-per-node={opts.nproc}", f"--nnodes={opts.nnodes}"]
    if opts.single_machine and not opts.rdzv_endpoint:
        argv.append("--standalone")  # a private rendezvous on a free local port
    else:
        argv += [f"--rdzv-backend={opts.rdzv_backend}", f"--rdzv-endpoint={opts.rdzv_endpoint}",
                 f"--rdzv-id={opts.rdzv_id}", f"--node-rank={opts.node_rank}"]
    return argv + ["--max-restarts=0", "-m", module, *cli_args]


def launch(cli_args: Sequence[str], opts: LaunchOptions, module: str = "studio.cli") -> int:
    """Run ``avatar-studio <cli_args>`` in `opts.nproc` processes on this machine through torchrun's
    launcher (``torch.distributed.run``: the elastic agent, its rendezvous and its failure
    handling). Returns 0, or raises a one-line `StudioError` naming the process that failed."""
    opts.check()
    from torch.distributed import run as torchrun
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    if not os.environ.get("OMP_NUM_THREADS"):  # torchrun would set 1 and print a banner about it
        from .compute import fixed_threads

        os.environ["OMP_NUM_THREADS"] = str(fixed_threads() or max(1, (os.cpu_count() or 1) // opts.nproc))
    quiet = [logging.getLogger(n) for n in ("torch.distributed.elastic", "torch.distributed.run",
                                            "torch.distributed.launcher")]
    levels = [lg.level for lg in quiet]
    for lg in quiet:
        lg.setLevel(logging.CRITICAL)  # the agent logs each failure at length; we say it in one line
    size = opts.nproc * (int(str(opts.nnodes).split(":")[-1]) if str(opts.nnodes).split(":")[-1].isdigit() else 1)
    try:
        torchrun.run(torchrun.parse_args(torchrun_argv(cli_args, opts, module)))
    except ChildFailedError as exc:
        # a process killed by a signal (not the agent's SIGTERM that stops the rest) is the cause; the
        # others' errors only follow from it
        killed = {r: f for r, f in exc.failures.items() if f.exitcode < 0 and f.signal_name() != "SIGTERM"}
        if killed:
            rank = min(killed, key=lambda r: killed[r].timestamp)
            failure = killed[rank]
        elif 0 in exc.failures and exc.failures[0].exitcode in (2, 130):
            if exc.failures[0].exitcode == 130:  # rank 0 was cancelled (Ctrl-C): it recorded that itself
                raise Cancelled() from None
            return 2  # rank 0 already said what went wrong, in its own words
        else:
            rank, failure = exc.get_first_failure()
        how = (f"was stopped by {failure.signal_name()}" if failure.exitcode < 0
               else f"exited with code {failure.exitcode}")
        raise StudioError(f"training process {rank} of {size} {how}; the others were stopped",
                          "the last checkpoint is kept: run the same command to resume (with any --nproc)") from None
    except KeyboardInterrupt:
        raise Cancelled() from None
    except Exception as exc:  # rendezvous errors: the other machines never came
        name = type(exc).__name__
        if "Rendezvous" in name or "rendezvous" in str(exc):
            raise StudioError(f"the training processes could not meet at {opts.rdzv_endpoint or 'localhost'} "
                              f"({name})", "start the same command on every machine (each with its own "
                              "--node-rank) and check that the first machine's address and port are reachable") \
                from None
        raise
    finally:
        for lg, level in zip(quiet, levels):
            lg.setLevel(level)
    return 0


def stage_cli_args(project_root: str | os.PathLike, stage: str, overrides: dict | None = None,
                   device: str | None = None, force: bool = False) -> list[str]:
    """``run-stage`` arguments that the launched processes run."""
    out = ["run-stage", str(project_root), stage]
    for k, v in (overrides or {}).items():
        out += ["--set", f"{k}={v}"]
    if device:
        out += ["--device", device]
    if force:
        out.append("--force")
    return out


def run_stages(session, stages: Sequence[str], opts: LaunchOptions, *, overrides: dict[str, dict] | None = None,
               device: str | None = None, on_progress: Callable | None = None,
               say: Callable[[str], None] = print) -> dict[str, dict]:
    """`avatar-studio run --nproc N`: every stage in order; stages that split their batches across
    processes (`StageSpec.parallel`) run under `launch`, the others (ingest, tracking, pivots, the
    FLAME fit) in this process. Returns each stage's result."""
    from .stages import REGISTRY

    out: dict[str, dict] = {}
    for name in stages:
        over = (overrides or {}).get(name)
        if REGISTRY[name].parallel:
            say(f"{name}: training in {opts.nproc} processes" + ("" if opts.single_machine else
                                                                 f" on each of {opts.nnodes} machines"))
            rc = launch(stage_cli_args(session.project.root, name, over, device), opts)
            if rc:
                raise StudioError(f"stage '{name}' failed (see the error above)", "fix it and run the same command")
            session.reload()
            out[name] = session.project.result(name)
        else:
            out.update(session.run([name], overrides={name: over} if over else None, on_progress=on_progress,
                                   device=device))
    return out

