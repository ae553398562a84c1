"""The LatentAvatar engine ("nerf"): load a trained `nerf` stage and render it.

Yaw and pitch move the camera around the canonical head (true free view); the expression
sliders drive the latent code θ through the expression mapper; `encode_image` / `render_image`
drive θ directly from an aligned face crop (a frame of a driver video after alignment).
Tri-planes are cached for the last code, so a camera move at a fixed expression skips the
generator.

Appearance edits (`studio.edits`) act on the tri-plane generator's style input: the generator maps
θ to one style vector w (B, D) that modulates every convolution; here it is repeated per layer
(B, L, D), L = modulated convolutions + 1 (the plane projection), an edit's offset (L, D) is added,
and the planes are made with one style per layer (`planes_from_styles`). The edit adapter
(`studio.edits.adapters.NerfAdapter`) calls the same two methods, so an edit found there renders
the same here. Without an active edit the plain path runs (bit-identical to an unedited avatar).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..compute import FreeCpuThreads, resolve_device
from ..errors import ProjectError
from ..metrics import to_uint8
from ..nerf_format import FORMAT


class NerfEngine:
    name = "nerf"
    free_camera = True
    """The camera moves in 3D (evaluation adds the multi-view consistency figures)."""

    def __init__(self, model, meta: dict, device: str = "cpu"):
        self.model = model.eval()
        self.meta = meta
        self.device = device
        self.size = int(meta["model"]["out_res"])
        self.control_names = list(meta["control_names"])
        self.ranges = {k: (float(v[0]), float(v[1])) for k, v in meta["ranges"].items()}
        self._cache_key: bytes | None = None
        self._cache_planes = None
        self._cpu_threads = FreeCpuThreads(device)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load_files(cls, config_path: str | Path, weights_path: str | Path, device: str = "cpu") -> "NerfEngine":
        from safetensors.torch import load_file

        from models.latentavatar import LatentAvatar, LatentAvatarConfig

        meta = json.loads(Path(config_path).read_text("utf-8"))
        if meta.get("format") != FORMAT:
            raise ProjectError(f"{config_path} is not a LatentAvatar model ({meta.get('format')!r})",
                               "train it again with `avatar-studio run-stage <project> nerf`")
        model = LatentAvatar(LatentAvatarConfig.from_dict(meta["model"]))
        model.load_state_dict(load_file(str(weights_path), device="cpu"), strict=True)
        return cls(model.to(device), meta, device)

    @classmethod
    def load(cls, project) -> "NerfEngine":
        return cls.load_files(project.output("nerf", "config"), project.output("nerf", "model"),
                              resolve_device(project.device))

    # ------------------------------------------------------------------ rendering
    def _tensor(self, x) -> "torch.Tensor":
        import torch

        return torch.as_tensor(np.asarray(x, np.float32), device=self.device)

    def planes_for(self, codes):
        """(B, D) codes → tri-planes, reusing the last result when the codes did not change."""
        import torch

        key = codes.detach().cpu().numpy().tobytes()
        if key != self._cache_key:
            with torch.no_grad():
                self._cache_planes = self.model.planes(codes)
            self._cache_key = key
        return self._cache_planes

    def render_codes(self, codes: np.ndarray, yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
        """θ (B, D), yaw (B,), pitch (B,) degrees → (B, S, S, 3) uint8."""
        import torch

        codes = self._tensor(codes).reshape(-1, self.model.cfg.code_dim)
        with torch.no_grad(), self._cpu_threads():
            out = self.model.render(self.planes_for(codes), self._tensor(yaw).reshape(-1),
                                    self._tensor(pitch).reshape(-1))["image"]
        return to_uint8(out, (0, 1))

    def codes_for(self, controls: np.ndarray) -> np.ndarray:
        """(B, 2+E) controls → θ (B, D) through the expression mapper."""
        import torch

        with torch.no_grad(), self._cpu_threads():
            return self.model.map_expression(self._tensor(controls)[:, 2:]).cpu().numpy()

    def expression_latents(self, controls: np.ndarray) -> np.ndarray:
        """(B, 2+E) controls → (B, D): the expression code the render is made from (θ); used by
        `studio.flame.warp` to find the training frames whose expression a render shows."""
        return self.codes_for(controls)

    def render_controls(self, controls: np.ndarray, edits=None) -> np.ndarray:
        """(B, 2+E) float32 [yaw, pitch, expr...] → (B, S, S, 3) uint8 RGB.

        `edits`: an `studio.edits.model.ActiveEdits` (anything with ``apply(styles)``) or None; with
        no active edit the render is the unedited one, bit for bit.
        """
        c = np.asarray(controls, np.float32).reshape(-1, len(self.control_names))
        if not edits:
            return self.render_codes(self.codes_for(c), c[:, 0], c[:, 1])
        if not hasattr(edits, "apply"):
            raise TypeError("edits must be bound first (studio.edits.model.EditSet.bind / Avatar.render(edits=...))")
        import torch

        with torch.no_grad(), self._cpu_threads():
            ct = self._tensor(c)
            styles = edits.apply(self.style_latents(ct))
            key = b"styles" + styles.detach().cpu().numpy().tobytes()
            if key != self._cache_key:
                self._cache_planes = self.planes_from_styles(styles)
                self._cache_key = key
            out = self.model.render(self._cache_planes, ct[:, 0].contiguous(), ct[:, 1].contiguous())["image"]
        return to_uint8(out, (0, 1))

    # ------------------------------------------------------------------ the edit space
    @property
    def style_shape(self) -> tuple[int, int]:
        """(L, D) of the per-layer style latent edits act on."""
        gen = self.model.generator
        return len(gen.convs) + 1, int(gen.convs[0].affine.in_features)

    def style_latents(self, controls) -> "torch.Tensor":
        """(B, 2+E) controls (tensor on the engine's device) → (B, L, D) per-layer styles; differentiable
        with respect to nothing but what the caller enables (the model's weights are frozen)."""
        gen = self.model.generator
        w = gen.mapping(self.model.map_expression(controls[:, 2:]))            # (B, D)
        return w[:, None, :].expand(-1, self.style_shape[0], -1)

    def styles_for_codes(self, codes) -> "torch.Tensor":
        """θ codes (N, code_dim) → (N, L, D) per-layer styles."""
        w = self.model.generator.mapping(codes)
        return w[:, None, :].expand(-1, self.style_shape[0], -1)

    def planes_from_styles(self, styles) -> "torch.Tensor":
        """(B, L, D) per-layer styles → tri-planes (B, 3, C, H, W): the generator's forward with one
        style per modulated layer (equal styles give exactly `model.planes`)."""
        import torch.nn.functional as F

        gen = self.model.generator
        b = styles.shape[0]
        assert styles.ndim == 3 and tuple(styles.shape[1:]) == self.style_shape, styles.shape
        x = gen.const[None].expand(b, -1, -1, -1)
        for i, conv in enumerate(gen.convs):
            if i > 0:
                x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
            x = conv(x, styles[:, i])
        planes = gen.to_planes(x, styles[:, -1])
        return planes.reshape(b, 3, gen.plane_channels, gen.plane_res, gen.plane_res)

    # ------------------------------------------------------------------ driving by images
    def encode_image(self, image: np.ndarray) -> np.ndarray:
        """An aligned face crop (H, W, 3) uint8 RGB (or a batch (B, H, W, 3)) → θ (D,) (or (B, D)).

        The crop must be aligned like the project's own crops (the `track` stage's FFHQ-style
        alignment); for a driver video, track it and use its crops.
        """
        import torch

        arr = np.asarray(image)
        single = arr.ndim == 3
        x = torch.from_numpy(np.ascontiguousarray(arr if not single else arr[None])).permute(0, 3, 1, 2)
        x = x.float().to(self.device) / 255.0
        with torch.no_grad(), self._cpu_threads():
            codes = self.model.encode_crops(x).cpu().numpy()
        return codes[0] if single else codes

    def render_image(self, image: np.ndarray, yaw: float = 0.0, pitch: float = 0.0) -> np.ndarray:
        """Drive the expression with an aligned face crop; the camera from (yaw, pitch) → (S, S, 3) uint8."""
        code = self.encode_image(image)
        return self.render_codes(code[None], np.array([yaw]), np.array([pitch]))[0]


def load(project) -> NerfEngine:
    """The registry's loader (`studio.engines.ENGINES["nerf"]`)."""
    return NerfEngine.load(project)
