"""Work around a PySide6 refcount bug on Python < 3.12: calls return None/True without a reference.

Seen with PySide6 6.12 on Python 3.11: every void method call from Python (`label.setText`,
`bar.setValue`, pyqtgraph's painting…) takes one reference from `None`, and every
`Signal.emit()` one from `True`. After some thousands of calls the interpreter aborts with
"Fatal Python error: none_dealloc" (or bool_dealloc). Python 3.12 made these singletons
immortal, which is what the wheel relies on. Importing this module checks for the bug once
and, only when present, gives None/True/False a reference count no program can use up —
the same thing 3.12 does. Imported by every Qt module of the GUI.
"""
from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_RESERVE = 1 << 40
"""References added to each singleton: ~10^12 calls before the count could run out."""


class _Probe(QObject):
    sig = Signal()


def _leaks() -> bool:
    p = _Probe()
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(50):
        p.setObjectName("probe")  # a void method: returns None
        p.sig.emit()              # returns True
    return sys.getrefcount(None) < none_before - 25 or sys.getrefcount(True) < true_before - 25


def _patch() -> bool:
    if sys.version_info >= (3, 12) or not _leaks():
        return False
    for obj in (None, True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _RESERVE  # ob_refcnt is the first field
    return True


PATCHED = _patch()
