""""Run all" asks which avatar engine to train: StyleGAN (PVP), NeRF, or both.

The engines and their stages come from `studio.engines.ENGINES`; the dialog lists, for each
choice, the stages that would run (those not done yet, in run order, from `Session.plan_engine`).
"""
from __future__ import annotations

from PySide6.QtWidgets import (QButtonGroup, QDialog, QDialogButtonBox, QLabel, QLayout, QRadioButton, QVBoxLayout,
                               QWidget)

def choices() -> list[tuple[str, str, str]]:
    """(key, title, one sentence) for each engine, then "both"."""
    from ..engines import ENGINES

    out = [(e.name, e.title, e.summary) for e in ENGINES.values()]
    out.append(("both", "Both", "Train every engine, one after the other, to compare them in the viewer."))
    return out


RADIO_STYLE = """
QRadioButton { font-weight: bold; spacing: 8px; }
QRadioButton::indicator { width: 14px; height: 14px; border: 1px solid #5d6577; border-radius: 8px; background: #15181e; }
QRadioButton::indicator:hover { border-color: #88c0d0; }
QRadioButton::indicator:checked { border-color: #88c0d0; background: qradialgradient(cx:0.5, cy:0.5, radius:0.5,
    fx:0.5, fy:0.5, stop:0 #88c0d0, stop:0.45 #88c0d0, stop:0.55 #15181e, stop:1 #15181e); }
QRadioButton::indicator:disabled { border-color: #3b4252; background: #20242c; }
"""
"""Radio buttons are not in the theme's stylesheet yet: without this they are near invisible."""


def stages_for(project, choice: str) -> list[str]:
    """Stages of `choice` (an engine or "both") not done yet in `project`, in run order."""
    from ..session import Session

    return Session(project).plan_engine(choice)


class EngineDialog(QDialog):
    """Pick an engine for Run all; `choice()` is an engine's name or "both"; shows the expected
    training time on this machine once a short speed test has run."""

    def __init__(self, project, parent: QWidget | None = None, default: str = ""):
        from ..stages import REGISTRY

        super().__init__(parent)
        self.setWindowTitle("Run all: which avatar?")
        self.setMinimumWidth(560)
        self.setStyleSheet(RADIO_STYLE)
        lay = QVBoxLayout(self)
        lay.setSpacing(4)
        lay.setSizeConstraint(QLayout.SetFixedSize)
        intro = QLabel("Run every stage one avatar engine needs that is not done yet.")
        intro.setObjectName("Dim")
        intro.setWordWrap(True)
        lay.addWidget(intro)
        lay.addSpacing(8)
        self.group = QButtonGroup(self)
        self.buttons: dict[str, QRadioButton] = {}
        self.plans: dict[str, list[str]] = {}
        self.notes: dict[str, QLabel] = {}
        first_enabled = None
        for key, title, help_ in choices():
            todo = stages_for(project, key)
            self.plans[key] = todo
            rb = QRadioButton(title)
            rb.setEnabled(bool(todo))
            plan = ("Runs: " + " → ".join(REGISTRY[n].title for n in todo)) if todo else \
                "Already trained: nothing to run."
            note = QLabel(f"{help_}<br><span style='color:#8a93a6'>{plan}</span>")
            self.notes[key] = note
            note.setWordWrap(True)
            note.setObjectName("Hint")
            note.setContentsMargins(24, 0, 0, 10)
            note.setFixedWidth(540)
            self.group.addButton(rb)
            self.buttons[key] = rb
            lay.addWidget(rb)
            lay.addWidget(note)
            if todo and first_enabled is None:
                first_enabled = key
        pick = default if self.plans.get(default) else first_enabled
        if pick:
            self.buttons[pick].setChecked(True)
        self.estimate = QLabel("Expected time on this machine: measuring this machine's speed…")
        self.estimate.setObjectName("Dim")
        self.estimate.setWordWrap(True)
        self.estimate.setFixedWidth(540)
        lay.addWidget(self.estimate)
        self._probe(project)
        self.box = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.run_btn = self.box.addButton("Run", QDialogButtonBox.AcceptRole)
        self.run_btn.setObjectName("Primary")
        self.run_btn.setEnabled(pick is not None)
        self.box.accepted.connect(self.accept)
        self.box.rejected.connect(self.reject)
        lay.addWidget(self.box)

    def _probe(self, project) -> None:
        """Time a few training steps in a background job (`studio.speed_probe`), then show, per
        choice, how long its stages would take here."""
        from .workers import run_job

        preset, device = project.preset, project.device

        def work():
            from ..speed_probe import probe, remember

            est = probe(preset, device)
            remember(est, device)          # the run it starts re-prices its stages from this one
            return est

        run_job(work, self.show_estimate, lambda f: self.estimate.setText(
            f"Expected time: the speed test failed ({f.message})."))

    def show_estimate(self, est) -> None:
        """Fill the expected times from a `SpeedEstimate` (seconds per stage)."""
        from ..engines import ENGINES

        try:
            lines = []
            for key, todo in self.plans.items():
                if todo:
                    title = ENGINES[key].short if key in ENGINES else "Both"
                    lines.append(f"{title}: about {est.minutes_for(todo)} min")
            self.estimate.setText(f"Expected training time {est.where()}, from a {est.probe_seconds:.0f}-second speed "
                                  f"test: " + "; ".join(lines) + ".")
        except RuntimeError:  # the dialog was closed before the probe finished
            pass

    def choice(self) -> str | None:
        for key, rb in self.buttons.items():
            if rb.isChecked():
                return key
        return None

    def set_choice(self, key: str) -> None:
        self.buttons[key].setChecked(True)
