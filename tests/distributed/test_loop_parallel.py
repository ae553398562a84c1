"""Data-parallel training in the shared loop (gloo on the CPU), on a tiny stage-like run
(`tests/distributed/toy_train.py`) launched through torchrun's launcher (`studio.distributed.launch`):

- 2 processes follow the one-process loss curve with the same global batch (an odd batch of 7, so
  the shares are 4 + 3 and the weighting of the average matters; the gradient is clipped every
  step, so it must be averaged before the clip). Tolerance: 1e-5 relative per step and on the
  final weights (measured: 4e-7 relative; with an unweighted mean of the gradients a step was
  28 % off);
- a rank killed with SIGKILL stops the run with a one-line message; the checkpoint rank 0 wrote
  resumes with the same number of processes bit for bit (per-rank random state restored), and
  with 1 or 3 processes to the end;
- two "machines" on the loopback address (two launchers, `--nnodes 2 --node-rank 0/1
  --rdzv-endpoint`, torchrun's static rendezvous) train as one 2-process run;
- in one process the loop is what it was: `shard` returns its argument, the checkpoint has no
  per-rank state.
"""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from studio.distributed import LaunchOptions, launch
from studio.errors import StudioError

REPO = Path(__file__).resolve().parents[2]
STEPS, KILL_AT, BATCH = 30, 18, 7
TOL = 1e-5


def _launch(workdir: Path, nproc: int, *extra: str) -> None:
    rc = launch([str(workdir), "--steps", str(STEPS), "--batch", str(BATCH), *extra], LaunchOptions(nproc=nproc),
                module="tests.distributed.toy_train")
    assert rc == 0


def _one(workdir: Path, *extra: str) -> dict:
    from tests.distributed.toy_train import main

    assert main([str(workdir), "--steps", str(STEPS), "--batch", str(BATCH), *extra]) == 0
    return _result(workdir)


def _result(workdir: Path) -> dict:
    return json.loads((workdir / "result.json").read_text())


def _weights(res: dict) -> np.ndarray:
    return np.concatenate([np.asarray(w) for w in res["weights"]])


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)  # torchrun's children run `python -m tests.distributed.toy_train` from here
    monkeypatch.syspath_prepend(str(REPO))


def test_two_gloo_processes_follow_the_one_process_loss_curve(tmp_path):
    one = _one(tmp_path / "one")
    _launch(tmp_path / "two", 2)
    two = _result(tmp_path / "two")
    a, b = np.asarray(one["curve"]), np.asarray(two["curve"])
    assert len(a) == len(b) == STEPS
    assert a[-5:].mean() < 0.5 * a[:5].mean(), "the toy must learn for the comparison to mean something"
    np.testing.assert_allclose(b, a, rtol=TOL, atol=TOL)
    np.testing.assert_allclose(_weights(two), _weights(one), rtol=TOL, atol=TOL)
    assert two["world"] == 2 and two["parallel"]["processes"] == 2
    assert two["parallel"]["fit_batch"] == "7 = 4 + 3"
    assert "unchanged" in two["parallel"]["lr_rule"]
    assert one["parallel"] == {}


def test_a_killed_rank_leaves_a_checkpoint_that_resumes_with_any_process_count(tmp_path):
    noise = ("--noise", "0.1")  # per-sample noise from each rank's own generator
    _launch(tmp_path / "ref", 2, *noise)
    ref = _result(tmp_path / "ref")

    killed = tmp_path / "killed"
    with pytest.raises(StudioError) as err:
        _launch(killed, 2, *noise, "--kill-rank", "1", "--kill-at", str(KILL_AT))
    msg = str(err.value)
    assert "training process 1 of 2 was stopped by SIGKILL" in msg and "resume" in msg, msg
    assert "\n" not in msg
    ck = torch.load(killed / "train.ckpt", weights_only=True)
    assert ck["steps"] == {"fit": KILL_AT} and ck["world"] == 2 and len(ck["ranks"]) == 2
    assert not (killed / "result.json").exists()
    for name in ("one", "three"):
        shutil.copytree(killed, tmp_path / name)

    _launch(killed, 2, *noise)  # the same count: exactly the uninterrupted run
    same = _result(killed)
    assert same["resumed_from"] == {"fit": KILL_AT} and same["steps"] == {"fit": STEPS}
    assert np.array_equal(_weights(same), _weights(ref))
    assert same["curve"] == ref["curve"][KILL_AT:]

    one = _one(tmp_path / "one", *noise)  # fewer processes
    _launch(tmp_path / "three", 3, *noise)  # more: ranks 1 and 2 get random states derived from the step
    three = _result(tmp_path / "three")
    for res in (one, three):
        assert res["resumed_from"] == {"fit": KILL_AT} and res["steps"] == {"fit": STEPS}
        # the same batches from the same weights on; only the per-sample noise differs, so the step-by-step
        # losses follow the uninterrupted run's (measured r = 0.95; a wrong resume point or data order ~0)
        assert np.corrcoef(res["curve"], ref["curve"][KILL_AT:])[0, 1] > 0.8
    assert three["parallel"]["fit_batch"] == "7 = 3 + 2 + 2"


def test_two_machines_meet_at_a_rendezvous_endpoint(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    endpoint = f"127.0.0.1:{s.getsockname()[1]}"
    s.close()
    code = ("import sys; from studio.distributed import LaunchOptions, launch; "
            "sys.exit(launch(sys.argv[3:], LaunchOptions(nproc=1, nnodes='2', node_rank=int(sys.argv[1]), "
            "rdzv_endpoint=sys.argv[2]), module='tests.distributed.toy_train'))")
    work = tmp_path / "shared"  # both "machines" see the same folder; global rank 0 writes it
    nodes = [subprocess.Popen([sys.executable, "-c", code, str(r), endpoint, str(work), "--steps", str(STEPS),
                               "--batch", str(BATCH)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for r in (1, 0)]
    outs = [p.communicate(timeout=600)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], outs
    res = _result(work)
    assert res["world"] == 2 and res["parallel"]["fit_batch"] == "7 = 4 + 3"
    one = _one(tmp_path / "one")
    np.testing.assert_allclose(res["curve"], one["curve"], rtol=TOL, atol=TOL)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available() or torch.cuda.device_count() < 2,
                    reason="needs 2 CUDA GPUs (NCCL: one process per GPU)")
def test_two_gpus_with_nccl_follow_one_gpu(tmp_path):
    one = _one(tmp_path / "one", "--device", "cuda")
    _launch(tmp_path / "two", 2, "--device", "cuda")
    two = _result(tmp_path / "two")
    assert two["parallel"]["backend"] == "nccl"
    np.testing.assert_allclose(two["curve"], one["curve"], rtol=1e-4, atol=1e-4)


def test_one_process_is_unchanged(tmp_path):
    from studio.loop import TrainingLoop
    from studio.stages.base import StageContext
    from tests.distributed.toy_train import _Project

    loop = TrainingLoop(StageContext(project=_Project(), stage="toy", workdir=tmp_path), seed=1,
                        checkpoint_every_s=0, threads=1)
    idx = np.arange(5)
    assert loop.shard(idx) is idx and loop.shard(5) == slice(None)
    assert loop.local_rng is loop.rng and loop.all_mean(0.25) == 0.25
    x = torch.randn(6, 3)
    assert torch.equal(loop.batch_std(x), x.std(0))
    net = loop.track("net", torch.nn.Linear(2, 1))
    list(loop.part("p", 2, lambda i: {"loss": float(net.weight.detach().sum())}))
    ck = torch.load(tmp_path / "train.ckpt", weights_only=True)
    assert "ranks" not in ck and "world" not in ck
    assert loop.parallel_summary() == {}
