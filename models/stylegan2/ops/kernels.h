// Launchers shared by the .cpp bindings and the .cu kernels of the StyleGAN2 ops.
// The .cu files see no torch headers: tensors arrive as raw pointers plus sizes, the stream as
// an integer, and each launcher returns nullptr or a CUDA error string for the binding to raise.
#pragma once
#include <cstdint>

namespace sg2 {

enum DType : int { kFloat32 = 0, kFloat16 = 1, kFloat64 = 2 };

struct Upfirdn2dArgs {
    const void* x;      // [planes, in_h, in_w], contiguous
    const float* f;     // [fh, fw], gain folded in
    void* y;            // [planes, out_h, out_w], contiguous
    int64_t planes;
    int in_h, in_w, out_h, out_w;
    int upx, upy, downx, downy;
    int padx0, pady0;
    int fw, fh;
    bool flip;          // true: correlate with f; false: true convolution
};

const char* launch_upfirdn2d(const Upfirdn2dArgs& a, DType dtype, int device, int64_t stream);

struct BiasActArgs {
    const void* x;      // input, contiguous, numel elements
    const void* b;      // bias [dim_size] or nullptr
    const void* dy;     // incoming gradient (modes 1, 2) or nullptr
    void* out;
    int64_t numel;
    int64_t dim_size;   // size of the bias dimension
    int64_t step;       // product of the sizes after the bias dimension
    int mode;           // 0: y = act(x + b) * gain, clamped; 1: dy * d/dx; 2: dy * d2/dx2
    int act;            // activation id, see bias_act.py
    float alpha, gain, clamp;   // clamp < 0: no clamp
};

const char* launch_bias_act(const BiasActArgs& a, DType dtype, int device, int64_t stream);

}  // namespace sg2
