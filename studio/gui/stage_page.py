"""One stage's page: what it does, its status and results, its settings form, and the dashboard."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QScrollArea, QSplitter, QStackedWidget,
                               QVBoxLayout, QWidget)

from .config_form import ConfigForm
from .dashboard import Dashboard, fmt_duration, right_axis_unit
from .theme import COLORS, icon

STATUS_TEXT = {"pending": "not run yet", "running": "running", "cancelled": "cancelled — run again to resume",
               "interrupted": "interrupted — run again to resume",
               "failed": "failed", "stale": "out of date — settings or an earlier stage changed", "done": "done"}
STATUS_COLOR = {"pending": COLORS["dim"], "running": COLORS["accent"], "cancelled": COLORS["orange"],
                "interrupted": COLORS["orange"],
                "failed": COLORS["bad"], "stale": COLORS["warn"], "done": COLORS["good"]}


def models_used(spec) -> tuple[str, ...]:
    """Optional weight files a stage can use: `spec.models` or `config_cls.models` (keys of model_files)."""
    m = getattr(spec, "models", None) or getattr(spec.config_cls, "models", None) or ()
    return tuple(m)


SUMMARY_WORDS = {"nodownload": "built in (no download)"}
"""Values a stage's summary records as codes, in words (the perceptual loss's kind; "lpips-vgg" reads as is)."""


def _summary_value(v) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):           # e.g. the NeRF's final losses: each figure as short as the others
        return ", ".join(f"{str(a).replace('_', ' ')} {_summary_value(b)}" for a, b in v.items()) or "none"
    if isinstance(v, (list, tuple)):
        items = [_summary_value(x) for x in v]
        return " … ".join(items) if len(items) == 2 else ", ".join(items)
    return html.escape(SUMMARY_WORDS.get(str(v), str(v)))


def format_summary(summary: dict) -> str:
    """The summary's figures with their units where the name says which (a PSNR is in dB)."""
    def unit(k, v) -> str:
        u = right_axis_unit(k) if isinstance(v, (int, float)) and not isinstance(v, bool) else None
        return f" {u}" if u else ""

    return " &nbsp;·&nbsp; ".join(f"{k.replace('_', ' ')}: <b>{_summary_value(v)}{unit(k, v)}</b>"
                                  for k, v in (summary or {}).items())


def took(seconds: float) -> str:
    """A stage's time as the dashboard says it (m:ss, h:mm:ss); under a minute in seconds."""
    return f"{seconds:.1f} s" if seconds < 60 else fmt_duration(seconds)


class StagePage(QWidget):
    run_clicked = Signal(str)
    config_edited = Signal(str, dict)
    reset_clicked = Signal(str)
    show_models = Signal()

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.stage: str | None = None
        self.forms: dict[str, ConfigForm] = {}
        lay = QVBoxLayout(self)
        lay.setContentsMargins(16, 12, 16, 12)
        lay.setSpacing(8)
        head = QHBoxLayout()
        self.title = QLabel("")
        self.title.setObjectName("PageTitle")
        self.status = QLabel("")
        self.status.setTextFormat(Qt.RichText)
        head.addWidget(self.title)
        head.addSpacing(10)
        head.addWidget(self.status)
        head.addStretch(1)
        self.reset_btn = QPushButton(icon("reset"), "Reset to preset")
        self.reset_btn.setToolTip("Put every setting of this stage back to the project's preset")
        self.run_btn = QPushButton(icon("run"), "Run")
        self.run_btn.setObjectName("Primary")
        self.run_btn.setMinimumWidth(110)
        head.addWidget(self.reset_btn)
        head.addWidget(self.run_btn)
        lay.addLayout(head)
        self.description = QLabel("")
        self.description.setObjectName("Dim")
        self.description.setWordWrap(True)
        lay.addWidget(self.description)
        self.summary = QLabel("")
        self.summary.setWordWrap(True)
        self.summary.setTextFormat(Qt.RichText)
        lay.addWidget(self.summary)
        self.warning = QLabel("")
        self.warning.setObjectName("Warning")
        self.warning.setWordWrap(True)
        self.warning.setTextFormat(Qt.RichText)
        self.warning.linkActivated.connect(lambda _l: self.show_models.emit())
        self.warning.hide()
        lay.addWidget(self.warning)

        split = QSplitter(Qt.Horizontal)
        self.form_stack = QStackedWidget()
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.form_stack)
        scroll.setMinimumWidth(340)
        split.addWidget(scroll)
        self.dashboard = Dashboard()
        split.addWidget(self.dashboard)
        split.setSizes([380, 760])
        split.setStretchFactor(1, 1)
        lay.addWidget(split, 1)

        self.run_btn.clicked.connect(lambda: self.stage and self.run_clicked.emit(self.stage))
        self.reset_btn.clicked.connect(lambda: self.stage and self.reset_clicked.emit(self.stage))
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(400)
        self._debounce.timeout.connect(self.commit_edits)

    def form(self, name: str) -> ConfigForm:
        from ..stages import REGISTRY

        if name not in self.forms:
            f = ConfigForm(REGISTRY[name].config_cls)
            f.changed.connect(self._debounce.start)
            self.forms[name] = f
            self.form_stack.addWidget(f)
        return self.forms[name]

    def commit_edits(self) -> None:
        self._debounce.stop()
        if self.stage and self.stage in self.forms:
            self.config_edited.emit(self.stage, self.forms[self.stage].values())

    def show_stage(self, project, name: str, running: str | None = None) -> None:
        from ..pipeline import stage_config, stage_state
        from ..stages import REGISTRY
        from ..model_files import ModelFiles

        if self.stage and self.stage != name and self._debounce.isActive():
            self.commit_edits()
        spec = REGISTRY[name]
        self.stage = name
        self.title.setText(spec.title)
        self.description.setText(spec.description + (f"  Needs: {', '.join(REGISTRY[d].title for d in spec.depends_on if d in REGISTRY)}."
                                                     if spec.depends_on else ""))
        f = self.form(name)
        f.set_config(stage_config(project, name))
        self.form_stack.setCurrentWidget(f)
        if running is None and not self.dashboard.holds_run(name):
            self.dashboard.show_last_run(project, name)  # no run here in this window: what the project recorded
        self.refresh(project, running)
        missing = []
        mf = ModelFiles()
        for key in models_used(spec):
            e = mf.entry(key)
            if not e.ok:
                missing.append(f"{e.spec.title} ({e.status})")
        if missing:
            lead = ("This stage cannot run without files that are missing: " if spec.models_required
                    else "This stage works better with optional files that are missing: ")
            self.warning.setText(lead + f"{'; '.join(missing)}. <a href='models' style='color:{COLORS['accent']}'>"
                                 "Open Models…</a>")
        self.warning.setVisible(bool(missing))

    def refresh(self, project, running: str | None = None) -> None:
        from ..pipeline import stage_state

        if not self.stage:
            return
        st = "running" if running == self.stage else stage_state(project, self.stage)
        text = STATUS_TEXT.get(st, st)
        rec = project.record(self.stage)
        if st == "done" and rec.get("seconds") is not None:
            text += f" in {took(float(rec['seconds']))}"      # 29:18, as the dashboard's time, not 1758.0 s
        if st == "failed" and rec.get("error"):
            text += f": {rec['error']}"
        if st == "interrupted":
            from ..pipeline import interruption

            text = interruption(project, self.stage)
        self.status.setText(f"<span style='color:{STATUS_COLOR.get(st, COLORS['dim'])}'>● {text}</span>")
        res = rec.get("result") or {}
        summ = format_summary(res.get("summary") or {}) if st in ("done", "stale") else ""
        warns = res.get("warnings") or []
        if warns and st in ("done", "stale"):
            summ += "<br><span style='color:%s'>%s</span>" % (COLORS["warn"], "<br>".join(f"⚠ {w}" for w in warns))
        self.summary.setText(summ)
        self.summary.setVisible(bool(summ))
        busy = running is not None
        self.run_btn.setEnabled(not busy)
        self.run_btn.setText("Run again" if st == "done" else ("Resume" if st in ("cancelled", "interrupted") else "Run"))
        self.reset_btn.setEnabled(not busy)
        if self.stage in self.forms:
            self.forms[self.stage].set_editable(not busy)
