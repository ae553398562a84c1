"""The tracking view: contact sheet, pose and expression curves with the pivots marked, a scrubber.

Loading (npz + thumbnails for the sheet) runs in a background job; scrubbing reads one crop.
"""
from __future__ import annotations

import json

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QScrollArea, QSlider,
                               QSplitter, QTabWidget, QToolButton, QVBoxLayout, QWidget)

from .imaging import ImageView, to_qimage
from .theme import COLORS, CURVE_COLORS, clear_layout, curve_box, curve_style, icon
from .workers import Failure, run_job

SHEET_COLS = 10
SHEET_THUMB = 96
TOGGLE_COLS = 3
"""Columns of the expression curves' on/off boxes under the expression plot."""


def pivot_rows(project, n_frames: int) -> list[int]:
    """Pivot frames chosen by the `pivots` stage, when it has run (several layouts are accepted)."""
    rows: list = []
    res = project.result("pivots") if project is not None else {}
    for key in ("rows", "pivots", "pivot_rows"):
        v = res.get(key) or (res.get("summary") or {}).get(key)
        if isinstance(v, list):
            rows = v
            break
    if not rows:
        try:
            p = project.output("pivots", "pivots")
            if p.suffix == ".json":
                data = json.loads(p.read_text("utf-8"))
                rows = data.get("rows", []) if isinstance(data, dict) else data
            elif p.suffix == ".npz":
                with np.load(p) as z:
                    rows = z["rows"].tolist() if "rows" in z.files else []
        except Exception:  # noqa: BLE001 — no pivots yet is the normal case
            rows = []
    return sorted({int(r) for r in rows if isinstance(r, (int, float, np.integer)) and 0 <= int(r) < n_frames})


def load_tracking(project) -> dict:
    """Background part: tracking arrays, the contact sheet (the stage's, else built from crops)."""
    from ..tracking.data import TrackingData

    td = TrackingData.from_project(project)
    sheet = None
    outs = project.record("track").get("outputs") or {}
    for k, rel in outs.items():
        if "contact" in k or "sheet" in k:
            import cv2

            img = cv2.imread(str(project.path(rel)), cv2.IMREAD_COLOR)
            if img is not None:
                sheet = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
                break
    sheet_rows: list[int] = []
    if sheet is None:
        sheet, sheet_rows = build_sheet(td)
    return {"data": td, "sheet": to_qimage(sheet) if sheet is not None else None, "sheet_rows": sheet_rows,
            "pivots": pivot_rows(project, td.n_frames)}


def build_sheet(td, n: int = 40) -> tuple[np.ndarray | None, list[int]]:
    import cv2

    valid = np.flatnonzero(td.valid)
    if len(valid) == 0:
        return None, []
    rows = valid[np.linspace(0, len(valid) - 1, min(n, len(valid))).round().astype(int)]
    thumbs = []
    for r in rows:
        try:
            c = td.crop(int(r))
        except FileNotFoundError:
            c = np.zeros((SHEET_THUMB, SHEET_THUMB, 3), np.uint8)
        c = cv2.resize(c, (SHEET_THUMB, SHEET_THUMB), interpolation=cv2.INTER_AREA)
        cv2.putText(c, str(int(r)), (4, SHEET_THUMB - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1,
                    cv2.LINE_AA)
        thumbs.append(c)
    while len(thumbs) % SHEET_COLS:
        thumbs.append(np.full((SHEET_THUMB, SHEET_THUMB, 3), 32, np.uint8))
    grid = [np.concatenate(thumbs[i:i + SHEET_COLS], 1) for i in range(0, len(thumbs), SHEET_COLS)]
    return np.concatenate(grid, 0), [int(r) for r in rows]


class TrackingView(QWidget):
    frame_changed = Signal(int)

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.data = None
        self.pivots: list[int] = []
        self.lines: list[pg.InfiniteLine] = []
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(10)
        title = QLabel("Tracking")
        title.setObjectName("PageTitle")
        self.summary = QLabel("")
        self.summary.setObjectName("Dim")
        self.summary.setWordWrap(True)
        lay.addWidget(title)
        lay.addWidget(self.summary)
        self.notice = QLabel("Run the Tracking stage to see the head pose and expression curves here.")
        self.notice.setObjectName("Warning")
        self.notice.setWordWrap(True)
        lay.addWidget(self.notice)

        self.body = QSplitter(Qt.Horizontal)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.setContentsMargins(0, 0, 0, 0)
        self.frame_view = ImageView("frame", min_side=220)
        ll.addWidget(self.frame_view, 1)
        self.frame_info = QLabel("")
        self.frame_info.setObjectName("Stat")
        self.frame_info.setWordWrap(True)
        ll.addWidget(self.frame_info)
        nav = QHBoxLayout()
        self.prev_btn = QPushButton("◀")
        self.next_btn = QPushButton("▶")
        self.prev_btn.setToolTip("Previous frame (Left arrow)")
        self.next_btn.setToolTip("Next frame (Right arrow)")
        self.slider = QSlider(Qt.Horizontal)
        self.slider.setRange(0, 0)
        self.prev_btn.clicked.connect(lambda: self.step(-1))
        self.next_btn.clicked.connect(lambda: self.step(1))
        self.slider.valueChanged.connect(self.set_frame)
        nav.addWidget(self.prev_btn)
        nav.addWidget(self.slider, 1)
        nav.addWidget(self.next_btn)
        ll.addLayout(nav)
        self.body.addWidget(left)

        self.tabs = QTabWidget()
        curves = QWidget()
        cl = QVBoxLayout(curves)
        cl.setContentsMargins(4, 4, 4, 4)
        self.pose_plot = pg.PlotWidget()
        self.expr_plot = pg.PlotWidget()
        # every curve gets an on/off box under its plot, not a legend inside it: a legend of twelve covered
        # half the expression plot, and the pose plot's legend of four covered the top of the yaw curve
        self.pose_toggles = QHBoxLayout()
        self.pose_toggles.setContentsMargins(4, 0, 4, 0)
        self.pose_boxes: dict[str, QCheckBox] = {}
        self.pose_curves: dict[str, list] = {}
        for p, label in ((self.pose_plot, "degrees"), (self.expr_plot, "expression")):
            p.showGrid(x=True, y=True, alpha=0.15)
            p.setLabel("left", label)
            cl.addWidget(p, 1)
            if p is self.pose_plot:
                cl.addLayout(self.pose_toggles)
        self.expr_toggles = QWidget()
        tl = QVBoxLayout(self.expr_toggles)
        tl.setContentsMargins(4, 0, 4, 0)
        tl.setSpacing(2)
        head = QHBoxLayout()
        head.addWidget(QLabel("Expression curves:"))
        self.expr_all = QToolButton()
        self.expr_all.setText("All")
        self.expr_all.setToolTip("Show every expression curve")
        self.expr_none = QToolButton()
        self.expr_none.setText("None")
        self.expr_none.setToolTip("Hide every expression curve (then tick the ones to compare)")
        self.expr_all.clicked.connect(lambda: self._show_all_curves(True))
        self.expr_none.clicked.connect(lambda: self._show_all_curves(False))
        head.addWidget(self.expr_all)
        head.addWidget(self.expr_none)
        head.addStretch(1)
        tl.addLayout(head)
        self.expr_grid = QGridLayout()
        self.expr_grid.setHorizontalSpacing(10)
        self.expr_grid.setVerticalSpacing(0)
        tl.addLayout(self.expr_grid)
        cl.addWidget(self.expr_toggles)
        self.expr_curves: dict[str, pg.PlotDataItem] = {}
        self.expr_boxes: dict[str, QCheckBox] = {}
        self.hidden_curves: set[str] = set()
        self.expr_plot.setXLink(self.pose_plot)
        self.expr_plot.setLabel("bottom", "frame")
        self.tabs.addTab(curves, icon("tracking"), "Curves")
        self.sheet_view = ImageView("contact sheet", min_side=200)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.sheet_view)
        self.tabs.addTab(scroll, "Contact sheet")
        self.body.addWidget(self.tabs)
        self.body.setSizes([340, 700])
        lay.addWidget(self.body, 1)
        self.body.hide()

        for key, d in ((Qt.Key_Left, -1), (Qt.Key_Right, 1), (Qt.Key_PageUp, -10), (Qt.Key_PageDown, 10)):
            sc = QShortcut(QKeySequence(key), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(lambda d=d: self.step(d))
        self.loading = False

    # ------------------------------------------------------------------ data
    def set_project(self, project) -> None:
        self.project = project
        self.reload()

    def reload(self) -> None:
        from ..pipeline import stage_state

        self.data = None
        if self.project is None or "track" not in _registry() or stage_state(self.project, "track") not in ("done", "stale"):
            self.notice.show()
            self.body.hide()
            self.summary.setText("")
            return
        self.loading = True
        self.summary.setText("Loading tracking…")
        run_job(lambda p=self.project: load_tracking(p), self._loaded, self._failed)

    def _failed(self, f: Failure) -> None:
        self.loading = False
        self.notice.setText(f"The tracking results cannot be shown: {f.message}. {f.hint}")
        self.notice.show()
        self.body.hide()

    def _loaded(self, out: dict) -> None:
        self.loading = False
        td = out["data"]
        self.data, self.pivots = td, out["pivots"]
        self.notice.hide()
        self.body.show()
        s = td.meta.get("summary", {})
        piv = f", {len(self.pivots)} pivots" if self.pivots else _no_pivots_yet()
        self.summary.setText(f"{td.n_frames} frames at {td.fps:g} fps, {int(td.valid.sum())} tracked"
                             f"{piv}. Yaw {s.get('yaw_range', '?')}°, pitch {s.get('pitch_range', '?')}°. "
                             "Drag the yellow line or use\u00a0←\u2060/\u2060→ to scrub.")  # never broken inside "←/→"
        self.sheet_view.set_image(out["sheet"])
        if out["sheet"] is not None:
            self.sheet_view.setMinimumHeight(min(900, out["sheet"].height()))
        self._plot(td)
        self.slider.blockSignals(True)
        self.slider.setRange(0, td.n_frames - 1)
        self.slider.blockSignals(False)
        first = int(np.flatnonzero(td.valid)[0]) if td.valid.any() else 0
        self.set_frame(first)

    def _plot(self, td) -> None:
        x = np.arange(td.n_frames)
        names = td.meta.get("pose_names", ["yaw", "pitch", "roll"])
        for plot in (self.pose_plot, self.expr_plot):
            plot.clear()
        clear_layout(self.pose_toggles)
        self.pose_boxes, self.pose_curves = {}, {}
        def masked(y):
            y = np.asarray(y, np.float64).copy()
            y[~td.valid] = np.nan
            return y
        for i, n in enumerate(names[: td.pose.shape[1]]):
            curve = self.pose_plot.plot(x, masked(td.pose[:, i]), pen=pg.mkPen(CURVE_COLORS[i], width=2),
                                        connect="finite")
            self._pose_box(n, CURVE_COLORS[i], [curve])
        clear_layout(self.expr_grid)
        self.expr_curves, self.expr_boxes = {}, {}
        for i, n in enumerate(td.expression_names[: td.expr.shape[1]]):
            color, style = curve_style(i)
            curve = self.expr_plot.plot(x, masked(td.expr[:, i]), pen=pg.mkPen(color, width=1.5, style=style),
                                        connect="finite")
            curve.setVisible(n not in self.hidden_curves)
            box = curve_box(n, color, style, n not in self.hidden_curves, "curve",
                            lambda on, n=n: self._show_curve(n, on))
            self.expr_grid.addWidget(box, i // TOGGLE_COLS, i % TOGGLE_COLS)
            self.expr_curves[n], self.expr_boxes[n] = curve, box
        train, held = td.split()
        if len(held):
            for plot in (self.pose_plot, self.expr_plot):
                region = pg.LinearRegionItem((held[0], td.n_frames - 1), movable=False,
                                             brush=pg.mkBrush(255, 255, 255, 14), pen=pg.mkPen(None))
                plot.addItem(region)
                if plot is self.pose_plot:
                    pg.InfLineLabel(region.lines[0], "held out", position=0.04, anchor=(-0.1, 1), color=COLORS["dim"])
        self.lines = []
        pivot_items = []
        for plot in (self.pose_plot, self.expr_plot):
            for r in self.pivots:
                pivot_items.append(pg.InfiniteLine(pos=r, angle=90, pen=pg.mkPen(COLORS["purple"], width=1,
                                                                                 style=Qt.DashLine)))
                plot.addItem(pivot_items[-1])
            if self.pivots:
                ys = td.pose[self.pivots, 0] if plot is self.pose_plot else td.expr[self.pivots].max(1)
                pivot_items.append(plot.plot(self.pivots, ys, pen=None, symbol="d", symbolSize=9,
                                             symbolBrush=COLORS["purple"]))
            line = pg.InfiniteLine(pos=0, angle=90, movable=True, pen=pg.mkPen(COLORS["warn"], width=2))
            line.sigPositionChanged.connect(self._line_moved)
            plot.addItem(line)
            self.lines.append(line)
        if pivot_items:
            self._pose_box("pivots", COLORS["purple"], pivot_items, Qt.DashLine)
        self.pose_toggles.addStretch(1)

    def _pose_box(self, name: str, color: str, items: list, style=Qt.SolidLine) -> None:
        """An on/off box under the pose plot for `items` (a pose curve; the pivots' lines and markers in
        both plots), kept off from one project to the next when the user switched it off."""
        for item in items:
            item.setVisible(name not in self.hidden_curves)
        box = curve_box(name, color, style, name not in self.hidden_curves,
                        "marks" if name == "pivots" else "curve", lambda on, n=name: self._show_curve(n, on))
        self.pose_toggles.addWidget(box)
        self.pose_boxes[name], self.pose_curves[name] = box, items

    def _show_curve(self, name: str, on: bool) -> None:
        if on:
            self.hidden_curves.discard(name)
        else:
            self.hidden_curves.add(name)
        for item in self.pose_curves.get(name, [self.expr_curves[name]] if name in self.expr_curves else []):
            item.setVisible(on)

    def _show_all_curves(self, on: bool) -> None:
        for box in self.expr_boxes.values():
            box.setChecked(on)

    # ------------------------------------------------------------------ scrubbing
    def _line_moved(self, line) -> None:
        self.set_frame(int(round(line.value())))

    def step(self, delta: int) -> None:
        if self.data is not None:
            self.set_frame(self.slider.value() + delta)

    @property
    def frame(self) -> int:
        return self.slider.value()

    def set_frame(self, row: int) -> None:
        td = self.data
        if td is None:
            return
        row = int(np.clip(row, 0, td.n_frames - 1))
        if self.slider.value() != row:
            self.slider.blockSignals(True)
            self.slider.setValue(row)
            self.slider.blockSignals(False)
        for line in self.lines:
            if int(round(line.value())) != row:
                line.blockSignals(True)
                line.setValue(row)
                line.blockSignals(False)
        if td.valid[row]:
            try:
                self.frame_view.set_image(to_qimage(td.crop(row)))
            except FileNotFoundError:
                self.frame_view.set_image(None)
        else:
            self.frame_view.set_image(None)
            self.frame_view.set_placeholder(f"frame {row}: no usable face")
        yaw, pitch, roll = (td.pose[row, :3].tolist() + [0, 0, 0])[:3]
        top = sorted(zip(td.expression_names, td.expr[row].tolist()), key=lambda t: -abs(t[1]))[:3]
        tag = "  ◆ pivot" if row in self.pivots else ""
        # names as the curves' boxes say them; a narrow column wraps between figures, never inside one
        # ("blink_right\n-0.11" was two lines of one figure)
        nb = "\u00a0"
        self.frame_info.setText(f"frame {row}/{td.n_frames - 1}  t={td.time[row]:.2f}s{tag}\n"
                                f"yaw{nb}{yaw:+.1f}°  pitch{nb}{pitch:+.1f}°  roll{nb}{roll:+.1f}°\n" +
                                "  ".join(f"{n.replace('_', nb)}{nb}{v:+.2f}" for n, v in top))
        self.frame_changed.emit(row)


def _no_pivots_yet() -> str:
    """The summary's words where the curves have no pivot marks yet: which stage (of which engine) picks them."""
    from ..engines import ENGINES

    reg = _registry()
    if "pivots" not in reg:
        return ""
    owner = next((f"{e.short} engine's " for e in ENGINES.values() if "pivots" in e.stages), "")
    return f", no pivot frames yet (the {owner}{reg['pivots'].title} stage picks them)"


def _registry():
    from ..stages import REGISTRY

    return REGISTRY
