"""One stage's page: what it does, its status and results, its settings form, and the dashboard."""
from __future__ import annotations

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QHBoxLayout, QLabel, QPushButton, QScrollArea, QSplitter, QStackedWidget,
                               QVBoxLayout, QWidget)

from .config_form import ConfigForm
from .dashboard import Dashboard
from .run_history import fmt_duration, right_axis_unit
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

_HELD = "frames the stage never trained on"
SUMMARY_LABELS: dict[str, tuple[str, str]] = {
    # key in a stage's summary: (label, what it means — shown in the summary's tooltip; "" = the label says it)
    # ingest / track
    "size": ("frame size", ""),
    "rotation": ("rotation", "the turn the video file asks players to apply, in degrees"),
    "fps": ("frame rate", ""),
    "duration_s": ("length", "the part of the video that can be read"),
    "header_duration_s": ("length the file claims", "the length the video file's header states"),
    "expected_frames": ("frames expected", ""),
    "interlaced": ("interlaced", "the video stores each frame as two half-pictures taken a moment apart (a "
                   "camcorder's or a TV recording's); they are combined into one, so moving edges do not show "
                   "combs"),
    "turn": ("turned", "how far the picture is turned clockwise beyond the video file's own rotation, because the "
             "face lay on its side or upside down in it"),
    "colour": ("colours", "how the video's colours are read; an HDR clip (as phones record by default) is turned "
               "into ordinary colours, as a phone does when it shares one"),
    "tracked": ("frames with a face", ""),
    "skipped_reasons": ("why skipped", ""),
    "yaw_range": ("head turn (yaw)", "left–right turn of the head over the tracked frames, in degrees"),
    "pitch_range": ("head nod (pitch)", "up–down tilt of the head over the tracked frames, in degrees"),
    "roll_range": ("head tilt (roll)", "sideways tilt of the head over the tracked frames, in degrees"),
    "crop_size": ("face crop", "the size of the square face picture cut from each frame"),
    "face_brightness": ("face brightness", "how bright the middle of the face is, 0 (black) to 255 (white); under 40 "
                        "the avatar will look dark, over 235 washed out"),
    "picture": ("picture inside the black bars", ""),
    "damaged_s": ("damaged video", ""),
    "undecodable_s": ("unreadable video", ""),
    "decode_errors": ("decoder errors", ""),
    # pivots / prior / pti
    "pivots": ("pivot frames", "frames picked to span the head poses; the generator is tuned on them"),
    "yaw_span": ("pivots' head turn", "left–right turn of the pivot frames farthest apart, in degrees"),
    "heldout_psnr_encoder": ("held-out PSNR (encoder)", f"how closely the prior's encoder alone redraws {_HELD}"),
    "resolution": ("resolution", ""),
    "face_loss": ("face loss", "whether the ArcFace face-feature and identity losses were used"),
    "pivot_psnr": ("pivot PSNR (mean)", "how closely the tuned generator redraws the pivot frames; higher is closer"),
    "pivot_psnr_min": ("pivot PSNR (worst)", "the pivot frame the tuned generator redraws least closely"),
    "pivot_ssim": ("pivot SSIM", "structural similarity of the redrawn pivot frames (1 = identical)"),
    "inversion_psnr": ("PSNR before tuning", "how closely the pivot frames were redrawn after inversion, "
                                             "before the generator was tuned"),
    "invert_steps": ("inversion steps", ""),
    "tune_steps": ("tuning steps", ""),
    "invert_min": ("inversion time", ""),
    "tune_min": ("tuning time", ""),
    "heldout_psnr_direct": ("held-out PSNR (encoder, no inversion)", f"the tuned generator redrawing {_HELD} from "
                                                                     "the encoder's guess alone"),
    "heldout_psnr": ("held-out PSNR", f"how closely {_HELD} are redrawn; higher is closer"),
    "heldout_ssim": ("held-out SSIM", f"structural similarity of {_HELD}, redrawn (1 = identical)"),
    "heldout_frames": ("held-out frames", f"{_HELD}, used only to measure"),
    "heldout_invert_steps": ("held-out inversion steps", ""),
    "interp_max_over_mean": ("morph unevenness", "morphing between the two pivots turned farthest apart: the "
                                                 "largest picture change of one step over the average step "
                                                 "(1 = perfectly even; up to 2 is fine; higher means a jump)"),
    # mappers
    "final_l2": ("final L2 loss", "pixel difference of the last training step (mean squared); lower is closer"),
    "estimator_yaw_mae": ("read-back head turn error (MAE)", "the small network that reads pose and expression "
                                                              f"back from a picture, on {_HELD}: its mean error "
                                                              "in head turn, in degrees"),
    "estimator_jaw_corr": ("read-back jaw correlation", f"how well the read-back network follows the jaw on {_HELD} "
                                                        "(1 = perfectly, 0 = not at all)"),
    "estimator_expr_corr": ("read-back expression correlation", "how well the read-back network follows the "
                                                                f"expressions on {_HELD} (mean over ten; 1 = "
                                                                "perfectly)"),
    # sharpen
    "adversarial": ("adversarial loss", "whether a critic network was trained against the head"),
    "heldout_identity": ("held-out identity", f"ArcFace likeness of {_HELD}, redrawn (1 = the same person)"),
    "heldout_feature_distance": ("held-out feature distance", f"ArcFace feature difference on {_HELD}; lower "
                                                              "is closer"),
    "heldout_sharpness_median": ("held-out sharpness", f"face sharpness on {_HELD} over the video's (median; "
                                                       "1 = as sharp as the video)"),
    # nerf
    "minutes": ("training time", ""),
    "train_minutes": ("training time", ""),
    "resumed_from": ("resumed from step", ""),
    "mapper_mse": ("expression mapper error (MSE)", "how far the expression mapper's codes are from the "
                                                    "encoder's on the training frames; lower is closer"),
    "perceptual": ("perceptual loss", ""),
    "train_psnr_mapper": ("training PSNR (sliders)", "training frames redrawn from their tracked controls"),
    "train_psnr_encoder": ("training PSNR (encoder)", "training frames redrawn from the encoder's codes"),
    "heldout_psnr_before_mapper_fit": ("held-out PSNR before the mapper fit", ""),
    "skipped_steps": ("skipped steps", "training steps whose loss was not a number (the weights were kept)"),
    # flame
    "error_px_mean": ("fit error (mean)", "distance between the fitted and the tracked face landmarks"),
    "error_px_p95": ("fit error (95 % of frames under)", ""),
    "error_pct_mean": ("fit error, share of face size (mean)", ""),
    "error_pct_p95": ("fit error, share of face size (95 % of frames under)", ""),
    "worst_row": ("worst-fitted frame", ""),
    "n_expression": ("FLAME expression controls", ""),
    "named_map_r2_jaw": ("named → FLAME jaw fit (R²)", "how much of the FLAME jaw the named expressions explain "
                                                        "(1 = all)"),
    "rest_frames": ("rest-face frames", "frames with a neutral face, the zero of the expression controls"),
    "rest_jaw": ("rest-face jaw", ""),
    # every training stage (the loop)
    "cut_short": ("cut short by the time cap", ""),
    "lr_rule": ("learning rate", ""),
}
"""Summary keys whose name alone is cryptic: a label in the user's words and what the figure means."""

SUMMARY_UNITS = {"rotation": "°", "turn": "°", "yaw_range": "°", "pitch_range": "°", "roll_range": "°", "yaw_span": "°",
                 "estimator_yaw_mae": "°", "crop_size": "px", "resolution": "px", "error_px_mean": "px",
                 "error_px_p95": "px", "error_pct_mean": "%", "error_pct_p95": "%", "fps": "fps"}
"""Units of figures whose name does not say (a PSNR is in dB: `right_axis_unit`)."""

_WORDS = {"psnr": "PSNR", "ssim": "SSIM", "mae": "MAE", "mse": "MSE", "l1": "L1", "l2": "L2", "pti": "PTI",
          "lpips": "LPIPS", "wplus": "W+", "w+": "W+", "flame": "FLAME", "nerf": "NeRF", "r2": "R²",
          "heldout": "held-out", "expr": "expression", "corr": "correlation", "interp": "interpolation",
          "lr": "learning rate", "min": "lowest", "minutes": "time", "px": "px", "pct": "%", "p95": "95th percentile"}
"""Words of a summary key without a label: abbreviations as they are written (PSNR, L2, W+)."""


def summary_label(key: str) -> str:
    """A summary key in the user's words: its label, else its words with abbreviations written out."""
    if key in SUMMARY_LABELS:
        return SUMMARY_LABELS[key][0]
    return " ".join(_WORDS.get(w.lower(), w) for w in str(key).split("_") if w)


_MINUTES = ("minutes", "train_minutes", "invert_min", "tune_min")
"""Summary keys in minutes (PTI's `pivot_psnr_min` is a lowest PSNR, not a time)."""


def _is_minutes(key: str) -> bool:
    return key in _MINUTES or key.endswith("_minutes")


def _summary_value(v, key: str = "") -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, float)) and _is_minutes(key):
        return fmt_duration(float(v) * 60)                  # 13.18 minutes → 13:11, as the dashboard's time
    if isinstance(v, (int, float)) and key.endswith("_s"):
        return f"{v:.4g} s" if v < 60 else fmt_duration(float(v))
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, dict):           # e.g. the NeRF's final losses: each figure as short as the others
        return ", ".join(f"{summary_label(str(a))} {_summary_value(b, str(a))}" for a, b in v.items()) or "none"
    if isinstance(v, (list, tuple)):
        items = [_summary_value(x) for x in v]
        return " … ".join(items) if len(items) == 2 else ", ".join(items)
    return html.escape(SUMMARY_WORDS.get(str(v), str(v)))


def _unit(key: str, v) -> str:
    if isinstance(v, bool) or _is_minutes(key) or key.endswith("_s"):
        return ""
    u = SUMMARY_UNITS.get(key)
    if u is None and (isinstance(v, (int, float)) or (isinstance(v, (list, tuple)) and v
                                                      and all(isinstance(x, (int, float)) for x in v))):
        u = right_axis_unit(key)
    if u is None or not isinstance(v, (int, float, list, tuple)):
        return ""
    return u if u in ("°", "%") else f" {u}"


def _summary_items(summary: dict) -> list[tuple[str, str, str]]:
    """(key, label, value with its unit) of each figure, in the summary's order: "steps" and "of_steps" as one
    ("2400 of 2400"), a held-out measure before and after a stage as one ("20.88 → 21.02 dB")."""
    summary = dict(summary or {})
    out: list[tuple[str, str, str]] = []
    done: set[str] = set()
    for k, v in summary.items():
        if k in done:
            continue
        shown = f"{_summary_value(v, k)}{_unit(k, v)}"
        if k == "steps" and "of_steps" in summary:
            shown = f"{_summary_value(v, k)} of {_summary_value(summary['of_steps'], 'of_steps')}"
            done.add("of_steps")
            out.append((k, "steps", shown))
            continue
        if k == "of_steps":
            out.append((k, "steps planned", shown))
            continue
        if k == "cut_short" and isinstance(v, dict) and {"part", "step", "total", "minutes"} <= set(v):
            out.append((k, summary_label(k), html.escape(f"{v['part']} at step {v['step']} of {v['total']} "
                                                         f"({_summary_value(v['minutes'])}-minute cap)")))
            continue
        for a, b in (("_before", "_after"), ("_after", "_before")):
            other = k[: -len(a)] + b if k.endswith(a) else None
            if other in summary and other not in done:
                base = k[: -len(a)]
                before, after = (k, other) if a == "_before" else (other, k)
                done.add(other)
                shown = (f"{_summary_value(summary[before], before)} → {_summary_value(summary[after], after)}"
                         f"{_unit(base, summary[after])}")
                out.append((base, f"{summary_label(base)} before → after", shown))
                break
        else:
            out.append((k, summary_label(k), shown))
    return out


def format_summary(summary: dict) -> str:
    """The summary's figures in the user's words, with their units (a PSNR is in dB, minutes read m:ss)."""
    def item(label: str, shown: str) -> str:
        if len(label) + len(shown) > 64:      # a sentence (the learning-rate rule) wraps
            return f"{html.escape(label, quote=False)}: <b>{shown}</b>"
        # a short figure never breaks across lines ("22.63 / dB", "held- / out"): no-break spaces and hyphens
        label = html.escape(label, quote=False).replace("-", "\u2011")
        return f"{label}: <b>{shown}</b>".replace(" ", "&nbsp;")

    return " &nbsp;·&nbsp; ".join(item(label, shown) for _k, label, shown in _summary_items(summary))


def summary_tooltip(summary: dict) -> str:
    """What the summary's less obvious figures mean, one line each (the summary line's tooltip)."""
    lines = []
    for k, label, _shown in _summary_items(summary):
        tip = SUMMARY_LABELS.get(k, ("", ""))[1]
        if tip:
            lines.append(f"<b>{html.escape(label, quote=False)}</b>: {html.escape(tip, quote=False)}")
    return "<br>".join(lines)


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
        from ..pipeline import stage_config
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
        self.summary.setToolTip(summary_tooltip(res.get("summary") or {}) if st in ("done", "stale") else "")
        self.summary.setVisible(bool(summ))
        busy = running is not None
        self.run_btn.setEnabled(not busy)
        self.run_btn.setText("Run again" if st == "done" else ("Resume" if st in ("cancelled", "interrupted") else "Run"))
        self.reset_btn.setEnabled(not busy)
        if self.stage in self.forms:
            self.forms[self.stage].set_editable(not busy)
