// Python binding of the bias_act kernel: checks the tensors and allocates the output.
#include <torch/extension.h>
#include "kernels.h"

static sg2::DType dtype_of(const torch::Tensor& t) {
    if (t.scalar_type() == torch::kFloat32) return sg2::kFloat32;
    if (t.scalar_type() == torch::kFloat16) return sg2::kFloat16;
    if (t.scalar_type() == torch::kFloat64) return sg2::kFloat64;
    TORCH_CHECK(false, "bias_act: x must be float32, float16 or float64, got ", t.scalar_type());
}

// mode 0: act(x + b) * gain (clamped); mode 1: dy * first derivative; mode 2: dy * second derivative.
static torch::Tensor bias_act(torch::Tensor x, torch::Tensor b, torch::Tensor dy, int64_t mode, int64_t act,
                              double alpha, double gain, double clamp, int64_t dim, int64_t stream) {
    TORCH_CHECK(x.is_cuda() && x.is_contiguous(), "bias_act: x must be a contiguous CUDA tensor");
    TORCH_CHECK(mode >= 0 && mode <= 2, "bias_act: bad mode ", mode);
    TORCH_CHECK(x.dim() == 0 || (dim >= 0 && dim < x.dim()), "bias_act: dim out of range");
    const bool has_b = b.numel() > 0;
    if (has_b) {
        TORCH_CHECK(b.device() == x.device() && b.scalar_type() == x.scalar_type() && b.dim() == 1 && b.is_contiguous(),
                    "bias_act: b must be a contiguous 1-D tensor like x");
        TORCH_CHECK(b.size(0) == x.size(dim), "bias_act: b has ", b.size(0), " elements, x has ", x.size(dim), " along dim");
    }
    if (mode != 0) {
        TORCH_CHECK(dy.device() == x.device() && dy.scalar_type() == x.scalar_type() && dy.sizes() == x.sizes() && dy.is_contiguous(),
                    "bias_act: dy must be a contiguous tensor like x");
    }
    auto out = torch::empty_like(x, torch::MemoryFormat::Contiguous);
    int64_t step = 1;
    for (int64_t d = dim + 1; d < x.dim(); ++d) step *= x.size(d);
    sg2::BiasActArgs a;
    a.x = x.data_ptr(); a.b = has_b ? b.data_ptr() : nullptr; a.dy = mode != 0 ? dy.data_ptr() : nullptr;
    a.out = out.data_ptr(); a.numel = x.numel(); a.dim_size = has_b ? b.size(0) : 1; a.step = step;
    a.mode = (int)mode; a.act = (int)act; a.alpha = (float)alpha; a.gain = (float)gain; a.clamp = (float)clamp;
    const char* err = sg2::launch_bias_act(a, dtype_of(x), (int)x.get_device(), stream);
    TORCH_CHECK(err == nullptr, "bias_act kernel failed: ", err ? err : "");
    return out;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("bias_act", &bias_act, "bias_act (CUDA)");
}
