"""`avatar-studio`'s argument parser: every command, its options and their help, each tied to its `cmd_*`."""
from __future__ import annotations

import argparse

from .. import __version__
from .avatar_commands import cmd_drive, cmd_edit, cmd_eval, cmd_export
from .project_commands import cmd_config, cmd_new, cmd_queue, cmd_run, cmd_run_stage, cmd_status
from .tool_commands import cmd_bench, cmd_gui, cmd_models


def build_parser() -> argparse.ArgumentParser:
    from ..engines import ENGINES

    p = argparse.ArgumentParser(prog="avatar-studio", description="Personal, controllable head avatars from one "
                                "phone video.")
    p.add_argument("--version", action="version", version=f"avatar-studio {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def common(sp, preset=True):
        if preset:
            sp.add_argument("--preset", default="preview", choices=("preview", "quality"),
                            help="preview: sized for a laptop CPU; quality: for a CUDA GPU")
        sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                        help="where to compute (auto: the GPU when there is one)")

    sp = sub.add_parser("new", help="create a project from a video: decode, track and align the face")
    sp.add_argument("project", help="folder to create for the project")
    sp.add_argument("--video", required=True, help="the subject's video (MP4/MOV from a phone)")
    sp.add_argument("--start", type=float, help="trim: start second")
    sp.add_argument("--end", type=float, help="trim: end second")
    sp.add_argument("--fps", type=float, help="decode at this frame rate (default: the video's)")
    sp.add_argument("--max-frames", type=int, help="use at most this many frames")
    sp.add_argument("--turn", choices=("auto", "0", "90", "180", "270"),
                    help="turn the picture clockwise by this many degrees (default auto: only a face lying on its "
                         "side or upside down, as when a phone's rotation tag was lost; 0 keeps it as it is)")
    sp.add_argument("--crop-size", type=int, choices=(128, 256, 512, 1024), help="aligned crop size")
    common(sp)
    sp.set_defaults(func=cmd_new)

    sp = sub.add_parser("status", help="what is done in a project and what comes next")
    sp.add_argument("project")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("run", help="make an avatar from a video (or finish a project): every stage, then eval")
    sp.add_argument("target", help="a video file, or an existing project folder")
    sp.add_argument("--project", help="project folder to create (default: <video name>_avatar)")
    sp.add_argument("--engine", default="pvp", choices=(*ENGINES, "both"),
                    help="; ".join(f"{e.name}: {e.title}" for e in ENGINES.values()) + "; both: every engine")
    sp.add_argument("--no-eval", action="store_true", help="skip the evaluation at the end")
    sp.add_argument("--controls", choices=("named", "flame"), default=None,
                    help="what the expression sliders are: named (the twelve named expressions, the default) or "
                         "flame (jaw + FLAME expression coefficients; needs FLAME's files, see `models list`)")
    sp.add_argument("--set", action="append", metavar="STAGE.NAME=VALUE",
                    help="change a stage's setting, e.g. --set prior.steps=800 (the time estimate is then skipped)")
    sp.add_argument("--nproc", type=int, default=1, metavar="N",
                    help="train each training stage in N processes on this machine (one per GPU), through "
                         "torchrun's launcher; the global batch and learning rate stay the preset's")
    sp.add_argument("--preset", default=None, choices=("preview", "quality"),
                    help="preview: sized for a laptop CPU; quality: for a CUDA GPU (default: preview for a new "
                         "project, a project's own preset for an existing one; given for an existing project, the "
                         "stages not trained yet switch to it)")
    sp.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"),
                    help="where to compute (auto: the GPU when there is one; default: the project's, auto for a new one)")
    sp.set_defaults(func=cmd_run)

    sp = sub.add_parser("run-stage", help="run (or resume) one stage of a project")
    sp.add_argument("project")
    sp.add_argument("stage")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE", help="change a setting of the stage")
    sp.add_argument("--force", action="store_true", help="run even if it is up to date")
    sp.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    g = sp.add_argument_group("several processes / machines (passed to torchrun's launcher)")
    g.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="processes on this machine (one per GPU; CPU processes share the cores)")
    g.add_argument("--nnodes", default="1", metavar="N", help="machines taking part (run the command on each)")
    g.add_argument("--node-rank", type=int, default=0, metavar="R", help="this machine's rank, 0 .. nnodes-1")
    g.add_argument("--rdzv-endpoint", default="", metavar="HOST:PORT",
                   help="where the machines meet: the first machine's address and a free port")
    g.add_argument("--rdzv-backend", default="static", choices=("static", "c10d"),
                   help="static: ranks from --node-rank (torchrun's default); c10d: assigned at the meeting")
    g.add_argument("--rdzv-id", default="avatar-studio", metavar="ID", help="c10d: one id per run, the same on "
                   "every machine")
    sp.set_defaults(func=cmd_run_stage)

    sp = sub.add_parser("queue", help="a queue of avatars: add videos, run them here or on a Ray cluster, list, "
                        "read a job's log")
    sp.add_argument("action", choices=("add", "list", "run", "log"))
    sp.add_argument("videos", nargs="*", metavar="VIDEO|ID", help="add: the videos; log: the job id")
    sp.add_argument("--queue", metavar="DIR", help="the queue folder (default: $AVATAR_STUDIO_QUEUE, else queue/ "
                    "in the settings folder)")
    sp.add_argument("--engine", default="pvp", choices=(*ENGINES, "both"), help="add: the engine to train")
    sp.add_argument("--out", metavar="DIR", help="add: where the projects go (default: the current folder)")
    sp.add_argument("--set", action="append", metavar="STAGE.NAME=VALUE", help="add: a stage setting for these jobs")
    sp.add_argument("--no-eval", action="store_true", help="add: skip the evaluation at the end of each job")
    sp.add_argument("--ray", metavar="ADDRESS", help="run: submit each job to the Ray cluster at ADDRESS (its "
                    "dashboard, e.g. http://head:8265) instead of running them here one after another")
    sp.add_argument("--cpus-per-job", type=float, default=1.0, help="run --ray: CPUs Ray reserves for each job")
    sp.add_argument("--gpus-per-job", type=float, default=0.0, help="run --ray: GPUs Ray reserves for each job")
    sp.add_argument("--python", metavar="PATH", help="run: the Python that runs each job (default: this one; on "
                    "a cluster, one with Avatar Studio installed on every machine)")
    sp.add_argument("--retry-failed", action="store_true", help="run: run failed jobs again too")
    sp.add_argument("--tail", type=int, default=0, metavar="N", help="log: only the last N lines")
    common(sp)
    sp.set_defaults(func=cmd_queue)

    sp = sub.add_parser("config", help="show or change a stage's settings")
    sp.add_argument("project")
    sp.add_argument("stage")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE")
    sp.add_argument("--reset", action="store_true",
                    help="put the stage back on the project's preset (a trained stage then trains again)")
    sp.set_defaults(func=cmd_config)

    sp = sub.add_parser("eval", help="measure a trained avatar: held-out quality, control accuracy, speed")
    sp.add_argument("project")
    sp.add_argument("--engine", default=None, choices=tuple(ENGINES))
    sp.add_argument("--edits", action="store_true",
                    help="measure the saved appearance edits instead (5 yaws x 3 expressions: CLIP score gain, "
                         "identity to the unedited render, share changed outside the face/hair)")
    sp.add_argument("--no-detail", dest="detail", action="store_false", default=True,
                    help="measure the engine's render alone, without detail from the subject's own video frames")
    sp.add_argument("--no-flame-warp", dest="flame_geometry", action="store_false", default=True,
                    help="FLAME controls: measure without FLAME's geometry warp (the FLAME sliders are scored "
                         "both ways anyway)")
    sp.add_argument("--no-scene", dest="scene", action="store_false", default=True,
                    help="measure with the engine's own background instead of the video's (the held-out frames "
                         "are scored both ways anyway)")
    sp.add_argument("--size", type=int, default=None, metavar="PX",
                    help="measure the avatar shown at PX pixels (up to the tracked crops' size, 256): the render "
                         "upsampled, the video's frames lending their detail at full resolution; the report goes to "
                         "eval/<engine>_<PX>px/")
    sp.set_defaults(func=cmd_eval)

    sp = sub.add_parser("export", help="render a clip: turntable, the subject's own motion, a driver video, or a "
                        "keyframed timeline")
    sp.add_argument("project")
    sp.add_argument("--out", "-o", required=True, help="output file (.mp4, .gif) or folder (PNG frames)")
    sp.add_argument("--source", choices=("turntable", "self", "driver", "timeline", "flame"))
    sp.add_argument("--frames", choices=("heldout", "train", "all"), help="source=self: which frames")
    sp.add_argument("--driver", help="source=driver: the driving video")
    sp.add_argument("--transfer", choices=("learned", "parameters"),
                    help="source=driver: learned (the actor's network from `drive`; the default when there is one) "
                         "or parameters (the named expressions, normalised)")
    sp.add_argument("--timeline", help="source=timeline: JSON keyframes")
    sp.add_argument("--flame", help="source=flame: a FLAME parameter file (.npz/.npy/.pkl or a folder of them)")
    sp.add_argument("--duration", type=float, help="source=turntable: seconds")
    sp.add_argument("--expression", help="source=turntable: e.g. smile_left=0.8,jaw_open=0.3")
    sp.add_argument("--fps", type=float)
    sp.add_argument("--format", choices=("mp4", "gif", "png", "mov"),
                    help="default: from the name (.mp4, .gif, a folder for PNG frames; .mov is an MP4, or ProRes 4444 "
                         "with --transparent)")
    sp.add_argument("--transparent", action="store_true", default=None,
                    help="the person alone on a transparent background, for compositing: give a .mov name (ProRes "
                         "4444 with transparency) or a folder name (PNG frames with alpha)")
    sp.add_argument("--crf", type=int, help="MP4 quality (lower = better), default 18")
    sp.add_argument("--side-by-side", action="store_true", default=None)
    sp.add_argument("--paste-back", action="store_true", default=None)
    sp.add_argument("--no-audio", dest="audio", action="store_false", default=None)
    sp.add_argument("--engine", choices=tuple(ENGINES))
    sp.add_argument("--edit", action="append", metavar="NAME=STRENGTH",
                    help="apply a saved appearance edit, e.g. --edit \"blue hair=0.8\" (repeat to stack edits)")
    sp.add_argument("--no-detail", dest="detail", action="store_false", default=None,
                    help="render the engine's image alone, without detail from the subject's own video frames")
    sp.add_argument("--no-flame-warp", dest="flame_geometry", action="store_false", default=None,
                    help="FLAME controls: render without FLAME's geometry warp (the engine's own expression only)")
    sp.add_argument("--no-scene", dest="scene", action="store_false", default=None,
                    help="keep the engine's own background instead of the video's behind the person")
    sp.add_argument("--size", type=int, metavar="PX",
                    help="image size in pixels (default: the engine's, 128 in preview; up to the tracked crops' "
                         "size, 256): the render upsampled, the video's frames lending their detail at full "
                         "resolution")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("drive", help="train the learned transfer of another person (an actor) onto the avatar, "
                        "for export --source driver")
    sp.add_argument("project")
    sp.add_argument("--actor", required=True, help="the actor's video (tracked like a subject, kept in drivers/)")
    sp.add_argument("--preset", default=None, choices=("preview", "quality"),
                    help="preview: minutes on a CPU; quality: the paper's schedule for a GPU (default: the project's)")
    sp.add_argument("--no-cycle", action="store_true", help="train without the cycle-consistency term (ablation)")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE", help="change a setting (e.g. steps=500)")
    sp.add_argument("--device", default=None, choices=("auto", "cpu", "cuda"))
    sp.set_defaults(func=cmd_drive)

    sp = sub.add_parser("edit", help="appearance edits: find one from a text prompt (needs a CLIP file), compute "
                        "directions from the avatar itself, list or remove them")
    sp.add_argument("project")
    sp.add_argument("--text", metavar="PROMPT", help="find a text edit, e.g. --text \"blue hair\" (StyleCLIP)")
    sp.add_argument("--global", dest="global_prompt", metavar="PROMPT",
                    help="make a global-direction edit, e.g. --global \"blue hair\" (StyleCLIP global directions: the "
                         "avatar's channel effects are computed once, then any prompt is one matrix product; needs a "
                         "CLIP file)")
    sp.add_argument("--channel-effects", action="store_true",
                    help="compute (or check) the avatar's per-channel CLIP effects that --global uses, with progress; "
                         "resumable, cached in the project until the avatar is retrained")
    sp.add_argument("--directions", action="store_true",
                    help="compute the avatar's principal directions (GANSpace; no file needed) and a picture")
    sp.add_argument("--list", action="store_true", help="list the saved edits")
    sp.add_argument("--remove", metavar="NAME", help="remove a saved edit")
    sp.add_argument("--neutral", metavar="TEXT", help="--text/--global: a neutral description, e.g. \"a face\"")
    sp.add_argument("--name", help="--text/--global: the edit's name (default: the prompt)")
    sp.add_argument("--beta", type=float, help="--global: threshold β in [0, 1); channels whose relevance is under β "
                    "of the largest are left out (default 0.1; larger = fewer channels, a narrower edit)")
    sp.add_argument("--steps", type=int, help="--text: optimisation steps (default: 100 in the preview preset)")
    sp.add_argument("--keep-background", action="store_true",
                    help="--text: penalise changes outside the face and hair")
    sp.add_argument("--engine", choices=tuple(ENGINES), help="which engine's avatar (default: the trained one)")
    sp.set_defaults(func=cmd_edit)

    sp = sub.add_parser("models", help="optional weight files (StyleGAN2, CLIP, ArcFace, LPIPS, FLAME): list, add "
                        "(checked and hashed), remove")
    sp.add_argument("action", nargs="?", default="list", choices=("list", "add", "remove"))
    sp.add_argument("key", nargs="?", help="stylegan2, clip, arcface, lpips, flame or flame-mediapipe")
    sp.add_argument("path", nargs="?", help="the file (for add)")
    sp.add_argument("--folder", metavar="DIR", help="add: import every recognised weight file in DIR")
    sp.set_defaults(func=cmd_models)

    sp = sub.add_parser("bench", help="benchmarks that print figures")
    sp.add_argument("what", choices=("track", "generator", "export", "driving", "train-step"))
    sp.add_argument("video", nargs="?", help="video for the tracking benchmark (project for the export and driving "
                                             "ones)")
    sp.add_argument("--actor", help="driving: the trained actor's video")
    sp.add_argument("--engine", choices=tuple(ENGINES), help="driving: the engine (default: every trained one)")
    sp.add_argument("--clip", help="driving: also write actor | parameter transfer | learned transfer to this MP4")
    sp.add_argument("--no-detail", action="store_true",
                    help="driving: render the engine's image alone, without detail from the subject's video")
    sp.add_argument("--max-frames", type=int)
    sp.add_argument("--repeat", type=int, help="track: the clip K times in a row (memory must stay flat); "
                                                 "train-step: how many steps are timed")
    sp.add_argument("--landscape-1080p", action="store_true",
                    help="track: a 1920x1080 landscape clip with a small face, made from a shared clip")
    sp.add_argument("--whole-frame", action="store_true", help="track: run the mesh on the whole frame (old way)")
    sp.set_defaults(func=cmd_bench)

    from ..gui.app import add_arguments as gui_arguments   # argparse only: no Qt is imported here

    sp = sub.add_parser("gui", help="open the studio window")
    gui_arguments(sp)
    sp.set_defaults(func=cmd_gui)
    return p
