"""The viewer: the avatar rendered live from sliders (yaw, pitch, one per named expression; for an
avatar trained on FLAME controls, jaw + the first N FLAME coefficients and a "Named" tab mapped onto them).

Renders run in a `RenderWorker` that only renders the newest slider state. An optional
panel shows the nearest real training frame beside the render. The Edits panel
(`edits_panel.EditsPanel`) sits beside the sliders (in a page too narrow for three columns, the sliders
and the Edits are two tabs beside the render): every render applies the edits switched on
there at their strengths, so an edit stays on while the sliders move; holding B (or the panel's
Before button) shows the unedited render.
"""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFrame, QGroupBox, QHBoxLayout, QLabel, QPushButton, QScrollArea,
                               QSpinBox, QTabWidget, QVBoxLayout, QWidget)

from .control_slider import ControlSlider
from .dialogs import error_box
from .edits_panel import EditsPanel
from .imaging import ImageView
from .theme import icon
from .workers import Failure, RenderWorker

FLAME_SLIDERS = 10
"""FLAME coefficients shown as sliders by default (jaw comes on top); the rest stay at 0."""
PREP_SHOWN_MS = 300.0
"""A render that first prepared the video's frames (a new size) for this long says so beside its own time."""


class ViewerPanel(QWidget):
    """Sliders → render requests → the newest image. `show_models` asks the window for the Models dialog."""

    show_models = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.project = None
        self.sliders: list[ControlSlider] = []
        self._titles: list[QWidget] = []
        self.flame_count = FLAME_SLIDERS
        """How many FLAME coefficient sliders an avatar with FLAME controls shows (a setting)."""
        self._info: dict | None = None
        self._shown_size = 0
        self._sizes_seen: set[int] = set()
        """Image sizes rendered since the avatar was loaded (the first render at a new size prepares its frames)."""
        self._flame_names: list[str] = []    # FLAME sliders shown (jaw + coefficients)
        self._named_sliders: list[ControlSlider] = []
        self._named_map = None                 # studio.flame.controls.NamedToFlame
        self.tabs: QTabWidget | None = None
        self.last_render: dict | None = None
        self.worker = RenderWorker(self)
        self.worker.loaded.connect(self._loaded)
        self.worker.rendered.connect(self._rendered)
        self.worker.failed.connect(self._failed)
        self.worker.start()
        self.edits = EditsPanel()
        self.edits.setMinimumWidth(340)
        self.edits.render_changed.connect(self.request_render)
        self.edits.render_changed.connect(self._edits_tab_label)
        self.edits.show_models.connect(self.show_models)
        self.edits.thumbnails_wanted.connect(self.worker.request_thumbnails)
        self.worker.thumbnail.connect(self.edits.set_thumbnail)

        # the three columns (render, controls, edits) need about 1080 px; in a narrower page (a 1280-px window
        # leaves it about 1030, the 1000-px minimum 750) the controls and the Edits share one column as two
        # tabs (`_arrange`); the page scrolls sideways only if even that does not fit
        page = QWidget()
        page.setObjectName("ViewerPage")
        self.page_scroll = QScrollArea()
        self.page_scroll.setWidgetResizable(True)
        self.page_scroll.setFrameShape(QFrame.NoFrame)
        self.page_scroll.setProperty("scrolls_sideways", True)  # by design (tests/gui/test_layout_widths.py)
        self.page_scroll.setWidget(page)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(self.page_scroll)
        lay = QHBoxLayout(page)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(14)
        left = QVBoxLayout()
        head = QHBoxLayout()
        title = QLabel("Viewer")
        title.setObjectName("PageTitle")
        head.addWidget(title)
        head.addStretch(1)
        head.addWidget(QLabel("Engine"))
        self.engine_box = QComboBox()
        self.engine_box.setMinimumWidth(140)
        self.engine_box.currentIndexChanged.connect(self._engine_chosen)
        head.addWidget(self.engine_box)
        self.size_box = QComboBox()
        self.size_box.setToolTip("The image's size: the engine's own, or the video's tracked crops' (the render "
                                 "upsampled, the video's frames lending their detail at full resolution; the first "
                                 "switch prepares the frames at that size)")
        self.size_box.currentIndexChanged.connect(self._size_chosen)
        left.addLayout(head)
        self.notice = QLabel("")
        self.notice.setObjectName("Warning")
        self.notice.setWordWrap(True)
        self.notice.hide()
        left.addWidget(self.notice)
        images = QHBoxLayout()
        self.render_view = ImageView("No trained avatar yet", min_side=256)
        self.nearest_view = ImageView("nearest training frame", min_side=200)
        self.nearest_view.hide()
        images.addWidget(self.render_view, 3)
        images.addWidget(self.nearest_view, 2)
        left.addLayout(images, 1)
        self._images = images
        self.info = QLabel("")
        self.info.setObjectName("Dim")
        self.info.setWordWrap(True)   # a long line (clamped sliders) wraps instead of widening the column
        foot = QHBoxLayout()       # under the image: a wider header pushed the Edits column out of a 1360-px window
        foot.addWidget(self.info, 1)
        foot.addWidget(QLabel("Size"))
        foot.addWidget(self.size_box)
        left.addLayout(foot)
        lay.addLayout(left, 3)
        self._columns = lay

        self.controls_col = QWidget()
        right = QVBoxLayout(self.controls_col)
        right.setContentsMargins(0, 0, 0, 0)
        right.setSpacing(10)
        self.controls_box = QGroupBox("Controls")
        self.grid = QVBoxLayout(self.controls_box)
        self.grid.setSpacing(6)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.controls_box)
        scroll.setMinimumWidth(400)
        right.addWidget(scroll, 1)
        row = QHBoxLayout()
        self.reset_btn = QPushButton(icon("reset"), "Reset all")
        self.reset_btn.setToolTip("Reset every slider (R)")
        self.reset_btn.clicked.connect(self.reset_all)
        self.nearest_box = QCheckBox("Show nearest training frame")
        self.nearest_box.setToolTip("Show the real frame whose pose and expression are closest (N)")
        self.nearest_box.toggled.connect(self._nearest_toggled)
        self.detail_box = QCheckBox("Detail from the video")
        self.detail_box.setChecked(True)
        self.detail_box.setToolTip("Lay the fine detail (eyes, skin, hair) of the subject's own frames nearest these "
                                   "sliders over the avatar's render (V). Off: the engine's render alone.")
        self.detail_box.toggled.connect(lambda _on: self.request_render())
        row.addWidget(self.reset_btn)
        row.addWidget(self.detail_box)
        row.addStretch(1)
        right.addLayout(row)
        self.flame_box = QCheckBox("FLAME geometry")
        self.flame_box.setChecked(True)
        self.flame_box.setToolTip("FLAME controls: move the face's landmarks as FLAME says the sliders move them, "
                                  "beyond the expression the engine renders (G). Off: the engine's expression alone.")
        self.flame_box.toggled.connect(lambda _on: self.request_render())
        self.flame_box.setVisible(False)
        self.scene_box = QCheckBox("Video's background")
        self.scene_box.setChecked(True)
        self.scene_box.setToolTip("Put the background of the subject's own video behind the person, where the head "
                                  "was most of the clip (K). Off: the background the engine draws.")
        self.scene_box.toggled.connect(lambda _on: self.request_render())
        row = QHBoxLayout()            # a row of its own: the page must still fit a 1110-px window
        row.addWidget(self.nearest_box)
        row.addWidget(self.scene_box)
        row.addWidget(self.flame_box)
        row.addStretch(1)
        right.addLayout(row)
        self.flame_note = QWidget()
        fl = QHBoxLayout(self.flame_note)
        fl.setContentsMargins(0, 0, 0, 0)
        self.flame_label = QLabel("")
        self.flame_label.setObjectName("Hint")
        self.flame_label.setWordWrap(True)
        models_btn = QPushButton("Models…")
        models_btn.setObjectName("Link")
        models_btn.clicked.connect(self.show_models)
        fl.addWidget(self.flame_label, 1)
        fl.addWidget(models_btn)
        right.addWidget(self.flame_note)
        keys = QLabel("Keys: A/D yaw · W/S pitch · R reset · V detail · K background · N nearest frame · hold B before edits")
        keys.setObjectName("Hint")
        keys.setWordWrap(True)
        right.addWidget(keys)
        lay.addWidget(self.controls_col, 2)
        self.edits_col = QWidget()
        edits_col = QVBoxLayout(self.edits_col)
        edits_col.setContentsMargins(0, 0, 0, 0)
        self.edits_title = QLabel("Edits")
        self.edits_title.setObjectName("PageTitle")
        edits_col.addWidget(self.edits_title)
        edits_col.addWidget(self.edits, 1)
        lay.addWidget(self.edits_col, 2)
        self.side_tabs = QTabWidget()
        """In a narrow page: the controls and the Edits as two tabs of one column (`tabbed`)."""
        self.side_tabs.setDocumentMode(True)
        self.side_tabs.tabBar().setDrawBase(False)       # no light line across the dark page
        self.side_tabs.hide()
        lay.addWidget(self.side_tabs, 4)
        self.tabbed = False

        for seq, fn in (("A", lambda: self._nudge(0, -5)), ("D", lambda: self._nudge(0, 5)),
                        ("W", lambda: self._nudge(1, 5)), ("S", lambda: self._nudge(1, -5)),
                        ("R", self.reset_all), ("N", lambda: self.nearest_box.toggle()),
                        ("V", lambda: self.detail_box.toggle()),
                        ("K", lambda: self.scene_box.toggle()),
                        ("G", lambda: self.flame_box.toggle() if self.flame_box.isVisible() else None)):
            sc = QShortcut(QKeySequence(seq), self)
            sc.setContext(Qt.WidgetWithChildrenShortcut)
            sc.activated.connect(fn)
        self._set_enabled(False)

    # ------------------------------------------------------------------ layout
    def columns_width(self) -> int:
        """The page width the render, the controls and the Edits need side by side."""
        lay = self._columns
        m = lay.contentsMargins()
        left = lay.itemAt(0).layout().minimumSize().width()
        return (m.left() + m.right() + 2 * lay.spacing() + left
                + self.controls_col.minimumSizeHint().width() + self.edits_col.minimumSizeHint().width())

    def _arrange(self) -> None:
        """Three columns where the page has room for them, else the render beside two tabs (Controls,
        Edits): a 1280-px window shows everything without scrolling sideways."""
        if not self.isVisible():
            return
        room, need = self.page_scroll.viewport().width(), self.columns_width()
        want = room < need if not self.tabbed else room < need + 16      # a little slack: no flapping at the edge
        if want == self.tabbed:
            return
        self.tabbed = want
        lay = self._columns
        if want:
            self.edits_title.hide()
            self.controls_box.setTitle("")                # the tab says it
            self.side_tabs.addTab(self.controls_col, "Controls")
            self.side_tabs.addTab(self.edits_col, "Edits")
            self.side_tabs.setTabToolTip(1, "Text edits and directions, applied to every render")
            self._edits_tab_label()
            self.side_tabs.show()
        else:
            current = self.side_tabs.currentIndex()
            self.side_tabs.hide()
            self.side_tabs.clear()                       # the pages stay, parented to the page again below
            lay.insertWidget(1, self.controls_col, 2)
            lay.insertWidget(2, self.edits_col, 2)
            self.edits_title.show()
            self.controls_box.setTitle("Controls")
            self.controls_col.show()
            self.edits_col.show()
            self.side_tabs.setCurrentIndex(max(current, 0))

    def _edits_tab_label(self) -> None:
        """The Edits tab says how many edits the render applies, so they are not forgotten behind it."""
        if self.tabbed:
            n = len(self.edits.active())
            self.side_tabs.setTabText(1, f"Edits ({n} on)" if n else "Edits")

    def show_edits(self) -> None:
        """Bring the Edits into view (their tab, in a narrow page)."""
        if self.tabbed:
            self.side_tabs.setCurrentWidget(self.edits_col)

    def resizeEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().resizeEvent(event)
        self._arrange()

    def showEvent(self, event) -> None:  # noqa: N802 (Qt)
        super().showEvent(event)
        self._arrange()

    # ------------------------------------------------------------------ project / engine
    def set_project(self, project) -> None:
        from ..avatar import trained_engines
        from ..model_files import ModelFiles

        self.project = project
        self.edits.set_project(project)
        self.engine_box.blockSignals(True)
        self.engine_box.clear()
        engines = []
        if project is not None:
            engines = trained_engines(project)
        for e in engines:
            self.engine_box.addItem(_short_title(e), e)
        self.engine_box.setEnabled(len(engines) > 1)
        self.engine_box.setToolTip("" if len(engines) > 1 else "Train both engines to switch between them")
        self.engine_box.blockSignals(False)
        flame_ok = ModelFiles().entry("flame").ok and ModelFiles().entry("flame-mediapipe").ok
        # one short line under the controls (a paragraph here pushed the sliders out of a 700-px-high window);
        # the whole story in its tooltip
        self.flame_label.setText("" if flame_ok else
                                 "FLAME sliders need FLAME's two files: add them under Models, then train with "
                                 "FLAME controls.")
        self.flame_label.setToolTip("" if flame_ok else
                                    "FLAME adds sliders for the jaw and FLAME's expression coefficients, and driving "
                                    "the avatar from DECA / EMOCA / SMIRK / metrical-tracker files. It needs FLAME's "
                                    "head model (generic_model.pkl) and its MediaPipe landmark embedding "
                                    "(mediapipe_landmark_embedding.npz); add both under Models, then train with "
                                    "FLAME controls. Until then the avatar has the named expression sliders.")
        self.flame_note.setVisible(not flame_ok)
        self._clear_sliders()
        self.render_view.set_image(None)
        self.nearest_view.set_image(None)
        if project is None:
            self.render_view.set_placeholder("Open a project")
        elif not engines:
            self.render_view.set_placeholder(out_of_date(project) or
                                             "No trained avatar yet.\nRun the training stages, then come back here.")
            self.info.setText("")
        else:
            self.render_view.set_placeholder("Loading the avatar…")
            self.worker.load(project, engines[0])

    def engines(self) -> list[str]:
        """The trained engines the viewer offers."""
        return [self.engine_box.itemData(i) for i in range(self.engine_box.count())]

    def _size_chosen(self) -> None:
        px = self.size_box.currentData()
        if px is not None and px != self._shown_size and px not in self._sizes_seen:
            self.info.setText(f"{self.info.text().split(' · ')[0]} · preparing the video's frames at {px} px…")
        self.request_render()

    def _engine_chosen(self) -> None:
        e = self.engine_box.currentData()
        if e and self.project is not None:
            self.render_view.set_placeholder(f"Loading the {_short_title(e)} avatar…")
            self.worker.load(self.project, e)

    def _clear_sliders(self) -> None:
        for w in [*self.sliders, *self._titles]:
            w.setParent(None)
            w.deleteLater()
        self.sliders, self._titles = [], []
        self._named_sliders, self._flame_names, self._named_map, self.tabs = [], [], None, None
        self._set_enabled(False)

    def _set_enabled(self, on: bool) -> None:
        self.reset_btn.setEnabled(on)
        self.nearest_box.setEnabled(on and getattr(self, "_has_tracking", False))
        self.detail_box.setEnabled(on and getattr(self, "_has_detail", False))
        self.flame_box.setEnabled(on and getattr(self, "_has_flame_geometry", False))
        self.scene_box.setEnabled(on and getattr(self, "_has_scene", False))

    def _slider(self, name: str, info: dict, unit: str = "", ranges: dict | None = None) -> ControlSlider:
        lo, hi = (ranges or info["ranges"]).get(name, (-1.0, 1.0))
        s = ControlSlider(name, lo, hi, float(np.clip(0.0, lo, hi)), unit)
        s.moved.connect(self.request_render)
        self.sliders.append(s)
        return s

    def set_flame_count(self, n: int) -> None:
        """Show jaw + the first `n` FLAME coefficients (the others stay at 0)."""
        self.flame_count = int(n)
        if self._info is not None and self._flame_names:
            self._loaded(self._info)

    def _loaded_flame(self, info: dict) -> None:
        """Sliders of an avatar with FLAME controls: head pose, then tabs "FLAME" (jaw + the first
        `flame_count` coefficients) and "Named" (the named expressions, mapped to FLAME controls by
        the least-squares map the `flame` stage fitted on the subject's frames)."""
        from ..flame.controls import JAW, load_named_map

        names = info["control_names"]
        t = QLabel("HEAD POSE")
        t.setObjectName("SectionTitle")
        self.grid.addWidget(t)
        self._titles.append(t)
        for name in names[:2]:
            self.grid.addWidget(self._slider(name, info, "°"))
        self.tabs = QTabWidget()
        self.grid.addWidget(self.tabs)
        self._titles.append(self.tabs)
        page = QWidget()
        lay = QVBoxLayout(page)
        count_row = QHBoxLayout()
        count_row.addWidget(QLabel("FLAME sliders"))
        self.flame_spin = QSpinBox()
        self.flame_spin.setRange(1, max(1, len(names) - 3))
        self.flame_spin.setValue(min(self.flame_count, len(names) - 3))
        self.flame_spin.setToolTip("How many FLAME expression coefficients get a slider (the others stay at 0)")
        self.flame_spin.valueChanged.connect(self.set_flame_count)
        count_row.addWidget(self.flame_spin)
        count_row.addStretch(1)
        lay.addLayout(count_row)
        self._flame_names = [JAW] + [n for n in names[3:3 + self.flame_count]]
        for name in self._flame_names:
            lay.addWidget(self._slider(name, info))
        lay.addStretch(1)
        self.tabs.addTab(page, "FLAME")
        loaded = load_named_map(self.project) if self.project is not None else None
        if loaded is not None:
            self._named_map, ranges = loaded
            page = QWidget()
            lay = QVBoxLayout(page)
            hint = QLabel("Named expressions, turned into FLAME controls by a linear map fitted on your video.")
            hint.setObjectName("Hint")
            hint.setWordWrap(True)
            lay.addWidget(hint)
            for name in self._named_map.named:
                s = self._slider(name, info, ranges=ranges)
                self._named_sliders.append(s)
                lay.addWidget(s)
            lay.addStretch(1)
            self.tabs.addTab(page, "Named")
        self.tabs.currentChanged.connect(lambda _i: self.request_render())

    def _loaded(self, info: dict) -> None:
        from ..flame.controls import is_flame_controls

        self._clear_sliders()
        self._info = info
        self._has_tracking = info["has_tracking"]
        self._has_detail = info.get("has_detail", False)
        self._has_flame_geometry = info.get("has_flame_geometry", False)
        self._has_scene = info.get("has_scene", False)
        self._shown_size = info["size"]
        self._sizes_seen = {info["size"]}
        chosen = self.size_box.currentData()
        self.size_box.blockSignals(True)
        self.size_box.clear()
        for px in info.get("sizes") or [info["size"]]:
            self.size_box.addItem(f"{px} px", px)
        if chosen in (info.get("sizes") or []):
            self.size_box.setCurrentIndex(self.size_box.findData(chosen))
        self.size_box.setEnabled(self.size_box.count() > 1)
        self.size_box.blockSignals(False)
        self.flame_box.setVisible(is_flame_controls(info["control_names"]))
        if is_flame_controls(info["control_names"]) and not self._has_flame_geometry:
            self.flame_box.setToolTip("needs FLAME's files and this project's FLAME fit (see Models…)")
        if self.edits.engine != info["engine"]:
            self.edits.set_engine(info["engine"])
        if is_flame_controls(info["control_names"]):
            self._loaded_flame(info)
            self._set_enabled(True)
            self.info.setText(f"{_short_title(info['engine'])} avatar, {info['size']} px, FLAME controls")
            self.request_render()
            return
        for i, name in enumerate(info["control_names"]):
            if i in (0, 2):
                t = QLabel("HEAD POSE" if i == 0 else "EXPRESSION")
                t.setObjectName("SectionTitle")
                self.grid.addWidget(t)
                self._titles.append(t)
            lo, hi = info["ranges"].get(name, (-1.0, 1.0))
            neutral = float(np.clip(0.0, lo, hi))
            s = ControlSlider(name, lo, hi, neutral, "°" if i < 2 else "")
            s.moved.connect(self.request_render)
            self.grid.addWidget(s)
            self.sliders.append(s)
        self._set_enabled(True)
        self.nearest_box.setToolTip("" if self._has_tracking else "needs the Tracking stage's results")
        if not self._has_detail:
            self.detail_box.setToolTip("needs the Tracking stage's crops (this project has none)")
        if not self._has_scene:
            self.scene_box.setToolTip("needs the Tracking stage's crops and mattes (this project has none)")
        self.info.setText(f"{_short_title(info['engine'])} avatar, {info['size']} px")
        self.request_render()

    # ------------------------------------------------------------------ rendering
    def controls(self) -> np.ndarray:
        if not self._flame_names:
            return np.array([s.value() for s in self.sliders], np.float32)
        names = self._info["control_names"]
        c = np.array([float(np.clip(0.0, *self._info["ranges"].get(n, (-1.0, 1.0)))) for n in names], np.float32)
        c[0], c[1] = self.sliders[0].value(), self.sliders[1].value()
        if self.tabs is not None and self.tabs.currentIndex() == 1 and self._named_map is not None:
            c = self._named_map.apply(c, names, np.array([s.value() for s in self._named_sliders]))
        else:
            for s in self.sliders[2:2 + len(self._flame_names)]:
                c[names.index(s.name)] = s.value()
        return c

    def request_render(self) -> int:
        if not self.sliders:
            return -1
        return self.worker.request(self.controls(), nearest=self.nearest_box.isChecked(), edits=self.edits.active(),
                                   detail=self.detail_box.isChecked(), flame_geometry=self.flame_box.isChecked(),
                                   scene=self.scene_box.isChecked(), size=self.size_box.currentData())

    def _rendered(self, r: dict) -> None:
        self.last_render = r
        self.render_view.set_image(r["image"])
        if self.nearest_box.isChecked():
            self.nearest_view.set_image(r["nearest"])
        clamp = f" · clamped to the trained range: {', '.join(r['clamped'])}" if r["clamped"] else ""
        near = f" · nearest frame {r['row']}" if r.get("row") is not None and self.nearest_box.isChecked() else ""
        base = self.info.text().split(" · ")[0]
        if self._info is not None and r["image"] is not None:   # the size the image came at
            base = base.replace(f"{self._shown_size} px", f"{r['image'].width()} px")
            self._shown_size = r["image"].width()
            self._sizes_seen.add(self._shown_size)
        want = self.size_box.currentData()    # a render asked for before the Size box moved must not hide the wait
        prep = f" · preparing the video's frames at {want} px…" if want and want not in self._sizes_seen else ""
        # the first render at a size prepares the video's frames first (seconds): said apart from the render's time
        prepared = r.get("prep_ms", 0.0)
        took = f" (after {prepared / 1000:.1f} s preparing the frames)" if prepared >= PREP_SHOWN_MS else ""
        self.info.setText(f"{base} · {r['ms']:.0f} ms{took}{near}{clamp}{prep}")

    def _failed(self, f: Failure) -> None:
        self.render_view.set_placeholder("The avatar cannot be shown.")
        self.render_view.set_image(None)
        self.error_dialog = error_box(self, "Viewer", f)

    def _nearest_toggled(self, on: bool) -> None:
        self.nearest_view.setVisible(on)
        # the second image widens the render's column: the Edits may no longer fit beside it (or fit again).
        # The column's layouts keep their old minimum until the next layout pass: forget it first
        self._images.invalidate()
        self._columns.itemAt(0).layout().invalidate()
        self._arrange()
        self.request_render()

    def reset_all(self) -> None:
        for s in self.sliders:
            s.slider.blockSignals(True)
            s.reset()
            s.slider.blockSignals(False)
        self.request_render()

    def _nudge(self, index: int, steps: int) -> None:
        if index < len(self.sliders):
            self.sliders[index].nudge(steps)

    def keyPressEvent(self, ev) -> None:  # noqa: N802 (Qt name)
        if ev.key() == Qt.Key_B and not ev.isAutoRepeat():
            self.edits.set_before(True)
            return
        super().keyPressEvent(ev)

    def keyReleaseEvent(self, ev) -> None:  # noqa: N802 (Qt name)
        if ev.key() == Qt.Key_B and not ev.isAutoRepeat():
            self.edits.set_before(False)
            return
        super().keyReleaseEvent(ev)

    def shutdown(self) -> None:
        self.edits.shutdown()
        self.worker.stop()


def out_of_date(project) -> str:
    """Why no avatar shows in `project` when one trained but is out of date (the settings of one of its stages,
    or of a stage before it, changed since it trained), in the window's words; "" otherwise (then nothing is
    trained yet). The message is `Avatar.open`'s own; what to do is said with the window's Run all."""
    from ..avatar import stale_stages, why_not_trained
    from ..engines import ENGINES

    if project is None:
        return ""
    for name in ENGINES:
        if stale_stages(project, name):
            message, _cli_hint = why_not_trained(project, name)
            return (f"{message[:1].upper()}{message[1:]}. Run all (the {_short_title(name)} engine) trains it again: "
                    "only the changed stages and those after them run.")
    return ""


def _short_title(name: str) -> str:
    from ..engines import ENGINES

    spec = ENGINES.get(name)
    return spec.short if spec is not None else name
