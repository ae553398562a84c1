"""The StyleGAN (PVP) avatar engine: tuned generator + pose mapper + expression mapper."""
from __future__ import annotations

import json

import numpy as np
import torch

from ..compute import FreeCpuThreads, resolve_device
from ..metrics import to_uint8


class PVPEngine:
    name = "pvp"

    def __init__(self, project, device: str = "cpu", sharpen: bool = True):
        """`sharpen`: apply the sharpening head (stage `sharpen`) when the project has one trained; False
        renders the generator's own output (what the head is trained on)."""
        from models.pvp_mappers import ExpressionMapper, PoseMapper

        from ..pvp.common import load_personal_generator

        self.device = torch.device(device)
        G, pivots, _ = load_personal_generator(project, self.device)
        meta = json.loads(project.output("mappers", "meta").read_text("utf-8"))
        state = torch.load(project.output("mappers", "mappers"), map_location=self.device, weights_only=True)
        self.pose_map = PoseMapper(pivots, hidden=meta["hidden"], beta=meta["beta"]).to(self.device)
        self.pose_map.load_state_dict(state["pose"])
        self.expr_map = ExpressionMapper(meta["n_expr"], meta["w_dim"], meta["num_ws"], n_layers=meta["n_expr_layers"],
                                         hidden=meta["hidden"]).to(self.device)
        self.expr_map.load_state_dict(state["expr"])
        for m in (self.pose_map, self.expr_map):
            m.eval().requires_grad_(False)
        self.G = G
        self.size = int(G.img_resolution)
        self.control_names = list(meta["control_names"])
        self.controls = str((meta.get("config") or {}).get("controls", "named"))
        """What the expression sliders are: "named" or "flame" (the mappers' setting)."""
        self.head = load_sharpen_head(project, self.device) if sharpen else None
        """The sharpening head (`models.sharpen_head.SharpenHead`) applied to every render, or None."""
        self.ranges = {k: (float(v[0]), float(v[1])) for k, v in meta["ranges"].items()}
        self._cpu_threads = FreeCpuThreads(str(self.device))

    def latents(self, controls: np.ndarray) -> torch.Tensor:
        c = torch.from_numpy(np.asarray(controls, np.float32)).to(self.device)
        return self.pose_map(c[:, :2]) + self.expr_map(c[:, 2:])

    @torch.no_grad()
    def expression_latents(self, controls: np.ndarray) -> np.ndarray:
        """(B, 2+E) controls → (B, n·D): the expression mapper's offsets of the early latents; used by
        `studio.flame.warp` to find the training frames whose expression a render shows."""
        with self._cpu_threads():
            c = torch.from_numpy(np.asarray(controls, np.float32)).to(self.device)
            offs = self.expr_map(c[:, 2:])[:, :self.expr_map.n_layers]
        return offs.reshape(len(c), -1).cpu().numpy()

    @torch.no_grad()
    def render_controls(self, controls: np.ndarray, edits=None) -> np.ndarray:
        """(B, 2+E) controls → (B, S, S, 3) uint8. `edits`: an `studio.edits.model.ActiveEdits` (anything
        with ``apply(ws)``, adding its offsets to W+) or None; with no active edit the render is the
        unedited one, bit for bit."""
        if edits and not hasattr(edits, "apply"):
            raise TypeError("edits must be bound first (studio.edits.model.EditSet.bind / Avatar.render(edits=...))")
        with self._cpu_threads():
            ws = self.latents(controls)
            if edits:
                ws = edits.apply(ws)
            img = self.G.synthesis(ws, noise_mode="const")
            if self.head is not None:
                img = self.head(img)
        return to_uint8(img)


def load_sharpen_head(project, device="cpu"):
    """The trained sharpening head of `project` (stage `sharpen`), or None when that stage is not done (an
    avatar trained before it existed renders without it) or was trained on mappers that have been trained
    again since (stale: it learnt another model's renders)."""
    from models.sharpen_head import SharpenHead

    from ..errors import ProjectError

    rec = project.record("sharpen")
    if rec.get("status") != "done" or "head" not in (rec.get("outputs") or {}):
        return None
    if (rec.get("upstream") or {}).get("mappers") != project.record("mappers").get("run_id"):
        return None
    try:
        meta = json.loads(project.output("sharpen", "meta").read_text("utf-8"))
        head = SharpenHead(tuple(meta["channels"]))
        head.load_state_dict(torch.load(project.output("sharpen", "head"), map_location=device, weights_only=True))
    except Exception as e:   # a damaged file: say which and how to mend it, never a traceback
        raise ProjectError(f"the sharpening head of project {project.name} could not be read ({type(e).__name__}: {e})",
                           f"train it again with `avatar-studio run-stage {project.root} sharpen --force`") from e
    return head.to(device).eval().requires_grad_(False)


def load(project) -> PVPEngine:
    """The registry's loader (`studio.engines.ENGINES["pvp"]`)."""
    return PVPEngine(project, resolve_device(project.device))
