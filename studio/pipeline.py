"""Run stages against a project: up-to-date checks, staleness, resume, timings, errors.

The CLI and the GUI both call `run_stage` / `run_pipeline`; neither runs a stage directly.
"""
from __future__ import annotations

import dataclasses
import os
import time
import traceback
import uuid
from typing import Any, Callable, Iterable

from .config import config_hash, from_dict, to_dict
from .errors import Cancelled, ProjectError, StudioError
from .progress import Control, Progress
from .project import Project, now_iso
from .stages import REGISTRY, StageContext, StageSpec
from . import distributed
from .atomic import write_text
from .compute import resolve_device
from .lock import is_busy, project_lock

ProgressFn = Callable[[Progress], None]


def spec(name: str) -> StageSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        raise ProjectError(f"unknown stage '{name}'", f"stages: {', '.join(REGISTRY)}") from None


def stage_config(project: Project, name: str, overrides: dict | None = None, preset: str | None = None) -> Any:
    """The config a stage would run with: preset, then what the project saved, then overrides."""
    s = spec(name)
    rec = project.record(name)
    if preset is not None:
        cfg = s.preset(preset)
    else:
        cfg = s.preset(project.preset)
        if rec.get("config"):
            cfg = from_dict(s.config_cls, rec["config"], base=cfg, strict=False)
    if overrides:
        cfg = from_dict(s.config_cls, overrides, base=cfg)
    return cfg


def same_config(rec: dict, cfg: Any) -> bool:
    """Whether `cfg` is the config the stage last ran with (the record's hash). Settings that a
    newer version of the app added are not differences: the hash is also compared over only the
    settings the record knows, so an upgrade does not make a trained project stale and throw
    away its checkpoints. (After `set_stage_config` the record knows every setting.)"""
    new = to_dict(cfg)
    if rec.get("config_hash") == config_hash(new):
        return True
    old = rec.get("config")
    if not isinstance(old, dict) or not old.keys() < new.keys():
        return False
    return rec.get("config_hash") == config_hash({k: new[k] for k in old})


def stage_state(project: Project, name: str, _seen: frozenset = frozenset()) -> str:
    """One of: pending, running, interrupted, cancelled, failed, stale, done.

    "stale" means it finished once but its own config or an upstream stage changed since.
    "interrupted" means the manifest says running but no process holds the project's lock: the
    run died (killed, crashed, power cut); rerunning resumes from its last checkpoint.
    """
    rec = project.record(name)
    status = rec.get("status", "pending")
    if status == "running" and not is_busy(project.root):
        return "interrupted"
    if status != "done":
        return status
    if rec.get("config") and not same_config(rec, stage_config(project, name)):
        return "stale"
    for up, run_id in (rec.get("upstream") or {}).items():
        if up in _seen:
            continue
        uprec = project.record(up)
        if uprec.get("run_id") != run_id or stage_state(project, up, _seen | {name}) != "done":
            return "stale"
    for up in spec(name).depends_on if name in REGISTRY else ():
        if up not in (rec.get("upstream") or {}):
            return "stale"
    return "done"


def set_stage_config(project: Project, name: str, overrides: dict) -> Any:
    """Save a changed config; the stage (and everything after it) becomes stale."""
    cfg = stage_config(project, name, overrides)
    project.update_record(name, config=to_dict(cfg))
    return cfg


def run_stage(project: Project, name: str, overrides: dict | None = None, *, control: Control | None = None,
              on_progress: ProgressFn | None = None, force: bool = False, device: str | None = None) -> dict:
    """Run one stage (if it is not already up to date) and return its result dict. Holds the
    project's lock: a second process gets a clear "busy" error instead of a corrupted project.
    Under torchrun (`studio.distributed`) rank 0 does all of this and the other ranks follow it."""
    if distributed.is_worker():
        return distributed.follow_stage(project, name)
    with distributed.lead_stage(), project_lock(project.root, f"stage {name}"):
        return _run_stage(project, name, overrides, control=control, on_progress=on_progress, force=force,
                          device=device)


def _run_stage(project: Project, name: str, overrides: dict | None, *, control: Control | None,
               on_progress: ProgressFn | None, force: bool, device: str | None) -> dict:
    s = spec(name)
    control = control or Control()
    cfg = stage_config(project, name, overrides)
    depends = s.depends(cfg)
    for up in depends:
        st = stage_state(project, up)
        if st != "done":
            raise ProjectError(f"stage '{name}' needs '{up}' first (it is {st})",
                               f"run `avatar-studio run-stage {project.root} {up}`")
    chash = config_hash(cfg)
    rec = project.record(name)
    upstream = {up: project.record(up).get("run_id") for up in depends}
    if not force and stage_state(project, name) == "done" and same_config(rec, cfg):
        if on_progress:
            on_progress(Progress(stage=name, step=1, total=1, message="already up to date"))
        return rec.get("result") or {}

    workdir = project.stage_dir(name)
    resumed = rec.get("status") in ("running", "interrupted", "cancelled", "failed") and same_config(rec, cfg) \
        and rec.get("upstream") == upstream and not force
    if not resumed:
        # different config or upstream: partial checkpoints of the old run must not be resumed
        for p in workdir.glob("*.ckpt*"):
            p.unlink()
    ctx = StageContext(project=project, stage=name, workdir=workdir, device=resolve_device(device or project.device),
                       control=control, resumed=resumed)
    project.update_record(name, status="running", config=to_dict(cfg), config_hash=chash, upstream=upstream,
                          started=now_iso(), error=None, pid=os.getpid(), warnings=[],
                          **({} if resumed else {"progress": {}}))
    distributed.announce(to_dict(cfg), ctx.device, resumed)
    t0 = time.perf_counter()
    try:
        gen = s.run(ctx, dataclasses.replace(cfg))
        result: dict = {}
        while True:
            control.checkpoint()
            try:
                ev = next(gen)
            except StopIteration as stop:
                result = stop.value or {}
                break
            if on_progress:
                on_progress(ev)
    except Cancelled:
        project.update_record(name, status="cancelled", seconds=round(time.perf_counter() - t0, 2))
        raise
    except StudioError as exc:
        project.update_record(name, status="failed", error=str(exc), seconds=round(time.perf_counter() - t0, 2))
        raise
    except KeyboardInterrupt:
        project.update_record(name, status="cancelled", seconds=round(time.perf_counter() - t0, 2))
        raise Cancelled() from None
    except MemoryError as exc:
        project.update_record(name, status="failed", error="out of memory")
        raise StudioError(f"stage '{name}' ran out of memory",
                          "choose the preview preset or a smaller size, and close other programs") from exc
    except Exception as exc:  # an unexpected bug: keep the traceback for a bug report
        log = project.log_dir() / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        write_text(log, traceback.format_exc())
        project.update_record(name, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise StudioError(f"stage '{name}' stopped on an unexpected error: {type(exc).__name__}: {exc}",
                          f"details are in {project.rel(log)}; the project is intact, run again to retry") from exc
    seconds = round(time.perf_counter() - t0, 2)
    project.update_record(name, status="done", run_id=uuid.uuid4().hex[:12], finished=now_iso(), seconds=seconds,
                          outputs=result.get("outputs", {}), result=result, warnings=list(result.get("warnings") or []))
    return result


def run_pipeline(project: Project, stages: Iterable[str], *, overrides: dict[str, dict] | None = None,
                 control: Control | None = None, on_progress: ProgressFn | None = None,
                 device: str | None = None, force: Iterable[str] = (),
                 on_stage_done: Callable[[str, dict, float], None] | None = None) -> dict[str, dict]:
    """Run `stages` in order under the project's lock; `on_stage_done(name, result, seconds)` after each
    (seconds: its wall time in this call, a stage already done counting its check only)."""
    out = {}
    force = set(force)
    stages = list(stages)
    with project_lock(project.root, "stages " + ", ".join(stages)):
        for name in stages:
            t0 = time.perf_counter()
            out[name] = run_stage(project, name, (overrides or {}).get(name), control=control,
                                  on_progress=on_progress, device=device, force=name in force)
            if on_stage_done is not None:
                on_stage_done(name, out[name], time.perf_counter() - t0)
    return out


def next_stage(project: Project, engine: str) -> str | None:
    from .engines import chain

    for name in chain(engine):
        if stage_state(project, name) != "done":
            return name
    return None


def interruption(project: Project, name: str) -> str:
    """A sentence for a stage whose run died: how far it got and what to do."""
    steps = project.record(name).get("progress") or {}
    where = ", ".join(f"{part} step {n}" for part, n in steps.items()) if steps else "its start"
    return f"interrupted at {where} — run the same command to resume"
