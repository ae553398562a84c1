"""The directions job (see `studio.edits.jobs` for what every edit job shares): GANSpace directions of
an avatar, saved as edits.

**Directions** (GANSpace, `studio.edits.ganspace`): PCA of the avatar's own latents (for LatentAvatar
also the styles of its training frames), labelled pose / expression / appearance — by re-tracking
renders when the project's tracking can do it, else by the latent measure — saved as edits named
"component K", with a picture (top components × strengths × three poses) in the edits folder.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Generator

import numpy as np

from ..errors import InputError, ProjectError
from ..progress import Control, Progress
from .job_helpers import STAGE, ProgressFn, _open_avatar, _project, drive, model_key, resolve_engine
from .model import Edit, EditSet

DIRECTION_COMPONENTS = 8
"""Principal components saved as direction edits."""


# ----------------------------------------------------------------------------- directions
def _frame_latents(avatar, adapter, project, control: Control, max_frames: int = 400
                   ) -> Generator[Progress, None, "Any"]:
    """For LatentAvatar, the styles of its training frames (their encoded codes); None otherwise."""
    if not hasattr(adapter, "latents_for_codes") or not hasattr(avatar.engine, "encode_image"):
        return None
    from ..tracking.data import TrackingData

    try:
        tracking = TrackingData.from_project(project)
    except (ProjectError, OSError, ValueError, KeyError):
        return None
    rows, _ = tracking.split()
    if len(rows) > max_frames:
        rows = rows[np.linspace(0, len(rows) - 1, max_frames).astype(int)]
    codes = []
    for i in range(0, len(rows), 32):
        control.checkpoint()
        try:
            crops = tracking.crops(rows[i:i + 32], size=avatar.size)
        except FileNotFoundError:
            return None
        codes.append(avatar.engine.encode_image(crops))
        yield Progress(stage=STAGE, step=min(i + 32, len(rows)), total=len(rows), part="frames",
                       message="encoding the training frames")
    return adapter.latents_for_codes(np.concatenate(codes)) if codes else None


def _tracking_for_labels(project):
    """The project's tracking when it can re-track renders (a tracked project), else (None, why)."""
    from ..tracking.data import TrackingData

    try:
        tracking = TrackingData.from_project(project)
    except (ProjectError, OSError, ValueError, KeyError):
        return None, "the project has no tracking"
    if "expression_scaling" not in tracking.meta:
        return None, "the project's tracking has no expression scaling"
    return tracking, ""


def iter_directions(project, engine: str | None = None, *, components: int = DIRECTION_COMPONENTS,
                    picture_top: int = 5, relabel: bool = True, control: Control | None = None
                    ) -> Generator[Progress, None, tuple[list[Edit], Path]]:
    """Compute GANSpace directions and save them as edits (see the module docstring); yields `Progress`,
    returns (the direction edits, appearance first; the picture's path)."""
    from ..atomic import write_json
    from ..lock import project_lock
    from .adapters import adapter_for
    from .ganspace import components_picture, compute_components, direction_edit, label_by_tracking, save_picture

    project = _project(project)
    control = control or Control()
    engine = resolve_engine(project, engine)
    if components < 1:
        raise InputError(f"directions need at least one component, not {components}")
    t_start = time.perf_counter()
    times: dict[str, float] = {}
    with project_lock(project.root, f"edit: directions ({engine})"):
        yield Progress(stage=STAGE, step=0, total=1, part="load", message=f"loading the {engine} avatar")
        avatar = _open_avatar(project, engine)
        adapter = adapter_for(avatar.engine)
        t = time.perf_counter()
        extra = yield from _frame_latents(avatar, adapter, project, control)
        times["frames"] = time.perf_counter() - t
        control.checkpoint()
        t = time.perf_counter()
        yield Progress(stage=STAGE, step=0, total=1, part="pca", message="principal components of the avatar's latents")
        comps = compute_components(adapter, n_components=components, extra=extra)
        times["pca"] = time.perf_counter() - t
        yield Progress(stage=STAGE, step=1, total=1, part="pca", message=f"{len(comps.sigma)} components")
        label_note = "labels from the latent measure"
        tracking, why = _tracking_for_labels(project) if relabel else (None, "re-tracking was not asked for")
        if tracking is not None:
            control.checkpoint()
            t = time.perf_counter()
            yield Progress(stage=STAGE, step=0, total=1, part="label", message="re-tracking renders of each component")
            comps = label_by_tracking(adapter, comps, tracking)
            times["label"] = time.perf_counter() - t
            label_note = "labels from re-tracked renders"
            yield Progress(stage=STAGE, step=1, total=1, part="label", message=label_note)
        else:
            label_note += f" ({why})"
        control.checkpoint()
        t = time.perf_counter()
        yield Progress(stage=STAGE, step=0, total=1, part="picture", message="rendering the directions picture")
        edits = EditSet.for_project(project, engine)
        picture = edits.folder / "directions.png"
        edits.folder.mkdir(parents=True, exist_ok=True)
        save_picture(components_picture(adapter, comps, top=min(picture_top, len(comps.sigma))), picture)
        times["picture"] = time.perf_counter() - t
        control.checkpoint()
        # save: one edit per component; earlier direction edits that are not recomputed go
        key = model_key(project, engine)
        L = adapter.latent_shape[0]
        out: list[Edit] = []
        names = []
        for k in comps.order():
            name = f"component {k}"
            if name in edits and edits.get(name).kind != "direction":
                name = f"direction {k}"
            e = direction_edit(comps, k, L, name=name)
            e.summary.update(model=key, label_source="tracking" if tracking is not None else "latent",
                             **({"tracked": comps.tracked[k]} if comps.tracked else {}))
            out.append(edits.save(e))
            names.append(name)
        for old in [e.name for e in edits if e.kind == "direction" and e.name not in names]:
            edits.remove(old)
        times["total"] = time.perf_counter() - t_start
        write_json(edits.folder / "directions.json",
                   {"format": "avatar-studio/directions", "version": 1, "engine": engine, "model": key,
                    "samples": comps.n_samples, "labels": label_note, "picture": picture.name,
                    "seconds": {k: round(v, 2) for k, v in times.items()}, "components": comps.to_json(),
                    "edits": names})
        yield Progress(stage=STAGE, step=1, total=1, part="save",
                       message=f"saved {len(out)} directions in {times['total']:.1f} s; {label_note}")
    return out, picture


def compute_directions(project, engine: str | None = None, on_progress: ProgressFn | None = None,
                       control: Control | None = None, **options) -> tuple[list[Edit], Path]:
    """GANSpace directions of the avatar, saved as edits; returns (edits, picture path). See `iter_directions`."""
    return drive(iter_directions(project, engine, control=control, **options), on_progress)


def directions_info(project, engine: str) -> dict | None:
    """What the last `compute_directions` wrote (directions.json), or None."""
    path = EditSet.folder_for(project, engine) / "directions.json"
    try:
        return json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        return None
