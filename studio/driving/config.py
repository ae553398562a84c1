"""Settings of the per-actor driving network (LatentAvatar section 4), with the two presets."""
from __future__ import annotations

from dataclasses import dataclass

from ..config import opt


@dataclass
class DriveConfig:
    size: int = opt(64, "Side of the face images the Y-shaped network reads and writes, in pixels.",
                    choices=(16, 32, 64, 128, 256))
    code_dim: int = opt(128, "Size of the shared expression code γ.", minimum=4, maximum=1024)
    channels: int = opt(16, "Channels of the network at full resolution (doubling at each halving).", minimum=4,
                        maximum=128)
    max_channels: int = opt(128, "Channel cap at the low resolutions.", minimum=8, maximum=1024, advanced=True)
    steps: int = opt(2500, "Training steps of the Y-shaped network (one person per step, chosen at random).",
                     minimum=1)
    batch: int = opt(16, "Face images per step.", minimum=1, maximum=128)
    lr: float = opt(5e-4, "Adam learning rate (cosine-decayed to a tenth over the steps).", minimum=1e-6,
                    maximum=1e-1)
    cycle: bool = opt(True, "Train with the cycle-consistency term (both directions). Without it the two "
                            "people's codes drift apart and expressions stop transferring (for the ablation).")
    cycle_weight: float = opt(1.0, "Weight of the cycle term against the reconstruction.", minimum=0.0,
                              advanced=True)
    ssim_weight: float = opt(0.1, "λ_ssim: weight of 1 − SSIM beside the L1 (paper: 0.1).", minimum=0.0,
                             advanced=True)
    code_weight: float = opt(1e-4, "λ_code: weight of ‖γ*_other − γ‖₂ in the cycle (paper: 1e-4).", minimum=0.0,
                             advanced=True)
    perceptual_weight: float = opt(0.1, "Weight of the LPIPS loss; used only when an LPIPS backbone file is "
                                        "added (`avatar-studio models add lpips …`).", minimum=0.0, advanced=True)
    focus_weight: float = opt(1.0, "Extra weight of the L1 on the eyes, brows and mouth (from each person's "
                                   "tracked landmarks): 0 = the plain L1 of the paper, 1 = those parts count twice, "
                                   "so the code spends itself on the expression more than on hair and skin.",
                              minimum=0.0, maximum=20.0, advanced=True)
    pose_decoders: bool = opt(True, "Give both decoders the tracked head pose (yaw, pitch) beside γ, so the code "
                                    "need not spend itself on head pose (not in the paper; off = the paper's "
                                    "decoders).", advanced=True)
    adversarial_weight: float = opt(0.1, "Weight of a subject critic that tries to tell the two people's codes "
                                         "apart, trained with a reversed gradient so the encoder makes them alike "
                                         "(not in the paper; 0 = off).", minimum=0.0, maximum=10.0, advanced=True)
    anchor_weight: float = opt(1.0, "Weight of a shared linear read-out that must find each person's tracked "
                                    "expressions (standardised over their own frames) in γ, which lines up the two "
                                    "people's codes (not in the paper; 0 = off).", minimum=0.0, maximum=100.0,
                               advanced=True)
    augment: bool = opt(True, "Jitter the encoder's input (shift, scale, brightness, contrast; the target stays "
                              "clean), so the code follows the face and not the pixel grid.", advanced=True)
    matte: bool = opt(True, "Put each face on a grey background with the tracked matte (the backgrounds of the "
                            "two videos do not enter the code).", advanced=True)
    map_steps: int = opt(2000, "Steps of each mapping MLP (γ → the NeRF engine's θ, γ → expression controls), "
                              "trained on the avatar's own frames with everything else frozen.", minimum=0)
    map_hidden: int = opt(256, "Width of the mapping MLPs.", minimum=8, maximum=2048, advanced=True)
    map_lr: float = opt(1e-3, "Learning rate of the mapping MLPs (cosine-decayed).", minimum=1e-6, maximum=1e-1,
                        advanced=True)
    map_noise: float = opt(0.05, "Std of the noise on γ while fitting the mappings (× γ's spread), so that an "
                                 "actor's code near the avatar's maps smoothly.", minimum=0.0, maximum=1.0,
                           advanced=True)
    align_codes: bool = opt(True, "When driving, move the actor's codes to the avatar's code distribution (per "
                                  "dimension: mean and spread of the actor's frames → the avatar's) before the "
                                  "mapping, which was fitted on the avatar's codes only. Not in the paper; switch it "
                                  "off to compare.", advanced=True)
    rescale: bool = opt(True, "When driving, give the learned expressions the avatar's own spread: each mapped "
                              "control is standardised over the actor clip and set to the mean and spread of the "
                              "avatar's training frames, as the parameter transfer does (the mapping alone "
                              "shrinks toward the average; switch off to compare).", advanced=True)
    min_frames: int = opt(30, "Fewest frames with a face the actor clip must have.", minimum=8)
    time_budget_min: float = opt(0.0, "Optional wall-clock cap in minutes (0 = no cap; pauses do not count). "
                                      "Training says when it was cut short.", minimum=0.0)
    threads: int = opt(0, "CPU threads (0 = the cores other programs leave free).", minimum=0, maximum=256,
                       advanced=True)
    checkpoint_every_s: float = opt(45.0, "Seconds between resumable checkpoints.", minimum=0.0, advanced=True)
    preview_every: int = opt(200, "Steps between preview images (actor | avatar).", minimum=1, advanced=True)
    seed: int = opt(0, "Random seed.", advanced=True)


PRESETS = {
    # sized for a 2-core CPU: the network and both mappings train in well under 15 minutes
    "preview": DriveConfig(),
    # the paper's schedule (Adam 1e-4, batch 16, 30k iterations) for a GPU
    "quality": DriveConfig(size=128, code_dim=256, channels=32, max_channels=256, steps=30000, lr=1e-4,
                           map_steps=5000, checkpoint_every_s=300.0, preview_every=1000),
}
