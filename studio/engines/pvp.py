"""The StyleGAN (PVP) avatar engine: tuned generator + pose mapper + expression mapper."""
from __future__ import annotations

import json

import numpy as np
import torch

from ..compute import FreeCpuThreads, resolve_device
from ..metrics import to_uint8


class PVPEngine:
    name = "pvp"

    def __init__(self, project, device: str = "cpu"):
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
        return to_uint8(img)


def load(project) -> PVPEngine:
    """The registry's loader (`studio.engines.ENGINES["pvp"]`)."""
    return PVPEngine(project, resolve_device(project.device))
