// Runs one of kernels/gameforge.cu's kernels under emulate.hpp, with the launch geometry the Rust side chose
// (given on the command line), on f32 data read from stdin (values already representable in the dtype), and
// writes the output as f32 to stdout. Used by tests/emulated.rs.
//
//   run group_norm <f32|f16|bf16> <batch> <channels> <spatial> <groups> <eps> <silu> <chunks> <chunk_len> <threads>
//       stdin: x, weight, bias
//   run softmax <f32|f16|bf16> <rows> <cols> <scale> <threads>
//       stdin: x

#include <cstdio>
#include <cstdlib>
#include <string>

#include "../../kernels/gameforge.cu"

namespace {

std::vector<float> read(size_t n) {
    std::vector<float> v(n);
    if (std::fread(v.data(), sizeof(float), n, stdin) != n) {
        std::fprintf(stderr, "expected %zu floats on stdin\n", n);
        std::exit(2);
    }
    return v;
}

template <typename T> T convert(float x);
template <> float convert<float>(float x) { return x; }
template <> __half convert<__half>(float x) { return __float2half_rn(x); }
template <> __nv_bfloat16 convert<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }

template <typename T>
std::vector<T> to(const std::vector<float>& v) {
    std::vector<T> out;
    out.reserve(v.size());
    for (float x : v) out.push_back(convert<T>(x));
    return out;
}

template <typename T>
void write(const std::vector<T>& v) {
    for (const T& x : v) {
        const float f = to_f32(x);
        std::fwrite(&f, sizeof(float), 1, stdout);
    }
}

unsigned long arg(char** argv, int i) { return std::strtoul(argv[i], nullptr, 10); }

template <typename T, typename Stats, typename Apply>
void group_norm(char** argv, Stats stats, Apply apply) {
    const unsigned long batch = arg(argv, 3), channels = arg(argv, 4), spatial = arg(argv, 5), groups = arg(argv, 6);
    const float eps = std::strtof(argv[7], nullptr);
    const int silu = static_cast<int>(arg(argv, 8));
    const unsigned chunks = arg(argv, 9), chunk_len = arg(argv, 10), threads = arg(argv, 11);
    const size_t n = batch * channels * spatial;
    const auto x = to<T>(read(n));
    const auto weight = to<T>(read(channels));
    const auto bias = to<T>(read(channels));
    const uint32_t group_len = channels / groups * spatial;
    std::vector<float> partial(3 * chunks * batch * groups, NAN);
    std::vector<T> y(n, convert<T>(NAN));
    const dim3 grid{chunks, static_cast<unsigned>(batch * groups), 1}, block{threads, 1, 1};
    emulate::launch(grid, block, [&] { stats(x.data(), partial.data(), group_len, chunk_len); });
    emulate::launch(grid, block, [&] {
        apply(x.data(), partial.data(), weight.data(), bias.data(), y.data(), group_len, chunk_len,
              static_cast<uint32_t>(spatial), static_cast<uint32_t>(groups), eps, silu);
    });
    write(y);
}

template <typename T, typename Softmax>
void softmax(char** argv, Softmax kernel) {
    const unsigned rows = arg(argv, 3), cols = arg(argv, 4);
    const float scale = std::strtof(argv[5], nullptr);
    const unsigned threads = arg(argv, 6);
    const auto x = to<T>(read(static_cast<size_t>(rows) * cols));
    std::vector<T> y(x.size(), convert<T>(NAN));
    emulate::launch(dim3{rows, 1, 1}, dim3{threads, 1, 1}, [&] { kernel(x.data(), y.data(), cols, scale); });
    write(y);
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 3) return 2;
    const std::string op = argv[1], dtype = argv[2];
    if (op == "group_norm" && argc == 12) {
        if (dtype == "f32") group_norm<float>(argv, group_norm_stats_f32, group_norm_apply_f32);
        else if (dtype == "f16") group_norm<__half>(argv, group_norm_stats_f16, group_norm_apply_f16);
        else if (dtype == "bf16") group_norm<__nv_bfloat16>(argv, group_norm_stats_bf16, group_norm_apply_bf16);
        else return 2;
    } else if (op == "softmax" && argc == 7) {
        if (dtype == "f32") softmax<float>(argv, scaled_softmax_f32);
        else if (dtype == "f16") softmax<__half>(argv, scaled_softmax_f16);
        else if (dtype == "bf16") softmax<__nv_bfloat16>(argv, scaled_softmax_bf16);
        else return 2;
    } else {
        std::fprintf(stderr, "usage: see run.cpp\n");
        return 2;
    }
    return std::fflush(stdout) == 0 ? 0 : 1;
}
