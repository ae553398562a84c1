"""Benchmark: StyleGAN2 generator forward latency on this CPU, and on a CUDA GPU the reference
ops against the CUDA kernels (each op, then a full forward/backward).

    python -m studio.benchmarks.generator [--repeat N] [--threads T] [--resolutions 128 256]

Latency is one image (batch 1) of the CPU-trainable `GeneratorConfig.small` preset, no grad,
constant noise; the table shows the median and the best of N runs. On a shared machine the
median moves with other processes' load; the best run is what the code costs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time


def _time(fn, repeat: int, warmup: int = 3, sync=None) -> list[float]:
    for _ in range(warmup):
        fn()
    if sync:
        sync()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def _row(name: str, times: list[float]) -> str:
    return f"  {name:<42} {statistics.median(times):9.2f} {min(times):9.2f}"


def cpu_latency(resolutions, repeat: int, threads: int | None) -> list[str]:
    import torch

    from models.stylegan2.networks import GeneratorConfig

    if threads:
        torch.set_num_threads(threads)
    lines = [f"CPU forward, batch 1, GeneratorConfig.small, {torch.get_num_threads()} thread(s), {os.cpu_count()} cores",
             f"  {'':<42} {'median ms':>9} {'best ms':>9}"]
    for res in resolutions:
        torch.manual_seed(0)
        cfg = GeneratorConfig.small(res)
        G = cfg.build().eval().requires_grad_(False)
        z = torch.randn(1, cfg.z_dim)
        with torch.no_grad():
            times = _time(lambda: G(z, noise_mode='const'), repeat)
        params = sum(p.numel() for p in G.parameters()) / 1e6
        lines.append(_row(f"{res}x{res} ({params:.1f}M params, {G.num_ws} ws)", times))
    return lines


def cuda_comparison(repeat: int) -> list[str]:
    import torch

    from models.stylegan2.networks import GeneratorConfig
    from models.stylegan2.ops import bias_act, default_impl, setup_filter, upfirdn2d, upsample2d

    dev = torch.device('cuda')
    sync = torch.cuda.synchronize
    lines = [f"CUDA: {torch.cuda.get_device_name(dev)}   (ms, median of {repeat})",
             f"  {'':<42} {'ref':>9} {'cuda':>9} {'speedup':>8}"]

    def compare(name, fn):
        t = {}
        for impl in ('ref', 'cuda'):
            t[impl] = statistics.median(_time(lambda: fn(impl), repeat, sync=sync))
        lines.append(f"  {name:<42} {t['ref']:9.3f} {t['cuda']:9.3f} {t['ref'] / t['cuda']:7.2f}x")

    f = setup_filter([1, 3, 3, 1], device=dev)
    for dtype in (torch.float32, torch.float16):
        tag = 'fp32' if dtype == torch.float32 else 'fp16'
        x = torch.randn(8, 128, 128, 128, device=dev, dtype=dtype)
        b = torch.randn(128, device=dev, dtype=dtype)
        img = torch.randn(8, 3, 256, 256, device=dev, dtype=dtype)
        xg = x.clone().requires_grad_(True)
        compare(f"upfirdn2d blur 8x128x128x128 {tag}", lambda impl: upfirdn2d(x, f, padding=1, impl=impl))
        compare(f"upsample2d 8x3x256x256 {tag}", lambda impl: upsample2d(img, f, impl=impl))
        compare(f"bias_act lrelu 8x128x128x128 {tag}", lambda impl: bias_act(x, b, act='lrelu', impl=impl))
        compare(f"bias_act lrelu fwd+bwd {tag}", lambda impl: bias_act(xg, b, act='lrelu', impl=impl).sum().backward())

    for res in (256, 1024):
        cfg = GeneratorConfig.small(res) if res == 256 else GeneratorConfig.ffhq_config_f(res)
        G = cfg.build().to(dev)
        z = torch.randn(4, cfg.z_dim, device=dev)
        name = 'small 256' if res == 256 else 'config-f 1024'

        def fwd(impl):
            with default_impl(impl), torch.no_grad():
                G(z)

        def fwd_bwd(impl):
            with default_impl(impl):
                G(z, noise_mode='random').square().mean().backward()

        compare(f"G {name} forward, batch 4", fwd)
        compare(f"G {name} forward+backward, batch 4", fwd_bwd)
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog='python -m studio.benchmarks.generator', description=__doc__.splitlines()[0])
    parser.add_argument('--repeat', type=int, default=50, help='timed runs per figure (default 50)')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch default)')
    parser.add_argument('--resolutions', type=int, nargs='+', default=[128, 256])
    parser.add_argument('--no-cuda', action='store_true', help='skip the GPU comparison')
    args = parser.parse_args(argv)

    import torch

    for line in cpu_latency(args.resolutions, args.repeat, args.threads):
        print(line)
    if args.no_cuda:
        return 0
    if not torch.cuda.is_available():
        print("CUDA: not available here; the reference-vs-kernel comparison needs a CUDA GPU")
        return 0
    for line in cuda_comparison(max(10, args.repeat // 2)):
        print(line)
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
