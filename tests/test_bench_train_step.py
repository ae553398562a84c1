"""`avatar-studio bench train-step`: it runs a real step of each stage and prints its figures; the
reference-softplus switch reaches the NeRF's decoder and is undone afterwards."""
from __future__ import annotations

import re

import torch.nn.functional as F

from models.latentavatar import networks
from studio.benchmarks import train_step


def test_measure_runs_real_steps_of_both_stages():
    for stage in ("nerf", "prior"):
        r = train_step.measure(stage, steps=1, warmup=0)
        assert r["median_ms"] > 0 and len(r["times"]) == 1
        assert stage in r["what"]


def test_reference_softplus_is_swapped_in_and_restored():
    own = networks.softplus
    with train_step.reference_softplus(True):
        assert networks.softplus is F.softplus
    assert networks.softplus is own
    with train_step.reference_softplus(False):
        assert networks.softplus is own


def test_cli_prints_ms_per_step(capsys):

    assert train_step.main(["--stage", "nerf", "--steps", "1", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"nerf: median \d+ ms a step, best \d+ ms \(1 steps\)", out), out
