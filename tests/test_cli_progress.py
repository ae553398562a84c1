"""The CLI's progress lines in a log (not a terminal): sparse, yet every new kind of message shows."""
from __future__ import annotations

import io

from studio.cli import ProgressPrinter
from studio.progress import Progress


def test_a_log_gets_each_new_message_but_not_every_counted_frame():
    out = io.StringIO()
    p = ProgressPrinter(out)
    assert not p.tty
    p(Progress("ingest", 0, 3, part="probe", message="reading clip.mp4"))
    p(Progress("ingest", 1, 3, part="check", message="checking the file for damage"))
    for i in range(1, 589):   # a tracker counting its frames, far faster than the log's 5 s
        p(Progress("track", i, 588, part="track", message=f"frame {i}"))
    p(Progress("track", 588, 588, part="track", message="frame 588"))
    p.close()
    lines = out.getvalue().splitlines()
    track = [ln for ln in lines if ln.startswith("track")]
    assert any("reading clip.mp4" in ln for ln in lines) and any("checking the file" in ln for ln in lines)
    assert 2 <= len(track) <= 4, track          # the first frame, the end (and at most a timed line or two)
    assert "frame 1" in track[0] and "588/588" in track[-1]
