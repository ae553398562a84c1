"""Pictures a person can look at: the tracking contact sheet and pose/expression curves."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .atomic import write_with


def _save_png(path: Path, rgb: np.ndarray) -> None:
    def w(tmp):
        if not cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not encode {path.name}")

    write_with(path, w)


def save_png(path: str | Path, rgb: np.ndarray) -> None:
    """Write an RGB uint8 image as PNG atomically."""
    _save_png(Path(path), np.ascontiguousarray(rgb))


def label(img: np.ndarray, lines: list[str], scale: float = 0.38) -> np.ndarray:
    out = img.copy()
    y = 12
    for line in lines:
        cv2.putText(out, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(out, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        y += int(30 * scale) + 2
    return out


def grid(images: list[np.ndarray], cols: int, pad: int = 2, bg: int = 24) -> np.ndarray:
    if not images:
        return np.full((32, 32, 3), bg, np.uint8)
    h, w = images[0].shape[:2]
    rows = (len(images) + cols - 1) // cols
    out = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), bg, np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        out[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = im
    return out


def contact_sheet(tracking, path: Path, count: int = 24, thumb: int = 176) -> Path:
    rows = np.flatnonzero(tracking.valid)
    pick = rows[np.linspace(0, len(rows) - 1, min(count, len(rows))).astype(int)]
    names = tracking.expression_names
    ji = names.index("jaw_open")
    si = names.index("smile_left")
    bi = names.index("blink_left")
    tiles = []
    for r in pick:
        im = cv2.resize(tracking.crop(int(r)), (thumb, thumb), interpolation=cv2.INTER_AREA)
        y, p, ro = tracking.pose[r]
        e = tracking.expr[r]
        tiles.append(label(im, [f"#{r}  {tracking.time[r]:.1f}s", f"yaw {y:+.0f} pitch {p:+.0f} roll {ro:+.0f}",
                                f"jaw {e[ji]:.2f} smile {e[si]:.2f}", f"blink {e[bi]:.2f}"], scale=0.36))
    sheet = grid(tiles, cols=6)
    save_png(path, sheet)
    return path


def damage_notes(meta: dict) -> list[str]:
    """The damaged-media notes of a tracking run (ingest's and the decoder's), for the report."""
    damage = meta.get("damage") or {}
    return [f"DAMAGED VIDEO: {n}" for n in (damage.get("ingest") or []) + (damage.get("decode") or [])]


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width))


def _figure(w: float, h: float):
    """A matplotlib figure drawn with Agg, without pyplot (no global state, safe on any thread)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h))
    FigureCanvasAgg(fig)
    return fig


def curves_plot(tracking, path: Path, pivots: np.ndarray | None = None) -> Path:
    t = tracking.time
    v = tracking.valid
    names = tracking.expression_names
    fig = _figure(10, 6.5)
    axes = fig.subplots(3, 1, sharex=True)
    series = [("yaw (°)", tracking.pose[:, 0]), ("pitch (°)", tracking.pose[:, 1]),
              ("jaw open", tracking.expr[:, names.index("jaw_open")])]
    _, held = tracking.split()
    damage = tracking.meta.get("damage") or {}
    lost = damage.get("lost") or []
    for ax, (name, y) in zip(axes, series):
        yy = np.where(v, y, np.nan)
        ax.plot(t, yy, lw=1.2, color="#3a7bd5")
        if len(held):
            ax.axvspan(t[held[0]], t[-1], color="#999999", alpha=0.15, lw=0)
        for a, b in lost:
            ax.axvspan(a, b, color="#d62728", alpha=0.25, lw=0)
        if pivots is not None and len(pivots):
            ax.plot(t[pivots], yy[pivots], "o", ms=3.5, color="#e4572e")
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("time (s)  — shaded: held-out frames" + ("; red: damaged video, not used" if lost
                                                                 else "") + ("; dots: pivots" if pivots is not None else ""))
    s = tracking.meta.get("summary", {})
    title = (f"Tracking: {s.get('tracked', v.sum())}/{s.get('frames', len(v))} frames, yaw "
             f"{s.get('yaw_range')}°, pitch {s.get('pitch_range')}°")
    notes = damage_notes(tracking.meta)
    if notes:
        title += "\n" + "\n".join(_wrap(n, 150) for n in notes[:3])
    fig.suptitle(title, fontsize=10 if not notes else 8, color="black" if not notes else "#a01010")
    lines = title.count("\n") + 1  # fixed margins: tight_layout cost more than the drawing
    fig.subplots_adjust(left=0.085, right=0.98, bottom=0.08, top=1.0 - (0.045 + 0.022 * lines), hspace=0.12)
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    return path


def pose_scatter(tracking, path: Path, pivots: np.ndarray | None = None) -> Path:
    train, held = tracking.split()
    fig = _figure(5, 4.5)
    ax = fig.subplots()
    ax.scatter(tracking.pose[train, 0], tracking.pose[train, 1], s=6, c="#3a7bd5", label="training frames")
    ax.scatter(tracking.pose[held, 0], tracking.pose[held, 1], s=6, c="#aaaaaa", label="held-out frames")
    if pivots is not None and len(pivots):
        ax.scatter(tracking.pose[pivots, 0], tracking.pose[pivots, 1], s=28, c="#e4572e", marker="x", label="pivots")
    ax.set_xlabel("yaw (°)")
    ax.set_ylabel("pitch (°)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.12, top=0.97)
    write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    return path


def tracking_report(tracking, out_dir: Path) -> dict[str, Path]:
    return {"contact_sheet": contact_sheet(tracking, out_dir / "contact_sheet.png"),
            "curves": curves_plot(tracking, out_dir / "curves.png"),
            "pose_scatter": pose_scatter(tracking, out_dir / "pose_scatter.png")}
