"""The "Models" dialog: optional weight files, what each unlocks, whether it is present, missing or
changed since it was added; add a file (format-checked and hashed), add a whole folder, remove."""
from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt, QUrl
from PySide6.QtGui import QColor, QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from .dialogs import error_box
from ..model_files import KNOWN, ModelEntry, ModelFiles
from .theme import COLORS, icon
from .workers import Failure, run_job

STATE_COLOR = {"present": "good", "default": "good", "not-configured": "dim", "changed": "warn", "gone": "bad",
               "invalid": "bad"}
STATE_ICON = {"present": "status-done", "default": "status-done", "not-configured": "status-pending",
              "changed": "status-stale", "gone": "status-failed", "invalid": "status-failed"}


class ModelsDialog(QDialog):
    """Lists `model_files.KNOWN`; hashing and validation run in a background job."""

    def __init__(self, parent: QWidget | None = None, files: ModelFiles | None = None):
        super().__init__(parent)
        self.setWindowTitle("Models — optional weight files")
        self.resize(920, 480)
        self.files = files or ModelFiles()
        self.entries: list[ModelEntry] = []
        self.busy = False
        lay = QVBoxLayout(self)
        lay.setSpacing(10)
        intro = QLabel("Avatar Studio works without any of these files. Each one you add unlocks a feature or "
                       "better quality. A file is checked (it must really be what it claims to be) before it is "
                       "accepted; it stays where it is, and its path, size and sha256 are remembered "
                       f"(in {self.files.file}), so a file that changes or disappears later is shown here.")
        intro.setWordWrap(True)
        intro.setObjectName("Dim")
        lay.addWidget(intro)
        self.table = QTableWidget(len(KNOWN), 4)
        self.table.setHorizontalHeaderLabels(["File", "Status", "sha256", "Path"])
        self.table.verticalHeader().hide()
        self.table.setSelectionBehavior(QAbstractItemView.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.NoEditTriggers)
        hh = self.table.horizontalHeader()
        hh.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(1, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        hh.setSectionResizeMode(3, QHeaderView.Stretch)
        for i, spec in enumerate(KNOWN):
            self.table.setItem(i, 0, QTableWidgetItem(spec.title))
            for c in (1, 2, 3):
                self.table.setItem(i, c, QTableWidgetItem("…"))
        self.table.itemSelectionChanged.connect(self._selected)
        lay.addWidget(self.table, 1)
        self.about = QLabel("")
        self.about.setWordWrap(True)
        self.about.setTextFormat(Qt.RichText)
        self.about.setMinimumHeight(64)
        lay.addWidget(self.about)
        self.message = QLabel("")
        self.message.setWordWrap(True)
        self.message.setObjectName("Dim")
        lay.addWidget(self.message)
        row = QHBoxLayout()
        self.add_btn = QPushButton(icon("open"), "Add / change file…")
        self.add_btn.setObjectName("Primary")
        self.add_folder_btn = QPushButton(icon("folder"), "Add folder…")
        self.add_folder_btn.setToolTip("Import every recognised weight file in a folder (e.g. copied from another "
                                       "machine)")
        self.remove_btn = QPushButton("Remove")
        self.copy_btn = QPushButton("Copy sha256")
        self.folder_btn = QPushButton(icon("folder"), "Open settings folder")
        self.close_btn = QPushButton("Close")
        self.add_btn.clicked.connect(self.add_clicked)
        self.add_folder_btn.clicked.connect(lambda: self.add_folder_clicked())
        self.remove_btn.clicked.connect(self.remove_clicked)
        self.copy_btn.clicked.connect(self.copy_clicked)
        self.folder_btn.clicked.connect(self.open_folder)
        self.close_btn.clicked.connect(self.accept)
        for b in (self.add_btn, self.add_folder_btn, self.remove_btn, self.copy_btn, self.folder_btn):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.close_btn)
        lay.addLayout(row)
        self.table.selectRow(0)
        self.refresh()

    # ------------------------------------------------------------------ data
    def refresh(self) -> None:
        self._set_busy(True)
        run_job(self.files.entries, self._show, self._failed)

    def _set_busy(self, on: bool) -> None:
        self.busy = on
        for b in (self.add_btn, self.add_folder_btn, self.remove_btn, self.copy_btn):
            b.setEnabled(not on)

    def _show(self, entries: list[ModelEntry]) -> None:
        self.entries = entries
        for i, e in enumerate(entries):
            status = QTableWidgetItem(e.status)
            status.setForeground(QColor(COLORS[STATE_COLOR[e.state]]))
            status.setIcon(icon(STATE_ICON[e.state]))
            status.setToolTip(e.problem if not e.ok else e.record.get("format", ""))
            self.table.setItem(i, 1, status)
            sha = QTableWidgetItem(e.sha256[:16] + "…" if e.sha256 else "–")
            sha.setToolTip(e.sha256)
            self.table.setItem(i, 2, sha)
            self.table.setItem(i, 3, QTableWidgetItem(str(e.path) if e.path else "–"))
        self._set_busy(False)
        self._selected()

    def _failed(self, f: Failure) -> None:
        self._set_busy(False)
        self.message.setText("")
        self.refresh_error = error_box(self, "Models", f)

    def current(self) -> ModelEntry | None:
        r = self.table.currentRow()
        return self.entries[r] if 0 <= r < len(self.entries) else None

    def _selected(self) -> None:
        e = self.current()
        if e is None:
            return
        s = e.spec
        state = "<span style='color:%s'>%s</span>" % (COLORS[STATE_COLOR[e.state]], escape(e.status))
        problem = f"<br><span style='color:{COLORS['warn']}'>{escape(e.problem)}</span>" \
            if e.state in ("changed", "gone") else ""
        fmt = f" ({escape(e.record['format'])})" if e.ok and e.record.get("format") else ""
        unlocks = escape(s.purpose)
        self.about.setText(f"<b>{escape(s.title)}</b> — {state}{fmt}{problem}<br>Unlocks: {unlocks}<br>"
                           f"<span style='color:{COLORS['dim']}'>Where to get it: {s.how_to_get}. "
                           f"Accepted: {', '.join(s.extensions)}.</span>")
        self.remove_btn.setEnabled(not self.busy and e.source == "configured")
        self.copy_btn.setEnabled(not self.busy and bool(e.sha256))

    # ------------------------------------------------------------------ actions
    def add_clicked(self, path: str | None = None) -> None:
        e = self.current()
        if e is None:
            return
        if not path:
            pattern = " ".join(f"*{x}" for x in e.spec.extensions)
            path, _ = QFileDialog.getOpenFileName(self, f"Choose the {e.spec.title} file", "",
                                                  f"{e.spec.title} ({pattern});;All files (*)")
        if not path:
            return
        self.set_file(e.key, path)

    def set_file(self, key: str, path: str) -> None:
        self._set_busy(True)
        self.message.setText(f"Checking {path}…")
        run_job(lambda: self.files.set(key, path), self._file_added, self._failed)

    def _file_added(self, e: ModelEntry) -> None:
        self.message.setText(f"Added {e.spec.title}: {e.path.name} — {e.record.get('format', '')}")
        self.refresh()

    def add_folder_clicked(self, folder: str | None = None) -> None:
        if not folder:
            folder = QFileDialog.getExistingDirectory(self, "Choose a folder of weight files")
        if not folder:
            return
        self._set_busy(True)
        self.message.setText(f"Checking the files in {folder}…")
        run_job(lambda: self.files.add_folder(folder), self._folder_added, self._failed)

    def _folder_added(self, result) -> None:
        added, skipped = result
        lines = [f"Added {len(added)}: " + ", ".join(f"{e.spec.title} ({e.path.name})" for e in added)]
        if skipped:
            lines.append(f"Skipped {len(skipped)}: " + "; ".join(f"{p.name} — {why}" for p, why in skipped))
        self.message.setText("\n".join(lines))
        self.refresh()

    def remove_clicked(self) -> None:
        e = self.current()
        if e is not None and e.source == "configured":
            self.files.remove(e.key)
            self.refresh()

    def copy_clicked(self) -> None:
        e = self.current()
        if e is not None and e.sha256:
            QGuiApplication.clipboard().setText(e.sha256)

    def open_folder(self) -> None:
        self.files.folder.mkdir(parents=True, exist_ok=True)
        QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.files.folder)))
