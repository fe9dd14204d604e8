//! Loops the compiler vectorises, compiled for the widest vectors the CPU has: the crate is built for the
//! baseline x86-64 (SSE2, four f32 lanes), and AVX-512 has sixteen.

/// Runs `work` compiled for AVX-512F, else AVX2 with FMA, where the CPU has them. `work` and what it calls
/// must be inlined into it (`#[inline(always)]`) to be compiled for them.
#[inline(always)]
pub(crate) fn vectorised<R>(work: impl FnOnce() -> R) -> R {
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
