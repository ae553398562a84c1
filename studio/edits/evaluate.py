"""How well an edit works, over a sweep of 5 yaw values × 3 expressions (`adapter.sweep_controls`).

Per edit, edited vs unedited renders at the same controls:

- **CLIP score gain** for its prompt: cos(CLIP(edited), CLIP(prompt)) − cos(CLIP(unedited), …),
  mean and worst point (text edits, when a CLIP model is given);
- **identity**: ArcFace cosine between edited and unedited renders, mean and worst (when an
  ArcFace network is given);
- **changed outside**: the share of pixels outside the face/hair mask whose value moved by more
  than `change_threshold` (any channel, 0–255 scale), mean and worst point, plus the mean
  absolute change there.
"""
from __future__ import annotations

import numpy as np
import torch

from .model import ActiveEdits, Edit

CHANGE_THRESHOLD = 8.0
"""A pixel counts as changed when a channel moved by more than this (0–255 scale)."""


@torch.no_grad()
def evaluate_edit(adapter, edit: Edit, strength: float | None = None, clip=None, arcface=None,
                  yaws: int = 5, expressions: int = 3, change_threshold: float = CHANGE_THRESHOLD) -> dict:
    """Measurements of one edit (see the module docstring); plain JSON values."""
    from ..metrics import to_uint8

    s = edit.default_strength if strength is None else float(strength)
    controls = adapter.sweep_controls(yaws, expressions)
    c = torch.from_numpy(controls).to(adapter.device)
    base = adapter.latent(c)
    before = adapter.render(base, c)
    after = adapter.render(ActiveEdits([(edit.name, edit.offset, s)]).apply(base), c)
    row: dict = {"name": edit.name, "kind": edit.kind, "engine": adapter.engine_name, "strength": s,
                 "points": int(len(controls)), "yaws": yaws, "expressions": expressions}
    if clip is not None and edit.prompt:
        t = clip.encode_text([edit.prompt])
        gain = ((clip.encode_images(after) - clip.encode_images(before)) @ t.t())[:, 0].cpu().numpy()
        row.update(clip_gain_mean=float(gain.mean()), clip_gain_min=float(gain.min()),
                   clip_gain_positive=float((gain > 0).mean()), clip_gain=[round(float(g), 5) for g in gain])
    else:
        row.update(clip_gain_mean=None, clip_gain_min=None, clip_gain_positive=None)
    if arcface is not None:
        from models.arcface import face_region_from_aligned

        dev = next(arcface.parameters()).device
        ea = torch.nn.functional.normalize(arcface(face_region_from_aligned((after + 1) / 2).to(dev)), dim=-1)
        eb = torch.nn.functional.normalize(arcface(face_region_from_aligned((before + 1) / 2).to(dev)), dim=-1)
        ident = (ea * eb).sum(-1).cpu().numpy()
        row.update(identity_mean=float(ident.mean()), identity_min=float(ident.min()))
    else:
        row.update(identity_mean=None, identity_min=None)
    outside = (adapter.face_mask(base, c) < 0.5).cpu().numpy()[:, 0]            # (B, S, S)
    a8, b8 = to_uint8(after).astype(np.int16), to_uint8(before).astype(np.int16)
    moved = np.abs(a8 - b8).max(-1)                                              # (B, S, S)
    n_out = outside.reshape(len(moved), -1).sum(1).clip(min=1)
    share = ((moved > change_threshold) & outside).reshape(len(moved), -1).sum(1) / n_out
    row.update(changed_outside_mean=float(share.mean()), changed_outside_max=float(share.max()),
               abs_change_outside=float((moved * outside).sum() / n_out.sum()),
               changed_inside_mean=float((((moved > change_threshold) & ~outside).reshape(len(moved), -1).sum(1)
                                          / (~outside).reshape(len(moved), -1).sum(1).clip(min=1)).mean()))
    return row


def evaluate_edits(adapter, edits, clip=None, arcface=None, strengths: dict[str, float] | None = None,
                   on_edit=None) -> list[dict]:
    """`evaluate_edit` for each edit of an `EditSet` (or list); `on_edit(i, n, name)` reports progress."""
    edits = list(edits)
    rows = []
    for i, e in enumerate(edits):
        if on_edit is not None:
            on_edit(i, len(edits), e.name)
        rows.append(evaluate_edit(adapter, e, (strengths or {}).get(e.name), clip, arcface))
    return rows


def format_rows(rows: list[dict]) -> str:
    """A plain-text table of `evaluate_edits` rows."""
    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    head = (f"{'edit':<24} {'strength':>8} {'CLIP gain mean/min':>20} {'gain>0':>7} {'identity mean/min':>18} "
            f"{'changed outside':>16}")
    lines = [head, "-" * len(head)]
    for r in rows:
        pos = r.get("clip_gain_positive")
        pos = "—" if pos is None else f"{round(pos * r['points'])}/{r['points']}"
        lines.append(f"{r['name'][:24]:<24} {r['strength']:>8.2f} "
                     f"{f(r['clip_gain_mean'], '+.4f') + ' / ' + f(r['clip_gain_min'], '+.4f'):>20} "
                     f"{pos:>7} "
                     f"{f(r['identity_mean'], '.3f') + ' / ' + f(r['identity_min'], '.3f'):>18} "
                     f"{100 * r['changed_outside_mean']:>15.1f}%")
    return "\n".join(lines)


def write_report(project, engine: str, rows: list[dict], **extra) -> "object":
    """Write ``eval/<engine>/edits.json`` atomically (`extra`: plain values beside the rows); returns its path."""
    from pathlib import Path

    from ..atomic import write_json

    root = project.root if hasattr(project, "root") else Path(project)
    path = Path(root) / "eval" / engine / "edits.json"
    write_json(path, {"format": "avatar-studio/edit-eval", "version": 1, "engine": engine, **extra, "edits": rows})
    return path
