"""The training dashboard: loss curves (raw and smoothed), previews, progress with ETA and it/s.

Curves are drawn against each part's own step count, so a resumed run continues at the step its
checkpoint held (not at 1); the steps before it come from the stage's loss history (kept beside its
checkpoint, see `studio.loop`). With no run in this window, `show_last_run` shows the stage's last
run as the project recorded it (outcome, steps, time, its loss curves, the images it wrote).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QProgressBar, QPushButton, QSizePolicy,
                               QSplitter, QVBoxLayout, QWidget)

from .imaging import ImageView
from .labels import ElidedLabel
from .run_history import (LOSS_WORDS, RateMeter, ema, fmt_duration, history_log, loss_log_path, read_loss_log,
                          result_images, right_axis_unit, short_time, trains)
from .theme import COLORS, clear_layout, curve_box, curve_style, icon
from .workers import ProgressBatch

N_THUMBS = 6
WHILE_RUNNING = "Previews appear here while the stage runs"
NO_IMAGES = "The last run saved no images to show here.\nPreviews appear while the stage runs."


class Dashboard(QWidget):
    """Shows one run. Feed it `ProgressBatch`es; it redraws curves at most ~6 times a second."""

    pause_clicked = Signal()
    resume_clicked = Signal()
    cancel_clicked = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(8)

        head = QHBoxLayout()
        # the title and the message line elide to their place (whole text in the tooltip) and never
        # take their size from the text, so a changing text does not relayout the page
        self.title = ElidedLabel("No run yet")
        self.title.setStyleSheet("font-weight: bold; font-size: 11pt;")
        self.message = ElidedLabel("")
        self.message.setObjectName("Dim")
        head.addWidget(self.title, 1)
        self.pause_btn = QPushButton(icon("pause"), "Pause")
        self.resume_btn = QPushButton(icon("run"), "Resume")
        self.cancel_btn = QPushButton(icon("cancel"), "Cancel")
        self.cancel_btn.setObjectName("Danger")
        for b in (self.pause_btn, self.resume_btn, self.cancel_btn):
            head.addWidget(b)
        self.pause_btn.clicked.connect(self.pause_clicked)
        self.resume_btn.clicked.connect(self.resume_clicked)
        self.cancel_btn.clicked.connect(self.cancel_clicked)
        lay.addLayout(head)

        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.bar.setValue(0)
        self.bar.setFormat("%p%")
        lay.addWidget(self.bar)
        # a line of its own under the bar (beside it, the bar shrank to a few pixels in a narrow window);
        # its size never follows the text, so a changing figure does not relayout the page
        self.stats = QLabel("")
        self.stats.setObjectName("Stat")
        self.stats.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Fixed)
        lay.addWidget(self.stats)
        lay.addWidget(self.message)

        split = QSplitter(Qt.Horizontal)
        plot_box = QWidget()
        pl = QVBoxLayout(plot_box)
        pl.setContentsMargins(0, 0, 0, 0)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumSize(280, self.PLOT_HEIGHT)
        self.plot.showGrid(x=True, y=True, alpha=0.15)
        self.plot.setLabel("bottom", "step")
        self.plot.setLabel("left", "loss")
        self.plot.getAxis("left").setWidth(60)  # fixed: a wider tick label must not relayout the plot
        # a second y axis at the right for the series of `RIGHT_AXIS` (shown only while one is drawn)
        item = self.plot.getPlotItem()
        self.right_view = pg.ViewBox()
        item.scene().addItem(self.right_view)
        item.getAxis("right").linkToView(self.right_view)
        item.getAxis("right").setWidth(48)
        self.right_view.setXLink(item)
        item.vb.sigResized.connect(self._sync_right_view)
        item.hideAxis("right")
        pl.addWidget(self.plot, 1)
        # one on/off box a loss under the plot, not a legend inside it: a legend covered the curves' top right
        # (the sharpening head's perceptual loss vanished under it) and the mappers' nine losses filled it
        self.loss_grid = QGridLayout()
        self.loss_grid.setHorizontalSpacing(10)
        self.loss_grid.setVerticalSpacing(0)
        pl.addLayout(self.loss_grid)
        self.loss_boxes: dict[str, QCheckBox] = {}
        self.hidden_losses: set[str] = set()
        """Losses the user switched off; kept from one run to the next."""
        opts = QHBoxLayout()
        self.raw_box = QCheckBox("Raw")
        self.raw_box.setChecked(True)
        self.smooth_box = QCheckBox("Smoothed")
        self.smooth_box.setChecked(True)
        self.log_box = QCheckBox("Log scale")
        for b in (self.raw_box, self.smooth_box, self.log_box):
            b.toggled.connect(self._options_changed)
            opts.addWidget(b)
        opts.addStretch(1)
        pl.addLayout(opts)
        split.addWidget(plot_box)
        self.plot_box = plot_box

        prev_box = QWidget()
        pv = QVBoxLayout(prev_box)
        pv.setContentsMargins(0, 0, 0, 0)
        self.preview = ImageView(WHILE_RUNNING, min_side=self.PREVIEW_SIDE)
        pv.addWidget(self.preview, 1)
        self.thumb_row = QWidget()
        """The row of earlier previews (during a run) or of the last run's other images."""
        grid = QGridLayout(self.thumb_row)
        grid.setContentsMargins(0, 0, 0, 0)
        self.thumb_grid = grid
        grid.setSpacing(4)
        self.thumbs: list[ImageView] = []
        for i in range(N_THUMBS):
            t = ImageView("", min_side=56)
            t.setToolTip("earlier preview")
            policy = t.sizePolicy()
            policy.setRetainSizeWhenHidden(True)   # a hidden empty box keeps the others' size
            t.setSizePolicy(policy)
            self.thumbs.append(t)
            grid.addWidget(t, 0, i)
        self._thumbs_wanted = True
        """Whether the row has something to show: during a run (it fills with earlier previews), or the
        last run's images beyond the first; a finished run with none shows no row of empty boxes."""
        pv.addWidget(self.thumb_row)
        split.addWidget(prev_box)
        split.setSizes([520, 360])
        split.setChildrenCollapsible(False)
        self.split = split
        split.splitterMoved.connect(lambda *_: self._relayout_loss_boxes())
        lay.addWidget(split, 1)

        self._redraw = QTimer(self)
        self._redraw.setInterval(250)
        self._redraw.timeout.connect(self._draw_curves)
        self.reset("")
        self.set_running(False)

    NARROW = 640
    """Below this width the previews go under the curves (side by side, both were cut)."""
    PREVIEW_SIDE = 200
    """Smallest side of the preview beside the curves; under them, `PREVIEW_SIDE_UNDER`, and the earlier
    previews' row is left out: a 1280 × 800 window leaves the page's dashboard about 530 px of height, less
    than the curves, their boxes and a 200-px preview with its row need, and Qt then drew them over each other."""
    PREVIEW_SIDE_UNDER = 90
    PLOT_HEIGHT, PLOT_HEIGHT_UNDER = 200, 120
    """Smallest height of the plot beside the previews, and above them (the window's smallest height, 660 px,
    leaves a stage page's dashboard about 430 px)."""

    def resizeEvent(self, ev) -> None:  # noqa: N802
        want = Qt.Vertical if ev.size().width() < self.NARROW else Qt.Horizontal
        if self.split.orientation() != want:
            self.split.setOrientation(want)
            under = want == Qt.Vertical
            side = self.PREVIEW_SIDE_UNDER if under else self.PREVIEW_SIDE
            self.preview.setMinimumSize(side, side)
            self.plot.setMinimumHeight(self.PLOT_HEIGHT_UNDER if under else self.PLOT_HEIGHT)
            self._show_thumb_row()
        super().resizeEvent(ev)
        QTimer.singleShot(0, self._relayout_loss_boxes)   # once the plot has its new width

    def _show_thumb_row(self) -> None:
        self.thumb_row.setVisible(self._thumbs_wanted and self.split.orientation() == Qt.Horizontal)

    # ------------------------------------------------------------------ state
    def reset(self, stage: str, log: Path | None = None) -> None:
        """Empty the dashboard for a run of `stage`; `log`: where its losses before a resume are (else
        ``AVATAR_STUDIO_LOSS_LOG``)."""
        self.stage = stage
        self.log = log
        self.x = 0
        self.series: dict[str, tuple[list[int], list[float]]] = {}
        self.curves: dict[str, tuple[pg.PlotDataItem, pg.PlotDataItem]] = {}
        self.plot.clear()
        self.right_view.clear()
        self.plot.getPlotItem().hideAxis("right")
        self.plot.setTitle(None)
        clear_layout(self.loss_grid)
        self.loss_boxes = {}
        self.plot.setXRange(0, 100, padding=0)  # an empty plot shows steps, not a ±400 default
        self.plot.setYRange(0, 1, padding=0)
        self.plot.enableAutoRange()
        self.part = None
        self._offset = 0
        """x of the current part's step 0 (parts are drawn one after another)."""
        self._last_step: int | None = None
        self.history_points = 0
        """Loss rows loaded from the loss log for the steps before a resume."""
        self.rate = RateMeter()
        self.started = time.perf_counter()
        self.last_batch: ProgressBatch | None = None
        self.preview_count = 0
        self._history: list = []
        self._dirty = False
        self.preview.set_placeholder(WHILE_RUNNING)
        self.preview.set_image(None)
        self.preview.setToolTip("")
        for t in self.thumbs:
            t.set_image(None)
            t.setToolTip("earlier preview")
            t.show()
        self._thumbs_wanted = True
        self._show_thumb_row()
        self.bar.setValue(0)
        self.bar.setFormat("%p%")   # not the last shown run's "done"
        self.stats.setText("")
        self.after = ""
        """What comes after the running stage (`set_after`), shown after its ETA."""
        self.message.set_full_text("")
        self.title.set_full_text(f"Running {stage}" if stage else "No run yet")
        self._show_curves(trains(stage))

    def set_running(self, running: bool, paused: bool = False) -> None:
        # one of Pause / Resume, and only during a run: a stopped stage's Resume is the page's Run button
        self.pause_btn.setEnabled(running and not paused)
        self.resume_btn.setEnabled(running and paused)
        self.pause_btn.setVisible(running and not paused)
        self.resume_btn.setVisible(running and paused)
        self.cancel_btn.setEnabled(running)
        if running:
            self._redraw.start()
        else:
            self._redraw.stop()
            self._draw_curves()

    def set_after(self, text: str) -> None:
        """A note on the stages after the running one ("then about 25 min for pti, mappers"; see
        `speed_probe.RunPace.after`), shown after its ETA."""
        self.after = text
        self._update_stats()

    def set_title(self, text: str) -> None:
        self.title.set_full_text(text)

    def holds_run(self, stage: str) -> bool:
        """Whether the curves are a run of `stage` seen live in this window (kept after it ends)."""
        return self.stage == stage and self.last_batch is not None

    def _mark(self, x: float, label: str) -> None:
        self.plot.addItem(pg.InfiniteLine(pos=x, angle=90, pen=pg.mkPen(COLORS["border"], width=1),
                                          label=label, labelOpts={"color": COLORS["dim"], "position": 0.95}))

    def _add_point(self, x: int, losses: dict[str, float]) -> None:
        for k, v in losses.items():
            if not math.isfinite(v):
                continue
            xs, ys = self.series.setdefault(k, ([], []))
            xs.append(x)
            ys.append(v)

    def _load_history(self, part: str, upto: int) -> None:
        """Steps 1..upto of `part` from the loss log (the run this one resumes), when one is kept."""
        rows = read_loss_log(self.log if self.log is not None else loss_log_path(), self.stage, part,
                             upto).get(part, {})
        for step in sorted(rows):
            self._add_point(self._offset + step, rows[step])
        self.history_points += len(rows)
        if rows:
            self._dirty = True

    def add_batch(self, b: ProgressBatch) -> None:
        # the step of each loss (`b.steps`) places it; without it, losses are counted one by one
        steps = list(b.steps) if b.steps and len(b.steps) == len(b.losses) else None
        if b.part != self.part or (steps and self._last_step is not None and steps[0] <= self._last_step):
            if self.part is not None:
                self._mark(self.x, b.part)
            self.part = b.part
            self.rate.reset()
            self._offset = self.x
            # a part that starts past step 0 resumed a checkpoint: continue its step count there
            start = steps[0] - 1 if steps else (b.step if not b.losses else 0)
            if start > 0:
                self._load_history(b.part, start)
                self.x = self._offset + start
                self._mark(self.x, f"resumed at {start}")
        for i, losses in enumerate(b.losses):
            if steps:
                self._last_step = steps[i]
                self.x = self._offset + steps[i]
            else:
                self.x += 1
            self._add_point(self.x, losses)
        if b.losses:
            self._dirty = True
            self._show_curves(True)
        self.rate.add(b.time, b.step)
        self.last_batch = b
        if b.preview is not None:
            self.preview_count += 1
            if self.preview.image() is not None and (not self._history or self.preview_count % 4 == 0):
                self._history.insert(0, self.preview.image())
                del self._history[N_THUMBS:]
                for t, img in zip(self.thumbs, self._history + [None] * N_THUMBS):
                    t.set_image(img)
            self.preview.set_image(b.preview)
        self._update_stats()

    def _update_stats(self) -> None:
        b = self.last_batch
        if b is None:
            return
        self.bar.setValue(int(1000 * min(1.0, b.step / b.total)) if b.total else 0)
        self.bar.setFormat(f"{b.part + ': ' if b.part else ''}{b.step}/{b.total}  (%p%)" if b.total else b.part)
        rate = self.rate.rate()
        eta = (b.total - b.step) / rate if rate and b.total else None
        rate_s = f"{rate:.2f} it/s" if rate and rate < 10 else (f"{rate:.0f} it/s" if rate else "– it/s")
        self.stats.setText(f"{rate_s}   ETA {fmt_duration(eta)}   elapsed "
                           f"{fmt_duration(time.perf_counter() - self.started)}" + (f"   · {self.after}" if self.after else ""))
        self.stats.setToolTip(self.stats.text())
        self.message.set_full_text(b.message)
        last = {k: ys[-1] for k, (xs, ys) in self.series.items() if ys}
        if last:
            self.message.set_full_text((b.message + "   " if b.message else "") +
                                 "  ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in list(last.items())[:4]))

    def show_last_run(self, project, stage: str) -> None:
        """No run of `stage` in this window: show its last run as the project recorded it (outcome,
        when, steps per part, time, final losses; the curves when a loss log is kept)."""
        from ..pipeline import stage_state

        self.reset("")
        self.stage = stage
        self._show_curves(trains(stage))
        rec = project.record(stage)
        state = stage_state(project, stage)
        self._show_images(project, stage, ran=state != "pending" and bool(rec.get("status")))
        if state == "pending" or not rec.get("status"):
            self.title.set_full_text("No run of this stage yet")
            self.bar.setFormat("not run yet")
            return
        outcome = {"done": "finished", "stale": "finished (now out of date)", "cancelled": "cancelled",
                   "interrupted": "interrupted", "failed": "failed", "running": "running elsewhere"}.get(state, state)
        when = (rec.get("finished") if state in ("done", "stale") else None) or rec.get("started") or ""
        self.title.set_full_text(f"Last run: {outcome}" + (f", {short_time(when)}" if when else ""))
        res = rec.get("result") or {}
        summary = res.get("summary") or {}
        progress = {str(k): int(v) for k, v in (rec.get("progress") or {}).items() if isinstance(v, (int, float))}
        if not progress and isinstance(summary.get("steps"), (int, float)):
            progress = {"": int(summary["steps"])}
        steps_s = ", ".join(f"{p} {n}" if p else str(n) for p, n in progress.items())
        stats = []
        if steps_s:
            stats.append(f"steps {steps_s}")
        if isinstance(rec.get("seconds"), (int, float)):
            stats.append(f"time {fmt_duration(rec['seconds'])}")
        self.stats.setText("   ".join(stats))
        self.stats.setToolTip(self.stats.text())
        done = state in ("done", "stale")
        self.bar.setValue(1000 if done else 0)
        self.bar.setFormat("done" if done else outcome)
        # curves from the loss log, parts one after another; else the summary's loss figures
        log = read_loss_log(history_log(project, stage), stage)
        last: dict[str, float] = {}
        for part, rows in log.items():
            if self.x:
                self._mark(self.x, part)
            self._offset = self.x
            for step in sorted(rows):
                self._add_point(self._offset + step, rows[step])
                last.update(rows[step])
            self.x = self._offset + max(rows, default=0)
        if log:
            self._dirty = True
            self._show_curves(True)
            self._draw_curves()
        else:   # runs before 2026-12-06 (or with no training loop) kept no history
            self.plot.setTitle("no loss history kept for this run", color=COLORS["dim"], size="9pt")
        if not last:
            last = {k: float(v) for k, v in summary.items() if isinstance(v, (int, float))
                    and not isinstance(v, bool) and any(w in k.lower() for w in LOSS_WORDS)}
        text = "  ".join(f"{k.replace('_', ' ')} {v:.4g}" for k, v in list(last.items())[:6])
        if state == "failed" and rec.get("error"):
            text = f"error: {rec['error']}" + (f"   {text}" if text else "")
        self.message.set_full_text(text)

    def _show_images(self, project, stage: str, ran: bool = True) -> None:
        """The images the stage's last finished run wrote (reconstructions, contact sheets), in the preview
        place: the first large, the others as thumbnails (each with its file in the tooltip); only the
        thumbnails with an image are shown. `ran`: whether the stage has run (the placeholder says so)."""
        import cv2

        from .imaging import to_qimage

        shown = []
        for caption, path in result_images(project, stage)[: 1 + N_THUMBS]:
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is not None:
                shown.append((caption, to_qimage(cv2.cvtColor(img, cv2.COLOR_BGR2RGB))))
        rest = shown[1:]
        for i, t in enumerate(self.thumbs):
            t.setVisible(i < len(rest))
        self._thumbs_wanted = bool(rest)
        self._show_thumb_row()
        if not shown:
            self.preview.set_placeholder(NO_IMAGES if ran else WHILE_RUNNING)
            return
        caption, first = shown[0]
        self.preview.set_image(first)
        self.preview.setToolTip(f"written by the last run — {caption}")
        for t, (cap, img) in zip(self.thumbs, rest):
            t.set_image(img)
            t.setToolTip(cap)

    def eta_text(self) -> str:
        return self.stats.text()

    # ------------------------------------------------------------------ curves
    def _show_curves(self, on: bool) -> None:
        """The plot with its boxes only for a stage that trains (or logs losses): tracking, pivots and the
        like have none, and an empty plot there said "no loss history kept", as if one had been lost."""
        self.plot_box.setVisible(on)

    def _sync_right_view(self) -> None:
        vb = self.plot.getPlotItem().vb
        self.right_view.setGeometry(vb.sceneBoundingRect())
        self.right_view.linkedViewChanged(vb, self.right_view.XAxis)

    def _options_changed(self) -> None:
        self.plot.setLogMode(y=self.log_box.isChecked())
        self._dirty = True
        self._draw_curves()

    LOSS_BOX_WIDTH = 118
    """Pixels of plot width a loss's on/off box takes: as many columns of boxes as fit under the plot."""

    def loss_columns(self) -> int:
        return max(1, self.plot.width() // self.LOSS_BOX_WIDTH)

    def _add_loss_box(self, label: str, i: int, color: str, style, key: str | None = None) -> None:
        name = key or label
        box = curve_box(label, color, style, name not in self.hidden_losses, "loss",
                        lambda on, n=name: self.show_loss(n, on))
        cols = self.loss_columns()
        self.loss_grid.addWidget(box, i // cols, i % cols)
        self.loss_boxes[name] = box

    def _relayout_loss_boxes(self) -> None:
        cols = self.loss_columns()
        placed = [self.loss_grid.getItemPosition(self.loss_grid.indexOf(b))[:2] for b in self.loss_boxes.values()]
        if placed == [(i // cols, i % cols) for i in range(len(placed))]:
            return
        while self.loss_grid.count():   # all out first: a box moved into a cell another still holds overlaps it
            self.loss_grid.takeAt(0)
        for i, box in enumerate(self.loss_boxes.values()):
            self.loss_grid.addWidget(box, i // cols, i % cols)

    def show_loss(self, name: str, on: bool) -> None:
        """Show or hide one loss's curves (its box under the plot)."""
        if on:
            self.hidden_losses.discard(name)
        else:
            self.hidden_losses.add(name)
        box = self.loss_boxes.get(name)
        if box is not None and box.isChecked() != on:
            box.setChecked(on)
        if name in self.curves:
            self._dirty = True
            self._draw_curves()

    def _draw_curves(self) -> None:
        if not self._dirty:
            return
        self._dirty = False
        show_raw, show_smooth = self.raw_box.isChecked(), self.smooth_box.isChecked()
        for i, (k, (xs, ys)) in enumerate(self.series.items()):
            color, style = curve_style(i)
            unit = right_axis_unit(k)
            if k not in self.curves:
                raw = pg.PlotDataItem([], [], pen=pg.mkPen(pg.mkColor(color).lighter(80), width=1), antialias=False)
                raw.setOpacity(0.35)
                smooth = pg.PlotDataItem([], [], pen=pg.mkPen(color, width=2, style=style))
                for c in (raw, smooth):
                    c.setDownsampling(auto=True, method="mean")
                    c.setClipToView(True)
                    (self.right_view.addItem if unit else self.plot.addItem)(c)
                if unit:
                    axis = self.plot.getPlotItem().getAxis("right")
                    axis.setLabel(unit)
                    self.plot.getPlotItem().showAxis("right")
                    self._sync_right_view()
                self.curves[k] = (raw, smooth)
                self._add_loss_box(k + (f" ({unit})" if unit else ""), len(self.loss_boxes), color, style,
                                   key=k)
            raw, smooth = self.curves[k]
            x = np.asarray(xs, np.float64)
            y = np.asarray(ys, np.float64)
            if self.log_box.isChecked() and not unit:        # the right axis stays linear
                keep = y > 0
                x, y = x[keep], y[keep]
            raw.setData(x, y)
            shown = k not in self.hidden_losses
            raw.setVisible(show_raw and shown)
            alpha = min(0.98, 1.0 - 10.0 / max(20, len(y)))  # heavier smoothing on longer runs
            smooth.setData(x, ema(y, alpha) if len(y) else y)
            smooth.setVisible(show_smooth and shown)
