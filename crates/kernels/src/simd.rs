//! Loops the compiler vectorises, compiled for the widest vectors the CPU has: the crate is built for the
//! baseline x86-64 (SSE2, four f32 lanes), and AVX-512 has sixteen.

/// Runs the closure `work` compiled for AVX-512F, else AVX2 with FMA, where the CPU has them. Only code inlined
/// into it is compiled for them: what the closure calls must be `#[inline(always)]`, and its loops plain `for`
/// loops (an iterator's `for_each`, `fold`, `sum` or `map` is a std function the inliner may leave out of line,
/// compiled for the baseline: the group norm's sums and the attention's rows were).
///
/// The macro marks the closure `#[inline(always)]`: it is called from three variants, and a closure left to the
/// inliner's judgement is compiled once, for the baseline, and called from all three (so the attention's
/// softmax ran in SSE with its float-to-integer conversions scalar, half of the attention's time).
macro_rules! vectorised {
    ($work:expr) => {
        $crate::simd::run_vectorised(
            #[inline(always)]
            $work,
        )
    };
}
pub(crate) use vectorised;

/// [`vectorised!`]'s body: call it through the macro.
#[inline(always)]
pub(crate) fn run_vectorised<R>(work: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        fn avx512<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(work: impl FnOnce() -> R) -> R {
            work()
        }
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has AVX-512F.
            #[allow(unsafe_code)]
            return unsafe { avx512(work) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has AVX2 and FMA.
            #[allow(unsafe_code)]
            return unsafe { avx2(work) };
        }
    }
    work()
}
