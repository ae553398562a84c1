"""Figures about a trained actor: how separable the two people's codes are, whether the actor is
the avatar's own subject, and how well a mapping predicts its target on unseen frames."""
from __future__ import annotations

import numpy as np

SAME_PERSON = 0.5
"""Mean ArcFace cosine similarity between the two people's crops above which they are taken to be
one person (the ArcFace file's notes: about 0.68 for one person, 0.33 across people)."""


def separability(codes_a: np.ndarray, codes_b: np.ndarray, folds: int = 5, seed: int = 0) -> float | None:
    """Held-out accuracy of a linear classifier telling (Na, D) codes from (Nb, D) codes, with the
    classes balanced by subsampling the larger one; 0.5 = the codes are fully shared, 1.0 = a
    hyperplane separates them. None when either side has fewer than `folds` codes."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    a, b = np.asarray(codes_a, np.float64), np.asarray(codes_b, np.float64)
    n = min(len(a), len(b))
    if n < folds:
        return None
    rng = np.random.default_rng(seed)
    a, b = a[rng.choice(len(a), n, replace=False)], b[rng.choice(len(b), n, replace=False)]
    x = np.concatenate([a, b])
    y = np.r_[np.zeros(n), np.ones(n)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(clf, x, y, cv=cv)))


def pose_share(codes: np.ndarray, pose: np.ndarray) -> float | None:
    """Share of the total variance of (N, D) codes that a linear function of the (N, P) head pose
    (yaw, pitch) explains: 0 = the codes ignore pose, 1 = they are pose and nothing else. A shared
    expression code should be low. None with fewer than P + 2 codes or constant codes."""
    x, p = np.asarray(codes, np.float64), np.asarray(pose, np.float64)
    if len(x) < p.shape[1] + 2:
        return None
    total = x.var(0).sum()
    if total < 1e-12:
        return None
    a = np.c_[p, np.ones(len(p))]
    coef, *_ = np.linalg.lstsq(a, x, rcond=None)
    return float(1.0 - (x - a @ coef).var(0).sum() / total)


def identity_similarity(crops_a: np.ndarray, crops_b: np.ndarray) -> float | None:
    """Mean ArcFace cosine similarity over all pairs (one crop of each set); None without the
    ArcFace file. crops: (N, S, S, 3) uint8 aligned crops."""
    from ..metrics import embeddings

    ea, eb = embeddings(crops_a), embeddings(crops_b)
    if ea is None or eb is None:
        return None
    return float((ea @ eb.T).mean())


def pearson(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of two (N,) series; None when either is (almost) constant or N < 3."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(a) < 3 or a.std() < 1e-9 or b.std() < 1e-9:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def mean_r(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Mean Pearson r over the columns of (N, K) arrays (constant columns skipped)."""
    rs = [r for r in (pearson(pred[:, k], truth[:, k]) for k in range(truth.shape[1])) if r is not None]
    return float(np.mean(rs)) if rs else None


def mean_cosine(pred: np.ndarray, truth: np.ndarray) -> float | None:
    """Mean cosine similarity of the rows of two (N, D) arrays."""
    if len(pred) == 0:
        return None
    p = pred / np.maximum(np.linalg.norm(pred, axis=1, keepdims=True), 1e-9)
    t = truth / np.maximum(np.linalg.norm(truth, axis=1, keepdims=True), 1e-9)
    return float(np.sum(p * t, axis=1).mean())
