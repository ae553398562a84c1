"""Learned transfer: the actor's expressions through the Y-shaped network, as a `Motion`.

Head pose is the actor's tracked pose normalised to the avatar's range (pose is not
person-specific; the same as parameter transfer, `studio.motion.driver_motion`). The expression
comes from the actor's face: E_shared reads γ from each aligned crop, and a mapping MLP turns γ
into the avatar's own controls:

- the NeRF engine gets its person-specific code θ directly (`LearnedMotion.codes`); the motion
  wraps the avatar for export so those codes are rendered (`bind_avatar`);
- any other engine (the StyleGAN engine) gets expression controls, in the avatar's slider units,
  in the motion's control columns.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..motion import Motion
from .actors import TrainedDriver, actor_state, read_meta

TRANSFERS = ("auto", "learned", "parameters")


@dataclass
class LearnedMotion(Motion):
    codes: np.ndarray | None = None
    """(T, D) θ codes of the NeRF engine, one per frame; None when the controls carry the expression."""

    def bind_avatar(self, avatar):
        """The avatar export renders this motion with: for θ codes, a wrapper whose `render_batch`
        renders the motion's codes in order (export renders each frame once, in order)."""
        return avatar if self.codes is None else CodeDrivenAvatar(avatar, self.codes)


class CodeDrivenAvatar:
    """An `Avatar` whose `render_batch(controls)` takes the expression from the next θ codes of a
    motion (the controls give yaw and pitch); every other attribute is the avatar's."""

    def __init__(self, avatar, codes: np.ndarray):
        self._avatar = avatar
        self._codes = np.asarray(codes, np.float32)
        self._pos = 0

    def __getattr__(self, name):
        return getattr(self._avatar, name)

    def render_batch(self, controls: np.ndarray, edits=None) -> tuple[np.ndarray, list[str]]:
        c, moved = self._avatar.clamp(controls)
        codes = self._codes[self._pos:self._pos + len(c)]
        if len(codes) != len(c):
            raise IndexError(f"frames {self._pos}..{self._pos + len(c)} are past the motion's {len(self._codes)} codes")
        self._pos += len(c)
        engine = self._avatar.engine
        bound = self._avatar.bind_edits(edits) if hasattr(self._avatar, "bind_edits") else None
        moved = [m for m in moved if m in ("yaw", "pitch")]
        imgs = _render_codes_edited(engine, codes, c, bound) if bound else engine.render_codes(codes, c[:, 0], c[:, 1])
        if not hasattr(self._avatar, "add_detail"):
            return imgs, moved
        # the frames that lend detail are chosen by the motion's controls: the actor's pose and the
        # learned expression controls (the γ → controls mapping), as for the StyleGAN engine; picked by
        # a blurred thumbnail of the soft render instead, eyes and brows followed the wrong frames
        # (measured in the README)
        unedited = engine.render_codes(codes, c[:, 0], c[:, 1]) if bound else None
        out = self._avatar.add_detail(imgs, c, unedited)
        plate = self._avatar.scene_plate() if hasattr(self._avatar, "scene_plate") else None
        return (out if plate is None else plate.composite(out)), moved


def _render_codes_edited(engine, codes, c, edits) -> np.ndarray:
    """θ codes with appearance edits, through the NeRF engine's style space."""
    import torch

    from ..metrics import to_uint8

    with torch.no_grad():
        styles = edits.apply(engine.styles_for_codes(engine._tensor(codes)))
        planes = engine.planes_from_styles(styles)
        out = engine.model.render(planes, engine._tensor(c[:, 0]), engine._tensor(c[:, 1]))["image"]
    return to_uint8(out, (0, 1))


def learned_motion(project, dproj, avatar, base: Motion, transfer: str = "auto") -> Motion:
    """`base` (the parameter transfer of the actor `dproj`) with its expression replaced by the
    learned transfer. With transfer "auto" a missing or outdated network falls back to `base` with
    a note; with "learned" it is an `InputError` that says what to run."""
    from ..tracking.data import TrackingData
    from .data import face_images

    if transfer not in TRANSFERS:
        raise InputError(f"unknown transfer '{transfer}'", f"use one of {', '.join(TRANSFERS)}")
    if transfer == "parameters":
        return base
    engine = getattr(avatar, "name", "")
    why = _unavailable(project, dproj, avatar)
    if why:
        if transfer == "learned":
            video = (dproj.manifest.get("source") or {}).get("path") or dproj.root
            raise InputError(f"no learned transfer for this actor: {why}",
                             f"train it with `avatar-studio drive {project.root} --actor {video}`, or export with "
                             f"--transfer parameters")
        base.notes.append(f"expressions by parameter transfer ({why}; `avatar-studio drive` trains the learned one)")
        return base
    driver = TrainedDriver(dproj)
    dtrk = TrackingData.from_project(dproj)
    valid = np.flatnonzero(dtrk.valid)
    gam = driver.codes(face_images(dtrk, valid, driver.size, driver.matte))        # (V, D)
    if driver.aligns:
        gam = driver.actor_to_avatar(gam)
    per_row = np.searchsorted(valid, np.arange(dtrk.n_frames), side="right") - 1   # last valid row at or before
    per_row = np.where(per_row < 0, 0, per_row)                                    # before the first: the first
    rows = base.rows if base.rows is not None else np.arange(dtrk.n_frames)
    import torch

    pick = torch.from_numpy(per_row[rows])
    with torch.no_grad():  # each valid actor frame mapped once; the motion's rows index into them
        codes = driver.mappers["nerf"](gam[pick]).cpu().numpy() if engine == "nerf" and "nerf" in driver.mappers \
            else None
        mapped = driver.mappers["controls"](gam).cpu().numpy()                        # (V, E)
    expr = mapped[per_row[rows]]
    if driver.rescales:  # the learned expressions get the avatar's spread, as the parameter transfer's do
        from ..motion import normalise_to_subject

        subject = TrackingData.from_project(project)
        expr = normalise_to_subject(expr, mapped, subject.expr[subject.split()[0]])
    controls = base.controls.copy()
    controls[:, 2:] = expr
    notes = list(base.notes) + [f"expressions by the learned transfer (Y-shaped network of "
                                f"{driver.meta.get('actor', {}).get('name', 'this actor')})"]
    return LearnedMotion(name=base.name, fps=base.fps, controls=controls.astype(np.float32),
                         control_names=base.control_names, rows=base.rows, source=base.source, audio=base.audio,
                         audio_offset=base.audio_offset, notes=notes,
                         codes=None if codes is None else codes.astype(np.float32))


def _unavailable(project, dproj, avatar) -> str:
    """Why the learned transfer of `dproj` cannot drive `avatar` now ("" when it can)."""
    state, note = actor_state(project, dproj)
    if state != "trained":
        said = {"untrained": "it has not been trained", "running": "its training is running",
                "failed": "its training failed", "cancelled": "its training was cancelled",
                "interrupted": "its training was interrupted", "stale": "its training is out of date",
                }.get(state, f"its training is {state}")
        return f"its training was {note}" if state == "interrupted" and note else said + (f": {note}" if note else "")
    meta = read_meta(dproj) or {}
    maps = meta.get("mappings") or {}
    names = list(getattr(avatar, "control_names", []))[2:]
    if getattr(avatar, "name", "") == "nerf" and hasattr(getattr(avatar, "engine", None), "render_codes"):
        nerf = maps.get("nerf")
        if nerf is None:
            return "it was trained before the NeRF engine was (train the actor again to add the θ mapping)"
        from .actors import avatar_runs

        if nerf.get("run") != avatar_runs(project)["nerf"]:
            return "the NeRF engine was trained again since (train the actor again: only the θ mapping reruns)"
        return ""
    if (maps.get("controls") or {}).get("names") != names:
        return "this avatar's sliders are not the ones the actor's mapping was trained on"
    return ""
