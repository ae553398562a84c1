"""The per-actor folder: what is trained for each actor, and loading it back.

An actor is a driver video tracked once into ``<project>/drivers/<name>-<hash>/`` (a small
project of its own: ingest, track; see `studio.export.track_driver`). Training the learned
transfer adds ``yshape/`` to that folder::

    drivers/<name>-<hash>/
      project.json          the actor's manifest; its record "yshape" says how far training got
      ingest/ track/        the actor's decoded clip and tracking
      yshape/
        train.ckpt          the Y-shaped network's training state (resumable)
        mapping.ckpt        the mapping MLPs' training state (resumable)
        yshape.safetensors  E_shared, D_ava, D_act
        mappings.safetensors  γ → expression controls ("controls.*"), γ → the NeRF engine's θ ("nerf.*")
        driver.json         settings, which avatar run it was trained against, figures
        preview.png         actor | avatar (the avatar's decoder fed with the actor's codes)

The network is tied to the avatar's tracked frames (the `track` stage's run) and the θ mapping
to the NeRF engine's run: when either is redone, the actor must be trained again (`drive`
says so, and only the outdated part retrains).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

FORMAT = "avatar-studio/yshape-1"
RECORD = "yshape"
"""The record in the actor's manifest, and the folder name."""


@dataclass
class ActorInfo:
    """What a front end shows for one actor."""

    root: Path
    """The actor's folder (drivers/<name>-<hash>)."""
    name: str
    """The actor video's file name."""
    video: str
    """Path of the actor video."""
    state: str
    """untrained, running, interrupted, cancelled, failed, stale or trained."""
    note: str = ""
    """One line: the interruption point, an error, what is outdated."""
    preview: Path | None = None
    """actor | avatar preview image, when trained."""
    figures: dict = field(default_factory=dict)
    """Training figures from driver.json."""
    engines: list[str] = field(default_factory=list)
    """Engines the learned transfer can drive now ("pvp" needs only tracking; "nerf" its θ mapping)."""


def folder(dproj) -> Path:
    return Path(dproj.root) / RECORD


def avatar_runs(project) -> dict:
    """The avatar runs a trained actor depends on: the track run (Y-network, control mapping) and
    the NeRF run (θ mapping; None when the NeRF engine is not trained)."""
    nerf = project.record("nerf")
    return {"track": project.record("track").get("run_id"),
            "nerf": nerf.get("run_id") if nerf.get("status") == "done" else None}


def read_meta(dproj) -> dict | None:
    p = folder(dproj) / "driver.json"
    try:
        meta = json.loads(p.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None


def actor_state(project, dproj) -> tuple[str, str]:
    """(state, note) of the actor `dproj` for the avatar `project`."""
    from ..lock import is_busy

    rec = dproj.record(RECORD)
    status = rec.get("status")
    if not status:
        return "untrained", ""
    if status == "running":
        if is_busy(dproj.root):
            return "running", ""
        steps = rec.get("progress") or {}
        where = ", ".join(f"{p} step {n}" for p, n in steps.items()) if steps else "its start"
        return "interrupted", f"interrupted at {where} — train it again to resume"
    if status in ("failed", "cancelled"):
        return status, rec.get("error") or "cancelled — train it again to resume"
    meta = read_meta(dproj)
    if meta is None:
        return "untrained", "the trained files are missing — train it again"
    runs = avatar_runs(project)
    if meta.get("avatar", {}).get("track") != runs["track"]:
        return "stale", "the avatar was tracked again since — train this actor again"
    nerf = (meta.get("mappings") or {}).get("nerf")
    if runs["nerf"] is not None and (nerf is None or nerf.get("run") != runs["nerf"]):
        return "trained", "the NeRF engine is newer than the θ mapping — train again to drive it (quick)"
    return "trained", ""


def usable_engines(project, dproj) -> list[str]:
    """Trained engines of `project` the learned transfer of `dproj` drives now."""
    from ..avatar import trained_engines

    state, _ = actor_state(project, dproj)
    meta = read_meta(dproj)
    if state != "trained" or meta is None:
        return []
    trained = trained_engines(project)
    out = ["pvp"] if (meta.get("mappings") or {}).get("controls") and "pvp" in trained else []
    nerf = (meta.get("mappings") or {}).get("nerf")
    if nerf is not None and nerf.get("run") == avatar_runs(project)["nerf"] and "nerf" in trained:
        out.append("nerf")
    return out


def list_actors(project) -> list[ActorInfo]:
    """Every actor tracked in the project's drivers/ folder, newest first."""
    from ..errors import StudioError
    from ..project import Project, is_project

    top = Path(project.root) / "drivers"
    out = []
    if not top.is_dir():
        return out
    for d in sorted(top.iterdir(), key=lambda p: p.stat().st_mtime, reverse=True):
        if not d.is_dir() or not is_project(d):
            continue
        try:
            dproj = Project.open(d)
        except StudioError:
            continue
        src = (dproj.manifest.get("source") or {}).get("path") or ""
        state, note = actor_state(project, dproj)
        meta = read_meta(dproj) or {}
        prev = folder(dproj) / "preview.png"
        out.append(ActorInfo(root=d, name=Path(src).name or d.name, video=src, state=state, note=note,
                             preview=prev if prev.exists() and state in ("trained", "stale") else None,
                             figures=meta.get("figures") or {}, engines=usable_engines(project, dproj)))
    return out


def align_to_avatar(codes, stats: dict, floor: float = 1e-3):
    """(N, D) actor codes moved to the avatar's code distribution with `stats` (`job.code_stats`):
    per dimension (γ − μ_actor) / σ_actor · σ_avatar + μ_avatar."""
    return (codes - stats["act_mean"]) / stats["act_std"].clamp_min(floor) * stats["ava_std"] + stats["ava_mean"]


class TrainedDriver:
    """A trained actor: the Y-shaped network and its mappings, read from ``yshape/``."""

    def __init__(self, dproj, device: str = "cpu"):
        import torch
        from safetensors.torch import load_file

        from models.yshape import CodeMapper, YShapeConfig, YShapeNet

        from ..errors import ProjectError

        meta = read_meta(dproj)
        if meta is None:
            raise ProjectError(f"the actor {Path(dproj.root).name} has no trained driving network",
                               "train it with `avatar-studio drive PROJECT --actor VIDEO`")
        self.meta = meta
        self.device = torch.device(device)
        self.net = YShapeNet(YShapeConfig.from_dict(meta["model"]))
        self.net.load_state_dict(load_file(str(folder(dproj) / "yshape.safetensors"), device="cpu"))
        self.net.to(self.device).eval().requires_grad_(False)
        state = load_file(str(folder(dproj) / "mappings.safetensors"), device="cpu")
        self.align = {k[len("align."):]: v.to(self.device) for k, v in state.items() if k.startswith("align.")}
        """Per-dimension mean/std of the avatar's and the actor's codes ("ava_mean", "act_std", ...)."""
        self.mappers: dict[str, CodeMapper] = {}
        for key, info in (meta.get("mappings") or {}).items():
            if not info:
                continue
            m = CodeMapper(self.net.cfg.code_dim, int(info["dim"]), hidden=int(info["hidden"]))
            m.load_state_dict({k[len(key) + 1:]: v for k, v in state.items() if k.startswith(key + ".")})
            self.mappers[key] = m.to(self.device).eval().requires_grad_(False)

    @property
    def size(self) -> int:
        return int(self.net.cfg.resolution)

    @property
    def matte(self) -> bool:
        return bool(self.meta.get("config", {}).get("matte", True))

    def codes(self, images) -> "torch.Tensor":
        """γ (N, D) of (N, 3, R, R) uint8 face images."""
        from .training import encode_all

        return encode_all(self.net, images)

    @property
    def aligns(self) -> bool:
        """Whether driving moves the actor's codes to the avatar's distribution (`DriveConfig.align_codes`)."""
        return bool(self.meta.get("config", {}).get("align_codes", False)) and bool(self.align)

    @property
    def rescales(self) -> bool:
        """Whether driving gives the learned expressions the avatar's spread (`DriveConfig.rescale`)."""
        return bool(self.meta.get("config", {}).get("rescale", False))

    def actor_to_avatar(self, codes: "torch.Tensor", floor: float = 1e-3) -> "torch.Tensor":
        """The actor's codes (N, D) moved to the avatar's code distribution, per dimension:
        (γ − μ_actor) / σ_actor · σ_avatar + μ_avatar."""
        return align_to_avatar(codes, self.align, floor)
