"""studio/workers/edit_process.py without Qt: a job in a real child process sends the stage protocol
(started, progress with a preview strip, done), a cancelled text search says "cancelled" and leaves
its checkpoint, and errors arrive as one message with a hint."""
from __future__ import annotations

import numpy as np
import pytest

from studio.edits.model import EditSet
from studio.workers.edit_process import EditProcess

from conftest import needs_open_clip


def _collect(proc, on_progress=None, timeout=300):
    msgs = []
    for msg in proc.messages(timeout=timeout):
        msgs.append(msg)
        if msg[0] == "progress" and on_progress is not None:
            on_progress(proc, msg[1])
    return msgs


def test_text_job_progress_preview_and_result(project_copy, clip_added):
    needs_open_clip()
    proj = project_copy("pvp")
    env = {"AVATAR_STUDIO_CONFIG_DIR": str(clip_added), "AVATAR_STUDIO_SHARED": str(clip_added.parent / "no-shared")}
    p = EditProcess(proj.root, "pvp", "text", {"prompt": "red", "steps": 6, "batch": 2, "augmentations": 1},
                    env=env).start()
    msgs = _collect(p)
    kinds = [m[0] for m in msgs]
    assert kinds[0] == "started" and kinds[-1] == "done" and p.outcome == "done", msgs[-1]
    batches = [m[1] for m in msgs if m[0] == "progress"]
    assert batches and all(b["stage"] == "edit" for b in batches)
    search = [b for b in batches if b["part"] == "search"]
    assert search and search[-1]["total"] == 6 and any(b["losses"] for b in search)
    previews = [b["preview"] for b in batches if b["preview"] is not None]
    assert previews and isinstance(previews[0], np.ndarray) and previews[0].dtype == np.uint8
    result = msgs[-1][-1]
    assert result["name"] == "red" and result["kind"] == "text" and result["engine"] == "pvp"
    assert "red" in EditSet.for_project(proj, "pvp")


def test_cancel_stops_the_search_and_keeps_its_checkpoint(project_copy, clip_added):
    needs_open_clip()
    proj = project_copy("nerf")
    env = {"AVATAR_STUDIO_CONFIG_DIR": str(clip_added), "AVATAR_STUDIO_SHARED": str(clip_added.parent / "no-shared")}
    p = EditProcess(proj.root, "nerf", "text", {"prompt": "red", "steps": 2000, "batch": 2, "augmentations": 1},
                    env=env).start()
    seen = []

    def cancel_once_searching(proc, batch):
        seen.append(batch)
        if batch["part"] == "search" and batch["step"] >= 2:
            proc.cancel()

    msgs = _collect(p, cancel_once_searching)
    assert msgs[-1] == ("cancelled", "text") and p.outcome == "cancelled"
    assert max(b["step"] for b in seen if b["part"] == "search") < 2000
    assert "red" not in EditSet.for_project(proj, "nerf")
    assert list((EditSet.folder_for(proj, "nerf") / "jobs").glob("*/train.ckpt")), "the next Find resumes"
    assert not p.process.is_alive()


def test_directions_job_and_a_failure(project_copy, no_weights):
    proj = project_copy("pvp")
    env = {"AVATAR_STUDIO_CONFIG_DIR": str(no_weights), "AVATAR_STUDIO_SHARED": str(no_weights.parent / "no-shared")}
    p = EditProcess(proj.root, "pvp", "directions", {"components": 3}, env=env).start()
    msgs = _collect(p)
    assert p.outcome == "done", msgs[-1]
    result = p.result
    assert len(result["edits"]) == 3 and result["picture"].endswith("directions.png")
    # the relay sends at most one progress batch per 0.1 s (the newest event), so a quick part such as
    # the PCA may be folded into the next; the last part always arrives
    parts = [m[1]["part"] for m in msgs if m[0] == "progress"]
    assert parts and parts[-1] == "save" and set(parts) <= {"load", "pca", "label", "picture", "save"}, parts
    # no CLIP file: the failure is one message with a hint, not a traceback
    p = EditProcess(proj.root, "pvp", "text", {"prompt": "red"}, env=env).start()
    msgs = _collect(p)
    kind, job, message, hint, details = msgs[-1]
    assert kind == "failed" and job == "text" and "CLIP" in message and "models add clip" in hint and details == ""
    with pytest.raises(ValueError, match="unknown edit job"):
        EditProcess(proj.root, "pvp", "mapper")
