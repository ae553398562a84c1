"""The contact sheets of `avatar-studio eval`: rows of images with labels, captions and a header.

`_sheet` stacks rows of renders into one picture (``heldout.png``, ``sweeps.png``, ``multiview.png``,
``edits.png``), `_fit_lines` wraps a label to a width without dropping a character, `_put_text` writes
outlined text (the Hershey font has no "°"), `_write_png` saves a sheet, `_engine_title` names an engine
as the app does.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..atomic import write_bytes

SHEET_FONT = 0.4
"""Font scale of the sheets' labels and captions (cv2 Hershey simplex)."""


def _text_width(text: str, scale: float = SHEET_FONT) -> int:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0][0]


def _fit_lines(text: str, width: int, scale: float = SHEET_FONT) -> list[str]:
    """`text` broken at spaces (and underscores, shown as spaces) into lines each at most `width` px wide;
    a single word too wide for a line is split between characters. Nothing is dropped."""
    words = text.replace("_", " ").split()
    lines: list[str] = []
    for w in words:
        if lines and _text_width(lines[-1] + " " + w, scale) <= width:
            lines[-1] += " " + w
            continue
        while _text_width(w, scale) > width and len(w) > 1:
            k = max(1, max(i for i in range(1, len(w) + 1) if _text_width(w[:i], scale) <= width or i == 1))
            lines.append(w[:k])
            w = w[k:]
        lines.append(w)
    return lines


def _sheet(rows: list[np.ndarray], cell: int = 128, labels: list[str] | None = None,
           captions: list[list[str] | None] | None = None, header: list[str] | None = None,
           corner: str = "") -> np.ndarray:
    """Stack rows of images (each (n, S, S, 3) uint8) into one RGB sheet with cells of `cell` px.

    `labels`: one name per row, written in a left margin (84 px, wider for a longer word; a long name
    wraps onto several lines, never cut); `captions`: per row None or one short text per cell, written
    into the cell's bottom-left corner; `header`: one text per column, in a strip above the first row
    (`corner`: the strip's text over the labels).
    """
    width = max(len(r) for r in rows)
    margin = 0
    if labels:
        widest_word = max((_text_width(w) for t in labels for w in t.replace("_", " ").split()), default=0)
        margin = max(84, min(widest_word + 10, 2 * cell))
    lines = []
    if header:
        strip = np.zeros((18, margin + width * cell, 3), np.uint8)
        if corner and margin:
            _put_text(strip, _fit_lines(corner, margin - 6)[0], (4, 13))
        for k, text in enumerate(header[:width]):
            if text:
                _put_text(strip, _fit_lines(text, cell - 6)[0], (margin + k * cell + 3, 13))
        lines.append(strip)
    for k, r in enumerate(rows):
        cells = [cv2.resize(im, (cell, cell), interpolation=cv2.INTER_AREA) for im in r]
        cap = captions[k] if captions and k < len(captions) else None
        if cap:
            for im, text in zip(cells, cap):
                if text:
                    _put_text(im, text, (3, cell - 5))
        cells += [np.zeros((cell, cell, 3), np.uint8)] * (width - len(cells))
        line = np.concatenate(cells, 1)
        if labels:
            left = np.zeros((cell, margin, 3), np.uint8)
            text = _fit_lines(labels[k] if k < len(labels) else "", margin - 6)
            y = cell // 2 + 4 - 7 * (len(text) - 1)
            for t in text:
                _put_text(left, t, (4, y))
                y += 14
            line = np.concatenate([left, line], 1)
        lines.append(line)
    return np.concatenate(lines, 0)


def _engine_title(name: str) -> str:
    """The engine's short name as the app says it ("StyleGAN", "NeRF"), else `name`."""
    from ..engines import ENGINES

    spec = ENGINES.get(name)
    return spec.short if spec is not None else name


def _put_text(img: np.ndarray, text: str, org: tuple[int, int]) -> None:
    """White text with a dark outline, in place (the Hershey font has no "°": drawn as " deg")."""
    text = text.replace("°", " deg")
    for colour, thick in (((0, 0, 0), 3), ((255, 255, 255), 1)):
        cv2.putText(img, text, org, cv2.FONT_HERSHEY_SIMPLEX, SHEET_FONT, colour, thick, cv2.LINE_AA)


def _write_png(path, rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if ok:
        write_bytes(path, buf.tobytes())
