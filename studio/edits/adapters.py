"""What an edit acts on, per engine: a differentiable latent of the controls and a render of it.

Written against the engines' public attributes only (`PVPEngine`: G, pose_map, expr_map;
`NerfEngine`: model), so the engines need no change to be edited.

    adapter.latent(controls)          (B, 2+E) controls → latent (B, L, D), differentiable
    adapter.render(latent, controls)  → (B, 3, S, S) float in [-1, 1], differentiable
    adapter.face_mask(latent, controls) → (B, 1, S, S) in [0, 1]: face and hair (1) vs the rest
    adapter.sample_controls(n, gen)   uniform inside the trained ranges (for LatentAvatar the
                                      yaw/pitch controls are camera views)

**StyleGAN engine**: the latent is W+, ``ws = pose_map(c[:, :2]) + expr_map(c[:, 2:])`` (B, L, D),
rendered by ``G.synthesis(ws, noise_mode="const")``. An offset with a layer range is PVP's editing
space.

**LatentAvatar**: the tri-plane generator maps θ to one style vector w = mapping(θ) (B, D) that
modulates every convolution. The latent here is that w repeated per layer (B, L, D), L = number
of modulated convolutions + 1 (the plane projection), so an offset may act on a layer range as in
StyleGAN. A persistent offset there changes the tri-planes themselves, so it holds for every
camera view (the planes are 3D) and every expression (it is added to whatever θ gives). The
code θ itself is left alone: it is the expression code, and an offset in it moves expression.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ProjectError


def _controls_tensor(controls, device) -> torch.Tensor:
    if isinstance(controls, torch.Tensor):
        return controls.to(device=device, dtype=torch.float32)
    return torch.as_tensor(np.asarray(controls, np.float32), device=device)


def ellipse_mask(size: int, cx: float = 0.5, cy: float = 0.47, rx: float = 0.36, ry: float = 0.46,
                 soft: float = 0.06) -> torch.Tensor:
    """(1, 1, S, S) soft ellipse of an FFHQ-aligned crop's face and hair (fractions of the side)."""
    yy, xx = torch.meshgrid(torch.arange(size, dtype=torch.float32), torch.arange(size, dtype=torch.float32),
                            indexing="ij")
    d = torch.sqrt(((xx + 0.5) / size - cx) ** 2 / rx ** 2 + ((yy + 0.5) / size - cy) ** 2 / ry ** 2)
    return torch.clamp((1 - d) / soft + 0.5, 0, 1)[None, None]


class EditAdapter:
    """Shared part: control ranges and sampling."""

    engine_name = ""
    text_l2 = 0.008
    """λ_L2 a text edit's offset gets in this latent space when its config leaves `w_l2` unset
    (StyleCLIP's value; latent units differ between engines)."""

    def __init__(self, engine):
        self.engine = engine
        self.control_names = list(engine.control_names)
        self.ranges = {k: (float(a), float(b)) for k, a, b in
                       ((n, *engine.ranges.get(n, (0.0, 0.0))) for n in self.control_names)}
        self.size = int(engine.size)
        self.device = torch.device("cpu")

    # ---- controls
    @property
    def lo(self) -> np.ndarray:
        return np.array([self.ranges[n][0] for n in self.control_names], np.float32)

    @property
    def hi(self) -> np.ndarray:
        return np.array([self.ranges[n][1] for n in self.control_names], np.float32)

    def neutral(self) -> np.ndarray:
        """(2+E,) zero controls clamped into the ranges."""
        return np.clip(np.zeros(len(self.control_names), np.float32), self.lo, self.hi)

    def sample_controls(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(n, 2+E) uniform inside the trained ranges."""
        u = torch.rand(n, len(self.control_names), generator=generator)
        lo, hi = torch.from_numpy(self.lo), torch.from_numpy(self.hi)
        return (lo + u * (hi - lo)).to(self.device)

    def sweep_controls(self, yaws: int = 5, expressions: int = 3) -> np.ndarray:
        """(yaws · expressions, 2+E): yaw across its range (pitch 0) × neutral / jaw open / mixed expression."""
        base = self.neutral()
        lo, hi = self.lo, self.hi
        exprs = [base.copy()]
        if len(base) > 2:
            open_ = base.copy()
            open_[2] = lo[2] + 0.8 * (hi[2] - lo[2])          # the first expression (jaw_open in tracking order)
            exprs.append(open_)
            mixed = base.copy()
            mixed[2:] = lo[2:] + 0.7 * (hi[2:] - lo[2:])
            exprs.append(mixed)
        exprs = exprs[:expressions]
        out = []
        for yaw in np.linspace(lo[0], hi[0], yaws):
            for e in exprs:
                c = e.copy()
                c[0] = yaw
                out.append(c)
        return np.stack(out).astype(np.float32)

    # ---- to implement
    @property
    def latent_shape(self) -> tuple[int, int]:
        raise NotImplementedError

    def latent(self, controls) -> torch.Tensor:
        raise NotImplementedError

    def render(self, latent: torch.Tensor, controls) -> torch.Tensor:
        raise NotImplementedError

    def face_mask(self, latent: torch.Tensor, controls) -> torch.Tensor:
        raise NotImplementedError

    def latent_samples(self, n: int = 256, seed: int = 0) -> torch.Tensor:
        """(N, L, D) latents the avatar really produces: the controls sampled over their ranges,
        plus engine-specific anchors (the pivots for StyleGAN)."""
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            return self.latent(self.sample_controls(n, g))

    # ---- uint8 renders with edits (what the engines call)
    def render_uint8(self, controls: np.ndarray, edits=None) -> np.ndarray:
        """(B, 2+E) controls → (B, S, S, 3) uint8 with `edits` (an `ActiveEdits` or None) applied.

        With no active edit this is the engine's own `render_controls` (bit-identical unedited render).
        """
        from ..metrics import to_uint8

        if not edits:
            return self.engine.render_controls(np.asarray(controls, np.float32))
        with torch.no_grad():
            c = _controls_tensor(controls, self.device)
            return to_uint8(self.render(edits.apply(self.latent(c)), c))


class PVPAdapter(EditAdapter):
    """StyleGAN engine: W+ latents of the pose and expression mappers, G.synthesis."""

    engine_name = "pvp"
    text_l2 = 0.05
    """On a full d3 preview avatar with the test CLIP, StyleCLIP's 0.008 let "red" melt the face
    (ArcFace 0.69 to the unedited render at strength 1, and at the strength that keeps 0.85 the
    CLIP gain was negative at 3 of 15 sweep points); 0.05 gave the same CLIP loss and strength 0.5
    with identity 0.871 / 0.836 and a positive gain at 15 of 15."""

    def __init__(self, engine):
        super().__init__(engine)
        self.G, self.pose_map, self.expr_map = engine.G, engine.pose_map, engine.expr_map
        self.device = next(self.G.parameters()).device
        self.G.requires_grad_(False)

    @property
    def latent_shape(self) -> tuple[int, int]:
        return int(self.G.num_ws), int(self.G.w_dim)

    def latent(self, controls) -> torch.Tensor:
        c = _controls_tensor(controls, self.device)
        return self.pose_map(c[:, :2]) + self.expr_map(c[:, 2:])           # (B, L, D)

    def render(self, latent: torch.Tensor, controls=None) -> torch.Tensor:
        return self.G.synthesis(latent, noise_mode="const")

    def face_mask(self, latent: torch.Tensor, controls=None) -> torch.Tensor:
        return ellipse_mask(self.size).to(latent.device).expand(latent.shape[0], -1, -1, -1)

    def latent_samples(self, n: int = 256, seed: int = 0) -> torch.Tensor:
        samples = super().latent_samples(n, seed)
        pivots = getattr(self.pose_map, "pivots", None)
        return torch.cat([samples, pivots.to(samples)]) if pivots is not None else samples


class NerfAdapter(EditAdapter):
    """LatentAvatar: per-layer style input w of the tri-plane generator (see the module docstring).

    The edit space itself is the engine's (`NerfEngine.style_latents` / `planes_from_styles`), so an
    edit found here renders the same through `NerfEngine.render_controls(edits=...)`.
    """

    engine_name = "nerf"

    def __init__(self, engine):
        super().__init__(engine)
        self.model = engine.model
        self.model.requires_grad_(False)
        self.device = next(self.model.parameters()).device
        gen = self.model.generator
        for attr in ("mapping", "const", "convs", "to_planes"):
            if not hasattr(gen, attr):
                raise ProjectError(f"this LatentAvatar generator has no '{attr}'; edits cannot be applied",
                                   "update the edits adapter for the new generator")

    @property
    def latent_shape(self) -> tuple[int, int]:
        return self.engine.style_shape

    def latent(self, controls) -> torch.Tensor:
        return self.engine.style_latents(_controls_tensor(controls, self.device))

    def latents_for_codes(self, codes) -> torch.Tensor:
        """θ codes (N, code_dim) — e.g. `NerfEngine.encode_image` of the training crops — → (N, L, D) latents,
        the "W of every training frame" to pass to `ganspace.compute_components(extra=...)`."""
        codes = torch.as_tensor(np.asarray(codes, np.float32), device=self.device)
        with torch.no_grad():
            return self.engine.styles_for_codes(codes).contiguous()

    def planes(self, latent: torch.Tensor) -> torch.Tensor:
        """(B, L, D) per-layer styles → tri-planes (B, 3, C, H, W)."""
        return self.engine.planes_from_styles(latent)

    def _out(self, latent, controls) -> dict:
        c = _controls_tensor(controls, self.device)
        return self.model.render(self.planes(latent), c[:, 0].contiguous(), c[:, 1].contiguous())

    def render(self, latent: torch.Tensor, controls) -> torch.Tensor:
        return self._out(latent, controls)["image"] * 2 - 1

    def render_with_mask(self, latent: torch.Tensor, controls) -> tuple[torch.Tensor, torch.Tensor]:
        out = self._out(latent, controls)
        mask = F.interpolate(out["mask"], size=out["image"].shape[-2:], mode="bilinear", align_corners=False)
        return out["image"] * 2 - 1, mask.clamp(0, 1)

    def face_mask(self, latent: torch.Tensor, controls) -> torch.Tensor:
        """The accumulated opacity of the head volume (head and hair), upsampled."""
        with torch.no_grad():
            return self.render_with_mask(latent, controls)[1]


ADAPTERS = {"pvp": PVPAdapter, "nerf": NerfAdapter}


def adapter_for(engine) -> EditAdapter:
    """The edit adapter of a loaded engine (`Avatar.engine`)."""
    name = getattr(engine, "name", None)
    if name not in ADAPTERS:
        raise ProjectError(f"the {name} engine has no edit support", f"edits exist for: {', '.join(ADAPTERS)}")
    return ADAPTERS[name](engine)

