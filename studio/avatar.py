"""The `Avatar` API: open a trained project and render it from slider values.

The CLI, the GUI viewer, evaluation and export all go through this. Which engines exist and
how each is loaded is said in `studio.engines.ENGINES`; an engine's loader gets the project and
returns an `AvatarEngine`. `Avatar` wraps one engine and adds what every engine shares: control
names, range clamping, telling the caller about it, and appearance edits by name
(``render(..., edits={"blue hair": 0.8})``: the project's saved edits of this engine,
`studio.edits.model.EditSet`, each scaled by its strength; strength 0 or no edit renders exactly the
unedited image), and detail from the video (`studio.detail`): the subject's own training frames,
nearest by controls, lend their fine detail to the engine's soft render. It is on by default when
the avatar is opened from a project that still has its tracked crops; ``Avatar.open(project,
detail=False)`` (CLI ``--no-detail``) and `engine.render_controls` give the engine's render alone.
An avatar trained on FLAME controls also gets FLAME's geometry (`studio.flame.warp`) when FLAME's
files are present: the render is warped by the landmark motion FLAME gives the commanded controls
beyond the expression the engine renders; ``flame_geometry=False`` (CLI ``--no-flame-warp``) turns
it off.
Behind the person the renders get the video's own background, a clean plate of the scene
(`studio.scene`), placed where the head was most of the clip; ``scene=False`` (CLI ``--no-scene``)
keeps the engine's own background.
``out_size`` (CLI ``--size``, the viewer's Size box): images larger than the engine renders, up to the
tracked crops' size (`max_out_size`): the render is upsampled (it is soft: its low band loses nothing)
and the video's frames lend their detail at their own full resolution.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from pathlib import Path

import numpy as np

from .errors import ProjectError


def max_out_size(project) -> int | None:
    """The largest image size an avatar of `project` can show with detail from the video: its tracked
    crops' size (None when the project has no tracking)."""
    import json

    try:
        with open(project.root / "track" / "tracking.json", encoding="utf-8") as f:
            return int(json.load(f)["crop_size"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resize_images(images: np.ndarray, size: int) -> np.ndarray:
    """(B, S, S, 3) uint8 → (B, size, size, 3): Lanczos up, area down (unchanged at the same size)."""
    import cv2

    images = np.asarray(images)
    if images.shape[1] == size:
        return images
    flag = cv2.INTER_LANCZOS4 if size > images.shape[1] else cv2.INTER_AREA
    return np.stack([cv2.resize(im, (size, size), interpolation=flag) for im in images]) if len(images) \
        else np.zeros((0, size, size, 3), np.uint8)


class AvatarEngine(Protocol):
    name: str
    """The engine's key in `studio.engines.ENGINES`."""
    size: int
    """Side of rendered images in pixels."""
    control_names: list[str]
    """["yaw", "pitch", *expression names] — the order of `controls` vectors."""
    ranges: dict[str, tuple[float, float]]
    """Range of each control seen in training."""

    def render_controls(self, controls: np.ndarray, edits: Any = None) -> np.ndarray:
        """(B, 2+E) float32 controls → (B, S, S, 3) uint8 RGB images."""
        ...


@dataclass
class Render:
    image: np.ndarray
    """(S, S, 3) uint8 RGB."""
    clamped: list[str] = field(default_factory=list)
    """Controls that were outside the trained range and were clamped to it."""
    controls: np.ndarray | None = None
    """The control vector actually rendered (after clamping)."""


def trained_engines(project) -> list[str]:
    """Engines whose every stage is done in `project`, in registry order."""
    from .engines import ENGINES, required
    from .pipeline import stage_state

    return [name for name in ENGINES if all(stage_state(project, s) == "done" for s in required(name))]


def stale_stages(project, engine: str) -> list[str]:
    """The stages of `engine` that must train again before its avatar opens — their settings, or those of a
    stage before them, changed since they trained — when every stage it needs has trained; [] otherwise
    (nothing is out of date, or something is not trained at all)."""
    from .engines import required
    from .pipeline import stage_state

    states = {s: stage_state(project, s) for s in required(engine)}
    if all(st in ("done", "stale") for st in states.values()):
        return [s for s, st in states.items() if st == "stale"]
    return []


def why_not_trained(project, engine: str) -> tuple[str, str]:
    """Why `engine` cannot be opened in `project`, and what to do: stages whose settings changed since they
    trained (`stale_stages`) are not "not trained", and a stage still running is said as such."""
    import shlex

    from .engines import ENGINES, required
    from .pipeline import spec, stage_state

    e = ENGINES[engine]
    again = f"`avatar-studio run {shlex.quote(str(project.root))} --engine {engine}`"
    running = [spec(s).title for s in required(engine) if stage_state(project, s) == "running"]
    if running:
        return (f"the {e.short} avatar in project {project.name} is still training ({', '.join(running)})",
                "wait for it to finish (`avatar-studio status` shows where it is)")
    stale = [spec(s).title for s in stale_stages(project, engine)]
    if stale:
        one = len(stale) == 1
        return (f"the {e.short} avatar in project {project.name} is out of date: {', '.join(stale)} must train "
                f"again ({'its' if one else 'their'} settings or a stage before {'it' if one else 'them'} changed "
                f"since {'it' if one else 'they'} trained)",
                f"train again with {again} (only the changed stages and those after them run)")
    return (f"the {e.short} avatar is not trained in project {project.name}", f"train it with {again}")


def _files_gone(project, engine: str, exc: FileNotFoundError) -> tuple[str, str]:
    """What to say when a trained engine's file is gone from the project folder, and which stage makes it."""
    import shlex

    from .engines import ENGINES
    from .stages import REGISTRY

    path = Path(exc.filename) if exc.filename else None
    inside = path is not None and path.resolve().is_relative_to(project.root.resolve())
    gone = path.resolve().relative_to(project.root.resolve()) if inside else path
    stage = gone.parts[0] if inside and gone.parts and gone.parts[0] in REGISTRY else "STAGE"
    return (f"the {ENGINES[engine].short} avatar in project {project.name} is missing its file "
            f"{gone if gone is not None else '(unknown)'}",
            f"train {'the stage that made it' if stage == 'STAGE' else REGISTRY[stage].title} again with "
            f"`avatar-studio run-stage {shlex.quote(str(project.root))} {stage} --force`, or restore the project "
            "folder from a backup")


class Avatar:
    """A trained avatar. ``Avatar.open(project).render(yaw=10, expression={"jaw_open": 0.8})``."""

    def __init__(self, engine: AvatarEngine, spec=None, project=None, detail: bool = True,
                 flame_geometry: bool = True, scene: bool = True, out_size: int | None = None):
        self.engine = engine
        self.out_size = int(out_size) if out_size else None
        """Side of the images this avatar gives (None: the engine's own); see the module's text."""
        self.spec = spec
        """The engine's `studio.engines.EngineSpec` (title, capabilities), when opened from a project."""
        self.project = project
        """The `Project` it was opened from (None for an engine wrapped directly): where edits are found."""
        self._edits = None
        self._edits_key = None
        self.detail = bool(detail) and project is not None
        """Whether renders get detail from the video (see `video_detail`)."""
        self._trail = None
        """`studio.detail.LenderTrail` while rendering a clip (`sequence`), else None."""
        self._video_details: dict = {}
        """`video_detail` per image size (the viewer switches between sizes)."""
        self.flame_geometry = bool(flame_geometry) and project is not None
        """Whether renders of FLAME controls get FLAME's geometry (see `flame_warp`)."""
        self._flame_warps: dict = {}
        self.scene = bool(scene) and project is not None
        """Whether renders get the video's own background behind the person (see `scene_plate`)."""
        self._scene_plate = None
        self._scene_plate_tried = False

    @classmethod
    def open(cls, project, engine: str | None = None, detail: bool = True,
             flame_geometry: bool = True, scene: bool = True, out_size: int | None = None) -> "Avatar":
        """`out_size`: images of this side (between the engine's render size and the tracked crops'
        size) instead of the engine's own; a size outside that range is refused with a ProjectError."""
        from .engines import ENGINES

        engines = trained_engines(project)
        if engine is None:
            if not engines:
                raise ProjectError(f"project {project.name} has no trained avatar yet",
                                   "run `avatar-studio run` on it to train one")
            engine = engines[0]
        if engine not in ENGINES:
            raise ProjectError(f"unknown engine '{engine}'", f"engines: {', '.join(ENGINES)}")
        if engine not in engines:
            raise ProjectError(*why_not_trained(project, engine))
        try:
            loaded = ENGINES[engine].load(project)
        except FileNotFoundError as exc:   # a trained stage's folder deleted or moved by hand
            raise ProjectError(*_files_gone(project, engine, exc)) from exc
        avatar = cls(loaded, ENGINES[engine], project, detail=detail, flame_geometry=flame_geometry, scene=scene)
        if out_size and int(out_size) != avatar.engine.size:
            sizes, top = avatar.sizes(), avatar._crop_size()
            if not sizes[0] <= int(out_size) <= sizes[-1]:
                within = f"{sizes[0]}–{sizes[-1]}" if len(sizes) > 1 else f"{sizes[0]} only"
                raise ProjectError(f"cannot show the {engine} avatar at {int(out_size)} px: its engine renders "
                                   f"{sizes[0]} px and the video's tracked crops, which lend the detail above "
                                   f"that, are {top or 'missing'}" + (" px" if top else ""),
                                   f"choose a size in {within}")
            avatar.out_size = int(out_size)
        return avatar

    @property
    def name(self) -> str:
        return self.engine.name

    def _crop_size(self) -> int | None:
        """The project's tracked crop size, read once (None without a project or tracking)."""
        if not hasattr(self, "_crop_size_read"):
            has_root = self.project is not None and hasattr(self.project, "root")
            self._crop_size_read = max_out_size(self.project) if has_root else None
        return self._crop_size_read

    def sizes(self) -> list[int]:
        """The image sizes this avatar can give: the engine's, and the tracked crops' when larger (then the
        frames lend detail the engine's size cannot hold)."""
        top = self._crop_size()
        return [self.engine.size] + ([top] if top and top > self.engine.size else [])

    @property
    def size(self) -> int:
        """Side of the images `render`, `render_batch` and `finish` give (the engine's, or `out_size`)."""
        return self.out_size or self.engine.size

    def engine_renders(self, controls: np.ndarray) -> np.ndarray:
        """The engine's renders of `controls` alone (no detail, FLAME geometry or background), at `size`."""
        return resize_images(self.engine.render_controls(controls), self.size)

    @property
    def control_names(self) -> list[str]:
        return list(self.engine.control_names)

    @property
    def ranges(self) -> dict[str, tuple[float, float]]:
        return dict(self.engine.ranges)

    def neutral(self) -> np.ndarray:
        """Controls of a frontal, neutral face (0 for every slider, clamped into range)."""
        return self.clamp(np.zeros(len(self.control_names), np.float32))[0]

    def controls_from(self, yaw: float = 0.0, pitch: float = 0.0,
                      expression: Mapping[str, float] | np.ndarray | None = None) -> np.ndarray:
        names = self.control_names
        c = np.zeros(len(names), np.float32)
        c[0], c[1] = yaw, pitch
        if expression is None:
            pass
        elif isinstance(expression, Mapping):
            for k, v in expression.items():
                if k not in names[2:]:
                    raise ValueError(f"unknown expression '{k}'; known: {', '.join(names[2:])}")
                c[names.index(k)] = float(v)
        else:
            c[2:] = np.asarray(expression, np.float32)
        return c

    def clamp(self, controls: np.ndarray) -> tuple[np.ndarray, list[str]]:
        """Clamp controls into the trained ranges; return the names that moved."""
        c = np.array(controls, np.float32, copy=True)
        moved = []
        for i, n in enumerate(self.control_names):
            lo, hi = self.engine.ranges.get(n, (-np.inf, np.inf))
            col = c[..., i]
            if np.any(col < lo - 1e-6) or np.any(col > hi + 1e-6):
                moved.append(n)
            c[..., i] = np.clip(col, lo, hi)
        return c, moved

    # ------------------------------------------------------------------ edits
    def edit_set(self):
        """The project's saved edits for this engine (`studio.edits.model.EditSet`), re-read when the
        list on disk changed (an edit found by another process appears without reopening the avatar)."""
        from .edits.model import EditSet

        if self.project is None:
            raise ProjectError("this avatar was opened without its project, so it has no saved edits",
                               "open it with Avatar.open(project)")
        index = EditSet.index_for(self.project, self.name)
        try:
            st = index.stat()
            key = (st.st_mtime_ns, st.st_size, st.st_ino)
        except OSError:
            key = None
        if self._edits is None or key != self._edits_key:
            self._edits, self._edits_key = EditSet.for_project(self.project, self.name), key
        return self._edits

    def bind_edits(self, edits: Any):
        """`edits` as the engines take them: None (nothing to apply) or an `ActiveEdits`.

        Accepts {name: strength} (names of this project's saved edits; an unknown name raises
        `InputError` listing the saved ones), an `ActiveEdits`, or None / {}.
        """
        if edits is None:
            return None
        from .edits.model import ActiveEdits

        if isinstance(edits, ActiveEdits):
            return edits if edits else None
        if not isinstance(edits, Mapping):
            raise TypeError(f"edits must be a {{name: strength}} mapping, not {type(edits).__name__}")
        if not edits:
            return None
        if self.spec is not None and not getattr(self.spec, "edits", False):
            raise ProjectError(f"the {self.spec.title} has no appearance edits")
        bound = self.edit_set().bind(edits)   # checks every name, zero strengths included
        return bound if bound else None

    # ------------------------------------------------------------------ detail from the video
    def detail_config(self):
        """The `studio.detail.DetailConfig` for this avatar's renders: its engine's (`EngineSpec.detail`)."""
        from .detail import DetailConfig

        return self.spec.detail_config() if self.spec is not None else DetailConfig()

    def video_detail(self):
        """The project's training frames ready to lend detail (`studio.detail.VideoDetail`), loaded
        once; None when detail is off or the project has no tracked crops."""
        if not self.detail:
            return None
        if self.size not in self._video_details:
            from .detail import VideoDetail
            from .flame.controls import is_flame_controls

            self._video_details[self.size] = VideoDetail.from_project(
                self.project, self.size, controls="flame" if is_flame_controls(self.control_names) else "named",
                config=self.detail_config())
        return self._video_details[self.size]

    def add_detail(self, images: np.ndarray, controls: np.ndarray | None = None,
                   unedited: np.ndarray | None = None, fields: list | None = None) -> np.ndarray:
        """`images` (B, S, S, 3) uint8 with detail from the video when it is on (else unchanged).
        `controls`: what they were rendered from (None: frames are matched by image); `unedited`:
        the same renders without appearance edits, so an edit's own detail is kept; `fields`: a warp
        of the result (FLAME's geometry, see `finish`)."""
        from .flame.warp import remap_each

        images = resize_images(images, self.size)
        if unedited is not None:
            unedited = resize_images(unedited, self.size)
        vd = self.video_detail()
        if vd is None:
            return images if fields is None else remap_each(images, fields)
        from .detail import edit_keep_mask

        keep = None
        if unedited is not None:   # where the edit changed the render, in the render's final geometry
            keep = edit_keep_mask(remap_each(images, fields), remap_each(unedited, fields), self.size)
        return vd.apply(images, controls, keep=keep, fields=fields, trail=self._trail)

    @contextlib.contextmanager
    def sequence(self):
        """Within it, renders are consecutive frames of one clip (an export): the frames lending detail are
        blended over time (`studio.detail.LenderTrail`) instead of switching from one frame to the next."""
        from .detail import LenderTrail

        before, self._trail = self._trail, LenderTrail()
        try:
            yield self
        finally:
            self._trail = before

    # ------------------------------------------------------------------ FLAME geometry
    def flame_warp(self):
        """`studio.flame.warp.FlameGeometry` for this avatar, loaded once; None when it is off, the
        avatar is not on FLAME controls, or FLAME's files or fit are missing."""
        if not self.flame_geometry:
            return None
        if self.size not in self._flame_warps:
            from .flame.controls import is_flame_controls

            self._flame_warps[self.size] = None
            if is_flame_controls(self.control_names):
                from .flame.warp import FlameGeometry

                self._flame_warps[self.size] = FlameGeometry.from_project(self.project, self.size, engine=self.engine)
        return self._flame_warps[self.size]

    # ------------------------------------------------------------------ the video's background
    def scene_plate(self):
        """The project's clean plate of the scene (`studio.scene.ScenePlate`), built once; None when the
        scene is off or the project has no tracked crops with mattes."""
        if not self.scene:
            return None
        if not self._scene_plate_tried:
            from .scene import ScenePlate

            self._scene_plate_tried = True
            self._scene_plate = ScenePlate.from_project(self.project)
        return self._scene_plate

    def finish(self, images: np.ndarray, controls: np.ndarray | None, unedited: np.ndarray | None = None,
               placements: np.ndarray | None = None, scene: bool = True) -> np.ndarray:
        """The engine's renders of `controls` as the viewer shows them: detail from the video and
        FLAME's geometry, each when on. The FLAME warp is folded into the detail's own resampling of
        the frames (`studio.detail.VideoDetail.apply`), so the detail moves with it and stays sharp.
        Then the video's background behind the person (when `scene` and the avatar's scene are on), at
        `placements` ((B, 2, 3) frame -> crop transforms; None: where the head was most of the clip)."""
        fw = None if controls is None else self.flame_warp()
        fields = None if fw is None else fw.fields(controls)
        out = self.add_detail(images, controls, unedited, fields)
        plate = self.scene_plate() if scene else None
        return out if plate is None else plate.composite(out, placements)

    def _render(self, c: np.ndarray, edits: Any, placements: np.ndarray | None = None) -> np.ndarray:
        bound = self.bind_edits(edits)
        imgs = self.engine.render_controls(c, edits=bound)
        if self.video_detail() is None and self.flame_warp() is None and self.scene_plate() is None:
            return resize_images(imgs, self.size)
        unedited = self.engine.render_controls(c) if bound and self.video_detail() is not None else None
        return self.finish(imgs, c, unedited, placements=placements)

    def render(self, yaw: float = 0.0, pitch: float = 0.0,
               expression: Mapping[str, float] | np.ndarray | None = None, edits: Any = None) -> Render:
        """Render one image. `edits`: {saved edit name: strength} (see `bind_edits`)."""
        c, moved = self.clamp(self.controls_from(yaw, pitch, expression))
        return Render(image=self._render(c[None], edits)[0], clamped=moved, controls=c)

    def render_batch(self, controls: np.ndarray, edits: Any = None,
                     placements: np.ndarray | None = None) -> tuple[np.ndarray, list[str]]:
        """`placements`: (B, 2, 3) frame -> crop transforms placing each render in the video's scene
        (`finish`; None: where the head was most of the clip)."""
        c, moved = self.clamp(controls)
        return self._render(c, edits, placements), moved
