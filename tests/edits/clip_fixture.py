"""A CLIP that means something, made in the tests: open_clip's own CLIP class in a tiny
configuration, trained for seconds to match images tinted red / green / blue with the captions
"red", "green", "blue" (and untinted ones with "grey", the tint's share setting how much each
caption applies, so the "red" score grows with the amount of red), and saved in open_clip's training-checkpoint format
({"epoch", "name", "state_dict"} with DataParallel's "module." prefix).

The architecture follows the conventions `models.clip_loader.infer_config` relies on (64-wide
heads, GELU), so the file loads with the architecture inferred from its shapes.
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

CAPTIONS = ["red", "green", "blue", "grey"]
TINTS = np.array([[1.0, 0.12, 0.1], [0.1, 0.9, 0.15], [0.1, 0.2, 1.0]], np.float32)
TINY_CLIP = {
    "embed_dim": 32,
    "quick_gelu": False,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8, "head_width": 64},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 2},
}


def tinted_images(n: int, rng: np.random.Generator, size: int = 32, tint: tuple[float, float] = (0.0, 0.9)
                  ) -> tuple[torch.Tensor, np.ndarray, np.ndarray]:
    """(n, 3, size, size) images in [-1, 1], their tint labels (0 red, 1 green, 2 blue) and tint amounts.

    Face-like blobs (an ellipse with darker eye/mouth spots on a noisy background), grey-ish and
    random in brightness, then pulled towards the tint colour by a random amount, sometimes only
    inside the blob: the tint is the one thing the captions describe.
    """
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    labels = rng.integers(0, 3, n)
    amounts = np.zeros(n, np.float32)
    out = np.empty((n, 3, size, size), np.float32)
    for i in range(n):
        bg = rng.uniform(0.2, 0.8) + 0.08 * rng.standard_normal((size, size))
        cx, cy = rng.uniform(0.35, 0.65, 2)
        rx, ry = rng.uniform(0.18, 0.32), rng.uniform(0.22, 0.38)
        blob = (((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) < 1
        skin = rng.uniform(0.35, 0.9)
        img = np.where(blob, skin, bg)
        for ex, ey, r in ((-0.35, -0.25, 0.08), (0.35, -0.25, 0.08), (0.0, 0.45, 0.12)):
            img = np.where(((xx - cx - ex * rx) ** 2 + (yy - cy - ey * ry) ** 2) < (r * rx) ** 2 * 4, skin * 0.4, img)
        rgb = np.repeat(img[None], 3, 0) * rng.uniform(0.85, 1.15, (3, 1, 1))
        a = amounts[i] = rng.uniform(*tint)
        where = blob if rng.random() < 0.5 else np.ones_like(blob)
        tinted = (1 - a) * rgb + a * TINTS[labels[i]][:, None, None] * rgb.mean(0, keepdims=True) * 1.6
        out[i] = np.where(where[None], tinted, rgb)
    return torch.from_numpy(np.clip(out, 0, 1) * 2 - 1), labels, amounts


def train_tiny_clip(steps: int = 100, batch: int = 32, seed: int = 0, lr: float = 1e-3):
    """An open_clip CLIP trained on tinted images; returns (model, seconds)."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    from open_clip.tokenizer import SimpleTokenizer

    from models.clip_loader import OPENAI_MEAN, OPENAI_STD

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = TINY_CLIP
    model = CLIP(cfg["embed_dim"], CLIPVisionCfg(**cfg["vision_cfg"]), CLIPTextCfg(**cfg["text_cfg"]))
    tokens = SimpleTokenizer(context_length=cfg["text_cfg"]["context_length"])(CAPTIONS)
    mean = torch.tensor(OPENAI_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_STD).view(1, 3, 1, 1)
    model.token_embedding.requires_grad_(False)  # three captions: random word embeddings already differ
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    t0 = time.perf_counter()
    for _ in range(steps):
        x, y, a = tinted_images(batch, rng)
        img = F.normalize(model.encode_image(((x + 1) / 2 - mean) / std), dim=-1)
        txt = F.normalize(model.encode_text(tokens), dim=-1)
        logits = model.logit_scale.exp() * img @ txt.t()                      # (B, 4)
        share = torch.from_numpy(np.clip(a / 0.6, 0, 1)).float()[:, None]   # how much the tint caption applies
        target = share * F.one_hot(torch.from_numpy(y).long(), 4).float()
        target[:, 3] = 1 - share[:, 0]
        loss = F.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return model.eval(), time.perf_counter() - t0


def save_open_clip_checkpoint(model, path: Path, fmt: str = "training") -> Path:
    """Write `model` as open_clip writes it: "training" ({"epoch", "name", "state_dict"} with
    "module." keys, .pt), "bin" (a plain state_dict) or "safetensors"."""
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    if fmt == "training":
        torch.save({"epoch": 1, "name": "tiny-rgb", "state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    elif fmt == "bin":
        torch.save(sd, path)
    elif fmt == "safetensors":
        from safetensors.torch import save_file

        save_file(sd, str(path))
    else:
        raise ValueError(fmt)
    return path


@torch.no_grad()
def retrieval_accuracy(clip, n: int = 120, seed: int = 123) -> float:
    """Fresh clearly tinted images (tint 0.5…0.9): share whose best colour caption is their tint."""
    x, y, _ = tinted_images(n, np.random.default_rng(seed), tint=(0.5, 0.9))
    img = clip.encode_images(x)
    txt = clip.encode_text(CAPTIONS[:3])
    return float(((img @ txt.t()).argmax(1).numpy() == y).mean())


if __name__ == "__main__":   # the test CLIP as a file, for trying text edits by hand: python clip_fixture.py OUT.pt
    import sys

    torch.set_num_threads(1)
    clip_model, seconds = train_tiny_clip()
    out = save_open_clip_checkpoint(clip_model, Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_rgb_clip.pt"))
    print(f"wrote {out} (trained in {seconds:.1f} s); add it with `avatar-studio models add clip {out}`")
