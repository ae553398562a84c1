"""Custom ops of the StyleGAN2 networks.

Each op takes impl='auto' | 'ref' | 'cuda' (None: the default set with `default_impl`).
Importing never compiles or needs CUDA; kernels build on first use (see _build.py).
"""

from ._build import default_impl
from .bias_act import bias_act
from .conv2d_resample import conv2d_resample
from .upfirdn2d import downsample2d, filter2d, setup_filter, upfirdn2d, upsample2d

__all__ = ['bias_act', 'conv2d_resample', 'default_impl', 'downsample2d', 'filter2d', 'setup_filter',
           'upfirdn2d', 'upsample2d']
