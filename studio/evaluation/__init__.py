"""Engine-agnostic evaluation of a trained avatar (`avatar-studio eval`).

Every engine is measured the same way, through `studio.avatar.Avatar`:

1. held-out quality: the held-out frames (the last 15 % of the clip, never trained on) are
   rendered from their tracked controls and compared with the real crops (area-downscaled to
   the render's size): PSNR, SSIM, ArcFace identity similarity and the ArcFace feature distance
   (a stand-in for LPIPS; both when the ArcFace file is configured), the sharpness ratio of the
   face region (median and mean; 1.0 = as sharp as the video), LPIPS (only when a VGG/AlexNet
   backbone is configured); PSNR/SSIM also with the controls clamped to the slider ranges, as
   the `Avatar` API renders them. PSNR and SSIM reward a blurred mean face; sharpness, identity
   and the feature distance do not;
   **retrieval baseline**: for each held-out frame the training crop whose tracked controls are
   nearest (`retrieval_rows`) is scored with the same measures, and `beats_retrieval` says, per
   measure, whether the engine does better. An engine that does not beat retrieval on identity
   and feature distance is not yet an avatar: showing a real training frame would be better;
2. control accuracy: sweeps of yaw, pitch and each expression slider over its trained range
   (the other controls neutral) are rendered and re-tracked with the project's own tracker:
   yaw/pitch mean absolute error in degrees, per-expression Pearson correlation of commanded
   vs measured, how far a mouth slider moves the eyes and an eye slider the mouth
   (`slider_crosstalk`), and the share of renders in which a face was found;
3. render latency per frame (one frame at a time, controls changing every frame);
4. for engines with a free camera (LatentAvatar): multi-view consistency — one (neutral)
   expression over a yaw sweep: identity similarity between the views, and the re-tracked
   yaw against the commanded yaw.

The avatar is measured as the viewer and export show it: with detail from the video
(`studio.detail`) unless `detail=False` (``--no-detail``); the engine's render alone is scored too
(``heldout_engine``), so both are in the table.

Results go to ``<project>/eval/<engine>/eval.json`` with a contact sheet ``heldout.png``
(rows: real crop, retrieval, render from the tracked controls, the engine's render alone, render
with the controls clamped to the slider ranges; each retrieval and render cell captioned with its sharpness ratio),
``sweeps.png`` and, for free-camera engines, ``multiview.png``; `format_table` prints one or
more reports side by side with the retrieval column beside them.

Modules (each name below is importable from `studio.evaluation` too):

- `scoring`: how a set of renders is scored: `score_images` (the held-out measures against the real
  crops), `face_masks`, `bar_keep` and `within_bars` (the video's black bars left out of the score),
  the retrieval baseline `retrieval_rows` (`RETRIEVAL_POSE_WEIGHT`) and `beats_retrieval` (`BETTER`).
- `run`: `iter_evaluate` / `evaluate`, the measurement of one engine (1–4 above) and its report; the
  sweeps' helpers (`_retrack`, `_named_via_flame`) and `STAGE`.
- `table`: `format_table`, its rows (`ROWS`), the issue's goals (`GOALS`) and the `LEGEND`.
- `sheets`: the contact sheets (`_sheet`, `_fit_lines`, `_put_text`, `_text_width`, `SHEET_FONT`).
- `edits`: the appearance edits measured (`avatar-studio eval --edits`): `iter_evaluate_edits`,
  `evaluate_edits`, `format_edit_table` (`EDIT_YAWS`, `EDIT_EXPRESSIONS`).

A function replaced on the package (``monkeypatch.setattr(studio.evaluation, ...)``) reaches only
the code that looks it up there when it runs (`studio.stages.sharpen` imports `bar_keep` so); to
replace what the package's own modules call, patch the module that holds it (e.g.
`studio.evaluation.run._retrack`).
"""
from __future__ import annotations

from .edits import EDIT_EXPRESSIONS, EDIT_YAWS, evaluate_edits, format_edit_table, iter_evaluate_edits
from .run import STAGE, evaluate, iter_evaluate
from .scoring import (BETTER, RETRIEVAL_POSE_WEIGHT, bar_keep, beats_retrieval, face_masks, retrieval_rows,
                      score_images, slider_crosstalk, within_bars)
from .sheets import SHEET_FONT
from .table import GOALS, LEGEND, ROWS, format_table

__all__ = [
    # run
    "STAGE", "evaluate", "iter_evaluate",
    # scoring
    "BETTER", "RETRIEVAL_POSE_WEIGHT", "bar_keep", "beats_retrieval", "face_masks", "retrieval_rows",
    "score_images", "slider_crosstalk", "within_bars",
    # table
    "GOALS", "LEGEND", "ROWS", "format_table",
    # sheets
    "SHEET_FONT",
    # edits
    "EDIT_EXPRESSIONS", "EDIT_YAWS", "evaluate_edits", "format_edit_table", "iter_evaluate_edits",
]
