// CUDA's execution model on host threads, enough to run kernels/gameforge.cu unchanged on the CPU: a block's
// threads are std::threads (blocks run one after another on the same threads), __syncthreads is a barrier of
// the block, a warp's shuffles exchange through a slot per lane between two barriers of its 32 threads, and
// __shared__ is static storage.
// It checks the kernels' arithmetic and indexing, and deadlocks on a shuffle not every lane of a warp reaches
// (a real kernel's undefined behaviour); it says nothing about speed, memory ordering or the PTX compiler.
#pragma once

#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};

namespace emulate {
inline thread_local dim3 thread_idx, block_idx;
inline dim3 block_dim, grid_dim;
inline std::barrier<>* block_barrier = nullptr;
inline std::vector<std::unique_ptr<std::barrier<>>> warp_barriers;
inline std::vector<float> lane_slots;  // 32 per warp

inline float exchange(float value, unsigned source_lane) {
    const unsigned warp = thread_idx.x / 32, lane = thread_idx.x % 32;
    auto& barrier = *warp_barriers[warp];
    lane_slots[warp * 32 + lane] = value;
    barrier.arrive_and_wait();
    const float out = source_lane < 32 ? lane_slots[warp * 32 + source_lane] : value;
    barrier.arrive_and_wait();
    return out;
}

// Runs `kernel` over every block of `grid`, one block at a time, on `block.x` threads (a multiple of 32) that
// work every block in turn: a barrier between blocks keeps one block's use of __shared__ from the next's.
inline void launch(dim3 grid, dim3 block, const std::function<void()>& kernel) {
    grid_dim = grid;
    block_dim = block;
    const unsigned warps = block.x / 32;
    lane_slots.assign(warps * 32, 0.f);
    std::barrier<> barrier(block.x);
    block_barrier = &barrier;
    warp_barriers.clear();
    for (unsigned w = 0; w < warps; ++w) warp_barriers.push_back(std::make_unique<std::barrier<>>(32));
    std::vector<std::thread> threads;
    threads.reserve(block.x);
    for (unsigned t = 0; t < block.x; ++t) {
        threads.emplace_back([&, t] {
            thread_idx = dim3{t, 0, 0};
            for (unsigned by = 0; by < grid.y; ++by) {
                for (unsigned bx = 0; bx < grid.x; ++bx) {
                    block_idx = dim3{bx, by, 0};
                    kernel();
                    barrier.arrive_and_wait();
                }
            }
        });
    }
    for (auto& th : threads) th.join();
    block_barrier = nullptr;
}
}  // namespace emulate

#define threadIdx (emulate::thread_idx)
#define blockIdx (emulate::block_idx)
#define blockDim (emulate::block_dim)
#define gridDim (emulate::grid_dim)

inline void __syncthreads() { emulate::block_barrier->arrive_and_wait(); }

inline float __shfl_down_sync(unsigned, float value, int offset) {
    return emulate::exchange(value, emulate::thread_idx.x % 32 + static_cast<unsigned>(offset));
}

inline float __shfl_xor_sync(unsigned, float value, int mask) {
    return emulate::exchange(value, (emulate::thread_idx.x % 32) ^ static_cast<unsigned>(mask));
}

template <typename T>
inline T min(T a, T b) {
    return b < a ? b : a;
}

inline float rsqrtf(float x) { return 1.f / std::sqrt(x); }

// Half precision: GCC's _Float16 (IEEE binary16, round to nearest even). bfloat16: the top half of an f32,
// rounded to nearest even.
struct __half {
    _Float16 value;
};
inline float __half2float(__half h) { return static_cast<float>(h.value); }
inline __half __float2half_rn(float f) { return __half{static_cast<_Float16>(f)}; }

struct __nv_bfloat16 {
    uint16_t bits;
};
inline float __bfloat162float(__nv_bfloat16 b) {
    const uint32_t bits = static_cast<uint32_t>(b.bits) << 16;
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t bits;
    std::memcpy(&bits, &f, 4);
    if (std::isnan(f)) return __nv_bfloat16{static_cast<uint16_t>((bits >> 16) | 0x40)};
    bits += 0x7fff + ((bits >> 16) & 1);
    return __nv_bfloat16{static_cast<uint16_t>(bits >> 16)};
}
