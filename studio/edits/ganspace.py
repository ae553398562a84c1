"""GANSpace directions (Härkönen et al., NeurIPS 2020) found in the avatar's own latents, no download.

GANSpace takes PCA of W samples from the mapping network. A personal generator needs none: the
samples are the latents the avatar really uses — the adapter's latents over the trained control
ranges plus its anchors (the pivot latents for StyleGAN; for LatentAvatar the tri-plane
generator's style w over the expression range), and any extra latents the caller has (the
prior's per-frame latents). Each sample's W is its mean over layers, (N, D).

Component k applied to a layer range [a, b) in units of its standard deviation σ_k::

    latent'[:, a:b] = latent[:, a:b] + s · σ_k · v_k

On one video the latents vary mostly with pose and expression, so most components move the head
or the face. Each component is labelled by how much of its variance the controls explain:
its projection's variance when only yaw/pitch vary (expression neutral) and when only the
expression varies (pose neutral), as shares of σ_k². A share ≥ 0.5 labels it "pose" or
"expression"; the rest are "appearance" and are listed first. (Re-tracking renders with
mediapipe would measure the same on the image; the latent measure is used because it needs no
face detector and runs in a fraction of a second.)
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import InputError
from .model import Edit


@dataclass
class Components:
    """Principal directions of an avatar's W samples."""

    engine: str
    mean: torch.Tensor
    """(D,) mean W."""
    directions: torch.Tensor
    """(K, D) unit principal directions, largest variance first."""
    sigma: torch.Tensor
    """(K,) standard deviation of the samples along each direction."""
    explained: list[float]
    """(K,) share of the total variance each direction explains."""
    pose_share: list[float]
    """(K,) share of σ_k² explained by yaw/pitch alone."""
    expression_share: list[float]
    """(K,) share of σ_k² explained by the expression controls alone."""
    labels: list[str] = field(default_factory=list)
    """(K,) "appearance", "pose" or "expression"."""
    n_samples: int = 0
    tracked: list[dict] | None = None
    """(K,) per component, when `label_by_tracking` ran: tracked pose / expression change over ±2σ."""

    def order(self) -> list[int]:
        """Component indices, appearance ones first, each group by variance."""
        k = range(len(self.labels))
        return [i for i in k if self.labels[i] == "appearance"] + [i for i in k if self.labels[i] != "appearance"]

    def to_json(self) -> list[dict]:
        return [{"component": i, "label": self.labels[i], "sigma": round(float(self.sigma[i]), 5),
                 "explained": round(self.explained[i], 4), "pose_share": round(self.pose_share[i], 3),
                 "expression_share": round(self.expression_share[i], 3),
                 **({"tracked": self.tracked[i]} if self.tracked else {})} for i in self.order()]


def _w(latents: torch.Tensor) -> torch.Tensor:
    return latents.mean(1) if latents.ndim == 3 else latents


@torch.no_grad()
def compute_components(adapter, n_samples: int = 512, n_components: int = 8, extra: torch.Tensor | None = None,
                       seed: int = 0, label_threshold: float = 0.5) -> Components:
    """PCA of the avatar's W samples (see the module docstring); takes well under a second on tiny avatars."""
    samples = adapter.latent_samples(n_samples, seed)                       # (N, L, D)
    if extra is not None:
        samples = torch.cat([samples, extra.to(samples).reshape(-1, *samples.shape[1:])
                             if extra.ndim == 3 else extra.to(samples)[:, None].expand(-1, samples.shape[1], -1)])
    w = _w(samples).double()
    mean = w.mean(0)
    x = w - mean
    _, s, vt = torch.linalg.svd(x, full_matrices=False)
    k = min(n_components, vt.shape[0], int((s > 1e-9 * max(float(s[0]), 1e-30)).sum()))
    if k == 0:
        raise InputError("the avatar's latents do not vary", "train the avatar before looking for directions")
    dirs = vt[:k]                                                           # (K, D)
    var = s[:k] ** 2 / max(len(w) - 1, 1)
    total = float((s ** 2).sum() / max(len(w) - 1, 1))
    # variance of each projection when only pose / only expression varies
    g = torch.Generator().manual_seed(seed + 1)
    m = max(64, n_samples // 2)
    c = adapter.sample_controls(m, g).cpu()
    neutral = torch.from_numpy(adapter.neutral())
    pose_only = neutral.expand(m, -1).clone()
    pose_only[:, :2] = c[:, :2]
    expr_only = neutral.expand(m, -1).clone()
    expr_only[:, 2:] = c[:, 2:]
    shares = []
    for cc in (pose_only, expr_only):
        p = (_w(adapter.latent(cc.to(adapter.device))).double().cpu() - mean.cpu()) @ dirs.cpu().t()   # (M, K)
        shares.append((p.var(0) / var.cpu()).clamp(0, 1).tolist())
    labels = []
    for ps, es in zip(*shares):
        if max(ps, es) < label_threshold:
            labels.append("appearance")
        else:
            labels.append("pose" if ps >= es else "expression")
    return Components(engine=adapter.engine_name, mean=mean.float().cpu(), directions=dirs.float().cpu(),
                      sigma=var.sqrt().float().cpu(), explained=(var / total).tolist(), pose_share=shares[0],
                      expression_share=shares[1], labels=labels, n_samples=len(w))


@torch.no_grad()
def label_by_tracking(adapter, comps: Components, tracking, strength: float = 2.0, pose_degrees: float = 3.0,
                      expression_units: float = 0.3, poses: int = 3) -> Components:
    """Relabel components by re-tracking their renders (`studio.tracking.tracker.track_images`).

    For each component, renders at −strength·σ and +strength·σ (neutral expression, `poses` yaw
    values across the range) are tracked; the mean (over poses) of the larger of the tracked yaw and
    pitch changes (degrees)
    and the largest mean change of a tracked expression (the subject's units) between the two
    ends decide: ≥ `pose_degrees` → "pose", else ≥ `expression_units` → "expression", else
    "appearance". A component whose renders lose the face keeps its latent label (noted).
    """
    import dataclasses

    from ..metrics import to_uint8
    from ..tracking.tracker import track_images

    L = adapter.latent_shape[0]
    c = np.repeat(adapter.neutral()[None], poses, 0)
    c[:, 0] = np.linspace(adapter.lo[0], adapter.hi[0], poses + 2)[1:-1]
    ct = torch.from_numpy(c).to(adapter.device)
    base = adapter.latent(ct)
    images = []
    for k in range(len(comps.sigma)):
        off = component_offset(comps, k, L).to(base)
        for sign in (-1.0, 1.0):
            images.extend(to_uint8(adapter.render(base + sign * strength * off, ct)))
    found = track_images(images, tracking)
    labels, records = list(comps.labels), []
    for k in range(len(comps.sigma)):
        lo = found[(2 * k) * poses:(2 * k + 1) * poses]
        hi = found[(2 * k + 1) * poses:(2 * k + 2) * poses]
        pairs = [(a, b) for a, b in zip(lo, hi) if a is not None and b is not None]
        if not pairs:
            records.append({"faces": 0, "note": "face lost at ±2σ; latent label kept"})
            continue
        dpose = float(np.mean([np.abs(np.asarray(b["pose"][:2]) - np.asarray(a["pose"][:2])).max()
                               for a, b in pairs]))
        dexpr = float(np.max(np.mean([np.abs(np.asarray(b["expr"]) - np.asarray(a["expr"])) for a, b in pairs], 0)))
        labels[k] = "pose" if dpose >= pose_degrees else "expression" if dexpr >= expression_units else "appearance"
        records.append({"faces": len(pairs), "pose_change_deg": round(dpose, 3),
                        "expression_change": round(dexpr, 4)})
    return dataclasses.replace(comps, labels=labels, tracked=records)


def component_offset(comps: Components, k: int, num_layers: int, layers: tuple[int, int] | None = None
                     ) -> torch.Tensor:
    """(L, D): σ_k · v_k on the layers in [start, stop), zero elsewhere (strength 1 = one σ)."""
    if not 0 <= k < len(comps.sigma):
        raise InputError(f"there is no component {k}", f"components 0…{len(comps.sigma) - 1} were computed")
    lo, hi = layers if layers is not None else (0, num_layers)
    if not 0 <= lo < hi <= num_layers:
        raise InputError(f"layer range [{lo}, {hi}) does not fit {num_layers} latent layers",
                         f"give a range inside [0, {num_layers})")
    off = torch.zeros(num_layers, comps.directions.shape[1])
    off[lo:hi] = comps.sigma[k] * comps.directions[k]
    return off


def direction_edit(comps: Components, k: int, num_layers: int, layers: tuple[int, int] | None = None,
                   name: str | None = None) -> Edit:
    """Component k as a saveable edit; its strength is in units of σ_k."""
    lo, hi = layers if layers is not None else (0, num_layers)
    return Edit(name=name or f"component {k}", kind="direction", engine=comps.engine,
                offset=component_offset(comps, k, num_layers, (lo, hi)), component=k, layers=(lo, hi),
                default_strength=1.0, strength_range=(-3.0, 3.0), label=comps.labels[k],
                summary={"sigma": float(comps.sigma[k]), "explained": comps.explained[k],
                         "pose_share": comps.pose_share[k], "expression_share": comps.expression_share[k],
                         "samples": comps.n_samples})


@torch.no_grad()
def components_picture(adapter, comps: Components, top: int = 5, strengths=(-2.0, -1.0, 0.0, 1.0, 2.0),
                       layers: tuple[int, int] | None = None) -> np.ndarray:
    """(H, W, 3) uint8 grid: for each listed component (appearance first) three rows (yaw at the
    range's low end, middle, high end; neutral expression) × the strengths in σ; a label strip on
    the left names the component, its label and σ."""
    import cv2

    from ..metrics import to_uint8

    L = adapter.latent_shape[0]
    s = adapter.size
    scale = max(1, 96 // s)
    c = np.repeat(adapter.neutral()[None], 3, 0)
    c[:, 0] = [adapter.lo[0], (adapter.lo[0] + adapter.hi[0]) / 2, adapter.hi[0]]
    ct = torch.from_numpy(c).to(adapter.device)
    base = adapter.latent(ct)
    label_w = 150
    blocks = []
    header = np.full((18, label_w + len(strengths) * s * scale, 3), 255, np.uint8)
    for j, st in enumerate(strengths):
        cv2.putText(header, f"{st:+g} sigma", (label_w + j * s * scale + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    blocks.append(header)
    for k in comps.order()[:top]:
        off = component_offset(comps, k, L, layers).to(base)
        cols = [to_uint8(adapter.render(base + st * off, ct)) for st in strengths]          # each (3, S, S, 3)
        grid = np.concatenate([np.concatenate(list(col), 0) for col in cols], 1)           # (3S, nS, 3)
        grid = cv2.resize(grid, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        label = np.full((grid.shape[0], label_w, 3), 255, np.uint8)
        for i, text in enumerate((f"component {k}", comps.labels[k], f"sigma {float(comps.sigma[k]):.3g}",
                                  f"{100 * comps.explained[k]:.1f}% var")):
            cv2.putText(label, text, (4, 16 + 16 * i), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        row = np.concatenate([label, grid], 1)
        blocks.append(np.concatenate([row, np.full((3, row.shape[1], 3), 255, np.uint8)], 0))
    return np.concatenate(blocks, 0)


def save_picture(image: np.ndarray, path) -> None:
    """Write an RGB uint8 picture as PNG atomically."""
    import cv2

    from ..atomic import write_with
    from ..errors import StudioError

    def _write(tmp):
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(image[..., ::-1])):
            raise StudioError(f"could not write {path}", "check the disk and try again")

    write_with(path, _write)
