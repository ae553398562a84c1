"""LatentAvatar's Y-shaped network (section 4): cross-identity driving through a shared code.

    face of the avatar ─┐                      ┌─► D_ava ─► face of the avatar
                        ├─► E_shared ─► γ ─────┤
    face of the actor ──┘                      └─► D_act ─► face of the actor

One encoder E_shared maps an aligned face image of either person to a shared code γ; two
decoders turn γ back into a face of one person each. Trained to reconstruct each person through
their own decoder (and, with the cycle term, to come back to the same face after a trip through
the other person's decoder), γ keeps what the two share — the expression — and the decoders keep
who it is. Two small MLPs then map γ into the avatar's own controls: the NeRF engine's
person-specific expression code θ, or the StyleGAN engine's expression sliders (`CodeMapper`).

Images are (B, 3, R, R) in [0, 1] throughout (R = `YShapeConfig.resolution`); codes (B, D).
No file paths, no project knowledge: the app's training and data live in `studio.driving`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .perceptual import ssim_terms

SUBJECTS = ("ava", "act")
"""The two decoders: the avatar's own subject and the actor who drives it."""


@dataclass
class YShapeConfig:
    resolution: int = 64
    """Side R of the face images the network reads and writes (a power of two, ≥ 16)."""
    code_dim: int = 128
    """Size D of the shared code γ."""
    channels: int = 32
    """Channels at the full resolution (doubling at each halving)."""
    max_channels: int = 256
    """Channel cap at the low resolutions."""
    pose_dim: int = 0
    """Size of the head pose the decoders also take (0 = the paper's decoders, γ alone; 2 = yaw and
    pitch). With the pose given to the decoders, γ need not spend itself on head pose."""

    def __post_init__(self) -> None:
        r = self.resolution
        if r < 16 or r & (r - 1):
            raise ValueError(f"YShapeConfig.resolution must be a power of two ≥ 16, not {r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "YShapeConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def widths(self) -> list[int]:
        """Channels per level, from the full resolution down to 4x4."""
        out, c, r = [], self.channels, self.resolution
        while r >= 4:
            out.append(min(c, self.max_channels))
            c, r = c * 2, r // 2
        return out


def assert_image(x: torch.Tensor, res: int) -> None:
    assert x.ndim == 4 and tuple(x.shape[1:]) == (3, res, res), f"expected (B, 3, {res}, {res}), got {tuple(x.shape)}"


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class SharedEncoder(nn.Module):
    """E_shared: face image (B, 3, R, R) in [0, 1] → shared code γ (B, D)."""

    def __init__(self, cfg: YShapeConfig):
        super().__init__()
        w = cfg.widths()
        layers: list[nn.Module] = [nn.Conv2d(3, w[0], 3, 1, 1), _act()]
        for a, b in zip(w[:-1], w[1:]):  # one stride-2 conv and one 3x3 conv per level
            layers += [nn.Conv2d(a, b, 4, 2, 1), _act(), nn.Conv2d(b, b, 3, 1, 1), _act()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(w[-1] * 16, cfg.code_dim)
        self.res = cfg.resolution

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        assert_image(img, self.res)
        return self.head(self.body(img * 2 - 1).flatten(1))


class FaceDecoder(nn.Module):
    """D_ava or D_act: shared code γ (B, D) (and head pose (B, P) when `pose_dim` > 0) → face
    image (B, 3, R, R) in [0, 1]."""

    def __init__(self, cfg: YShapeConfig):
        super().__init__()
        w = cfg.widths()[::-1]                                                   # 4x4 first
        self.c0 = w[0]
        self.fc = nn.Linear(cfg.code_dim + cfg.pose_dim, w[0] * 16)
        layers: list[nn.Module] = [_act(), nn.Conv2d(w[0], w[0], 3, 1, 1), _act()]
        for a, b in zip(w[:-1], w[1:]):  # upsample, then two 3x3 convs per level
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(a, b, 3, 1, 1), _act(),
                       nn.Conv2d(b, b, 3, 1, 1), _act()]
        layers.append(nn.Conv2d(w[-1], 3, 3, 1, 1))
        self.body = nn.Sequential(*layers)
        self.code_dim, self.pose_dim = cfg.code_dim, cfg.pose_dim

    def forward(self, code: torch.Tensor, pose: torch.Tensor | None = None) -> torch.Tensor:
        assert code.ndim == 2 and code.shape[1] == self.code_dim, tuple(code.shape)
        if self.pose_dim:
            assert pose is not None and tuple(pose.shape) == (code.shape[0], self.pose_dim), \
                f"these decoders take a (B, {self.pose_dim}) head pose beside γ"
            code = torch.cat([code, pose.to(code.dtype)], 1)
        x = self.fc(code).view(-1, self.c0, 4, 4)
        return torch.sigmoid(self.body(x))


class YShapeNet(nn.Module):
    """E_shared with the two decoders D_ava and D_act (keys of `decoders`: `SUBJECTS`)."""

    def __init__(self, cfg: YShapeConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = SharedEncoder(cfg)
        self.decoders = nn.ModuleDict({s: FaceDecoder(cfg) for s in SUBJECTS})

    def encode(self, img: torch.Tensor) -> torch.Tensor:
        """(B, 3, R, R) → γ (B, D)."""
        return self.encoder(img)

    def decode(self, code: torch.Tensor, subject: str, pose: torch.Tensor | None = None) -> torch.Tensor:
        """γ (B, D) (and the head pose (B, P) for pose-conditioned decoders) → (B, 3, R, R) face of
        `subject` ("ava" or "act")."""
        return self.decoders[subject](code, pose)

    def forward(self, img: torch.Tensor, subject: str, pose: torch.Tensor | None = None) -> torch.Tensor:
        return self.decode(self.encode(img), subject, pose)


def other(subject: str) -> str:
    """The other person: "ava" ↔ "act"."""
    if subject not in SUBJECTS:
        raise ValueError(f"subject must be one of {SUBJECTS}, not {subject!r}")
    return SUBJECTS[1 - SUBJECTS.index(subject)]


class CodeMapper(nn.Module):
    """An MLP from γ (B, D) to a target vector (B, T): the NeRF engine's θ or expression controls.

    Inputs and outputs are standardised with buffers set from the training data (`set_stats`),
    so the MLP works in unit scale whatever the target's units are.
    """

    def __init__(self,
                 in_dim: int,                 # D, the size of γ
                 out_dim: int,                # T, the size of the target
                 hidden: int = 256,           # width of the hidden layers
                 layers: int = 3):            # linear layers in all
        super().__init__()
        mods: list[nn.Module] = []
        d = in_dim
        for _ in range(layers - 1):
            mods += [nn.Linear(d, hidden), _act()]
            d = hidden
        mods.append(nn.Linear(d, out_dim))
        self.net = nn.Sequential(*mods)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.register_buffer("in_mean", torch.zeros(in_dim))
        self.register_buffer("in_std", torch.ones(in_dim))
        self.register_buffer("out_mean", torch.zeros(out_dim))
        self.register_buffer("out_std", torch.ones(out_dim))

    @torch.no_grad()
    def set_stats(self, inputs: torch.Tensor, targets: torch.Tensor, floor: float = 1e-3) -> None:
        """Standardise with the mean/std of (N, D) inputs and (N, T) targets."""
        self.in_mean.copy_(inputs.mean(0))
        self.in_std.copy_(inputs.std(0).clamp_min(floor))
        self.out_mean.copy_(targets.mean(0))
        self.out_std.copy_(targets.std(0).clamp_min(floor))

    def normalised(self, code: torch.Tensor) -> torch.Tensor:
        """γ (B, D) → the standardised prediction (B, T) (what the loss compares)."""
        assert code.ndim == 2 and code.shape[1] == self.in_dim, tuple(code.shape)
        return self.net((code - self.in_mean) / self.in_std)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        """γ (B, D) → target units (B, T)."""
        return self.normalised(code) * self.out_std + self.out_mean


# ----------------------------------------------------------------------------- losses
def reconstruction_loss(pred: torch.Tensor, target: torch.Tensor, ssim_weight: float = 0.1,
                        perceptual: nn.Module | None = None, perceptual_weight: float = 0.0,
                        weight: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """L1 + λ_ssim·(1 − SSIM) (+ λ_p·perceptual) of (B, 3, R, R) images in [0, 1]; (total, parts).

    weight: optional (1 or B, 1, R, R) map of where the L1 counts more (e.g. eyes and mouth); the
    L1 is its weighted mean, so a map of ones gives the plain L1.
    """
    assert pred.shape == target.shape, (tuple(pred.shape), tuple(target.shape))
    err = (pred - target).abs()
    l1 = err.mean() if weight is None else (err * weight).mean() / weight.mean()
    parts = {"l1": l1, "ssim": 1 - ssim_terms(pred, target)[0].mean()}
    total = parts["l1"] + ssim_weight * parts["ssim"]
    if perceptual is not None and perceptual_weight > 0:
        parts["perceptual"] = perceptual(pred * 2 - 1, target * 2 - 1)
        total = total + perceptual_weight * parts["perceptual"]
    return total, parts


def cycle_loss(net: YShapeNet, code: torch.Tensor, target: torch.Tensor, subject: str, ssim_weight: float = 0.1,
               code_weight: float = 1e-4, weight: torch.Tensor | None = None, pose: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The cycle from `subject` through the other person and back (LatentAvatar eq. for L_cycle):

        γ_s → D_other → I*_other → E_shared → γ*_other → D_s → I*_s
        L = ‖I*_s − I_s‖₁ + λ_ssim·(1 − SSIM(I*_s, I_s)) + λ_code·‖γ*_other − γ_s‖₂

    code: γ_s (B, D) of the images `target` (B, 3, R, R) of person `subject`; `weight` as in
    `reconstruction_loss`, for the image term; `pose` (B, P) the images' head pose, given to both
    decoders when they take one (the other person is drawn in the same pose).
    """
    crossed = net.decode(code, other(subject), pose)                           # I*_other
    code2 = net.encode(crossed)                                                # γ*_other
    back = net.decode(code2, subject, pose)                                    # I*_s
    img, parts = reconstruction_loss(back, target, ssim_weight, weight=weight)
    parts = {"cycle_l1": parts["l1"], "cycle_ssim": parts["ssim"],
             "cycle_code": (code2 - code).norm(dim=1).mean()}
    return img + code_weight * parts["cycle_code"], parts


# ----------------------------------------------------------------------------- sharing the code
class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.scale * grad, None


def reverse_gradient(x: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """Identity forward; the gradient flowing back is multiplied by −`scale` (domain-adversarial
    training: what helps the critic tell the people apart is pushed out of the encoder)."""
    return _Reverse.apply(x, scale)


class SubjectCritic(nn.Module):
    """γ (B, D) → one logit per code: which person the code came from (> 0: the actor).

    Not in the paper. Trained through `reverse_gradient`, it makes E_shared's codes of the two
    people indistinguishable, so the mapping fitted on the avatar's codes sees the actor's codes
    inside the distribution it was fitted on. Not saved with the network: driving needs only
    E_shared.
    """

    def __init__(self, code_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(code_dim, hidden), _act(), nn.Linear(hidden, hidden), _act(),
                                 nn.Linear(hidden, 1))

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net(code).squeeze(1)


def adversarial_loss(critic: SubjectCritic, codes: dict[str, torch.Tensor], scale: float = 1.0
                     ) -> tuple[torch.Tensor, float]:
    """The critic's cross-entropy on codes {"ava": (Ba, D), "act": (Bb, D)} seen through
    `reverse_gradient`: minimising it trains the critic and, reversed, pushes the encoder to make
    the two people's codes alike. Returns (loss, the critic's accuracy on these codes)."""
    logits = torch.cat([critic(reverse_gradient(codes[s], scale)) for s in SUBJECTS])
    labels = torch.cat([torch.full((len(codes[s]),), float(i), device=logits.device) for i, s in enumerate(SUBJECTS)])
    loss = F.binary_cross_entropy_with_logits(logits, labels)
    acc = float(((logits.detach() > 0).float() == labels).float().mean())
    return loss, acc


class ExpressionAnchor(nn.Module):
    """A linear read-out γ (B, D) → (B, E) of a person's tracked expressions, each standardised
    over that person's own frames, shared by both people.

    Not in the paper. The same read-out must find both people's expressions in γ, so a smile of
    the actor and a smile of the avatar land in the same place of the code (the reconstruction and
    the cycle alone leave the two people's codes unaligned here). The code keeps its other
    dimensions for what the named expressions do not describe. Not saved with the network.
    """

    def __init__(self, code_dim: int, n_expr: int):
        super().__init__()
        self.head = nn.Linear(code_dim, n_expr)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.head(code)
