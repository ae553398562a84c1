"""Background work for the window: stage runs, edit jobs, avatar renders, one-off jobs.

The GUI thread never runs torch. Stages run through `studio.pipeline.run_stage` in a
`StageRunner` thread; its progress reaches the GUI as queued signals, batched (at most one
signal per `emit_interval`) with previews throttled and already converted to `QImage`.
Renders go to a `RenderWorker` that keeps only the newest request and drops stale ones.
Finding an appearance edit runs in an `EditJobRunner`, a child process like a stage's; both are
`process_runner.ProcessRunner`s, as are the export and the actor training.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import numpy as np
from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import QObject, QThread, Signal

from ..errors import StudioError
from .imaging import to_qimage
from .process_runner import Failure, JobRunner, ProcessRunner, ProgressBatch

__all__ = ["EditJobRunner", "Failure", "Job", "ProgressBatch", "RenderWorker", "StageRunner", "run_job",
           "wait_for_jobs"]


class StageRunner(ProcessRunner):
    """Runs stages one after another with `run_stage` in a child process (see `stage_process`).

    This QThread only relays the child's messages as signals; pause/resume/cancel set events
    the child's `Control` reads between steps. With `in_process=True` the stages run in this
    thread instead (simpler to debug; the GUI then shares the GIL with the stage).
    """

    stage_started = Signal(str)
    progress = Signal(object)          # ProgressBatch
    stage_finished = Signal(str, object)  # name, result dict
    failed = Signal(str, object)       # name, Failure
    cancelled = Signal(str)

    process_name = "avatar-studio-stage"
    lost = ("the worker process stopped unexpectedly (exit code {code})",
            "it may have run out of memory: choose the preview preset or a smaller size, "
            "close other programs, and run the stage again to resume")

    def __init__(self, project, stages: list[str], overrides: dict[str, dict] | None = None,
                 device: str | None = None, force: tuple[str, ...] = (), in_process: bool = False,
                 parent: QObject | None = None):
        super().__init__(stages[0] if stages else "", in_process, expected=len(stages), parent=parent)
        self.project = project
        self.stages = list(stages)
        self.overrides = overrides or {}
        self.device = device
        self.force = set(force)

    def child(self):
        from ..stages import REGISTRY
        from ..workers.stage_process import child_main

        specs = {n: REGISTRY[n] for n in self.stages if n in REGISTRY}
        return child_main, (str(self.project.root), self.stages, self.overrides, self.device, sorted(self.force),
                            specs)

    def work_here(self, reporter) -> None:
        from ..workers.stage_process import run_stages

        run_stages(reporter, self.control, self.project, self.stages, self.overrides, self.device, self.force)

    def on_started(self, name: str) -> None:
        self.stage_started.emit(name)

    def on_progress(self, batch: ProgressBatch) -> None:
        self.progress.emit(batch)

    def on_done(self, name: str, result) -> None:
        self.stage_finished.emit(name, result)

    def on_failed(self, name: str, failure: Failure) -> None:
        self.failed.emit(name, failure)

    def on_cancelled(self, name: str) -> None:
        self.cancelled.emit(name)


class EditJobRunner(JobRunner):
    """Finds an appearance edit (`studio.edits.jobs`) in a child process, like `StageRunner`.

    `job` is "text" (`find_text_edit`; options: prompt, neutral, name, steps) or "directions"
    (`compute_directions`). The child (`studio.workers.edit_process`) speaks the stage protocol;
    this thread relays it as signals: `progress(ProgressBatch)`, then `done(result)`,
    `failed(Failure)` or `cancelled()`. `result` is plain data: a text edit's metadata
    (`Edit.meta()`), or {"edits": [metadata, ...], "picture": path} for directions. With
    `in_process=True` the job runs in this thread instead (debugging; it then shares the GIL).
    """

    process_name = "avatar-studio-edit"
    lost = ("the edit process stopped unexpectedly (exit code {code})",
            "it may have run out of memory: close other programs and try again")

    def __init__(self, project, engine: str, job: str, options: dict | None = None, in_process: bool = False,
                 parent: QObject | None = None):
        if job not in ("text", "directions"):
            raise ValueError(f"unknown edit job {job!r}")
        super().__init__(job, in_process, parent=parent)
        self.project, self.engine, self.job = project, engine, job
        self.options = dict(options or {})

    def child(self):
        from ..workers.edit_process import child_main

        return child_main, (str(self.project.root), self.engine, self.job, self.options)

    def work_here(self, reporter) -> None:
        from ..workers.edit_process import run_job as run_edit_job

        reporter.run(self.job, lambda c, p: run_edit_job(self.project, self.engine, self.job, self.options, c, p),
                     self.control)


class RenderWorker(QThread):
    """Renders avatar controls in the background; only the newest request is rendered.

    `request(controls, edits=...)` never blocks: it replaces any request not yet started; `edits` is
    {saved edit name: strength} (`Avatar.render_batch`). `load(project, engine)` opens the avatar
    (in this thread) before the next render. `request_thumbnails([(name, strengths), ...])` renders,
    when no slider render waits, one strip per saved edit at the neutral controls and those strengths.
    """

    loaded = Signal(object)          # dict: engine, control_names, ranges, size, has_tracking
    rendered = Signal(object)        # dict: seq, image (QImage), clamped, ms (the render), prep_ms (preparing the frames
                                     # at a new size, else ~0), nearest (QImage|None), row, edits
    failed = Signal(object)          # Failure
    thumbnail = Signal(str, object)  # edit name, QImage strip (None when it could not be rendered)

    def __init__(self, parent: QObject | None = None):
        super().__init__(parent)
        self._cond = threading.Condition()
        self._pending: tuple | None = None   # (seq, controls, want_nearest, edits, detail, flame_geometry, scene, size)
        self._thumbs: list[tuple[str, tuple[float, ...]]] = []   # thumbnails to render, oldest first
        self._load: tuple | None = None      # (project, engine)
        self._stop = False
        self._seq = 0
        self.rendered_count = 0
        self.dropped_count = 0
        self.avatar = None
        self._tracking = None

    # GUI thread
    def load(self, project, engine: str | None) -> None:
        with self._cond:
            self._load = (project, engine)
            self._pending = None
            self._thumbs = []
            self._cond.notify()

    def request(self, controls: np.ndarray, nearest: bool = False, edits: dict | None = None,
                detail: bool = True, flame_geometry: bool = True, scene: bool = True, size: int | None = None) -> int:
        """`detail`: with detail from the video (`studio.detail`) or the engine's render alone;
        `flame_geometry`: FLAME controls warped by FLAME's geometry (`studio.flame.warp`) or not;
        `scene`: the video's own background behind the person (`studio.scene`) or the engine's;
        `size`: the image's side, one of the loaded avatar's ``sizes`` (None: the engine's)."""
        with self._cond:
            self._seq += 1
            if self._pending is not None:
                self.dropped_count += 1
            self._pending = (self._seq, np.asarray(controls, np.float32).copy(), nearest,
                             {str(k): float(v) for k, v in (edits or {}).items()}, bool(detail),
                             bool(flame_geometry), bool(scene), size)
            self._cond.notify()
            return self._seq

    def request_thumbnails(self, wanted: list) -> None:
        with self._cond:
            queued = {n for n, _ in self._thumbs}
            self._thumbs.extend((str(n), tuple(float(x) for x in st)) for n, st in wanted if n not in queued)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify()
        self.wait(5000)

    # worker thread
    def run(self) -> None:
        while True:
            with self._cond:
                while not self._stop and self._pending is None and self._load is None and not self._thumbs:
                    self._cond.wait()
                if self._stop:
                    return
                load, self._load = self._load, None
                job, self._pending = (self._pending, None) if load is None else (None, self._pending)
                thumb = self._thumbs.pop(0) if load is None and job is None and self._thumbs else None
            try:
                if load is not None:
                    self._do_load(*load)
                elif job is not None:
                    self._do_render(*job)
                elif thumb is not None:
                    self._do_thumbnail(*thumb)
            except BaseException as exc:  # noqa: BLE001
                self.failed.emit(Failure.from_exception(exc))

    def _do_load(self, project, engine) -> None:
        from ..avatar import Avatar

        self.avatar = None
        self.avatar = Avatar.open(project, engine)
        self._tracking = None
        try:
            from ..flame.controls import is_flame_controls
            from ..tracking.data import TrackingData

            names = self.avatar.control_names
            td = TrackingData.from_project(project, controls="flame" if is_flame_controls(names) else "named")
            train, _ = td.split()
            ctrl = td.controls(train)
            if ctrl.shape[1] == len(names):
                self._tracking = (td, train, ctrl)
        except (StudioError, OSError, KeyError, ValueError):
            self._tracking = None
        self.loaded.emit({"engine": self.avatar.name, "control_names": self.avatar.control_names,
                          "ranges": self.avatar.ranges, "size": self.avatar.size,
                          "has_tracking": self._tracking is not None,
                          "has_detail": self.avatar.video_detail() is not None,
                          "has_flame_geometry": self.avatar.flame_warp() is not None,
                          "has_scene": self.avatar.scene_plate() is not None,
                          "sizes": self.avatar.sizes()})

    def _do_thumbnail(self, name: str, strengths: tuple[float, ...]) -> None:
        if self.avatar is None:
            return
        try:
            c = self.avatar.neutral()[None]
            strip = np.concatenate([self.avatar.render_batch(c, edits={name: s} if s else None)[0][0]
                                    for s in strengths], 1)
            self.thumbnail.emit(name, to_qimage(strip))
        except (StudioError, OSError, ValueError):  # e.g. deleted meanwhile: no thumbnail, no dialog
            self.thumbnail.emit(name, None)

    def _do_render(self, seq: int, controls: np.ndarray, want_nearest: bool, edits: dict | None = None,
                   detail: bool = True, flame_geometry: bool = True, scene: bool = True,
                   size: int | None = None) -> None:
        if self.avatar is None:
            return
        t_prep = time.perf_counter()
        self.avatar.out_size = size if size in self.avatar.sizes()[1:] else None
        self.avatar.detail = detail and self.avatar.project is not None
        self.avatar.flame_geometry = flame_geometry and self.avatar.project is not None
        self.avatar.scene = scene and self.avatar.project is not None
        # what the first render at a size prepares (each loaded once): timed apart from the render itself
        self.avatar.video_detail()
        self.avatar.flame_warp()
        self.avatar.scene_plate()
        t0 = time.perf_counter()
        imgs, clamped = self.avatar.render_batch(controls[None], edits=edits or None)
        image = to_qimage(imgs[0])
        nearest, row = None, None
        if want_nearest and self._tracking is not None:
            td, train, ctrl = self._tracking
            span = np.array([max(1e-3, hi - lo) for lo, hi in (self.avatar.ranges.get(n, (-1, 1))
                                                                for n in self.avatar.control_names)], np.float32)
            d = (((ctrl - controls[None]) / span) ** 2).sum(1)
            row = int(train[int(np.argmin(d))])
            try:
                nearest = to_qimage(td.crop(row))
            except FileNotFoundError:
                nearest = None
        self.rendered_count += 1
        self.rendered.emit({"seq": seq, "image": image, "clamped": clamped, "nearest": nearest, "row": row,
                            "detail": self.avatar.video_detail() is not None,
                            "flame_geometry": self.avatar.flame_warp() is not None,
                            "scene": self.avatar.scene_plate() is not None,
                            "ms": (time.perf_counter() - t0) * 1000.0, "prep_ms": (t0 - t_prep) * 1000.0,
                            "controls": controls,
                            "edits": dict(edits or {})})


class Job(QThread):
    """Run one function in the background; `done(result)` or `failed(Failure)` on the GUI thread."""

    done = Signal(object)
    failed = Signal(object)

    def __init__(self, fn: Callable[[], Any], parent: QObject | None = None):
        super().__init__(parent)
        self.fn = fn

    def run(self) -> None:
        try:
            out = self.fn()
        except BaseException as exc:  # noqa: BLE001
            self.failed.emit(Failure.from_exception(exc))
            return
        self.done.emit(out)


_JOBS: set[Job] = set()


def run_job(fn: Callable[[], Any], on_done: Callable[[Any], None] | None = None,
            on_error: Callable[[Failure], None] | None = None, parent: QObject | None = None) -> Job:
    """Start `fn` in a thread; callbacks run on the GUI thread. Keeps the job alive until it ends."""
    job = Job(fn, parent)
    if on_done:
        job.done.connect(on_done)
    if on_error:
        job.failed.connect(on_error)
    _JOBS.add(job)
    job.finished.connect(lambda: _JOBS.discard(job))
    job.start()
    return job


def wait_for_jobs(timeout_ms: int = 30000) -> None:
    """Let background jobs finish before the app exits (a QThread must not die running)."""
    for job in list(_JOBS):
        job.wait(timeout_ms)
