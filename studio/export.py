"""Export rendered clips: MP4 (H.264), GIF or a PNG sequence, with audio, side-by-side with
the source, or pasted back into the original frames.

Frames are rendered and encoded one small batch at a time (memory does not grow with the
clip's length). The clip is written under a temporary name beside the target and renamed
only when complete, so a cancelled or failed export never leaves a broken file at the
output path. `export()` is a generator of `Progress` events, driven by the CLI and the GUI.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from .config import opt
from .errors import Cancelled, InputError, StudioError
from .progress import Control, Progress
from .video.encode import ALPHA_FORMATS, CLIP_FORMATS, ClipWriter, check_output, even, pad_even

FORMATS = CLIP_FORMATS
SOURCES = ("turntable", "self", "driver", "timeline", "flame")


@dataclass
class ExportConfig:
    source: str = opt("turntable", "Where the motion comes from: turntable (yaw/pitch orbit), self (the subject's "
                                   "own performance), driver (another person's video), timeline (keyframed sliders).",
                      choices=SOURCES)
    frames: str = opt("heldout", "For source=self: which frames (heldout, train, all).",
                      choices=("heldout", "train", "all"))
    driver: str | None = opt(None, "For source=driver: the driving video (or an already tracked project folder).")
    transfer: str = opt("auto", "For source=driver: how the driver's expressions reach the avatar: learned (the "
                                "actor's Y-shaped network, trained with `avatar-studio drive`), parameters (the "
                                "twelve named expressions, normalised), or auto (learned when that actor has a "
                                "trained network).", choices=("auto", "learned", "parameters"))
    timeline: str | None = opt(None, "For source=timeline: a JSON file of keys {t, slider: value}.")
    flame: str | None = opt(None, "For source=flame: a FLAME parameter file (DECA/EMOCA, SMIRK, metrical-tracker "
                                  "or ours), for an avatar trained with FLAME controls.")
    duration: float = opt(10.0, "For source=turntable: length in seconds.", minimum=0.1, maximum=3600)
    expression: str = opt("", "For source=turntable: fixed expression, e.g. 'smile_left=0.8,jaw_open=0.3'.")
    fps: float | None = opt(None, "Frame rate (empty = the source's; 25 for turntable).", minimum=1, maximum=120)
    format: str | None = opt(None, "mp4, gif, png or mov (ProRes 4444; empty = from the output name: .mov is an MP4 "
                                   "unless the background is transparent).", choices=(None,) + FORMATS)
    crf: int = opt(18, "MP4 quality: lower is better and larger (H.264 CRF, 0-51).", minimum=0, maximum=51)
    side_by_side: bool = opt(False, "Put the source frames beside the render (self and driver sources).")
    paste_back: bool = opt(False, "Paste the render back into the original video frames (source=self).")
    audio: bool = opt(True, "Include the subject's or driver's audio, trimmed to the clip (MP4 only).")
    engine: str | None = opt(None, "Which avatar engine renders (pvp or nerf; empty = the trained one).")
    edits: str = opt("", "Appearance edits with their strengths, e.g. 'blue hair=0.8; component 3=-1.5' (the "
                         "project's saved edits of the rendering engine; `avatar-studio edit PROJECT --list`).")
    detail: bool = opt(True, "Detail from the video: the subject's own frames nearest each render lend it their "
                             "fine detail (eyes, skin, hair); off renders the engine's image alone.")
    flame_geometry: bool = opt(True, "FLAME controls: warp each render by the landmark motion FLAME gives the "
                                     "controls beyond the expression the engine renders (needs FLAME's files).")
    scene: bool = opt(True, "The video's own background behind the person (a clean plate of the training "
                            "frames' background; source self: each head placed where it was in its frame, "
                            "other sources: where it was most of the clip); off keeps the engine's own, "
                            "softer background.")
    transparent: bool = opt(False, "The person alone on a transparent background, for compositing in a video "
                                   "editor: a MOV (ProRes 4444 with transparency; a name ending .mov) or PNG frames "
                                   "with an alpha channel (a folder name). The person is cut out of each frame by the "
                                   "selfie segmentation the tracker's mattes come from.")
    size: int | None = opt(None, "Image size in pixels (empty = the engine's render size, 128 in the preview preset). "
                                 "Up to the tracked crops' size (256): the render is upsampled and the video's frames "
                                 "lend their detail at full resolution.", minimum=32, maximum=2048)
    batch: int = opt(4, "Frames rendered per batch.", minimum=1, maximum=64, advanced=True)
    overwrite: bool = opt(True, "Replace an existing file at the output path (only once the new one is complete).")


# ----------------------------------------------------------------------------- writer
_SUFFIX_FORMATS = {".mp4": "mp4", ".mov": "mp4", ".m4v": "mp4", ".gif": "gif"}


def check_target(project, out: Path, reads: list) -> None:
    """Refuse an output that would replace what the project holds (anything outside its exports/ folder, or the
    folder itself) or a file the export reads: the subject's video (the project keeps no copy of it), a driver,
    a timeline, a FLAME file (`reads`; None entries are skipped). Run by `export` before anything is rendered,
    and by the window before it starts one."""
    import shlex

    target = Path(out).expanduser().resolve()
    if not target.exists():
        return
    root = project.root.resolve()
    if target == root or (root in target.parents and root / "exports" not in (target, *target.parents)):
        raise InputError(f"the output {out} is " + ("the project folder itself" if target == root else
                                                    "one of the project's own files"),
                         f"give a new name, e.g. -o {shlex.quote(str(root / 'exports' / 'clip.mp4'))}")
    src = (project.manifest.get("source") or {}).get("path")
    for path in [src, *reads]:
        if path and Path(path).exists() and os.path.samefile(path, target):
            raise InputError(f"the output {out} is " + ("the video the avatar was made from" if path == src else
                                                        "a file this export reads"),
                             "give the clip a new name; this one would be replaced")


# ----------------------------------------------------------------------------- compositing
def feather_mask(size: int, feather: float = 0.08) -> np.ndarray:
    """(S, S) float32 mask: 1 inside, linear fade to 0 over the border `feather` share."""
    ramp = np.clip(np.minimum(np.arange(size) + 0.5, size - np.arange(size) - 0.5) / (feather * size), 0, 1)
    return np.minimum(ramp[:, None], ramp[None, :]).astype(np.float32)


def face_mask(size: int, feather: float = 0.12) -> np.ndarray:
    """(S, S) float32 soft ellipse over the face of an FFHQ-aligned crop (forehead to chin, ear to
    ear); outside it the original frame shows, so hair and background stay sharp when pasting."""
    yy, xx = (np.mgrid[0:size, 0:size] + 0.5) / size
    cx, cy, rx, ry = 0.5, 0.58, 0.28, 0.36
    d = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)  # 1 on the ellipse
    return np.clip((1.0 - d) / feather + 0.5, 0.0, 1.0).astype(np.float32)


def paste_back(frame: np.ndarray, render: np.ndarray, transform: np.ndarray, crop_size: int,
               mask: np.ndarray | None = None) -> np.ndarray:
    """Warp a render (aligned-crop space) back into the original frame with a soft mask.

    transform: (2, 3) frame → crop affine at `crop_size` (as stored by tracking).
    """
    s = render.shape[0] / crop_size
    A = transform.astype(np.float64) * s  # frame → render pixels
    h, w = frame.shape[:2]
    inv = cv2.invertAffineTransform(A)
    warped = cv2.warpAffine(render, inv, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    m = mask if mask is not None else feather_mask(render.shape[0])
    mw = cv2.warpAffine(m, inv, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)[..., None]
    return (frame.astype(np.float32) * (1 - mw) + warped.astype(np.float32) * mw + 0.5).astype(np.uint8)


# ----------------------------------------------------------------------------- driver tracking
def driver_folder(project, driver: str | Path) -> Path:
    """<project>/drivers/<name>-<hash>/: where a driver video is tracked (and its learned transfer
    kept); the hash is of the file's path, size and time, so an edited video gets a new folder."""
    driver = Path(driver)
    if not driver.exists():
        raise InputError(f"the driver video {driver} does not exist")
    st = driver.stat()
    key = hashlib.sha1(f"{driver.resolve()}:{st.st_size}:{int(st.st_mtime)}".encode()).hexdigest()[:8]
    return project.root / "drivers" / f"{driver.stem}-{key}"


def track_driver(project, driver: str | Path, on_progress=None, control: Control | None = None) -> "object":
    """Track a driver video once into <project>/drivers/<name>-<hash>/ and return its project.
    `control` cancels it (the next export resumes or redoes the driver's stages)."""
    from .pipeline import run_stage
    from .project import Project, is_project

    driver = Path(driver)
    if is_project(driver):
        return Project.open(driver)
    root = driver_folder(project, driver)
    created = not is_project(root)
    if not created:
        dproj = Project.open(root)
    else:
        if root.exists():
            shutil.rmtree(root)
        dproj = Project.create(root, driver)
    try:
        run_stage(dproj, "ingest", on_progress=on_progress, control=control)
        run_stage(dproj, "track", {"crop_size": project.result("track").get("summary", {}).get("crop_size", 256),
                                   "min_frames": 5}, on_progress=on_progress, control=control)
    except Cancelled:
        raise
    except StudioError as exc:
        if created:  # a video that cannot drive (no face, not a video) is not kept as an actor of the project
            shutil.rmtree(root, ignore_errors=True)
        raise StudioError(f"the driver video could not be tracked: {exc.message}", exc.hint) from exc
    return dproj


# ----------------------------------------------------------------------------- export
def build_motion(project, cfg: ExportConfig, avatar, on_progress=None, control: Control | None = None):
    from . import motion as mo
    from .tracking.data import TrackingData

    from .flame.controls import is_flame_controls

    flame_controls = is_flame_controls(avatar.control_names)
    subject = TrackingData.from_project(project, controls="flame" if flame_controls else "named")
    names = avatar.control_names
    if cfg.source == "driver" and flame_controls:
        raise InputError("this avatar has FLAME controls: a driver video drives it through its FLAME fit",
                         "fit FLAME to the driver (`avatar-studio run-stage DRIVER_PROJECT flame`) and export with "
                         "--source flame --flame DRIVER_PROJECT/flame/flame.npz")
    if cfg.source == "self":
        m = mo.subject_motion(project, subject, cfg.frames)
    elif cfg.source == "driver":
        if not cfg.driver:
            raise InputError("source=driver needs a driver video", "give --driver path/to/video.mp4")
        dproj = track_driver(project, cfg.driver, on_progress, control)
        dtrk = TrackingData.from_project(dproj)
        audio_rel = (dproj.record("ingest").get("outputs") or {}).get("audio")
        m = mo.driver_motion(project, subject, dtrk, dproj.path(audio_rel) if audio_rel else None)
        # a damaged driver (cut off, frames that do not decode) or one that loses the face: say so; not what the
        # tracking says of a clip an avatar learns from (too short to teach the expressions)
        subject_only = set(dproj.result("track").get("subject_notes") or [])
        m.notes += [f"driver {Path(cfg.driver).name}: {w}" for stage in ("ingest", "track")
                    for w in (dproj.record(stage).get("warnings") or []) if w not in subject_only]
        held = int((~np.asarray(dtrk.valid, bool)).sum())
        if held:
            m.notes.append(f"{held} of {dtrk.n_frames} frames of the driver have no tracked face: the avatar holds "
                           f"the last tracked expression and pose there")
        if cfg.transfer != "parameters":
            from .driving.transfer import learned_motion

            m = learned_motion(project, dproj, avatar, m, cfg.transfer)
    elif cfg.source == "timeline":
        if not cfg.timeline:
            raise InputError("source=timeline needs a timeline file", "give --timeline keys.json")
        m = mo.timeline_motion(cfg.timeline, names, cfg.fps)
    elif cfg.source == "flame":
        from .flame.drive import flame_motion

        if not cfg.flame:
            raise InputError("source=flame needs a FLAME parameter file", "give --flame path/to/sequence.npz")
        m = flame_motion(project, cfg.flame, names, cfg.fps)
    elif cfg.source == "turntable":
        expr = {}
        for item in [s for s in cfg.expression.split(",") if s.strip()]:
            if "=" not in item:
                raise InputError(f"cannot read expression '{item}'", "write name=value, e.g. smile_left=0.8")
            k, v = item.split("=", 1)
            try:
                expr[k.strip()] = float(v)
            except ValueError:
                raise InputError(f"cannot read expression '{item.strip()}': '{v.strip()}' is not a number",
                                 "write name=value, e.g. smile_left=0.8") from None
        m = mo.turntable_motion(names, avatar.ranges, cfg.duration, cfg.fps or 25.0, expr)
    else:
        raise InputError(f"unknown source '{cfg.source}'", f"use one of {', '.join(SOURCES)}")
    if cfg.fps and m.rows is not None and abs(cfg.fps - m.fps) > 1e-3:
        # resample a tracked performance to the requested rate (nearest source frame)
        t = np.arange(int(len(m) * cfg.fps / m.fps)) / cfg.fps
        pick = np.minimum((t * m.fps + 1e-6).astype(int), len(m) - 1)
        m.controls, m.rows, m.fps = m.controls[pick], m.rows[pick], cfg.fps
        if getattr(m, "codes", None) is not None:  # the NeRF engine's learned θ, one per frame like the controls
            m.codes = m.codes[pick]
    return m


def _driver_motion(project, cfg: ExportConfig, avatar, control: Control):
    """build_motion for a driver video, run in a thread so that the tracking stages' progress comes
    out of this generator as `Progress(part="driver")`; returns the motion, re-raises its error."""
    import queue
    import threading

    events: queue.Queue = queue.Queue()
    box: dict = {}

    def work():
        try:
            box["motion"] = build_motion(project, cfg, avatar, events.put, control)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc
        finally:
            events.put(None)

    worker = threading.Thread(target=work, name="driver-tracking", daemon=True)
    worker.start()
    try:
        while (ev := events.get()) is not None:
            yield Progress(stage="export", step=ev.step, total=ev.total, part="driver",
                           message=f"tracking the driver video ({ev.stage}{': ' + ev.message if ev.message else ''})")
    finally:
        if worker.is_alive():  # the consumer stopped early: stop the tracking too
            control.cancel()
        worker.join()
    if "error" in box:
        raise box["error"]
    return box["motion"]


PASTE_MAX_SIDE = 4096
"""Paste-back writes the clip at the video's own size (a 1920x1080 clip as 1920x1080, though tracking read its
frames at 1280x720), its long side at most this (4K and DCI 4K whole; an 8K clip at 4096 px)."""


def own_size_decode(video: dict, max_side: int = PASTE_MAX_SIDE) -> dict:
    """`video.json`'s decode settings (ingest's) at the video's own upright, square-pixel size instead of the
    tracked frames' (long side at most `max_side`, even): the frames paste-back writes into."""
    from .video.decode import DecodeSettings, plan_decode
    from .video.header import VideoInfo

    dec = DecodeSettings(**video["decode"])
    try:
        own = plan_decode(VideoInfo(**video["info"]), max_side=max_side, turn=dec.turn)
    except (KeyError, TypeError, ValueError, InputError):   # a project from an older version: its tracked size
        return dec.to_dict()
    if own.width * own.height <= dec.width * dec.height:   # the tracked frames are the video's own size
        return dec.to_dict()
    return {**dec.to_dict(), "width": own.width, "height": own.height}


def _source_frames(motion, project, decode: dict | None = None):
    """Yield the original video frame for each motion row (self / driver), streamed; `decode`: other decode
    settings than ingest's (`own_size_decode`)."""
    from .project import Project
    from .video import DecodeSettings, FrameReader

    proj = project if motion.name == "self" else Project.open(motion.source.root.parent)
    video = json.loads(proj.output("ingest", "video").read_text("utf-8"))
    reader = FrameReader(proj.source_video, DecodeSettings(**(decode or video["decode"])))
    frames = enumerate(reader)
    cur_i, cur = -1, None
    try:
        for r in motion.rows:  # non-decreasing
            while cur_i < r:
                nxt = next(frames, None)
                if nxt is None:
                    return
                cur_i, cur = nxt
            yield int(r), cur
    finally:
        reader.close()


def _bind_edits(project, avatar, text: str):
    """`ExportConfig.edits` ("name=strength; ...") → the engines' `ActiveEdits`, or None; names are the
    project's saved edits of the avatar's engine (an unknown one raises `InputError` listing them)."""
    if not str(text or "").strip():
        return None
    from .edits.model import EditSet, parse_edit_list

    saved = EditSet.for_project(project, avatar.name)
    bound = saved.bind(parse_edit_list(text, saved))
    return bound if bound else None


_GOES_WITH = {"frames": "self", "driver": "driver", "transfer": "driver", "timeline": "timeline", "flame": "flame",
               "duration": "turntable", "expression": "turntable"}


def _unused_options(cfg: ExportConfig, fmt: str) -> list[str]:
    """A note naming the settings changed from their defaults that this export did not use (a driver
    video given with the turntable source, an MP4 quality for a GIF), or []."""
    default = ExportConfig()
    unused = [f"{name} (for source {src}, not {cfg.source})" for name, src in _GOES_WITH.items()
              if src != cfg.source and getattr(cfg, name) != getattr(default, name)]
    if fmt != "mp4" and cfg.crf != default.crf:   # (a MOV is ProRes: no CRF)
        unused.append(f"crf (for MP4, not {fmt.upper()})")
    return [f"these settings were not used: {', '.join(unused)}"] if unused else []


def export(project, cfg: ExportConfig, out: str | Path, control: Control | None = None,
           avatar=None) -> Iterator[Progress]:
    """Render and encode a clip; yields Progress; returns {"path", "frames", "fps", "seconds", ...}."""
    from .avatar import Avatar

    control = control or Control()
    out = Path(out)
    if out.name in ("", ".", ".."):  # "." or "..": the folder's own name
        out = Path(os.path.abspath(out))
    named = _SUFFIX_FORMATS.get(out.suffix.lower(), "png" if not out.suffix else None)
    if out.suffix.lower() == ".mov" and (cfg.transparent or cfg.format == "mov"):
        named = "mov"   # ProRes 4444: an editor's MOV, with transparency
    fmt = cfg.format or named
    if fmt is None:
        raise InputError(f"cannot tell the format from '{out.name}'", "end the name with .mp4 or .gif, or give a "
                         "folder name (no extension) for PNG frames")
    if cfg.format and out.suffix.lower() in _SUFFIX_FORMATS and named != cfg.format:
        raise InputError(f"the name {out.name} says {named.upper()} but the format asked for is {cfg.format.upper()}",
                         f"end the name with .{cfg.format}" + (" (or give a folder name for PNG frames)"
                                                               if cfg.format == "png" else "")
                         + " or leave the format out")
    if cfg.transparent and fmt not in ALPHA_FORMATS:
        raise InputError(f"{fmt.upper()} cannot keep a transparent background",
                         f"end the name with .mov (ProRes 4444 with transparency, which video editors import), e.g. "
                         f"{out.with_suffix('.mov').name}, or give a folder name (no extension) for PNG frames")
    if cfg.transparent and (cfg.side_by_side or cfg.paste_back):
        raise InputError("a transparent background is for the avatar alone, not "
                         + ("side by side with the source" if cfg.side_by_side else "pasted back into the video"),
                         "turn off " + ("side-by-side" if cfg.side_by_side else "paste-back")
                         + " or the transparent background")
    check_target(project, out, [cfg.driver, cfg.timeline, cfg.flame])
    check_output(out, fmt, cfg.overwrite)
    avatar = avatar or Avatar.open(project, cfg.engine, detail=cfg.detail, flame_geometry=cfg.flame_geometry,
                                   scene=cfg.scene, out_size=cfg.size)
    edits = _bind_edits(project, avatar, cfg.edits)

    yield Progress(stage="export", step=0, total=1, part="prepare", message=f"preparing {cfg.source} motion")
    if cfg.source == "driver":  # tracking a new driver takes a while: report it and let it be cancelled
        motion = yield from _driver_motion(project, cfg, avatar, control)
    else:
        motion = build_motion(project, cfg, avatar)
    if len(motion) == 0:
        raise InputError("the chosen motion has no frames")
    if hasattr(motion, "bind_avatar"):  # learned driving of the NeRF engine renders the motion's θ codes
        avatar = motion.bind_avatar(avatar)
    needs_frames = cfg.side_by_side or cfg.paste_back
    if needs_frames and motion.rows is None:
        raise InputError(f"side-by-side and paste-back need a video source, not {cfg.source}",
                         "use source self or driver")
    if cfg.paste_back and motion.name != "self":
        raise InputError("paste-back works with the subject's own video (source self)",
                         "use --side-by-side for a driver")
    S = avatar.size
    src_trk = motion.source
    own, to_tracked = None, None
    if cfg.paste_back:   # the clip at the video's own size; each frame → crop transform scaled to it
        own = own_size_decode(json.loads(project.output("ingest", "video").read_text("utf-8")))
        fw, fh = src_trk.frame_size
        to_tracked = np.diag([fw / own["width"], fh / own["height"], 1.0])   # own-size pixels → tracked frame's
        width, height = own["width"], own["height"]
    else:
        width, height = S, S
    if cfg.side_by_side:
        width *= 2
    width, height = even(width), even(height)
    audio = motion.audio if (cfg.audio and fmt in ("mp4", "mov")) else None
    cutout = None
    if cfg.transparent:   # (before the writer: a writer holds a partial file until it finishes or aborts)
        from .tracking.tracker import Segmenter

        cutout = Segmenter()
    writer = ClipWriter(out, fmt, width, height, motion.fps, cfg.crf, audio, motion.audio_offset, motion.duration,
                        alpha=cfg.transparent)
    frames_it = _source_frames(motion, project, own) if needs_frames else None
    mask = face_mask(S)
    placements = None
    if motion.name == "self" and motion.rows is not None:
        from .motion import _fill_invalid

        # a frame without a face keeps the last placement, as its controls keep the last frame's
        placements = _fill_invalid(np.asarray(src_trk.transforms, np.float64), src_trk.valid)
    clamped: set[str] = set()
    t0 = time.perf_counter()
    total = len(motion)
    done = 0
    # consecutive frames: the frames lending detail cross-fade instead of switching (`Avatar.sequence`)
    in_sequence = avatar.sequence() if hasattr(avatar, "sequence") else contextlib.nullcontext()
    try:
        with in_sequence:
            for start, ctrl in motion.chunks(cfg.batch):
                control.checkpoint()
                if placements is not None:   # the subject's own frames: each head where it was in its frame
                    imgs, moved = avatar.render_batch(ctrl, edits=edits,
                                                      placements=placements[motion.rows[start:start + len(ctrl)]])
                else:
                    imgs, moved = avatar.render_batch(ctrl, edits=edits)
                clamped.update(moved)
                for k, img in enumerate(imgs):
                    frame = img
                    if needs_frames:
                        nxt = next(frames_it, None)
                        if nxt is None:  # (a bare StopIteration here would surface as a RuntimeError)
                            raise StudioError(f"the source video ended before frame {done + 1} of {total}",
                                              "track the video again (`avatar-studio run-stage PROJECT track`)")
                        row, src = nxt
                        if cfg.paste_back:
                            frame = paste_back(src, img, src_trk.transforms[row] @ to_tracked, src_trk.crop_size,
                                               mask) if src_trk.valid[row] else src
                            left = src
                        else:
                            left = cv2.resize(src_trk.crop(row), (S, S), interpolation=cv2.INTER_AREA) \
                                if src_trk.valid[row] else np.zeros((S, S, 3), np.uint8)
                        if cfg.side_by_side:
                            frame = np.concatenate([left, frame], axis=1)
                    if cutout is not None:   # the person's matte as the alpha channel (the preview stays RGB)
                        alpha = np.clip(cutout(np.ascontiguousarray(frame)) * 255.0 + 0.5, 0, 255).astype(np.uint8)
                        writer.write(pad_even(np.dstack([frame, alpha])))
                    else:
                        writer.write(pad_even(frame))
                    done += 1
                el = time.perf_counter() - t0
                yield Progress(stage="export", step=done, total=total, part="render", elapsed=el,
                               message=f"{done}/{total} frames", preview=frame if done % 25 < cfg.batch else None)
        control.checkpoint()
        path = writer.finish(cfg.overwrite)
    except BaseException as exc:
        writer.abort()
        if isinstance(exc, (KeyboardInterrupt,)):
            raise Cancelled("export cancelled", "no file was written; start the export again") from None
        if isinstance(exc, Cancelled):
            raise Cancelled("export cancelled", "no file was written; start the export again") from None
        raise
    finally:
        if frames_it is not None:
            frames_it.close()
        if cutout is not None:
            cutout.close()
    notes = list(motion.notes) + _unused_options(cfg, fmt)
    if edits:
        notes.append(f"with edits: {edits.describe()}")
    if clamped:
        notes.append(f"some slider values were outside the trained range and were clamped: {', '.join(sorted(clamped))}")
    return {"path": str(path), "frames": done, "fps": motion.fps, "seconds": done / motion.fps,
            "size": [width, height], "audio": audio is not None, "format": fmt, "transparent": cfg.transparent,
            "notes": notes,
            "render_seconds": time.perf_counter() - t0}
