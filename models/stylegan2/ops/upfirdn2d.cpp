// Python binding of the upfirdn2d kernel: checks the tensors and allocates the output.
#include <torch/extension.h>
#include "kernels.h"

static sg2::DType dtype_of(const torch::Tensor& t) {
    if (t.scalar_type() == torch::kFloat32) return sg2::kFloat32;
    if (t.scalar_type() == torch::kFloat16) return sg2::kFloat16;
    if (t.scalar_type() == torch::kFloat64) return sg2::kFloat64;
    TORCH_CHECK(false, "upfirdn2d: x must be float32, float16 or float64, got ", t.scalar_type());
}

static torch::Tensor upfirdn2d(torch::Tensor x, torch::Tensor f, int64_t upx, int64_t upy,
                               int64_t downx, int64_t downy, int64_t padx0, int64_t padx1,
                               int64_t pady0, int64_t pady1, bool flip, int64_t stream) {
    TORCH_CHECK(x.is_cuda() && f.is_cuda(), "upfirdn2d: x and f must be CUDA tensors");
    TORCH_CHECK(x.device() == f.device(), "upfirdn2d: x and f must be on the same device");
    TORCH_CHECK(x.dim() == 4 && x.is_contiguous(), "upfirdn2d: x must be a contiguous (B, C, H, W) tensor");
    TORCH_CHECK(f.dim() == 2 && f.is_contiguous() && f.scalar_type() == torch::kFloat32,
                "upfirdn2d: f must be a contiguous 2-D float32 tensor");
    TORCH_CHECK(upx >= 1 && upy >= 1 && downx >= 1 && downy >= 1, "upfirdn2d: factors must be >= 1");
    TORCH_CHECK(x.numel() <= INT32_MAX * 8LL, "upfirdn2d: x is too large");
    const int64_t in_h = x.size(2), in_w = x.size(3);
    const int64_t fh = f.size(0), fw = f.size(1);
    const int64_t out_h = (in_h * upy + pady0 + pady1 - fh) / downy + 1;
    const int64_t out_w = (in_w * upx + padx0 + padx1 - fw) / downx + 1;
    TORCH_CHECK(in_h * upy + pady0 + pady1 >= fh && in_w * upx + padx0 + padx1 >= fw && out_h >= 1 && out_w >= 1,
                "upfirdn2d: output would be empty");
    auto y = torch::empty({x.size(0), x.size(1), out_h, out_w}, x.options());
    sg2::Upfirdn2dArgs a;
    a.x = x.data_ptr(); a.f = f.data_ptr<float>(); a.y = y.data_ptr();
    a.planes = x.size(0) * x.size(1);
    a.in_h = (int)in_h; a.in_w = (int)in_w; a.out_h = (int)out_h; a.out_w = (int)out_w;
    a.upx = (int)upx; a.upy = (int)upy; a.downx = (int)downx; a.downy = (int)downy;
    a.padx0 = (int)padx0; a.pady0 = (int)pady0; a.fw = (int)fw; a.fh = (int)fh; a.flip = flip;
    const char* err = sg2::launch_upfirdn2d(a, dtype_of(x), (int)x.get_device(), stream);
    TORCH_CHECK(err == nullptr, "upfirdn2d kernel failed: ", err ? err : "");
    return y;
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
    m.def("upfirdn2d", &upfirdn2d, "upfirdn2d (CUDA)");
}
