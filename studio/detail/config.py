"""What detail from the video does, as numbers: `DetailConfig` (each field with what was measured when it
was set), the image side its pixel widths are given for, and the resampling kernels it may use."""
from __future__ import annotations

from dataclasses import dataclass

import cv2

REFERENCE_SIZE = 128
"""Image side the pixel widths below are given for; they scale with the render size."""

SAMPLING = {"lanczos": cv2.INTER_LANCZOS4, "cubic": cv2.INTER_CUBIC}
"""`DetailConfig.sampling`: OpenCV's interpolation for resampling the warped frames."""


@dataclass(frozen=True)
class DetailConfig:
    band_sigma: float = 12.0
    """Gaussian σ (px at 128 px) splitting the render's low band from the frames' detail band. 12
    since 2026-12-02 (5 before): on d14 and d9 held-out frames the wider band raised ArcFace identity
    by 0.01 for both engines and PSNR by up to 0.06 dB (d14 now beats the retrieval baseline with
    both engines); on d3 it cost 0.14 dB (NeRF on FLAME controls) for +0.004 identity. The StyleGAN engine
    uses 24 since 2026-12-06 (its render's middle band is less right than the frames'; with the shape warp,
    held-out identity d3 0.899 → 0.902, d9 0.902 → 0.903, d14 unchanged, PSNR −0.02 / +0.04 / −0.09 dB)."""
    flow_sigma: float = 2.0
    """σ (px at 128 px) the frames are blurred by before the flow to the (soft) render is computed."""
    flow_smooth: float = 6.0
    """σ (px at 128 px) of the Gaussian that smooths the flow field (no tearing of eyes or teeth)."""
    neighbours: int = 3
    """Frames blended per render; the nearest dominates unless others are about as near."""
    temperature: float = 0.5
    """Weight of a frame: exp(−(d − d_min) / temperature), d the squared standardised control distance."""
    pose_weight: float = 2.0
    """Weight of standardised yaw and pitch against each standardised expression control."""
    pose_window: float = 15.0
    """Degrees: only frames whose yaw and pitch are both within this of the render's lend detail (or,
    where fewer than `neighbours` are, the ones nearest in pose). The flow cannot bridge a head turned
    the other way: with FLAME controls (51 expression inputs against 2 of pose) a driver's strong
    expressions picked frames turned 25° the other way and the face came out ghosted. Narrower windows
    cost identity on d3's held-out frames (ArcFace 0.857 without a window, 0.856 at 15°, 0.845 at 10°,
    0.817 at 6°): within a few degrees the frames' expressions differ more, and the flow bridges
    that worse than a moderate turn."""
    emphasis: float = 1.5
    """See `ControlIndex.distances`: how much more the expression controls a render moves far from
    the clip's average count in choosing its frames (0: plain distance). Measured on d3: one-slider
    sweeps pulled the frames toward the clip's rest face and the slider's detail with them (FLAME
    slider r 0.267 at 0, 0.519 at 1.5; named 0.756 / 0.829); held-out frames barely change."""
    emphasis_frames: bool = False
    """The emphasis also counts each frame's own far-out controls (`ControlIndex.distances`, `frames_too`):
    a frame showing a strong expression the render does not ask for is kept further away. Tried 2026-12-06 and
    left off: on the StyleGAN avatars' held-out frames identity d9 0.903 → 0.905, d14 0.864 → 0.869, d3 unchanged,
    but the jaw slider's sweep follows it less evenly (jaw r d3 0.965 → 0.910, d14 0.893 → 0.836): the frames that
    open the jaw wide also move other controls, which a one-slider sweep leaves at rest. README, "Four more
    tries on d9's open point"."""
    region_match: float = 1.0
    """Standard deviations. Where a render leaves a part of the face at the subject's rest (`REGIONS`: the eyes
    with their brows, the mouth; each of the part's controls within this of 0) and a frame chosen for the
    whole face moves it (one of them further than this from the render's: a wink, a glance, a smile), the
    part is lent by the frames chosen the same way among those that show it as the render asks, if one is
    within `REGION_REACH` times the nearest frame's distance and `REGION_TURN` in pose
    (`VideoDetail.lenders`). 0: off. The frames are chosen for the whole face, so a slider pushed toward what
    few frames show borrowed whatever else those frames did: on d14 the jaw slider's sweep winked at 0.74 and
    showed half-shut eyes at 0.89, both smile sliders' ends glanced sideways, on d3 the smile and pucker
    sliders winked, on d9 the gaze slider's end smiled (README, "Each slider its own eyes and mouth"). Where
    the render asks something of a part (most held-out frames, a driver, the part's own sliders) the face's
    frames lend it as before: swapped there too, d3's held-out identity fell from 0.903 to 0.87–0.88.
    `eval` on six avatars: the mouth sliders move the eyes by 0.9–1.7 standard deviations against 1.1–2.2,
    d14's held-out identity 0.867 → 0.874 (StyleGAN) and 0.869 → 0.877 (NeRF), d3's and d9's within 0.0003."""
    typical_weight: float = 0.0
    """How much frames that look like the person as a whole are preferred in choosing them (0: not at all,
    the default). Each frame's control distance is multiplied by exp(typical_weight · z), z its standardised
    ArcFace atypicality: 1 − the cosine between its embedding and the training frames' mean embedding, over
    the frames' median and standard deviation (`frame_atypicality`); needs the ArcFace file. Tried
    2026-12-06 and left off: judged without the held-out frames (each training frame's pick taken from
    outside its stretch of the clip, scored by ArcFace identity against the frame; mean over d3, d9 and d14)
    0.3 was best (0.9010 → 0.9059), and on the StyleGAN avatars' held-out frames it raised identity (d9
    0.903 → 0.907, d14 0.864 → 0.868, d3 +0.001) but the frames it prefers are nearer the person's everyday
    face, so the sliders showed less: mean r d9 0.930 → 0.914, d14 0.916 → 0.879 (its jaw 0.89 → 0.83,
    brow_frown 0.91 → 0.68), and d14's PSNR fell 0.15 dB. README, "Frames that look like the person"."""
    person_only: bool = True
    """Frames lend detail only where they show the person (their tracked matte, warped with them):
    the background behind the head moves in the crop with every head shift, which no control
    says, so a frame's background texture lands where the held-out frame has other texture."""
    frame_edge: float = 3.0
    """Pixels (at 128 px): frames lend nothing where their crop lies past the video's picture (the
    tracker repeats the frame's edge there, so a chin near the bottom of a portrait clip becomes vertical
    streaks, or shows a black bar), rising to full over this many pixels inside it; 0: off (they lend
    there too)."""
    colour_drift: float = 15.0
    """Grey levels (RGB distance). Where the render's mean colour over the person differs from that of the
    frames lending it detail by more than this, its low band there is moved toward theirs until it differs
    by this much (0: off); not where an appearance edit changed the render (`apply`'s `keep`: the edit's
    colour is meant). An engine's colour is least sure at a slider's end the clip barely shows: d9's
    StyleGAN render at the yaw slider's end came out 62 levels paler and greener than the frames, where
    held-out frames differ by at most 5–13 on the six avatars, so their renders are not changed."""
    matte_grow: float = 10.0
    """Pixels (at 128 px) the person matte is grown by (dilated, then feathered) before it gates the
    detail, so the face's outline and the hair's edge keep the frames' detail. With the bare matte
    (0) d9's held-out sharpness fell from 0.77 to 0.68 and its ArcFace feature distance from 0.091
    to 0.109 (the face's outline against the background lost its detail); at 10 both stay and PSNR
    gains 0.09–0.14 dB (d14, d9)."""
    render_fills: bool = True
    """Where the frames lend less than their full weight (background, past a frame's edge), the
    render's own detail fills the rest, so the image there is the render as it is, not its low band."""
    fine_sigma: float = 1.0
    """σ (px at 128 px) splitting the detail band: the frames lend everything finer than this in the
    face in full (the fine texture no engine renders here: lashes, pores, the glasses' rims), outside it
    `outside_fine_share` of it (hair strands)."""
    mid_share: float = 0.5
    """Outside the eyes, brows and mouth, the share of the band between `fine_sigma` and `band_sigma`
    that comes from the frames; the render gives the rest (1: the frames give all of it, as before
    2026-12-03). There the engine's own mid band is about as close to the held-out frames as the
    warped frames' (correlation 0.92 against 0.92 on d9's NeRF avatar, 0.88 against 0.87 on d3's
    StyleGAN avatar) and their errors differ, so the blend is closer than either. In the eyes and
    mouth the frames give all of it: the soft engines' eyes are where identity goes (blended there
    too, d3's StyleGAN held-out identity fell from 0.82 to 0.75). Measured in the README."""
    sampling: str = "lanczos"
    """How the warped frames are resampled: "lanczos" (OpenCV's 8×8 Lanczos; default since 2026-12-03)
    or "cubic" (bicubic, as before). Sampling between pixels softens the frames' finest detail, and
    bicubic more so: on held-out frames Lanczos raised the sharpness ratio by 0.04–0.08 on five avatars
    (d3 NeRF 0.685 → 0.765, d9 StyleGAN 0.700 → 0.788) with PSNR within ±0.03 dB and identity within
    ±0.001 (README, "Detail from the video")."""
    feature_share: float = 1.0
    """Inside the eyes, brows and mouth, the share of the middle band (`fine_sigma` to `band_sigma`) that
    comes from the frames (with `mid_share` < 1). 1 for both engines: the StyleGAN engine's eyes are smudges
    there; the NeRF engine draws the eyes, and from 2026-12-03 to 12-05 kept half of its own band there (0.5), which
    helped while the whole flow bent the frames onto its render, and cost identity once only half of the flow applies
    inside the face (README, "The frames' own eyes")."""
    feature_grow: float = 8.0
    """Pixels (at 128 px) the eyes-with-brows and mouth regions (each frame's tracked landmarks,
    warped with it) are grown by, then feathered, for `mid_share`."""
    face_flow: float = 1.0
    """Inside the face (the convex hull of each frame's tracked mesh, eroded by `face_erode` and
    feathered), the share of the flow to the render that is applied (1: all of it). The crops are
    aligned on the tracked mesh, so a frame near the render's controls already has its eyes, nose
    and mouth about where the held-out frame has them (d3: 1.2 px from the real held-out frame's
    mesh, mean over the landmarks at 128 px), while the flow to a soft render moves them toward the
    render's shapes, which are less right (d3 StyleGAN: the nearest frame alone scores ArcFace
    identity 0.91, warped to the render 0.84)."""
    face_flow_sharpness: float = 0.0
    """When > 0, the share of the flow applied inside the face is set per render instead of `face_flow`:
    min(1, s / this), where s is the render's own fine detail in the face (Laplacian energy of its nearest
    frame's face region) over that frame's. The flow can only lock onto structure the render has: a
    render about as sharp as the frames is followed in full, a blur hardly at all."""
    face_flow_floor: float = 0.0
    """With `face_flow_sharpness`: the share is (s − this) / (`face_flow_sharpness` − this), clipped to
    [0, 1], so a render with less than this share of its frame's fine detail in the face (a blur, whose
    flow would only pull the frame toward its smudges) gets none of the flow there; 0: s /
    `face_flow_sharpness` as before."""
    face_erode: float = 0.0
    """Pixels (at 128 px) the face hull is eroded by before it is feathered, for `face_flow`."""
    outside_fine_share: float = 0.5
    """Outside the face (each frame's tracked mesh hull grown by `outside_grow`, feathered, warped with
    the frame: hair, ears, neck, clothes), the share of the frames' finest band (above `fine_sigma`)
    that is lent (1: all of it, as before 2026-12-05); the rest is left out. No control places a hair
    strand or a fold of a collar, so a near frame's finest texture there lands beside the held-out
    frame's and adds error, while the face's own detail is placed by the tracked mesh. Held-out
    frames, 0.5 against 1 (README, "Fine texture outside the face"): PSNR +0.14, +0.20, +0.20 dB on
    the StyleGAN avatars of d14, d3 and d9 and +0.20 on d3's NeRF avatar, ArcFace identity within
    0.0004, the face's sharpness within 0.005. The render's own finest band there (the share left to
    it at first) is no nearer the held-out frames: with it the gains were 0.04–0.08 dB smaller."""
    shape_share: float = 0.5
    """Inside the face, each frame is also warped by the change of face shape from its own controls to the
    render's (`ShapeModel`: the tracked mesh the controls predict, a ridge regression fitted on the training
    frames), by this share of it (0: off). The flow to a soft render cannot see a mouth corner or a lid move
    by a pixel or two; the tracked mesh can, and a slider moves the face's shape with it even where the
    frames it picks show less. `avatar-studio eval`, six avatars (README, "The face shape the controls
    predict"): PSNR +0.11 to +0.38 dB, ArcFace feature distance lower on all six, identity within −0.001 to
    +0.008, yaw / pitch errors lower and slider mean r 0.83–0.92 → 0.90–0.93. The whole shift (1.0) lost
    identity on d3 and d9 held-out frames (−0.016 and −0.007 against 0.5)."""
    shape_ridge: float = 1.0
    """Ridge penalty of `ShapeModel` (on standardised controls; the intercept is not penalised)."""
    shape_smooth: float = 2.0
    """σ (px at 128 px) of the Gaussian that smooths the shape warp's offsets."""
    shape_cap: float = 6.0
    """Pixels (at 128 px): the shape warp moves no point further than this (a slider pushed past what the
    clip shows asks the linear model for shapes it never saw)."""
    outside_grow: float = 6.0
    """Pixels (at 128 px) the face hull is grown by for `outside_fine_share` (then feathered by 3 px), so
    the face's outline keeps the frames' finest detail (grown 2 px, the face's sharpness fell by 0.05)."""

    @property
    def needs_faces(self) -> bool:
        """Whether the frames' face-hull masks are needed (`face_flow` < 1, `face_flow_sharpness` or
        `shape_share` set)."""
        return self.face_flow < 1.0 or self.face_flow_sharpness > 0 or self.shape_share > 0

    @property
    def splits_outside(self) -> bool:
        """Whether only a share of the frames' finest band is lent outside the face (`outside_fine_share` < 1)."""
        return self.outside_fine_share < 1.0

    @property
    def splits_mid_band(self) -> bool:
        """Whether the middle band is shared with the render anywhere (`mid_share` or `feature_share`
        below 1), so the frames' eyes-and-mouth masks are needed."""
        return self.mid_share < 1.0 or self.feature_share < 1.0
