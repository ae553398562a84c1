"""bfloat16 mixed precision for the training stages: which CPUs get it, what the training loop runs in,
and the parts of the losses that must stay float32 inside it."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from studio import compute
from studio.errors import StudioError
from studio.loop import TrainingLoop
from studio.progress import Control
from studio.stages.base import StageContext


def test_auto_is_bf16_only_on_a_cpu_with_bf16_instructions(monkeypatch):
    monkeypatch.delenv("AVATAR_STUDIO_PRECISION", raising=False)
    monkeypatch.setattr(compute, "cpu_bf16_instructions", lambda: "AMX")
    assert compute.resolve_precision("auto", "cpu") == "bf16"
    assert compute.resolve_precision("auto", "cpu", "nerf") == "bf16"
    assert compute.resolve_precision("auto", "cuda") == "fp32"      # a GPU keeps its float32 path
    assert compute.resolve_precision("fp32", "cpu") == "fp32"
    monkeypatch.setattr(compute, "cpu_bf16_instructions", lambda: "AVX512-BF16")
    assert compute.resolve_precision("auto", "cpu", "prior") == "bf16"
    assert compute.resolve_precision("auto", "cpu", "nerf") == "fp32", "the NeRF takes bfloat16 only with AMX"
    assert compute.resolve_precision("bf16", "cpu", "nerf") == "bf16", "asked for, it gets it"
    monkeypatch.setattr(compute, "cpu_bf16_instructions", lambda: "")
    assert compute.resolve_precision("auto", "cpu") == "fp32"
    assert compute.resolve_precision("bf16", "cpu") == "bf16"       # asked for: also without the instructions
    monkeypatch.setenv("AVATAR_STUDIO_PRECISION", "bf16")           # the variable overrides "auto" only
    assert compute.resolve_precision("auto", "cpu") == "bf16"
    assert compute.resolve_precision("fp32", "cpu") == "fp32"
    with pytest.raises(StudioError, match="precision must be one of"):
        compute.resolve_precision("half", "cpu")


def test_which_cpus_have_bf16_instructions(monkeypatch):
    """AMX (Intel Sapphire Rapids on) and AVX512-BF16 (AMD Zen 4 on) both count; a CPU with neither, or a
    torch that cannot tell, gets float32."""
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert compute.cpu_bf16_instructions() == "AMX"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert compute.cpu_bf16_instructions() == "AVX512-BF16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert compute.cpu_bf16_instructions() == ""

    def broken():
        raise RuntimeError("cpuinfo failed")

    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", broken)
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert compute.cpu_bf16_instructions() == ""
    monkeypatch.delenv("AVATAR_STUDIO_PRECISION", raising=False)
    assert compute.resolve_precision("auto", "cpu") == "fp32"


class _Project:
    def update_record(self, stage, **fields):
        pass


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_the_loop_runs_each_step_in_the_stage_precision(tmp_path: Path, precision):
    ctx = StageContext(project=_Project(), stage="toy", workdir=tmp_path, control=Control())
    loop = TrainingLoop(ctx, seed=0, checkpoint_every_s=1e9, threads=1, precision=precision)
    net = torch.nn.Linear(16, 16)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    target = torch.randn(64, 16)
    x = torch.randn(64, 16)
    seen = []

    def step(i):
        out = net(x)
        seen.append(out.dtype)
        loss = (out.float() - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        return {"loss": loss.item()}

    list(loop.part("fit", 60, step))
    summary = loop.finish()
    want = torch.bfloat16 if precision == "bf16" else torch.float32
    assert set(seen) == {want}
    assert net.weight.dtype == torch.float32                      # the weights stay float32
    assert summary.get("precision", "fp32") == precision
    with torch.no_grad():
        assert (net(x) - target).pow(2).mean() < 0.8 * target.pow(2).mean()   # it trained
        assert not torch.is_autocast_enabled("cpu")               # nothing left switched on


def test_the_perceptual_loss_stays_float32_inside_bf16(tmp_path):
    """SSIM's variances are differences of near-equal means: the loss is computed in float32 even
    inside a bfloat16 autocast region, so it equals the float32 loss."""
    from models.perceptual import PerceptualLoss

    g = torch.Generator().manual_seed(0)
    y = torch.rand(2, 3, 64, 64, generator=g) * 2 - 1
    x = (y + 0.05 * torch.randn(2, 3, 64, 64, generator=g)).clamp(-1, 1)
    loss = PerceptualLoss(None)
    ref = loss(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = loss(x.bfloat16(), y)
    assert got.dtype == torch.float32
    assert abs(float(got) - float(ref)) < 0.02 * float(ref)       # only the bf16 input's rounding differs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same = loss(x, y)
    assert torch.allclose(same, ref, rtol=1e-6, atol=1e-7)


def test_the_face_losses_come_out_float32_inside_bf16():
    from models.arcface import FaceLoss, MobileFaceNet

    torch.manual_seed(0)
    face = FaceLoss(MobileFaceNet())
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 3, 128, 128, generator=g)
    x = (y + 0.1 * torch.randn(2, 3, 128, 128, generator=g)).clamp(0, 1).requires_grad_(True)
    d32, i32 = face(x, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d16, i16 = face(x, y)
    assert d16.dtype == torch.float32 and i16.dtype == torch.float32
    assert torch.allclose(d16, d32, atol=0.02, rtol=0.1)
    (d16.sum() + i16.sum()).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
