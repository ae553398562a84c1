"""StyleGAN2 (NVIDIA stylegan2-ada-pytorch layout): generator, discriminator, custom ops and
checkpoint readers that never execute code from the file."""

from .checkpoint import CheckpointError, load_generator, save_generator
from .discriminator import Discriminator
from .networks import Generator, GeneratorConfig

__all__ = ['CheckpointError', 'Discriminator', 'Generator', 'GeneratorConfig', 'load_generator', 'save_generator']
