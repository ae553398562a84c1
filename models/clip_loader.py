"""Read an open_clip checkpoint a user supplies, without downloading or executing anything.

Accepted files (what open_clip itself reads or writes):

    .safetensors                      a state_dict (open_clip_model.safetensors on the model hubs)
    .bin / .pt / .pth                 a torch.save'd state_dict (open_clip_pytorch_model.bin), or
                                      open_clip's training checkpoint {"epoch", "name", "state_dict", ...}
                                      whose keys may carry DataParallel's "module." prefix

torch files are read with ``torch.load(weights_only=True)``: a pickle that names anything but
tensors and plain containers is refused before any of it runs. OpenAI's original TorchScript
archives are refused too (loading them means running their code); the open_clip release of the
same weights is a plain state_dict and loads.

The architecture is, in order of preference: an open_clip model name ("ViT-B-32",
"ViT-B-16-quickgelu", read from the JSON configs open_clip ships), a config dict
({"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"}), an ``open_clip_config.json`` beside the
file (as the hubs ship it), or inferred from the state_dict's shapes (vision width / layers /
patch / image size, text width / layers / context length / vocabulary, embed dim). Inference
cannot see the number of attention heads or the activation: it takes OpenAI's convention of
64-wide heads and GELU; name the architecture for a QuickGELU model (OpenAI-trained weights).

Only ViT image towers are inferred (and ModifiedResNet towers when named); open_clip_torch is
imported on first use, so this module imports without it.
"""
from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


class ClipFileError(ValueError):
    """The file is not a CLIP checkpoint this loader can read (one-line message with a hint)."""


def open_clip_available() -> bool:
    try:
        import open_clip  # noqa: F401
    except Exception:  # torchvision built for another torch raises RuntimeError, not ImportError
        return False
    return True


def _import_open_clip():
    try:
        import open_clip
    except Exception as exc:
        raise ClipFileError(f"open_clip_torch cannot be imported ({type(exc).__name__}: {str(exc)[:120]}); "
                            "install it with `pip install open_clip_torch` (it needs a torchvision built "
                            "for the installed torch)") from exc
    return open_clip


# ----------------------------------------------------------------------------- reading the file
def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a CLIP checkpoint file, prefixes removed. Never executes code from the file."""
    path = Path(path)
    if not path.is_file():
        raise ClipFileError(f"{path} does not exist or is not a file; give the path of the .bin/.pt/.safetensors file")
    if path.suffix.lower() not in SUFFIXES:
        raise ClipFileError(f"{path.name}: unsupported file type '{path.suffix}'; "
                            f"a CLIP checkpoint is one of {', '.join(SUFFIXES)}")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except (SafetensorError, OSError, ValueError) as exc:
            raise ClipFileError(f"{path.name} is not a readable safetensors file ({str(exc)[:100]})") from exc
    else:
        if _is_torchscript(path):
            raise ClipFileError(f"{path.name} is a TorchScript archive (OpenAI's original release); loading it "
                                "would run code from the file — use the open_clip release of the same "
                                "weights (open_clip_pytorch_model.bin or .safetensors)")
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # UnpicklingError (refused global), RuntimeError (TorchScript, bad zip), EOFError
            msg = str(exc)
            if "TorchScript" in msg:
                raise ClipFileError(f"{path.name} is a TorchScript archive (OpenAI's original release); loading it "
                                    "would run code from the file — use the open_clip release of the same "
                                    "weights (open_clip_pytorch_model.bin or .safetensors)") from exc
            if "weights_only" in msg or "Unsupported global" in msg or "GLOBAL" in msg:
                raise ClipFileError(f"{path.name} contains Python objects other than tensors and was refused "
                                    "(nothing in it was run); use a plain state_dict checkpoint") from exc
            raise ClipFileError(f"{path.name} is not a readable PyTorch checkpoint "
                                f"({type(exc).__name__}: {msg.splitlines()[0][:100] if msg else ''})") from exc
    return _unwrap(obj, path.name)


def _is_torchscript(path: Path) -> bool:
    """A torch zip archive with compiled code or constants inside (TorchScript), checked before torch.load."""
    import zipfile

    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError):
        return False
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def _unwrap(obj: Any, name: str) -> dict[str, torch.Tensor]:
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]          # open_clip's training checkpoint
    if not isinstance(obj, dict) or not obj:
        raise ClipFileError(f"{name} holds no state_dict (found {type(obj).__name__}); "
                            "a CLIP checkpoint is a dict of tensors")
    sd = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise ClipFileError(f"{name}: state_dict keys must be names, found {type(k).__name__}")
        if k.startswith("module."):
            k = k[len("module."):]
        if isinstance(v, torch.Tensor):
            sd[k] = v
    if not sd:
        raise ClipFileError(f"{name} holds no tensors; a CLIP checkpoint is a dict of tensors")
    return sd


# ----------------------------------------------------------------------------- architecture
def _count_blocks(sd: dict, prefix: str) -> int:
    pat = re.compile(re.escape(prefix) + r"(\d+)\.")
    idx = {int(m.group(1)) for k in sd for m in [pat.match(k)] if m}
    return max(idx) + 1 if idx else 0


def infer_config(sd: dict[str, torch.Tensor], name: str = "checkpoint") -> dict:
    """An open_clip model config {"embed_dim", "vision_cfg", "text_cfg", "quick_gelu"} from tensor shapes."""
    if any(k.startswith("text_model.") or k.startswith("vision_model.") for k in sd):
        raise ClipFileError(f"{name} is a Hugging Face transformers CLIP checkpoint, not an open_clip one; "
                            "use the open_clip release of the model (open_clip_pytorch_model.bin)")
    if "text.transformer.resblocks.0.attn.in_proj_weight" in sd:
        raise ClipFileError(f"{name} has a separate text tower (CustomTextCLIP); name its architecture "
                            "(e.g. arch='ViT-B-16-SigLIP') instead of relying on inference")
    need = ["visual.conv1.weight", "visual.positional_embedding", "visual.proj", "token_embedding.weight",
            "positional_embedding", "ln_final.weight", "text_projection"]
    missing = [k for k in need if k not in sd]
    if missing:
        if "visual.attnpool.positional_embedding" in sd:
            raise ClipFileError(f"{name} has a ResNet image tower; name its architecture (e.g. arch='RN50')")
        raise ClipFileError(f"{name} is not an open_clip ViT CLIP checkpoint (missing {', '.join(missing[:3])}"
                            f"{'…' if len(missing) > 3 else ''})")
    conv = sd["visual.conv1.weight"]                      # (width, 3, patch, patch)
    if conv.ndim != 4 or conv.shape[1] != 3 or conv.shape[2] != conv.shape[3]:
        raise ClipFileError(f"{name}: visual.conv1.weight has shape {tuple(conv.shape)}, not a patch embedding")
    width, patch = int(conv.shape[0]), int(conv.shape[2])
    n_pos = int(sd["visual.positional_embedding"].shape[0])
    grid = int(round((n_pos - 1) ** 0.5))
    if grid * grid + 1 != n_pos:
        raise ClipFileError(f"{name}: {n_pos} visual positions is not a square grid plus a class token")
    v_layers = _count_blocks(sd, "visual.transformer.resblocks.")
    t_layers = _count_blocks(sd, "transformer.resblocks.")
    if v_layers == 0 or t_layers == 0:
        raise ClipFileError(f"{name}: no transformer blocks found (visual {v_layers}, text {t_layers})")
    t_width = int(sd["ln_final.weight"].shape[0])
    embed = int(sd["text_projection"].shape[1])
    if int(sd["visual.proj"].shape[1]) != embed:
        raise ClipFileError(f"{name}: image and text embeddings differ in size "
                            f"({int(sd['visual.proj'].shape[1])} vs {embed})")
    mlp = sd.get("visual.transformer.resblocks.0.mlp.c_fc.weight")
    t_mlp = sd.get("transformer.resblocks.0.mlp.c_fc.weight")
    return {
        "embed_dim": embed,
        "quick_gelu": False,
        "vision_cfg": {"image_size": grid * patch, "layers": v_layers, "width": width, "patch_size": patch,
                       "head_width": 64 if width >= 64 else width,
                       "mlp_ratio": float(mlp.shape[0]) / width if mlp is not None else 4.0},
        "text_cfg": {"context_length": int(sd["positional_embedding"].shape[0]),
                     "vocab_size": int(sd["token_embedding.weight"].shape[0]), "width": t_width,
                     "heads": max(1, t_width // 64), "layers": t_layers,
                     "mlp_ratio": float(t_mlp.shape[0]) / t_width if t_mlp is not None else 4.0},
    }


def named_config(arch: str) -> dict:
    """The config of an open_clip architecture name, from the JSON files open_clip ships (no download)."""
    open_clip = _import_open_clip()
    base, quick = (arch[: -len("-quickgelu")], True) if arch.endswith("-quickgelu") else (arch, None)
    cfg = open_clip.get_model_config(arch) or open_clip.get_model_config(base)
    if cfg is None:
        known = ", ".join([m for m in open_clip.list_models() if m.startswith(("ViT-B", "ViT-L", "RN50"))][:8])
        raise ClipFileError(f"unknown CLIP architecture '{arch}'; open_clip knows e.g. {known}")
    cfg = copy.deepcopy(cfg)
    if quick:
        cfg["quick_gelu"] = True
    return cfg


def sidecar_config(path: Path) -> dict | None:
    """``open_clip_config.json`` beside the checkpoint (the hubs' layout), if present."""
    side = path.with_name("open_clip_config.json")
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise ClipFileError(f"{side.name} beside {path.name} is not valid JSON ({exc})") from exc
    cfg = data.get("model_cfg", data)
    return cfg if isinstance(cfg, dict) and "vision_cfg" in cfg and "text_cfg" in cfg else None


def build_model(cfg: dict):
    """An open_clip CLIP (no weights, no download) from a config dict."""
    _import_open_clip()
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg

    cfg = copy.deepcopy(cfg)
    if cfg.get("custom_text") or "hf_model_name" in cfg.get("text_cfg", {}):
        raise ClipFileError("CLIP models with a Hugging Face text tower need a download and are not supported")
    if cfg.get("vision_cfg", {}).get("timm_model_name"):
        raise ClipFileError("CLIP models with a timm image tower are not supported; use a ViT or ResNet CLIP")
    try:
        model = CLIP(embed_dim=int(cfg["embed_dim"]), vision_cfg=CLIPVisionCfg(**cfg["vision_cfg"]),
                     text_cfg=CLIPTextCfg(**cfg["text_cfg"]), quick_gelu=bool(cfg.get("quick_gelu", False)))
    except (TypeError, KeyError, ValueError, AssertionError) as exc:
        raise ClipFileError(f"the CLIP config cannot be built ({type(exc).__name__}: {exc})") from exc
    return model


# ----------------------------------------------------------------------------- the loaded model
@dataclass
class ClipInfo:
    """What `check_clip_file` found."""
    config: dict
    source: str
    """Where the architecture came from: "named", "config", "sidecar" or "inferred"."""
    parameters: int


class ClipModel(torch.nn.Module):
    """A frozen open_clip CLIP with its tokenizer and preprocessing, for losses and scores.

    `encode_images` takes renders (B, 3, H, W) in [-1, 1] and stays differentiable with respect to
    them; `encode_text` takes strings. Both return unit-length (B, embed_dim) embeddings.
    """

    def __init__(self, model, config: dict):
        super().__init__()
        from open_clip.tokenizer import SimpleTokenizer

        self.model = model.eval().requires_grad_(False)
        self.config = config
        size = config["vision_cfg"].get("image_size", 224)
        self.image_size = int(size[0] if isinstance(size, (list, tuple)) else size)
        self.context_length = int(config["text_cfg"].get("context_length", 77))
        pre = getattr(model.visual, "preprocess_cfg", {}) or {}
        self.register_buffer("mean", torch.tensor(pre.get("mean", OPENAI_MEAN)).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(pre.get("std", OPENAI_STD)).view(1, 3, 1, 1), persistent=False)
        # The BPE vocabulary ships inside the open_clip package: no download.
        self.tokenizer = SimpleTokenizer(context_length=self.context_length)

    def tokenize(self, texts: list[str]) -> torch.Tensor:
        return self.tokenizer(list(texts), context_length=self.context_length)

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] → CLIP's input (B, 3, s, s), normalised."""
        assert images.ndim == 4 and images.shape[1] == 3, images.shape
        x = (images + 1) / 2
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=x.shape[-1] > self.image_size)
        return (x - self.mean) / self.std

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(self.preprocess(images)), dim=-1)

    @torch.no_grad()
    def encode_text(self, texts: list[str] | str) -> torch.Tensor:
        texts = [texts] if isinstance(texts, str) else list(texts)
        dev = self.mean.device
        return F.normalize(self.model.encode_text(self.tokenize(texts).to(dev)), dim=-1)


def _resolve_config(path: Path, sd: dict, arch: str | dict | None) -> tuple[dict, str]:
    if isinstance(arch, dict):
        return copy.deepcopy(arch), "config"
    if isinstance(arch, str) and arch:
        return named_config(arch), "named"
    side = sidecar_config(path)
    if side is not None:
        return side, "sidecar"
    return infer_config(sd, path.name), "inferred"


def _load_into(model, sd: dict, name: str) -> None:
    sd = dict(sd)
    if "logit_scale" in sd and sd["logit_scale"].ndim != model.logit_scale.ndim:
        sd["logit_scale"] = sd["logit_scale"].reshape(model.logit_scale.shape)
    for k in ("input_resolution", "context_length", "vocab_size"):  # OpenAI state_dict extras
        sd.pop(k, None)
    own = model.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own and k != "logit_bias"]
    wrong = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        what = (f"{len(missing)} missing (e.g. {missing[0]})" if missing else "") + \
               (f" {len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "") + \
               (f" {len(wrong)} of another shape (e.g. {wrong[0]}: {tuple(sd[wrong[0]].shape)} vs "
                f"{tuple(own[wrong[0]].shape)})" if wrong else "")
        raise ClipFileError(f"{name} does not match the CLIP architecture: {what.strip()}; "
                            "name the right architecture")
    model.load_state_dict({k: sd[k] for k in own}, strict=True)


def load_clip(path: str | os.PathLike, arch: str | dict | None = None, device: str | torch.device = "cpu") -> ClipModel:
    """Load a CLIP checkpoint file into a frozen `ClipModel` (see the module docstring)."""
    path = Path(path)
    sd = read_state_dict(path)
    cfg, _ = _resolve_config(path, sd, arch)
    model = build_model(cfg)
    _load_into(model, sd, path.name)
    return ClipModel(model.float(), cfg).to(device)


def check_clip_file(path: str | os.PathLike, arch: str | dict | None = None, build: bool | None = None) -> ClipInfo:
    """Verify that `path` really is a CLIP checkpoint; raise `ClipFileError` with the reason if not.

    Reads the tensors safely and resolves the architecture. When open_clip is importable (or
    `build=True`) the model is also built and the weights loaded strictly, so every tensor name
    and shape is checked; without open_clip only the structure is checked.
    """
    path = Path(path)
    sd = read_state_dict(path)
    cfg, source = (_resolve_config(path, sd, arch) if (arch or build or open_clip_available())
                   else (infer_config(sd, path.name), "inferred"))
    if build if build is not None else open_clip_available():
        _load_into(build_model(cfg), sd, path.name)
    return ClipInfo(config=cfg, source=source, parameters=int(sum(v.numel() for v in sd.values())))
