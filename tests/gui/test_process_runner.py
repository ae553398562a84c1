"""The one GUI-side runner (`studio.gui.process_runner`) and the one child-side helper
(`studio.workers.stage_process.child_run` / `Reporter`) that stages, edits, exports and actor
trainings share: a job reports the same way in a child process and in this thread; a child that
dies silently is reported as a failure that says so, or as cancelled after a cancel."""
from __future__ import annotations

import pytest

from gui_fakes import fake_job, fake_job_child
from studio.gui.process_runner import JobRunner


class FakeJob(JobRunner):
    process_name = "avatar-studio-test-job"

    def __init__(self, steps: int, fail: str = "", in_process: bool = False):
        super().__init__("job", in_process)
        self.steps, self.fail = steps, fail
        self.seen: dict[str, list] = {"progress": [], "done": [], "failed": [], "cancelled": []}
        self.progress.connect(self.seen["progress"].append)
        self.done.connect(self.seen["done"].append)
        self.failed.connect(self.seen["failed"].append)
        self.cancelled.connect(lambda: self.seen["cancelled"].append(True))

    def child(self):
        return fake_job_child, (self.steps, self.fail)

    def work_here(self, reporter) -> None:
        reporter.run("job", lambda c, p: fake_job(self.steps, self.fail, c, p), self.control)


def _run(qtbot, job: FakeJob, timeout_ms: int = 60000) -> FakeJob:
    job.start()
    qtbot.waitUntil(lambda: job.isFinished(), timeout=timeout_ms)
    qtbot.wait(50)  # queued signals
    return job


@pytest.mark.parametrize("in_process", [True, False], ids=["thread", "child"])
def test_a_job_reports_the_same_in_a_child_and_in_this_thread(qapp, qtbot, in_process):
    job = _run(qtbot, FakeJob(12, in_process=in_process))
    assert job.outcome == "done" and job.seen["done"] == [{"steps": 12}] and job.result == {"steps": 12}
    assert not job.seen["failed"] and not job.seen["cancelled"]
    steps = [s for b in job.seen["progress"] for s in b.steps]
    assert steps == list(range(1, 13)), "every loss arrives with its step"
    assert job.seen["progress"][-1].stage == "job" and job.seen["progress"][-1].part == "work"

    job = _run(qtbot, FakeJob(3, "error", in_process=in_process))
    assert job.outcome == "failed" and not job.seen["done"]
    (f,) = job.seen["failed"]
    assert f.message == "the input is bad" and f.hint == "choose another input"


@pytest.mark.parametrize("in_process", [True, False], ids=["thread", "child"])
def test_cancel(qapp, qtbot, in_process):
    job = FakeJob(100000, in_process=in_process)
    job.start()
    qtbot.waitUntil(lambda: len(job.seen["progress"]) >= 2, timeout=60000)
    job.cancel()
    qtbot.waitUntil(lambda: job.isFinished(), timeout=30000)
    qtbot.wait(50)
    assert job.outcome == "cancelled" and job.seen["cancelled"] == [True] and not job.seen["failed"]


def test_a_child_that_dies_silently_is_a_readable_failure(qapp, qtbot):
    job = _run(qtbot, FakeJob(3, "exit"))
    assert job.outcome == "failed"
    (f,) = job.seen["failed"]
    assert "stopped unexpectedly (exit code 3)" in f.message and f.hint
