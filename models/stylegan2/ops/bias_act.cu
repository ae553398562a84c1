// bias_act CUDA kernel: y = clamp(act(x + b) * gain), and its first and second derivatives
// (mode 1: dy * dy/dx, mode 2: dy * d2y/dx2) for the autograd wrapper in bias_act.py.
// Element-wise, one thread per element, math in float (double for float64).
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

// Activation ids; keep in sync with bias_act.py.
enum Act { kLinear = 0, kRelu = 1, kLrelu = 2, kTanh = 3, kSigmoid = 4, kElu = 5, kSelu = 6, kSoftplus = 7, kSwish = 8 };

template <typename A> __device__ __forceinline__ A sigm(A v) { return (A)1 / ((A)1 + exp(-v)); }

// f(v), f'(v), f''(v) of activation `act` at pre-activation v.
template <typename A>
__device__ __forceinline__ void activation(int act, A v, A alpha, A& f, A& d1, A& d2) {
    const A selu_l = (A)1.0507009873554805, selu_a = (A)1.6732632423543772;
    switch (act) {
        case kRelu:    f = v > 0 ? v : 0; d1 = v > 0 ? 1 : 0; d2 = 0; break;
        case kLrelu:   f = v > 0 ? v : v * alpha; d1 = v > 0 ? 1 : alpha; d2 = 0; break;
        case kTanh:  { A t = tanh(v); f = t; d1 = 1 - t * t; d2 = -2 * t * (1 - t * t); break; }
        case kSigmoid: { A s = sigm(v); f = s; d1 = s * (1 - s); d2 = s * (1 - s) * (1 - 2 * s); break; }
        case kElu:   { A e = exp(v); f = v > 0 ? v : alpha * (e - 1); d1 = v > 0 ? 1 : alpha * e; d2 = v > 0 ? 0 : alpha * e; break; }
        case kSelu:  { A e = exp(v); f = selu_l * (v > 0 ? v : selu_a * (e - 1)); d1 = selu_l * (v > 0 ? 1 : selu_a * e); d2 = v > 0 ? 0 : selu_l * selu_a * e; break; }
        case kSoftplus: {
            if (v > 20) { f = v; d1 = 1; d2 = 0; }
            else { A s = sigm(v); f = log1p(exp(v)); d1 = s; d2 = s * (1 - s); }
            break;
        }
        case kSwish: { A s = sigm(v); f = v * s; d1 = s * (1 + v * (1 - s)); d2 = s * (1 - s) * (2 + v * (1 - 2 * s)); break; }
        default:       f = v; d1 = 1; d2 = 0; break;
    }
}

template <typename T>
__global__ void bias_act_kernel(BiasActArgs a) {
    typedef typename Acc<T>::type A;
    const T* x = static_cast<const T*>(a.x);
    const T* b = static_cast<const T*>(a.b);
    const T* dy = static_cast<const T*>(a.dy);
    T* out = static_cast<T*>(a.out);
    const A alpha = (A)a.alpha, gain = (A)a.gain, clamp = (A)a.clamp;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < a.numel;
         i += (int64_t)gridDim.x * blockDim.x) {
        A v = load(x + i);
        if (b) v += load(b + (i / a.step) % a.dim_size);
        A f, d1, d2;
        activation<A>(a.act, v, alpha, f, d1, d2);
        const A y = f * gain;
        if (a.mode == 0) {
            store(out + i, clamp >= 0 ? (y > clamp ? clamp : (y < -clamp ? -clamp : y)) : y);
        } else {
            // clamp passes the gradient where -clamp <= y <= clamp, like torch.clamp.
            const bool pass = clamp < 0 || (y >= -clamp && y <= clamp);
            const A g = load(dy + i);
            store(out + i, pass ? g * (a.mode == 1 ? d1 : d2) * gain : (A)0);
        }
    }
}

struct DeviceGuard {
    int prev = -1;
    explicit DeviceGuard(int device) { cudaGetDevice(&prev); if (prev != device) cudaSetDevice(device); }
    ~DeviceGuard() { int cur; cudaGetDevice(&cur); if (prev >= 0 && cur != prev) cudaSetDevice(prev); }
};

}  // namespace

const char* launch_bias_act(const BiasActArgs& a, DType dtype, int device, int64_t stream) {
    DeviceGuard guard(device);
    if (a.numel == 0) return nullptr;
    const int threads = 256;
    const int64_t want = (a.numel + threads - 1) / threads;
    const int blocks = (int)(want < 65535 * 32 ? want : 65535 * 32);
    cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    switch (dtype) {
        case kFloat32: bias_act_kernel<float><<<blocks, threads, 0, s>>>(a); break;
        case kFloat16: bias_act_kernel<__half><<<blocks, threads, 0, s>>>(a); break;
        case kFloat64: bias_act_kernel<double><<<blocks, threads, 0, s>>>(a); break;
        default: return "bias_act: unsupported dtype";
    }
    cudaError_t err = cudaGetLastError();
    return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
}

}  // namespace sg2
