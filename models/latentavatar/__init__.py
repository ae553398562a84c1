"""LatentAvatar (issue #6): latent-expression tri-plane head NeRF with super-resolution."""
from .camera import cam2world, head_rotation, rays
from .model import LatentAvatar, LatentAvatarConfig, face_region
from .rendering import sample_along_rays, volume_integrate
from .training import LossWeights, compute_losses, fit_mapper, train_step
from .triplane import TriplaneGenerator, project_onto_planes, sample_triplane

__all__ = ["LatentAvatar", "LatentAvatarConfig", "LossWeights", "cam2world", "compute_losses", "face_region",
           "fit_mapper", "head_rotation", "project_onto_planes", "rays", "sample_along_rays",
           "sample_triplane", "train_step", "TriplaneGenerator", "volume_integrate"]
