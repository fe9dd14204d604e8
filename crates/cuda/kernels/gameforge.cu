// The worker's fused element-wise CUDA kernels. Every kernel reads and writes its tensor's dtype (f32, f16 or
// bf16) and does its arithmetic in f32, as PyTorch's kernels do for half-precision tensors: the statistics and
// the softmax's sums of a long row are meaningless in half precision.
//
// Entry points are extern "C" instantiations named <kernel>_<dtype>; src/lib.rs loads them by those names.

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace {

__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <typename T> __device__ __forceinline__ T from_f32(float x);
template <> __device__ __forceinline__ float from_f32<float>(float x) { return x; }
template <> __device__ __forceinline__ __half from_f32<__half>(float x) { return __float2half_rn(x); }
template <> __device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
    return __float2bfloat16_rn(x);
}

constexpr unsigned FULL_MASK = 0xffffffffu;

// Count, mean and sum of squared deviations of some elements. Combined pairwise (Chan et al.), so a group of
// millions of elements is summed as a tree of small sums rather than one long running sum.
struct Moments {
    float n;
    float mean;
    float m2;
};

__device__ __forceinline__ Moments combine(Moments a, Moments b) {
    const float n = a.n + b.n;
    if (n == 0.f) return a;
    const float delta = b.mean - a.mean;
    const float share = b.n / n;
    return Moments{n, a.mean + delta * share, a.m2 + b.m2 + delta * delta * a.n * share};
}

__device__ __forceinline__ Moments warp_combine(Moments m) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        Moments other{__shfl_down_sync(FULL_MASK, m.n, offset), __shfl_down_sync(FULL_MASK, m.mean, offset),
                      __shfl_down_sync(FULL_MASK, m.m2, offset)};
        m = combine(m, other);
    }
    return m;
}

// The whole block's moments, in thread 0. blockDim.x is a multiple of 32, at most 1024.
__device__ Moments block_combine(Moments m) {
    __shared__ Moments per_warp[32];
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    m = warp_combine(m);
    if (lane == 0) per_warp[warp] = m;
    __syncthreads();
    if (warp == 0) {
        m = lane < (blockDim.x >> 5) ? per_warp[lane] : Moments{0.f, 0.f, 0.f};
        m = warp_combine(m);
    }
    return m;
}

// Group normalisation in two launches over a grid of (chunk, batch × group): `stats` writes each chunk's
// moments to `partial` (3 floats each); `apply` combines its group's chunks and normalises its own chunk. A
// group's channels are adjacent in NC… layout, so a group is one contiguous run of `group_len` elements.
template <typename T>
__device__ void group_norm_stats(const T* x, float* partial, uint32_t group_len, uint32_t chunk_len) {
    const uint32_t chunk = blockIdx.x, chunks = gridDim.x;
    const uint64_t group = blockIdx.y;
    const T* g = x + group * group_len;
    const uint32_t begin = chunk * chunk_len;
    const uint32_t end = min(begin + chunk_len, group_len);
    // Each thread sums deviations from the group's first element, so its sum of squares does not cancel
    // catastrophically when the mean is large against the spread.
    const float shift = to_f32(g[0]);
    float sum = 0.f, squares = 0.f, count = 0.f;
    for (uint32_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float d = to_f32(g[i]) - shift;
        sum += d;
        squares += d * d;
        count += 1.f;
    }
    Moments m{0.f, 0.f, 0.f};
    if (count > 0.f) {
        const float mean = sum / count;
        m = Moments{count, shift + mean, fmaxf(squares - sum * mean, 0.f)};
    }
    m = block_combine(m);
    if (threadIdx.x == 0) {
        float* p = partial + 3 * (group * chunks + chunk);
        p[0] = m.n;
        p[1] = m.mean;
        p[2] = m.m2;
    }
}

template <typename T>
__device__ void group_norm_apply(const T* x, const float* partial, const T* weight, const T* bias, T* y,
                                 uint32_t group_len, uint32_t chunk_len, uint32_t spatial, uint32_t groups,
                                 float eps, int silu) {
    __shared__ float stats[2];
    const uint32_t chunk = blockIdx.x, chunks = gridDim.x;
    const uint64_t group = blockIdx.y;
    if (threadIdx.x < 32) {
        Moments m{0.f, 0.f, 0.f};
        for (uint32_t i = threadIdx.x; i < chunks; i += 32) {
            const float* p = partial + 3 * (group * chunks + i);
            m = combine(m, Moments{p[0], p[1], p[2]});
        }
        m = warp_combine(m);
        if (threadIdx.x == 0) {
            stats[0] = m.mean;
            stats[1] = rsqrtf(m.m2 / m.n + eps);
        }
    }
    __syncthreads();
    const float mean = stats[0], rstd = stats[1];
    const uint32_t channels_per_group = group_len / spatial;
    const uint32_t first_channel = static_cast<uint32_t>(group % groups) * channels_per_group;
    const T* gx = x + group * group_len;
    T* gy = y + group * group_len;
    const uint32_t begin = chunk * chunk_len;
    const uint32_t end = min(begin + chunk_len, group_len);
    for (uint32_t i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const uint32_t c = first_channel + i / spatial;
        float v = (to_f32(gx[i]) - mean) * rstd * to_f32(weight[c]) + to_f32(bias[c]);
        if (silu) v = v / (1.f + expf(-v));
        gy[i] = from_f32<T>(v);
    }
}

// The running maximum and the sum of exponentials relative to it (the online softmax's pair).
struct MaxSum {
    float max;
    float sum;
};

__device__ __forceinline__ MaxSum merge(MaxSum a, MaxSum b) {
    if (b.max == -INFINITY) return a;
    if (a.max == -INFINITY) return b;
    const float m = fmaxf(a.max, b.max);
    return MaxSum{m, a.sum * expf(a.max - m) + b.sum * expf(b.max - m)};
}

__device__ __forceinline__ MaxSum warp_merge(MaxSum s) {
    for (int offset = 16; offset > 0; offset >>= 1) {
        MaxSum other{__shfl_xor_sync(FULL_MASK, s.max, offset), __shfl_xor_sync(FULL_MASK, s.sum, offset)};
        s = merge(s, other);
    }
    return s;
}

// softmax(x · scale) along rows of `cols`, one block per row: one read for the maximum and the sum (online), one
// read and one write for the result. The scores never exist in f32 in memory.
template <typename T>
__device__ void scaled_softmax(const T* x, T* y, uint32_t cols, float scale) {
    __shared__ MaxSum per_warp[32];
    __shared__ MaxSum row_total;
    const uint64_t row = blockIdx.x;
    const T* in = x + row * cols;
    T* out = y + row * cols;
    MaxSum s{-INFINITY, 0.f};
    for (uint32_t i = threadIdx.x; i < cols; i += blockDim.x) {
        const float v = to_f32(in[i]) * scale;
        if (v > s.max) {
            s.sum = s.sum * expf(s.max - v) + 1.f;
            s.max = v;
        } else if (v != -INFINITY) {  // -inf adds nothing, and -inf - -inf would be NaN
            s.sum += expf(v - s.max);
        }
    }
    const unsigned lane = threadIdx.x & 31u, warp = threadIdx.x >> 5;
    s = warp_merge(s);
    if (lane == 0) per_warp[warp] = s;
    __syncthreads();
    if (warp == 0) {
        s = lane < (blockDim.x >> 5) ? per_warp[lane] : MaxSum{-INFINITY, 0.f};
        s = warp_merge(s);
        if (lane == 0) row_total = s;
    }
    __syncthreads();
    const float max = row_total.max, inverse = 1.f / row_total.sum;
    for (uint32_t i = threadIdx.x; i < cols; i += blockDim.x) {
        out[i] = from_f32<T>(expf(to_f32(in[i]) * scale - max) * inverse);
    }
}

}  // namespace

#define GAMEFORGE_INSTANTIATE(SUFFIX, T)                                                                        \
    extern "C" __global__ void group_norm_stats_##SUFFIX(const T* x, float* partial, uint32_t group_len,       \
                                                         uint32_t chunk_len) {                                 \
        group_norm_stats<T>(x, partial, group_len, chunk_len);                                                 \
    }                                                                                                          \
    extern "C" __global__ void group_norm_apply_##SUFFIX(const T* x, const float* partial, const T* weight,    \
                                                         const T* bias, T* y, uint32_t group_len,              \
                                                         uint32_t chunk_len, uint32_t spatial, uint32_t groups, \
                                                         float eps, int silu) {                                \
        group_norm_apply<T>(x, partial, weight, bias, y, group_len, chunk_len, spatial, groups, eps, silu);    \
    }                                                                                                          \
    extern "C" __global__ void scaled_softmax_##SUFFIX(const T* x, T* y, uint32_t cols, float scale) {         \
        scaled_softmax<T>(x, y, cols, scale);                                                                  \
    }

GAMEFORGE_INSTANTIATE(f32, float)
GAMEFORGE_INSTANTIATE(f16, __half)
GAMEFORGE_INSTANTIATE(bf16, __nv_bfloat16)
