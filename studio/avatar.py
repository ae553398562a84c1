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
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

import numpy as np

from .errors import ProjectError


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


class Avatar:
    """A trained avatar. ``Avatar.open(project).render(yaw=10, expression={"jaw_open": 0.8})``."""

    def __init__(self, engine: AvatarEngine, spec=None, project=None, detail: bool = True,
                 flame_geometry: bool = True, scene: bool = True):
        self.engine = engine
        self.spec = spec
        """The engine's `studio.engines.EngineSpec` (title, capabilities), when opened from a project."""
        self.project = project
        """The `Project` it was opened from (None for an engine wrapped directly): where edits are found."""
        self._edits = None
        self._edits_key = None
        self.detail = bool(detail) and project is not None
        """Whether renders get detail from the video (see `video_detail`)."""
        self._video_detail = None
        self._video_detail_tried = False
        self.flame_geometry = bool(flame_geometry) and project is not None
        """Whether renders of FLAME controls get FLAME's geometry (see `flame_warp`)."""
        self._flame_warp = None
        self._flame_warp_tried = False
        self.scene = bool(scene) and project is not None
        """Whether renders get the video's own background behind the person (see `scene_plate`)."""
        self._scene_plate = None
        self._scene_plate_tried = False

    @classmethod
    def open(cls, project, engine: str | None = None, detail: bool = True,
             flame_geometry: bool = True, scene: bool = True) -> "Avatar":
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
            raise ProjectError(f"the {engine} engine is not trained in project {project.name}",
                               f"train it with `avatar-studio run {project.root} --engine {engine}`")
        return cls(ENGINES[engine].load(project), ENGINES[engine], project, detail=detail,
                   flame_geometry=flame_geometry, scene=scene)

    @property
    def name(self) -> str:
        return self.engine.name

    @property
    def size(self) -> int:
        return self.engine.size

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
        if not self._video_detail_tried:
            from .detail import VideoDetail
            from .flame.controls import is_flame_controls

            self._video_detail_tried = True
            self._video_detail = VideoDetail.from_project(
                self.project, self.size, controls="flame" if is_flame_controls(self.control_names) else "named",
                config=self.detail_config())
        return self._video_detail

    def add_detail(self, images: np.ndarray, controls: np.ndarray | None = None,
                   unedited: np.ndarray | None = None, fields: list | None = None) -> np.ndarray:
        """`images` (B, S, S, 3) uint8 with detail from the video when it is on (else unchanged).
        `controls`: what they were rendered from (None: frames are matched by image); `unedited`:
        the same renders without appearance edits, so an edit's own detail is kept; `fields`: a warp
        of the result (FLAME's geometry, see `finish`)."""
        from .flame.warp import remap_each

        vd = self.video_detail()
        if vd is None:
            return images if fields is None else remap_each(images, fields)
        from .detail import edit_keep_mask

        keep = None
        if unedited is not None:   # where the edit changed the render, in the render's final geometry
            keep = edit_keep_mask(remap_each(images, fields), remap_each(unedited, fields), self.size)
        return vd.apply(images, controls, keep=keep, fields=fields)

    # ------------------------------------------------------------------ FLAME geometry
    def flame_warp(self):
        """`studio.flame.warp.FlameGeometry` for this avatar, loaded once; None when it is off, the
        avatar is not on FLAME controls, or FLAME's files or fit are missing."""
        if not self.flame_geometry:
            return None
        if not self._flame_warp_tried:
            from .flame.controls import is_flame_controls

            self._flame_warp_tried = True
            if is_flame_controls(self.control_names):
                from .flame.warp import FlameGeometry

                self._flame_warp = FlameGeometry.from_project(self.project, self.size, engine=self.engine)
        return self._flame_warp

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
            return imgs
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
