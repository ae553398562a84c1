"""Run inside a built bundle:   avatar-studio --run-script packaging/bundle_check.py

Checks that the bundle's own torch, torchvision and open_clip load and compute on the CPU (with the CPU
bundle's stubbed CUDA libraries, a call into one of them would abort here): a convolution, an SVD, an
FFT, torchvision's nms operator (the one that failed to load beside the CPU-only torch), and a tiny
open_clip CLIP encoding text tokenised with open_clip's bundled vocabulary. Prints one line; exit 1 on
any failure. build.sh runs it right after the build, smoke.sh again on the folder it tests.
"""
import sys

try:
    import torch
    import torchvision
    import open_clip
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.tokenizer import SimpleTokenizer

    x = torch.randn(2, 3, 16, 16)
    y = torch.nn.functional.conv2d(x, torch.randn(4, 3, 3, 3), padding=1)
    assert y.shape == (2, 4, 16, 16)
    assert torch.linalg.svd(torch.randn(6, 6))[1].shape == (6,)
    assert torch.fft.rfft(torch.randn(8)).shape == (5,)
    keep = torchvision.ops.nms(torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1.0], [2, 2, 3, 3]]),
                               torch.tensor([1.0, 0.5, 0.7]), 0.5)
    assert keep.tolist() == [0, 2], keep
    tokens = SimpleTokenizer(context_length=16)(["blue hair", "a face"])
    clip = CLIP(16, CLIPVisionCfg(image_size=16, layers=1, width=32, patch_size=8, head_width=32),
                CLIPTextCfg(context_length=16, vocab_size=49408, width=32, heads=1, layers=1)).eval()
    with torch.no_grad():
        t = clip.encode_text(tokens)
        i = clip.encode_image(torch.randn(1, 3, 16, 16))
    assert t.shape == (2, 16) and i.shape == (1, 16) and torch.isfinite(t).all()
except Exception as e:  # noqa: BLE001 — the one line says what broke
    print(f"bundle check FAILED: {type(e).__name__}: {e}")
    sys.exit(1)
print(f"bundle check: torch {torch.__version__} (GPU available: {torch.cuda.is_available()}), torchvision "
      f"{torchvision.__version__} (nms ok), open_clip {open_clip.__version__} (tokenizer + tiny CLIP ok)")
