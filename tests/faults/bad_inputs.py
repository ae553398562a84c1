"""The bad-input table: each case builds its bad input under a folder, names the command, the exit
code and a piece of the message, and the test that checks it. `python tests/faults/bad_inputs.py`
runs every case as a real `avatar-studio` process and writes BAD_INPUTS.md with the messages as
measured; tests/faults/test_bad_inputs.py runs the cases whose test is `BAD`."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
BAD = "tests/faults/test_bad_inputs.py::test_bad_input"


def ffmpeg(*args: str) -> None:
    from studio.video import ffmpeg_exe

    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def _pattern(d: Path, seconds: float = 1) -> Path:
    f = d / "wall.mp4"
    if not f.exists():
        ffmpeg("-f", "lavfi", "-i", f"testsrc2=size=160x120:rate=25:duration={seconds}", "-c:v", "libx264", str(f))
    return f


def _synthetic(d: Path) -> Path:
    from tests.stages.test_nerf import make_project

    root = d / "p"
    if not root.exists():
        make_project(root)
    return root


def _trained(d: Path) -> Path:
    """A tiny NeRF project, trained once per session folder (`d.parent/trained`)."""
    from studio.pipeline import run_stage
    from tests.stages.test_nerf import TINY, make_project

    root = d.parent / "trained"
    if not (root / "nerf" / "avatar.json").exists():
        run_stage(make_project(root), "nerf", dict(TINY, steps=4, mapper_steps=4))
    return root


def _arcface(d: Path) -> Path:
    import torch

    from models.arcface import MobileFaceNet

    f = d / "arcface.pt"
    torch.save(MobileFaceNet().state_dict(), f)
    return f


HOLD = textwrap.dedent("""
    import sys, time
    from studio.lock import project_lock
    with project_lock(sys.argv[1], "avatar-studio run-stage P prior"):
        print("held", flush=True)
        time.sleep(120)
""")


@dataclass
class Case:
    area: str
    what: str                                    # the bad input, in the user's words
    argv: Callable[[Path], list]                 # builds the input under a folder, returns the CLI arguments
    code: int                                    # the exit code
    expect: str                                  # a piece of the message
    test: str = BAD                              # the test that checks it
    fault: str = ""                              # injected fault (see _faulty_cli.py)
    holder: bool = False                         # another process holds the project's lock


def _text_as_mp4(d):
    f = d / "notes.mp4"
    f.write_text("this is a shopping list, not a video\n" * 50)
    return ["new", d / "proj", "--video", f]


def _empty(d):
    f = d / "empty.mp4"
    f.write_bytes(b"")
    return ["new", d / "proj", "--video", f]


def _audio_only(d):
    f = d / "sound.m4a"
    ffmpeg("-f", "lavfi", "-i", "sine=duration=1", "-c:a", "aac", str(f))
    return ["new", d / "proj", "--video", f]


def _folder_not_empty(d):
    (d / "proj").mkdir()
    (d / "proj" / "precious.txt").write_text("keep me")
    return ["new", d / "proj", "--video", _pattern(d)]


def _project_exists(d):
    from studio.project import Project

    Project.create(d / "proj")
    return ["new", d / "proj", "--video", _pattern(d)]


def _not_a_project(d):
    (d / "folder").mkdir()
    return ["status", d / "folder"]


def _damaged_manifest(d):
    root = _synthetic(d)
    (root / "project.json").write_text('{"schema": 1, "stages": {')
    return ["status", root]


def _bad_checkpoint(d):
    """A run stopped by a full disk after its first checkpoint; then the checkpoint is overwritten."""
    from tests.faults.conftest import cli

    root = _synthetic(d)
    argv = ["run-stage", root, "nerf", "--set", "steps=4", "--set", "mapper_steps=2", "--set", "size=16",
            "--set", "low_res=8", "--set", "samples=4", "--set", "checkpoint_every_s=0"]
    if not (root / "nerf" / "train.ckpt").exists():
        assert cli(*argv, fault="ckpt-full:2").returncode == 2
    (root / "nerf" / "train.ckpt").write_bytes(b"\x00garbage" * 100)
    return argv


def _export_driver_missing(d):
    return ["export", _trained(d), "-o", d / "out.mp4", "--source", "driver", "--driver", d / "nope.mp4"]


def _trained_copy(d, name: str = "copy") -> Path:
    """A copy of the trained project for a case that would harm it if the guard failed."""
    import shutil

    root = d / name
    if not root.exists():
        shutil.copytree(_trained(d), root, ignore=shutil.ignore_patterns(".lock"))
    return root


def _manifest_rewritten(d):
    root = _synthetic(d)
    (root / "project.json").write_text('{"schema": 1, "stages": 5}')
    return ["status", root]


def _project_is_a_file(d):
    (d / "notes").write_text("keep me")
    return ["new", d / "notes", "--video", _pattern(d)]


def _export_over_manifest(d):
    root = _trained_copy(d)
    return ["export", root, "-o", root / "project.json", "--format", "mp4", "--source", "turntable"]


def _export_frames_over_folder(d):
    (d / "holiday").mkdir(exist_ok=True)
    (d / "holiday" / "beach.jpg").write_bytes(b"a photo")
    return ["export", _trained(d), "-o", d / "holiday", "--source", "turntable"]


def _timeline_not_a_number(d):
    f = d / "timeline.json"
    f.write_text(json.dumps({"keys": [{"t": 0, "yaw": "left"}, {"t": 1, "yaw": 10}]}))
    return ["export", _trained(d), "-o", d / "out.mp4", "--source", "timeline", "--timeline", f]


def _out_of_date(d):
    from studio.pipeline import set_stage_config
    from studio.project import Project

    root = _trained_copy(d, "changed")
    set_stage_config(Project.open(root), "nerf", {"steps": 5})   # trained with 4: it must train again
    return ["eval", root, "--engine", "nerf"]


def _stage_folder_gone(d):
    import shutil

    root = _trained_copy(d, "moved")
    if (root / "nerf").exists():
        shutil.move(root / "nerf", d / "nerf-elsewhere")   # a trained stage's folder moved away by hand
    return ["eval", root, "--engine", "nerf"]


def _busy(d):
    return ["run-stage", _synthetic(d), "pivots"]


def _readonly(d):
    os.environ["AVATAR_FAULT_ROOT"] = str(_synthetic(d))
    return ["run-stage", _synthetic(d), "pivots"]


CASES = [
    Case("video", "video file does not exist", lambda d: ["new", d / "proj", "--video", d / "nope.mp4"], 2,
         "does not exist", "tests/test_cli_bad_input.py::test_missing_file"),
    Case("video", "a text file named .mp4", _text_as_mp4, 2, "not a video file",
         "tests/test_cli_bad_input.py::test_not_a_video"),
    Case("video", "a zero-byte file", _empty, 2, "empty", "tests/test_cli_bad_input.py::test_zero_length_video"),
    Case("video", "an audio-only file", _audio_only, 2, "no video stream",
         "tests/test_cli_bad_input.py::test_audio_only_file"),
    Case("video", "no face anywhere in the clip", lambda d: ["new", d / "proj", "--video", _pattern(d)], 2,
         "no face was found", "tests/test_cli_bad_input.py::test_no_face_anywhere"),
    Case("video", "--start after the end of the clip",
         lambda d: ["new", d / "proj", "--video", _pattern(d), "--start", "30"], 2, "past the end of the video"),
    Case("project", "new into a folder that exists and is not empty", _folder_not_empty, 2, "already exists",
         "tests/test_cli_bad_input.py::test_existing_project_folder_is_left_alone"),
    Case("project", "new into an existing project", _project_exists, 2, "a project already exists"),
    Case("project", "status of a path that does not exist", lambda d: ["status", d / "missing"], 2, "no project at",
         "tests/test_cli_bad_input.py::test_status_reports_next_step"),
    Case("project", "status of a folder that is not a project", _not_a_project, 2, "is not an avatar project"),
    Case("project", "project.json damaged (cut off)", _damaged_manifest, 2, "cannot be read"),
    Case("project", "project.json rewritten by hand into something else", _manifest_rewritten, 2, "is damaged"),
    Case("project", "a file given as the project folder", _project_is_a_file, 2, "is a file, not a folder"),
    Case("project", "eval of an avatar whose settings changed since it trained", _out_of_date, 2,
         "is out of date"),
    Case("project", "a trained stage's folder moved away by hand", _stage_folder_gone, 2, "is missing its file"),
    Case("project", "a stage whose input stage is not done (pti before prior)",
         lambda d: ["run-stage", _synthetic(d), "pti"], 2, "needs 'pivots' first"),
    Case("project", "export of a project with no trained avatar",
         lambda d: ["export", _synthetic(d), "-o", d / "out.mp4", "--source", "turntable"], 2, "has no trained avatar yet"),
    Case("checkpoint", "a training checkpoint replaced by garbage", _bad_checkpoint, 2, "cannot be read"),
    Case("weights", "models add with an unknown name", lambda d: ["models", "add", "vgg", _arcface(d)], 2,
         "unknown model file"),
    Case("weights", "models add arcface with a text file",
         lambda d: ["models", "add", "arcface", _text_as_mp4(d)[-1]], 2, "cannot be used as ArcFace",
         "tests/test_cli_models.py::test_wrong_file_is_refused_in_one_line_with_exit_code_2"),
    Case("weights", "models add arcface with a file that does not exist",
         lambda d: ["models", "add", "arcface", d / "nope.pt"], 2, "the file is gone"),
    Case("weights", "a weight file replaced by garbage after it was added (models list)", None, 0,
         "CHANGED since it was added",
         "tests/faults/test_readonly_and_weights.py::test_weight_file_replaced_by_garbage"),
    Case("CLI", "run-stage with an unknown stage", lambda d: ["run-stage", _synthetic(d), "mapperz"], 2,
         "unknown stage"),
    Case("CLI", "--set of a setting the stage does not have",
         lambda d: ["run-stage", _synthetic(d), "pivots", "--set", "kk=3"], 2, "kk"),
    Case("CLI", "--set with a value of the wrong type",
         lambda d: ["run-stage", _synthetic(d), "pivots", "--set", "k=many"], 2, "k"),
    Case("CLI", "--set without '='", lambda d: ["run-stage", _synthetic(d), "pivots", "--set", "k"], 2,
         "cannot read setting"),
    Case("CLI", "export to a name with an unknown extension",
         lambda d: ["export", _trained(d), "-o", d / "out.xyz", "--source", "turntable"], 2,
         "cannot tell the format"),
    Case("CLI", "export --source driver without --driver",
         lambda d: ["export", _trained(d), "-o", d / "out.mp4", "--source", "driver"], 2,
         "needs a driver video"),
    Case("CLI", "export --source driver with a driver that does not exist", _export_driver_missing, 2,
         "does not exist"),
    Case("CLI", "new with a trim start that is not a number",
         lambda d: ["new", d / "proj", "--video", _pattern(d), "--start", "nan"], 2, "--start must be a number"),
    Case("export", "export over the project's own project.json", _export_over_manifest, 2,
         "one of the project's own files"),
    Case("export", "PNG frames into a folder that holds other files", _export_frames_over_folder, 2,
         "already holds other files"),
    Case("export", "a timeline with a value that is not a number", _timeline_not_a_number, 2, "timeline"),
    Case("export", "a transparent background asked of an MP4",
         lambda d: ["export", _trained(d), "-o", d / "cutout.mp4", "--source", "turntable", "--transparent"], 2,
         "cannot keep a transparent background"),
    Case("CLI", "an unknown option (argparse)", lambda d: ["status", d, "--colour"], 2, "unrecognized arguments"),
    Case("disk", "disk full during a training checkpoint", None, 2, "the disk is full while writing train.ckpt",
         "tests/faults/test_disk_full.py::test_disk_full_during_a_checkpoint"),
    Case("disk", "disk full during an export", None, 2, "the disk is full while writing clip.mp4",
         "tests/faults/test_disk_full.py::test_disk_full_during_an_export"),
    Case("disk", "read-only project folder", _readonly, 2, "may write to it",
         "tests/faults/test_readonly_and_weights.py::test_readonly_project", fault="readonly"),
    Case("concurrency", "a second process on a busy project", _busy, 2, "busy", BAD, holder=True),
]


def run_case(case: Case, d: Path) -> tuple[subprocess.CompletedProcess, list]:
    """Build the input under `d` and run the command (another process holding the lock if asked)."""
    from tests.faults.conftest import cli

    d.mkdir(parents=True, exist_ok=True)
    argv = case.argv(d)
    holder = None
    if case.holder:
        holder = subprocess.Popen([sys.executable, "-c", HOLD, str(argv[1])], stdout=subprocess.PIPE, text=True,
                                  cwd=REPO, start_new_session=True)
        assert holder.stdout.readline().strip() == "held"
    try:
        return cli(*argv, fault=case.fault, AVATAR_STUDIO_CONFIG_DIR=str(d / "config")), argv
    finally:
        if holder is not None:
            holder.kill()
            holder.wait()


def message(r: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else r.stdout.strip().splitlines()[-1]


def main(out: Path) -> None:
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="bad-inputs-"))
    rows = ["| # | area | bad input | command | exit | what the user sees | test |",
            "|---|---|---|---|---|---|---|"]
    for i, case in enumerate(CASES, 1):
        if case.argv is None:
            rows.append(f"| {i} | {case.area} | {case.what} | (see the test) | {case.code} | "
                        f"`…{case.expect}…` | `{case.test}` |")
            continue
        d = base / f"case{i:02d}"
        r, argv = run_case(case, d)
        argv = " ".join(str(a).replace(str(d), "D").replace(str(base), "B") for a in argv)
        msg = message(r).replace(str(d), "D").replace(str(base), "B").replace("|", "\\|")
        print(f"{i:2d} exit {r.returncode}: {msg}", flush=True)
        rows.append(f"| {i} | {case.area} | {case.what} | `avatar-studio {argv}` | {r.returncode} | `{msg}` | "
                    f"`{case.test}` |")
    out.write_text("# Bad inputs: what the user sees\n\n"
                   "Measured by `python tests/faults/bad_inputs.py` (each command run as a real process; D is the "
                   "case's folder, B the base folder). Every row's test runs the same input and checks the exit "
                   "code and message.\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    os.environ.setdefault("AVATAR_STUDIO_THREADS", "1")
    main(Path(__file__).resolve().parent / "BAD_INPUTS.md")
