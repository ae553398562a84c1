"""Detail from the video: fine detail of the subject's own frames laid over an engine's render.

Both engines, trained for minutes on a CPU, render a soft face: held-out renders keep about 5 % of
the real frames' high-frequency energy (eyes and teeth smeared), while the broad shape, pose, jaw
and colours are right. The video itself holds the detail. For each render this package

1. picks the training frames whose tracked controls are nearest the controls being rendered
   (standardised controls, yaw and pitch weighted ×2, as the retrieval baseline of `studio.evaluation`;
   the nearest frames by a blurred thumbnail when the caller has no controls, e.g. a learned driving
   code); optionally (`typical_weight`, off by default) preferring, among frames about as near, those
   that look most like the person as a whole (their ArcFace embeddings); where the render leaves the eyes
   or the mouth at rest and a picked frame moves them (a wink, a glance, a smile), that part is lent by
   near frames that show it at rest (`region_match`, `VideoDetail.lenders`),
2. warps each toward the render with dense optical flow (OpenCV's DIS) computed between the render
   and the frame blurred to about the render's softness, the flow field smoothed so the warp moves
   features without tearing them, sampled with a Lanczos kernel (bicubic softened the finest detail);
   inside the face only part of that flow applies (a soft render's shapes are less right than the
   frame's), and part of the change of face shape from the frame's controls to the render's, as the
   tracked mesh moves with the controls (`ShapeModel`, `shape_share`),
3. keeps the render's low frequencies (a Gaussian low-pass of width `band_sigma`) and takes the
   frequencies above it from the warped frames, weighted by how near each frame's controls are,
   where the frames show the person (their tracked matte, warped with them); elsewhere (the
   background, past a frame's edge) the render keeps its own. Of that detail band, the finest part
   (above `fine_sigma`) is the frames' in the face and half of it outside the face (hair, neck,
   clothes: `outside_fine_share`); its middle part is the frames' in the eyes, brows and
   mouth (each frame's tracked landmarks, warped with it) and shared half and half with the
   render's own elsewhere (`mid_share`).

The result keeps what the engine decides (pose, jaw, expression shape, colour, appearance edits)
and shows the subject's real eyes, skin, hair and teeth. Where an appearance edit changed the
render, the caller passes `keep` and the render's own detail is added there too (an edit's colour
is in the low band and survives as it is; the edit's own edges are not lost).

It is one of the levers measured for "a face, not a blur" (see the README's table of what was tried);
`Avatar` applies it by default when the project still has its tracked crops, `--no-detail` (CLI)
and the viewer's "Detail from the video" box turn it off.

Modules (each name below is importable from `studio.detail` too):

- `config`: `DetailConfig`, every knob of the above with what was measured, `REFERENCE_SIZE` (the image
  side the pixel widths are given for) and `SAMPLING` (the resampling kernels).
- `choice`: which frames lend detail: `ControlIndex` (standardised control distance), `soft_nearest`
  (the nearest k and their weights), `REGIONS` and `region_columns` (the eyes, the mouth and the controls
  each shows), `frame_atypicality` and `frame_embeddings` (the ArcFace embeddings behind `typical_weight`,
  kept in the project as `EMBEDDINGS_FILE`).
- `masks`: regions as (N, S, S) masks: the eyes, brows and mouth (`feature_masks`; each part on its own:
  `region_masks`), the face's hull (`face_hull_masks`), where an appearance edit changed the render
  (`edit_keep_mask`).
- `shape`: the face's shape the controls predict and the warp toward it: `ShapeModel`, `MeshLattice`,
  `shape_field`.
- `video_detail`: `VideoDetail`, the training frames ready to lend detail: the flow warp, the Lanczos
  resampling and the band composite over a render (`VideoDetail.apply`), `LATTICES_KEPT`, and
  `REGION_REACH` / `REGION_TURN` (how near a frame lending only the eyes or the mouth must be).
"""
from __future__ import annotations

from .choice import (EMBEDDINGS_FILE, REGIONS, ControlIndex, LenderTrail, frame_atypicality, frame_embeddings,
                     region_columns, soft_nearest)
from .config import REFERENCE_SIZE, SAMPLING, DetailConfig
from .masks import edit_keep_mask, face_hull_masks, feature_masks, region_masks
from .shape import MeshLattice, ShapeModel, shape_field
from .video_detail import LATTICES_KEPT, VideoDetail

__all__ = [
    "EMBEDDINGS_FILE", "LATTICES_KEPT", "REFERENCE_SIZE", "REGIONS", "SAMPLING",
    "ControlIndex", "DetailConfig", "LenderTrail", "MeshLattice", "ShapeModel", "VideoDetail",
    "edit_keep_mask", "face_hull_masks", "feature_masks", "frame_atypicality", "frame_embeddings",
    "region_columns", "region_masks", "shape_field", "soft_nearest",
]
