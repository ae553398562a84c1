"""numpy images ↔ Qt images, cheaply. Safe to call from worker threads (QImage, not QPixmap)."""
from __future__ import annotations

import numpy as np
from . import _qtfix  # noqa: F401  (PySide6 emit refcount bug)
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QLabel, QSizePolicy


def to_qimage(img: np.ndarray) -> QImage:
    """(H, W, 3) or (H, W) uint8 → an owned QImage (a copy, so the array may be freed)."""
    a = np.asarray(img)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    a = np.ascontiguousarray(a)
    if a.ndim == 2:
        h, w = a.shape
        return QImage(a.data, w, h, w, QImage.Format_Grayscale8).copy()
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got shape {a.shape}")
    h, w, c = a.shape
    fmt = QImage.Format_RGB888 if c == 3 else QImage.Format_RGBA8888
    return QImage(a.data, w, h, w * c, fmt).copy()


def qimage_to_array(img: QImage) -> np.ndarray:
    """QImage → (H, W, 3) uint8 RGB copy (tests and screenshots)."""
    img = img.convertToFormat(QImage.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()


class ImageView(QLabel):
    """A label that shows a QImage scaled to fit, keeping its aspect ratio."""

    def __init__(self, placeholder: str = "", min_side: int = 160, parent=None):
        super().__init__(parent)
        self.setObjectName("ImageView")
        self.setAlignment(Qt.AlignCenter)
        self.setMinimumSize(min_side, min_side)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Expanding)
        self._image: QImage | None = None
        self._placeholder = placeholder
        self.setText(placeholder)
        self.setWordWrap(True)

    def set_image(self, img: QImage | None) -> None:
        self._image = img
        if img is None or img.isNull():
            self._image = None
            self.setPixmap(QPixmap())
            self.setText(self._placeholder)
            return
        self._rescale()

    def set_placeholder(self, text: str) -> None:
        self._placeholder = text
        if self._image is None:
            self.setText(text)

    def image(self) -> QImage | None:
        return self._image

    def _rescale(self) -> None:
        if self._image is None:
            return
        side = self.contentsRect().size()
        pm = QPixmap.fromImage(self._image)
        if side.width() > 4 and side.height() > 4:
            pm = pm.scaled(side, Qt.KeepAspectRatio, Qt.SmoothTransformation)
        self.setPixmap(pm)

    def resizeEvent(self, ev) -> None:  # noqa: N802 (Qt name)
        super().resizeEvent(ev)
        self._rescale()
