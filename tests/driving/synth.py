"""Tiny synthetic tracked projects for the driving tests: two "people" (a disc of their own colour
and size on their own background) whose mouth opens with the tracked jaw value and whose
position follows the tracked yaw. Not faces: they exercise the training and export plumbing
on pictures whose expression is real and known."""
from __future__ import annotations

import json
import uuid

import cv2
import numpy as np

from studio.project import Project
from studio.tracking.data import EXPRESSION_NAMES

CROP = 32
TINY = {"size": 16, "code_dim": 8, "channels": 8, "max_channels": 16, "steps": 16, "batch": 4, "map_steps": 12,
        "map_hidden": 16, "min_frames": 8, "checkpoint_every_s": 0, "preview_every": 5, "threads": 1}
"""`DriveConfig` overrides for a run of a few seconds."""
NERF_TINY = {"size": 16, "low_res": 8, "samples": 8, "code_dim": 8, "encoder_res": 16, "plane_res": 16,
             "plane_channels": 4, "steps": 12, "batch": 2, "mapper_steps": 10, "preview_every": 10, "threads": 1,
             "checkpoint_every_s": 0.0}


def draw(yaw: float, jaw: float, person: str) -> tuple[np.ndarray, np.ndarray]:
    bg, skin, r = ((60, 90, 60), (200, 150, 120), 10) if person == "ava" else ((90, 60, 110), (150, 180, 210), 12)
    img = np.full((CROP, CROP, 3), bg, np.uint8)
    matte = np.zeros((CROP, CROP), np.uint8)
    c = CROP // 2
    dx = int(round(5 * np.sin(np.radians(yaw))))
    cv2.circle(img, (c + dx, c), r, skin, -1)
    cv2.circle(matte, (c + dx, c), r, 255, -1)
    for ex in (-4, 4):
        cv2.circle(img, (c + dx + ex, c - 3), 1, (30, 30, 30), -1)
    cv2.ellipse(img, (c + dx, c + 4), (4, 1 + int(round(4 * jaw))), 0, 0, 360, (110, 30, 40), -1)
    return img, matte


def make_person(root, person: str = "ava", n: int = 40, seed: int = 0, valid_frames: int | None = None) -> Project:
    """A project with `ingest` and `track` done on synthetic frames of `person` ("ava" / "act")."""
    proj = Project.create(root)
    track = proj.stage_dir("track")
    (track / "crops").mkdir()
    (track / "mattes").mkdir()
    rng = np.random.default_rng(seed)
    yaw = (20 * np.sin(np.linspace(0, 3 * np.pi, n))).astype(np.float32)
    pitch = (4 * np.cos(np.linspace(0, 2 * np.pi, n))).astype(np.float32)
    expr = rng.uniform(0, 1, (n, len(EXPRESSION_NAMES))).astype(np.float32) * 0.2
    expr[:, 0] = rng.uniform(0, 1, n)                                                # jaw_open drives the mouth
    valid = np.ones(n, bool)
    if valid_frames is not None:
        valid[valid_frames:] = False
    for i in range(n):
        if not valid[i]:
            continue
        img, matte = draw(yaw[i], expr[i, 0], person)
        cv2.imwrite(str(track / "crops" / f"{i:06d}.png"), img[..., ::-1])
        cv2.imwrite(str(track / "mattes" / f"{i:06d}.png"), matte)
    pose = np.stack([yaw, pitch, np.zeros(n, np.float32)], 1)
    np.savez(track / "tracking.npz", time=np.arange(n, dtype=np.float32) / 25, valid=valid, pose=pose, expr=expr,
             landmarks=np.zeros((n, 478, 3), np.float32),
             transforms=np.tile(np.eye(2, 3, dtype=np.float32), (n, 1, 1)))
    (track / "tracking.json").write_text(json.dumps({"fps": 25, "frame_size": [64, 64], "crop_size": CROP,
                                                     "expression_names": EXPRESSION_NAMES}))
    proj.update_record("ingest", status="done", run_id=uuid.uuid4().hex[:12], upstream={})
    proj.update_record("track", status="done", run_id=uuid.uuid4().hex[:12],
                       upstream={"ingest": proj.record("ingest")["run_id"]},
                       outputs={"tracking": "track/tracking.npz"})
    return proj


def make_pair(base, n_avatar: int = 40, n_actor: int = 30, actor_valid: int | None = None):
    """(avatar project, path of the actor's tracked folder inside its drivers/)."""
    avatar = make_person(base / "avatar", "ava", n_avatar, seed=0)
    actor = make_person(avatar.root / "drivers" / "actor-synthetic", "act", n_actor, seed=1,
                        valid_frames=actor_valid)
    return avatar, actor.root


class ControlsEngine:
    """Test engine that draws the avatar's disc from [yaw, pitch, *expressions]: the mouth opens with
    jaw_open. Exercises the controls path of the learned transfer (the StyleGAN engine's path)."""

    name = "fake"

    def __init__(self, size: int = CROP):
        self.size = size
        self.control_names = ["yaw", "pitch", *EXPRESSION_NAMES]
        self.ranges = {n: (-90.0, 90.0) if n in ("yaw", "pitch") else (-1.0, 2.0) for n in self.control_names}

    def render_controls(self, controls, edits=None):
        return np.stack([draw(float(c[0]), float(np.clip(c[2], 0, 1)), "ava")[0] for c in controls])
