"""Small dialogs: errors (message + hint + details), the project folder gone, new project."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QComboBox, QDialog, QDialogButtonBox, QFileDialog, QFormLayout, QHBoxLayout, QLabel,
                               QLineEdit, QMessageBox, QPushButton, QVBoxLayout, QWidget)

from .theme import icon
from .workers import Failure

VIDEO_EXTENSIONS = (".mp4", ".mov", ".m4v", ".avi", ".mkv", ".webm", ".mts", ".m2ts", ".ts", ".mpg", ".mpeg", ".3gp")
"""What the file choosers show and a drop or "Open with" takes as a video: phones' MP4 / MOV / 3GP, editors' and
browsers' MKV / WebM / AVI, camcorders' AVCHD (.mts, .m2ts; interlaced ones are deinterlaced), TV and DVD
recordings (.ts, .mpg)."""


def sentence(text: str) -> str:
    """`text` as a sentence: a capital first letter and a full stop. A leading file name keeps its case
    ("notes.mp4 is not a video", not "Notes.mp4 …"): only a plain word is capitalised."""
    first = text.split(" ", 1)[0].rstrip(",:;")
    if first.replace("'", "").replace("-", "").isalpha():
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _warning_box(parent: QWidget | None, title: str, text: str, informative: str = "", details: str = "") -> QMessageBox:
    """A window-modal warning that deletes itself when closed; the caller adds its buttons and opens it."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Warning)
    box.setWindowTitle(title)
    box.setText(text)
    if informative:
        box.setInformativeText(informative)
    if details:
        box.setDetailedText(details)
    box.setWindowModality(Qt.WindowModal)
    box.setAttribute(Qt.WA_DeleteOnClose)
    return box


def error_box(parent: QWidget | None, title: str, failure: Failure) -> QMessageBox:
    """A non-blocking error dialog; returns it (already shown) so callers and tests can inspect it."""
    box = _warning_box(parent, title, sentence(failure.message), sentence(failure.hint) if failure.hint else "",
                       failure.details)
    box.setStandardButtons(QMessageBox.Ok)
    box.open()
    return box


def remove_new_project_box(parent: QWidget | None, title: str, failure: Failure, root: Path) -> QMessageBox:
    """A non-blocking error dialog for a project in which nothing could be trained from its video (its tracking
    failed: no face, too short, unreadable): the failure, and the offer to remove the project folder, as
    `avatar-studio new` removes it itself. Its buttons: `remove_button`, `keep_button` (the default); returned
    shown."""
    hint = sentence(failure.hint) + " " if failure.hint else ""
    box = _warning_box(parent, title, sentence(failure.message),
                       f"{hint}Nothing has been trained in this project yet. Remove its folder ({root}) and make a "
                       "new project from another video (New), or keep it (its stages' settings can still be "
                       "changed and run again).", failure.details)
    box.remove_button = box.addButton("Remove the project", QMessageBox.DestructiveRole)
    box.keep_button = box.addButton("Keep it", QMessageBox.RejectRole)
    box.setDefaultButton(box.keep_button)
    box.open()
    return box


def project_gone_box(parent: QWidget | None, root: Path, video: str | None = None) -> QMessageBox:
    """A non-blocking dialog: the open project's folder was deleted, moved or renamed. Its buttons:
    `close_button` (close the project) and `keep_button` (leave the window as it is); returned shown."""
    again = f" from the video ({Path(video).name})" if video else " from the video"
    box = _warning_box(parent, "The project folder is gone",
                       f"The project folder {root} is gone: it was deleted, moved or renamed while it was open here.",
                       "Nothing can be run, shown or saved in it any more. If you moved or renamed it, close this "
                       "project and open the folder from its new place (Open). If it was deleted, make a new "
                       f"project{again} (New) and run the stages again.")
    box.close_button = box.addButton("Close project", QMessageBox.AcceptRole)
    box.keep_button = box.addButton("Keep the window", QMessageBox.RejectRole)
    box.setDefaultButton(box.close_button)
    box.open()
    return box


class PathField(QWidget):
    """A line edit with a Browse… button."""

    def __init__(self, placeholder: str, pick, parent: QWidget | None = None):
        super().__init__(parent)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(placeholder)
        self.button = QPushButton(icon("folder"), "Browse…")
        self.button.clicked.connect(lambda: pick(self))
        lay.addWidget(self.edit, 1)
        lay.addWidget(self.button)

    def text(self) -> str:
        return self.edit.text().strip()

    def setText(self, t: str) -> None:  # noqa: N802 (Qt style)
        self.edit.setText(t)


class NewProjectDialog(QDialog):
    """Video + folder + name + preset. `accepted_values()` gives what to create."""

    def __init__(self, parent: QWidget | None = None, video: str = "", folder: str = ""):
        super().__init__(parent)
        self.setWindowTitle("New avatar project")
        self.setMinimumWidth(720)
        lay = QVBoxLayout(self)
        lay.setSpacing(12)
        intro = QLabel("Pick a video of one person's head: a phone clip of 10–60 seconds, turning the head "
                       "and making faces, works best. The project keeps a link to the video, not a copy.")
        intro.setWordWrap(True)
        intro.setObjectName("Dim")
        lay.addWidget(intro)
        form = QFormLayout()
        form.setHorizontalSpacing(14)
        form.setVerticalSpacing(10)
        self.video = PathField("a video file (.mp4, .mov, …)", self._pick_video)
        self.folder = PathField("where the project folder goes", self._pick_folder)
        self.name = QLineEdit()
        self.name.setPlaceholderText("project name")
        self.preset = QComboBox()
        self.preset.addItem("Preview — fast, for a CPU", "preview")
        self.preset.addItem("Quality — slower, for a GPU", "quality")
        form.addRow("Video", self.video)
        form.addRow("Folder", self.folder)
        form.addRow("Name", self.name)
        form.addRow("Preset", self.preset)
        lay.addLayout(form)
        self.problem = QLabel("")
        self.problem.setObjectName("Warning")
        self.problem.setWordWrap(True)
        self.problem.hide()
        lay.addWidget(self.problem)
        self.buttons = QDialogButtonBox(QDialogButtonBox.Cancel)
        self.create_btn = self.buttons.addButton("Create project", QDialogButtonBox.AcceptRole)
        self.create_btn.setObjectName("Primary")
        self.buttons.accepted.connect(self._try_accept)
        self.buttons.rejected.connect(self.reject)
        lay.addWidget(self.buttons)
        self.video.edit.textChanged.connect(self._video_changed)
        self.folder.setText(folder or str(Path.home() / "AvatarStudio"))
        if video:
            self.video.setText(video)

    def _pick_video(self, field: PathField) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a video", field.text(),
                                              "Videos (" + " ".join(f"*{e}" for e in VIDEO_EXTENSIONS) + ")")
        if path:
            field.setText(path)

    def _pick_folder(self, field: PathField) -> None:
        path = QFileDialog.getExistingDirectory(self, "Where to put the project", field.text())
        if path:
            field.setText(path)

    def _video_changed(self, text: str) -> None:
        stem = Path(text.strip()).stem
        if stem and (not self.name.text() or self.name.property("auto")):
            self.name.setText(stem)
            self.name.setProperty("auto", True)

    def values(self) -> dict:
        return {"video": self.video.text(), "root": str(Path(self.folder.text()).expanduser() / self.name.text().strip()),
                "preset": self.preset.currentData()}

    def validate(self) -> str:
        """What stops the project being made, in words ("" when nothing). The video is read as `avatar-studio
        new` reads it (`studio.video.probe`, its header only), so a file that is not a video, or a clip cut off
        in the copy, is refused here, before a project folder is made for it."""
        from ..errors import StudioError
        from ..video import probe

        v = self.values()
        if not self.video.text():
            return "Choose a video file."
        if not Path(v["video"]).is_file():
            return f"There is no video at {v['video']}."
        if not self.name.text().strip():
            return "Give the project a name."
        if not self.folder.text():
            return "Choose a folder for the project."
        root = Path(v["root"])
        if root.exists() and not root.is_dir():
            return f"{root} is a file, not a folder: give the project another name."
        if root.is_dir() and any(root.iterdir()):
            return f"{root} already exists and is not empty: choose another name."
        above = root.parent
        while not above.exists() and above != above.parent:
            above = above.parent
        if not above.is_dir():
            return f"{above} is a file, not a folder: choose another folder for the project."
        try:
            probe(v["video"])
        except StudioError as exc:
            return sentence(exc.message) + (" " + sentence(exc.hint) if exc.hint else "")
        return ""

    def _try_accept(self) -> None:
        problem = self.validate()
        self.problem.setText(problem)
        self.problem.setVisible(bool(problem))
        if problem:  # grow to fit the message (three lines for a clip cut off), or the fields were squeezed
            need = self.layout().totalHeightForWidth(self.width())
            if need > self.height():
                self.resize(self.width(), need)
        if not problem:
            self.accept()
