"""The ArcFace face losses the training stages share (`models.arcface.FaceLoss`).

The NeRF stage, PTI and the StyleGAN mappers use the same two terms, on the same face region the eval
scores: the ArcFace feature distance (the eval's perceptual measure) and 1 − the cosine of the two
embeddings (the eval's identity). The ArcFace file is one the user adds; without it a stage trains on
its other losses and says which file to add.
"""
from __future__ import annotations

import torch

from ..errors import InputError


def face_loss(wanted: bool, device, off: str):
    """(FaceLoss, "") when `wanted` and the ArcFace file is configured; (None, a sentence for the user)
    when wanted and no file is configured; (None, "") when not wanted. `off` names the settings that turn
    the losses off (for the message when the configured file can no longer be read: an `InputError`)."""
    if not wanted:
        return None, ""
    from models.arcface import FaceLoss, load_arcface

    from ..model_files import arcface_path

    path = arcface_path()
    if path is None:
        return None, ("the face feature and identity losses were left out: no ArcFace file is configured "
                      "(`avatar-studio models add arcface arcface_mobilefacenet.pt`, a MobileFaceNet state_dict); "
                      "the avatar trains on the other losses")
    try:
        return FaceLoss(load_arcface(path, device)), ""
    except Exception as e:   # a file that was valid when added and is no longer
        raise InputError(f"the ArcFace file {path} could not be read ({type(e).__name__}: {e})",
                         f"add it again with `avatar-studio models add arcface FILE`, or set {off}") from e


def face_terms(face, out: torch.Tensor, target: torch.Tensor, count: int = 0,
               value_range: tuple[float, float] = (-1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean feature distance and mean identity loss of the first `count` images (0 = all) of two
    (B, 3, S, S) aligned-crop batches in `value_range`; gradients reach `out` only."""
    n = len(out) if count <= 0 else min(count, len(out))
    lo, hi = value_range
    scale = lambda x: (x[:n] - lo) / (hi - lo)  # noqa: E731
    dist, ident = face(scale(out), scale(target))
    return dist.mean(), ident.mean()
