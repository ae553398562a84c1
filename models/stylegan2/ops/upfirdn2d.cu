// upfirdn2d CUDA kernel: one thread per output sample. The thread walks only the filter taps
// that land on non-zero (non-inserted) samples of the upsampled, padded input, so upsampling by
// `up` costs 1/up^2 of a naive zero-insertion convolution. Accumulates in float (double for
// float64 inputs).
#include <cuda_runtime.h>
#include <cuda_fp16.h>
#include "kernels.h"

namespace sg2 {
namespace {

template <typename T> struct Acc { typedef float type; };
template <> struct Acc<double> { typedef double type; };

template <typename T> __device__ __forceinline__ typename Acc<T>::type load(const T* p) { return (typename Acc<T>::type)(*p); }
template <> __device__ __forceinline__ float load<__half>(const __half* p) { return __half2float(*p); }
template <typename T> __device__ __forceinline__ void store(T* p, typename Acc<T>::type v) { *p = (T)v; }
template <> __device__ __forceinline__ void store<__half>(__half* p, float v) { *p = __float2half_rn(v); }

// First filter tap i >= 0 whose upsampled coordinate q0 + i is a real sample (>= 0, multiple of up).
__device__ __forceinline__ int first_tap(int q0, int up) {
    int i = q0 < 0 ? -q0 : 0;
    int r = (q0 + i) % up;
    return r == 0 ? i : i + up - r;
}

template <typename T>
__global__ void upfirdn2d_kernel(Upfirdn2dArgs a) {
    typedef typename Acc<T>::type A;
    const T* x = static_cast<const T*>(a.x);
    T* y = static_cast<T*>(a.y);
    const int64_t total = a.planes * a.out_h * a.out_w;
    const int up_h = a.in_h * a.upy;
    const int up_w = a.in_w * a.upx;
    for (int64_t idx = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; idx < total;
         idx += (int64_t)gridDim.x * blockDim.x) {
        const int ox = (int)(idx % a.out_w);
        const int oy = (int)((idx / a.out_w) % a.out_h);
        const int64_t plane = idx / ((int64_t)a.out_w * a.out_h);
        const T* xp = x + plane * a.in_h * a.in_w;
        const int qy0 = oy * a.downy - a.pady0;   // upsampled row under tap 0
        const int qx0 = ox * a.downx - a.padx0;
        const int iy0 = first_tap(qy0, a.upy);
        const int ix0 = first_tap(qx0, a.upx);
        A acc = 0;
        for (int i = iy0; i < a.fh; i += a.upy) {
            const int qy = qy0 + i;
            if (qy >= up_h) break;
            const int fi = a.flip ? i : a.fh - 1 - i;
            const T* row = xp + (int64_t)(qy / a.upy) * a.in_w;
            for (int j = ix0; j < a.fw; j += a.upx) {
                const int qx = qx0 + j;
                if (qx >= up_w) break;
                const int fj = a.flip ? j : a.fw - 1 - j;
                acc += load(row + qx / a.upx) * (A)__ldg(a.f + fi * a.fw + fj);
            }
        }
        store(y + idx, acc);
    }
}

struct DeviceGuard {
    int prev = -1;
    explicit DeviceGuard(int device) { cudaGetDevice(&prev); if (prev != device) cudaSetDevice(device); }
    ~DeviceGuard() { int cur; cudaGetDevice(&cur); if (prev >= 0 && cur != prev) cudaSetDevice(prev); }
};

}  // namespace

const char* launch_upfirdn2d(const Upfirdn2dArgs& a, DType dtype, int device, int64_t stream) {
    DeviceGuard guard(device);
    const int64_t total = a.planes * a.out_h * a.out_w;
    if (total == 0) return nullptr;
    const int threads = 256;
    const int64_t want = (total + threads - 1) / threads;
    const int blocks = (int)(want < 65535 * 32 ? want : 65535 * 32);
    cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    switch (dtype) {
        case kFloat32: upfirdn2d_kernel<float><<<blocks, threads, 0, s>>>(a); break;
        case kFloat16: upfirdn2d_kernel<__half><<<blocks, threads, 0, s>>>(a); break;
        case kFloat64: upfirdn2d_kernel<double><<<blocks, threads, 0, s>>>(a); break;
        default: return "upfirdn2d: unsupported dtype";
    }
    cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace sg2
