"""`avatar-studio drive`: train the learned transfer of one actor onto the avatar.

`train_actor` tracks the actor video like a subject (`studio.export.track_driver`, kept in the
project's ``drivers/``), then trains through the one training loop (`studio.loop`):

1. part "yshape" — LatentAvatar's Y-shaped network on the avatar's training frames and the
   actor's frames: each step picks one person at random and updates E_shared and that person's
   decoder (the other frozen), with L1 + 0.1·(1 − SSIM) (+ LPIPS when a backbone file is added)
   and the cycle term in that person's direction (`DriveConfig.cycle` switches it off); the L1
   counts the eyes, brows and mouth more (`focus_weight`, not in the paper; 0 = the paper's);
2. parts "map_controls" and "map_nerf" — with the network frozen, on the avatar's own training
   frames only: an MLP γ → the tracked expression controls (what the StyleGAN engine's sliders
   take) and, when the NeRF engine is trained, an MLP γ → its person-specific code θ
   (‖Mapping(E_shared(I)) − E(I)‖ against the engine's own encoder).

Both parts checkpoint atomically (random state included): killed or cancelled, the same command
resumes. The actor's manifest keeps the run's record ("yshape": status, progress, settings, the
avatar runs it was trained against); re-running with nothing changed does nothing; a NeRF engine
trained again later retrains only the θ mapping. `studio.driving.worker` runs this in the GUI's
child process; the CLI calls it directly.
"""
from __future__ import annotations

import math
import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..compute import channels_last
from ..config import config_hash, from_dict, to_dict
from ..errors import Cancelled, InputError, ProjectError, StudioError
from ..progress import Control, Progress
from ..stages.base import StageContext
from .actors import FORMAT, RECORD, avatar_runs, folder, read_meta
from .config import PRESETS, DriveConfig

DRIVING_ONLY = ("align_codes", "rescale")
"""Settings used only when driving: changing them retrains nothing."""
RUNTIME_ONLY = ("threads", "checkpoint_every_s", "preview_every")
"""Settings of how a training runs, not of what it learns: changing them keeps a finished training
(and resumes an unfinished one)."""
STAGE = "drive"
"""The name progress events and checkpoint messages carry."""
ProgressFn = Callable[[Progress], None]


def drive_config(project, preset: str | None = None, overrides: dict | None = None) -> DriveConfig:
    """The settings a training runs with: the preset (the project's by default), then overrides."""
    import dataclasses

    name = preset or project.preset
    if name not in PRESETS:
        raise InputError(f"unknown preset '{name}'", f"presets: {', '.join(PRESETS)}")
    cfg = dataclasses.replace(PRESETS[name])
    return from_dict(DriveConfig, overrides, base=cfg) if overrides else cfg


@dataclass
class DriveContext(StageContext):
    """A `StageContext` on the actor's project whose step notes go to the "yshape" record."""

    def note_step(self, steps: dict[str, int]) -> None:
        prog = dict(self.project.record(RECORD).get("progress") or {})
        prog.update({k: int(v) for k, v in steps.items()})
        self.project.update_record(RECORD, progress=prog)


def train_actor(project, actor: str | Path, *, preset: str | None = None, overrides: dict | None = None,
                control: Control | None = None, on_progress: ProgressFn | None = None,
                device: str | None = None) -> dict:
    """Track `actor` (a video, or an already tracked actor folder) and train its learned transfer
    onto the avatar of `project`. Returns {"actor", "outputs", "summary", "warnings"}."""
    from ..export import track_driver
    from ..lock import project_lock

    control = control or Control()
    cfg = drive_config(project, preset, overrides)
    if project.record("track").get("status") != "done":
        raise ProjectError(f"the avatar's video is not tracked yet in {project.name}",
                           f"create the project with `avatar-studio new {project.root} --video CLIP` first")
    from ..project import is_project

    if is_project(actor) and Path(actor).resolve().parent != (project.root / "drivers").resolve():
        raise InputError(f"{actor} is a project folder, not an actor video",
                         "give the actor's video file (a tracked actor folder is taken only from this project's "
                         "drivers/ folder)")
    with project_lock(project.root, f"drive: train the actor {Path(actor).name}"):
        try:
            dproj = track_driver(project, actor, on_progress, control)
        except Cancelled:
            raise
        except StudioError as exc:
            msg = exc.message.replace("the driver video", "the actor video")
            raise type(exc)(msg, exc.hint) from exc
        with project_lock(dproj.root, "drive: training"):
            return _run(project, dproj, cfg, control, on_progress, device)


def _run(project, dproj, cfg: DriveConfig, control: Control, on_progress: ProgressFn | None,
         device: str | None) -> dict:
    from ..compute import resolve_device
    from ..project import now_iso

    runs = avatar_runs(project)
    trained_by = {k: v for k, v in to_dict(cfg).items() if k not in DRIVING_ONLY + RUNTIME_ONLY}
    key = {"config": config_hash(trained_by), "track": runs["track"], "actor": dproj.record("track").get("run_id")}
    map_key = {**key, "nerf": runs["nerf"]}
    rec = dproj.record(RECORD)
    work = folder(dproj)
    work.mkdir(parents=True, exist_ok=True)
    meta = read_meta(dproj)
    if rec.get("status") == "done" and rec.get("key") == key and rec.get("map_key") == map_key and meta is not None:
        changed = {k: getattr(cfg, k) for k in DRIVING_ONLY if meta["config"].get(k) != getattr(cfg, k)}
        if changed:  # settings used only when driving: no training, the saved settings change
            from ..atomic import write_json

            meta["config"].update(changed)
            write_json(work / "driver.json", meta)
            dproj.update_record(RECORD, config=to_dict(cfg))
        if on_progress:
            on_progress(Progress(stage=STAGE, step=1, total=1, message="already up to date" + "".join(
                f"; {k} is now {v}" for k, v in changed.items())))
        return rec.get("result") or {}
    if rec.get("key") != key:  # other settings or other frames: the old training must not be resumed
        for name in ("train.ckpt", "mapping.ckpt"):
            (work / name).unlink(missing_ok=True)
    elif rec.get("map_key") != map_key:
        (work / "mapping.ckpt").unlink(missing_ok=True)
    ctx = DriveContext(project=dproj, stage=STAGE, workdir=work, device=resolve_device(device or project.device),
                       control=control, resumed=(work / "train.ckpt").exists())
    dproj.update_record(RECORD, status="running", key=key, map_key=map_key, config=to_dict(cfg), started=now_iso(),
                        pid=os.getpid(), error=None, avatar=project.name,
                        **({} if ctx.resumed else {"progress": {}}))
    t0 = time.perf_counter()
    try:
        gen = run_training(ctx, cfg, project, dproj)
        while True:
            control.checkpoint()
            try:
                ev = next(gen)
            except StopIteration as stop:
                result = stop.value
                break
            if on_progress:
                on_progress(ev)
    except Cancelled:
        dproj.update_record(RECORD, status="cancelled", seconds=round(time.perf_counter() - t0, 2))
        raise
    except StudioError as exc:
        dproj.update_record(RECORD, status="failed", error=str(exc))
        raise
    except KeyboardInterrupt:
        dproj.update_record(RECORD, status="cancelled")
        raise Cancelled() from None
    except MemoryError as exc:
        dproj.update_record(RECORD, status="failed", error="out of memory")
        raise StudioError("training the actor ran out of memory",
                          "choose the preview preset and close other programs") from exc
    except Exception as exc:  # a bug: keep the traceback for a report, one line for the user
        from ..atomic import write_text

        log = project.log_dir() / f"drive-{time.strftime('%Y%m%d-%H%M%S')}.log"
        write_text(log, traceback.format_exc())
        dproj.update_record(RECORD, status="failed", error=f"{type(exc).__name__}: {exc}")
        raise StudioError(f"training the actor stopped on an unexpected error: {type(exc).__name__}: {exc}",
                          f"details are in {project.rel(log)}; the project is intact, run again to retry") from exc
    result["actor"] = str(dproj.root)
    dproj.update_record(RECORD, status="done", finished=now_iso(), seconds=round(time.perf_counter() - t0, 2),
                        result=result, warnings=list(result.get("warnings") or []))
    return result


# ----------------------------------------------------------------------------- the training
def run_training(ctx: DriveContext, cfg: DriveConfig, project, dproj):
    """The training generator (yields `Progress`, returns the result dict)."""
    import torch

    from models.yshape import SUBJECTS, ExpressionAnchor, SubjectCritic, YShapeConfig, YShapeNet, other

    from ..atomic import atomic_path, write_json
    from ..loop import TrainingLoop
    from ..tracking.data import TrackingData
    from .data import augment, face_images, focus_map, to_float
    from .measure import SAME_PERSON, identity_similarity, separability
    from .training import LossWeights, OtherBatch, encode_all, yshape_step

    dev = torch.device(ctx.device)
    notes: list[str] = []
    ava_trk, act_trk = TrackingData.from_project(project), TrackingData.from_project(dproj)
    ava_train, ava_held = ava_trk.split()
    act_rows = np.flatnonzero(act_trk.valid)
    actor_name = Path((dproj.manifest.get("source") or {}).get("path") or dproj.root.name).name
    if len(act_rows) < cfg.min_frames:
        raise InputError(f"the actor clip {actor_name} has only {len(act_rows)} frames with a face; training needs "
                         f"at least {cfg.min_frames}", "use a longer clip with the actor's face in view most of the time")
    if len(ava_train) < 8:
        raise ProjectError(f"the avatar has only {len(ava_train)} tracked training frames",
                           "make the avatar from a longer clip")
    yield Progress(stage=STAGE, step=0, total=1, part="load",
                   message=f"loading {len(ava_train)} avatar and {len(act_rows)} actor faces")
    faces = {"ava": face_images(ava_trk, ava_train, cfg.size, cfg.matte),
             "act": face_images(act_trk, act_rows, cfg.size, cfg.matte)}
    focus = {"ava": focus_map(ava_trk, ava_train, cfg.size, cfg.focus_weight).to(dev),
             "act": focus_map(act_trk, act_rows, cfg.size, cfg.focus_weight).to(dev)} if cfg.focus_weight > 0 else {}
    rows = {"ava": ava_train, "act": act_rows}
    trk = {"ava": ava_trk, "act": act_trk}
    pose = {s: torch.from_numpy((trk[s].pose[rows[s], :2] / POSE_SCALE).astype(np.float32)).to(dev)
            for s in SUBJECTS} if cfg.pose_decoders else {}
    expr = {s: torch.from_numpy(_standardised(trk[s].expr[rows[s]])).to(dev) for s in SUBJECTS}
    notes += _same_person_notes(project, dproj, ava_trk, act_trk, ava_train, act_rows, identity_similarity,
                                SAME_PERSON)

    # ------------------------------------------------------------------ part 1: the Y-shaped network
    loop = TrainingLoop(ctx, seed=cfg.seed, checkpoint_every_s=cfg.checkpoint_every_s,
                        max_minutes=cfg.time_budget_min, threads=cfg.threads)
    mcfg = YShapeConfig(resolution=cfg.size, code_dim=cfg.code_dim, channels=cfg.channels,
                        max_channels=cfg.max_channels, pose_dim=2 if cfg.pose_decoders else 0)
    net = YShapeNet(mcfg).to(dev)
    channels_last(net, device=dev)   # faster convolutions on a CPU, before the optimiser sees the weights
    critic = SubjectCritic(cfg.code_dim).to(dev) if cfg.adversarial_weight > 0 else None
    anchor = ExpressionAnchor(cfg.code_dim, expr["ava"].shape[1]).to(dev) if cfg.anchor_weight > 0 else None
    params = list(net.parameters()) + [p for m in (critic, anchor) if m is not None for p in m.parameters()]
    optim = torch.optim.Adam(params, lr=cfg.lr, betas=(0.9, 0.999))
    loop.track("net", net)
    loop.track("optim", optim)
    for name, module in (("critic", critic), ("anchor", anchor)):
        if module is not None:
            loop.track(name, module)
    loop.vars.setdefault("ema", {})
    perceptual, perceptual_kind = _perceptual(cfg, dev)
    channels_last(perceptual, device=dev)
    weights = LossWeights(ssim=cfg.ssim_weight, code=cfg.code_weight, cycle=cfg.cycle,
                          cycle_weight=cfg.cycle_weight, perceptual=cfg.perceptual_weight if perceptual else 0.0,
                          adversarial=cfg.adversarial_weight, anchor=cfg.anchor_weight)
    extra = critic is not None or anchor is not None
    show = np.linspace(0, len(act_rows) - 1, 4).astype(int)

    def step(i: int) -> dict:
        frac = i / max(1, cfg.steps)
        for g in optim.param_groups:
            g["lr"] = cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, frac))))
        subject = SUBJECTS[int(loop.rng.integers(0, 2))]
        data = faces[subject]
        idx = torch.from_numpy(loop.rng.integers(0, len(data), size=min(cfg.batch, len(data))))
        target = to_float(data[idx]).to(dev)
        inputs = augment(target, loop.rng) if cfg.augment else target
        ob = None
        if extra:  # the other person's faces, for the critic and the anchor only
            o = other(subject)
            oidx = torch.from_numpy(loop.rng.integers(0, len(faces[o]), size=max(2, min(cfg.batch, len(faces[o])) // 2)))
            oimg = to_float(faces[o][oidx]).to(dev)
            ob = OtherBatch(augment(oimg, loop.rng) if cfg.augment else oimg, expr[o][oidx.to(dev)])
        logs = yshape_step(net, optim, subject, inputs, target, weights, perceptual, focus=focus.get(subject),
                           pose=pose[subject][idx.to(dev)] if pose else None, critic=critic, anchor=anchor,
                           expr=expr[subject][idx.to(dev)], other_batch=ob)
        new = {f"{subject}_l1": logs["l1"], f"{subject}_total": logs["total"]}
        for k in ("cycle_l1", "critic_acc", "anchor"):
            if k in logs:
                new[k] = logs[k]
        ema = loop.vars["ema"]
        loop.vars["ema"] = {**ema, **{k: v if k not in ema else 0.95 * ema[k] + 0.05 * v for k, v in new.items()}}
        return {k: round(v, 5) for k, v in sorted(loop.vars["ema"].items())}

    show_pose = pose["act"][torch.from_numpy(show).to(dev)] if pose else None

    def preview() -> np.ndarray:
        return _preview(net, faces["act"][show], pose=show_pose)

    yield from loop.part("yshape", cfg.steps, step, preview=preview, preview_every=cfg.preview_every,
                         progress_every=10, message="Y-shaped network")
    fig_net = loop.finish()
    warnings = loop.warnings()
    net.eval().requires_grad_(False)

    # ------------------------------------------------------------------ part 2: the mappings
    yield Progress(stage=STAGE, step=0, total=1, part="codes", message="encoding the avatar's frames")
    gam = encode_all(net, faces["ava"])
    gam_act = encode_all(net, faces["act"])
    gam_held = encode_all(net, face_images(ava_trk, ava_held, cfg.size, cfg.matte)) if len(ava_held) else None
    mloop = TrainingLoop(ctx, seed=cfg.seed + 1, checkpoint_every_s=cfg.checkpoint_every_s, threads=cfg.threads,
                         file="mapping.ckpt")
    targets = {"controls": torch.from_numpy(ava_trk.expr[ava_train].astype(np.float32))}
    held_targets = {"controls": torch.from_numpy(ava_trk.expr[ava_held].astype(np.float32))}
    nerf_run = avatar_runs(project)["nerf"]
    if nerf_run is not None:
        yield Progress(stage=STAGE, step=0, total=1, part="codes", message="reading θ of the avatar's frames with "
                                                                           "the NeRF engine's encoder")
        targets["nerf"], held_targets["nerf"] = _nerf_codes(project, ava_trk, ava_train, ava_held)
    mappers, map_figs = {}, {}
    for key, tgt in targets.items():
        mapper, fig = yield from _fit_mapping(mloop, cfg, key, gam, tgt, gam_held, held_targets[key], dev)
        mappers[key], map_figs[key] = mapper, fig
    fig_map = mloop.finish()

    # ------------------------------------------------------------------ measure + save
    yield Progress(stage=STAGE, step=0, total=1, part="save", message="saving")
    sep = separability(gam.cpu().numpy(), gam_act.cpu().numpy(), seed=cfg.seed)
    figures = {"steps": fig_net["steps"].get("yshape", 0), "of_steps": cfg.steps, "cycle": cfg.cycle,
               "train_minutes": round(fig_net["train_minutes"] + fig_map["train_minutes"], 2),
               "avatar_frames": int(len(ava_train)), "actor_frames": int(len(act_rows)),
               "losses": dict(loop.vars["ema"]), "perceptual": perceptual_kind,
               "gamma_separability": None if sep is None else round(sep, 4),
               **{k: v for fig in map_figs.values() for k, v in fig.items()},
               **_actor_figures(cfg, mappers["controls"], gam, gam_act, act_trk.expr[act_rows],
                                {s: trk[s].pose[rows[s], :2] for s in SUBJECTS})}
    if fig_net.get("resumed_from"):
        figures["resumed_from"] = fig_net["resumed_from"].get("yshape", 0)
    if fig_net.get("cut_short"):
        figures["cut_short"] = fig_net["cut_short"]
    work = folder(dproj)
    from safetensors.torch import save_file

    with atomic_path(work / "yshape.safetensors") as tmp:
        save_file({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}, str(tmp))
    flat = {f"{key}.{k}": v.detach().cpu().contiguous() for key, m in mappers.items()
            for k, v in m.state_dict().items()}
    flat.update({f"align.{k}": v.detach().cpu().contiguous() for k, v in code_stats(gam, gam_act).items()})
    with atomic_path(work / "mappings.safetensors") as tmp:
        save_file(flat, str(tmp))
    _write_png(work / "preview.png", _preview(net, faces["act"][show], scale=2, pose=show_pose))
    runs = avatar_runs(project)
    meta = {"format": FORMAT, "model": mcfg.to_dict(), "config": to_dict(cfg),
            "avatar": {"name": project.name, "track": runs["track"]},
            "actor": {"name": actor_name, "video": (dproj.manifest.get("source") or {}).get("path"),
                      "frames": int(len(act_rows))},
            "mappings": {"controls": {"dim": int(targets["controls"].shape[1]), "hidden": cfg.map_hidden,
                                      "names": ava_trk.expression_names},
                         "nerf": None if "nerf" not in mappers else
                         {"dim": int(targets["nerf"].shape[1]), "hidden": cfg.map_hidden, "run": nerf_run}},
            "figures": figures, "notes": notes}
    write_json(work / "driver.json", meta)
    yield Progress(stage=STAGE, step=1, total=1, part="save", message="saved")
    rel = lambda p: dproj.rel(p)  # noqa: E731
    return {"outputs": {"network": rel(work / "yshape.safetensors"), "mappings": rel(work / "mappings.safetensors"),
                        "meta": rel(work / "driver.json"), "preview": rel(work / "preview.png")},
            "summary": figures, "warnings": notes + warnings}


POSE_SCALE = 20.0
"""Degrees of yaw and pitch per unit of the pose the decoders take (the same for both people)."""


def _standardised(x: np.ndarray, floor: float = 1e-6) -> np.ndarray:
    """(N, E) values standardised per column over their own N rows, as float32."""
    x = np.asarray(x, np.float64)
    return ((x - x.mean(0)) / np.maximum(x.std(0), floor)).astype(np.float32)


def _actor_figures(cfg: DriveConfig, mapper, gam, gam_act, act_expr: np.ndarray, poses: dict) -> dict:
    """What can be told before anything is rendered: how the controls the mapping gives for the
    actor's frames (codes aligned as driving aligns them) correlate with the actor's own tracked
    expressions (per expression and mean; the parameter transfer's are 1.0 by construction), and
    the share of each person's code variance that head pose explains."""
    import torch

    from .measure import pearson, pose_share

    from .actors import align_to_avatar

    codes = align_to_avatar(gam_act, code_stats(gam, gam_act)) if cfg.align_codes else gam_act
    with torch.no_grad():
        pred = mapper(codes).cpu().numpy()
    rs = [pearson(pred[:, k], act_expr[:, k]) for k in range(act_expr.shape[1])]
    valid = [r for r in rs if r is not None]
    share = {s: pose_share(g.cpu().numpy(), poses[s]) for s, g in (("ava", gam), ("act", gam_act))}
    return {"actor_controls_r": None if not valid else round(float(np.mean(valid)), 4),
            "actor_controls_r_each": [None if r is None else round(r, 4) for r in rs],
            "pose_share": {s: None if v is None else round(v, 4) for s, v in share.items()}}


def code_stats(gam_ava, gam_act) -> dict:
    """Per-dimension mean and std of the avatar's and the actor's codes (what `align_codes` uses)."""
    return {"ava_mean": gam_ava.mean(0), "ava_std": gam_ava.std(0), "act_mean": gam_act.mean(0),
            "act_std": gam_act.std(0)}


def _fit_mapping(mloop, cfg: DriveConfig, key: str, gam, target, gam_held, held_target, dev):
    """Part "map_<key>": an MLP γ → target on the avatar's frames; returns (mapper, figures)."""
    import torch

    from models.yshape import CodeMapper

    from .measure import mean_cosine, mean_r
    from .training import mapper_step

    mapper = CodeMapper(gam.shape[1], target.shape[1], hidden=cfg.map_hidden).to(dev)
    mapper.set_stats(gam, target.to(dev))
    opt = torch.optim.Adam(mapper.parameters(), lr=cfg.map_lr)
    mloop.track(f"{key}_mapper", mapper)
    mloop.track(f"{key}_optim", opt)
    tgt = target.to(dev)
    n = len(gam)

    def fit(i: int) -> dict:
        for g in opt.param_groups:
            g["lr"] = cfg.map_lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, i / max(1, cfg.map_steps)))))
        idx = torch.from_numpy(mloop.rng.integers(0, n, size=min(64, n))).to(dev)
        return {key: round(mapper_step(mapper, opt, gam[idx], tgt[idx], cfg.map_noise), 5)}

    label = "γ → θ of the NeRF engine" if key == "nerf" else "γ → expression controls"
    yield from mloop.part(f"map_{key}", cfg.map_steps, fit, progress_every=20, message=label)
    mapper.eval().requires_grad_(False)
    figs: dict = {}
    with torch.no_grad():
        fit_loss = float(torch.nn.functional.mse_loss(mapper.normalised(gam), (tgt - mapper.out_mean) /
                                                      mapper.out_std))
        figs[f"map_{key}_train_mse"] = round(fit_loss, 5)
        if gam_held is not None and len(gam_held):
            pred = mapper(gam_held.to(dev)).cpu().numpy()
            truth = held_target.cpu().numpy()
            if key == "nerf":
                c = mean_cosine(pred, truth)
                figs["map_nerf_heldout_cosine"] = None if c is None else round(c, 4)
            else:
                r = mean_r(pred, truth)
                figs["map_controls_heldout_r"] = None if r is None else round(r, 4)
    return mapper, figs


def _nerf_codes(project, trk, rows, held):
    """θ (N, D) of the avatar's frames `rows` and `held`, from the trained NeRF engine's encoder."""
    import torch

    from ..engines.nerf import NerfEngine

    engine = NerfEngine.load(project)

    def codes(rs):
        out = [engine.encode_image(trk.crops(rs[i:i + 32])) for i in range(0, len(rs), 32)]
        return torch.from_numpy(np.concatenate(out).astype(np.float32)) if out else \
            torch.zeros(0, engine.model.cfg.code_dim)

    return codes(rows), codes(held)


def _perceptual(cfg: DriveConfig, dev):
    """(LPIPS loss, its kind) when a backbone file is added and weighted, else (None, "none")."""
    if cfg.perceptual_weight <= 0:
        return None, "none"
    from ..model_files import lpips_path

    path = lpips_path()
    if path is None or not Path(path).exists():
        return None, "none (no LPIPS backbone added)"
    from models.perceptual import PerceptualLoss

    loss = PerceptualLoss(str(path)).to(dev)
    return loss, loss.kind


def _same_person_notes(project, dproj, ava_trk, act_trk, ava_rows, act_rows, similarity, threshold) -> list[str]:
    """A note when the actor looks like the avatar's own subject (the same video, or ArcFace says so)."""
    a = (project.manifest.get("source") or {}).get("path")
    b = (dproj.manifest.get("source") or {}).get("path")
    if a and b and Path(a).resolve() == Path(b).resolve():
        return ["the actor video is the avatar's own video: the learned transfer will map the subject onto "
                "themself (training goes on)"]
    pick = lambda rows: rows[np.linspace(0, len(rows) - 1, min(16, len(rows))).astype(int)]  # noqa: E731
    try:
        sim = similarity(ava_trk.crops(pick(ava_rows)), act_trk.crops(pick(act_rows)))
    except (OSError, ValueError, RuntimeError):
        return []
    if sim is not None and sim > threshold:
        return [f"the actor looks like the avatar's own subject (ArcFace similarity {sim:.2f}; other people score "
                f"about 0.3): the learned transfer then maps the subject onto themself (training goes on)"]
    return []


def _preview(net, act_faces, scale: int = 1, pose=None) -> np.ndarray:
    """Actor faces above the avatar's decoder fed with the actor's codes (and head pose, for
    pose-conditioned decoders): (2R, 4R, 3) uint8."""
    import cv2
    import torch

    was = net.training
    net.eval()
    with torch.no_grad():
        x = act_faces.float().to(next(net.parameters()).device) / 255.0
        ava = net.decode(net.encode(x), "ava", pose)
    net.train(was)
    top = np.concatenate(list(act_faces.permute(0, 2, 3, 1).numpy()), 1)
    bottom = np.concatenate(list((ava.clamp(0, 1) * 255 + 0.5).byte().permute(0, 2, 3, 1).cpu().numpy()), 1)
    grid = np.concatenate([top, bottom], 0)
    if scale > 1:
        grid = cv2.resize(grid, (grid.shape[1] * scale, grid.shape[0] * scale), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(grid)


def _write_png(path: Path, rgb: np.ndarray) -> None:
    import cv2

    from ..atomic import atomic_path

    with atomic_path(path) as tmp:
        ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        if not ok:
            raise StudioError(f"could not encode {path.name}")
        tmp.write_bytes(buf.tobytes())
