//! `scratch_bytes` against what `convolve` really allocates, counted by a global allocator: the worker's memory
//! estimate adds it for every convolution, so an under-count would let a job past the budget. One test in its own
//! binary, so no other test's allocations are counted.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gameforge_kernels::{ConvShape, convolve, scratch_bytes};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; the counters only observe the sizes.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::SeqCst) + layout.size();
            PEAK.fetch_max(live, Ordering::SeqCst);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::SeqCst);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Bytes allocated at the peak of one call beyond what was live before it, less its output.
fn measured(shape: ConvShape, input: &[f32], weight: &[f32]) -> usize {
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    let out = convolve(input, weight, None, shape);
    let peak = PEAK.load(Ordering::SeqCst);
    (peak - before).saturating_sub(out.len() * size_of::<f32>())
}

#[test]
fn scratch_bytes_covers_what_every_path_allocates() {
    // (batch, in_c, height, width, out_c, kernel, stride, padding), one per path.
    let shapes = [
        (2, 48, 40, 36, 40, 3, 1, 1),   // Winograd
        (1, 4, 24, 40, 16, 3, 1, 1),    // the direct kernel where the CPU has AVX-512, else shifted GEMMs
        (1, 8, 40, 16, 8, 3, 1, 1),     // shifted GEMMs
        (1, 8, 30, 30, 8, 3, 2, 1),     // gathered patches
        (1, 16, 20, 20, 8, 1, 1, 0),    // pointwise
        (1, 320, 32, 32, 320, 3, 1, 1), // Winograd with larger weights than tiles
    ];
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        for &(batch, in_c, height, width, out_c, kernel, stride, padding) in &shapes {
            let shape = ConvShape { batch, in_c, height, width, out_c, kernel, stride, padding };
            let input = vec![0.5f32; batch * in_c * height * width];
            let weight = vec![0.25f32; out_c * in_c * kernel * kernel];
            let (estimate, used) = pool.install(|| {
                // A first call lets gemm make its per-thread packing buffers, which it keeps.
                measured(shape, &input, &weight);
                (scratch_bytes(shape), measured(shape, &input, &weight))
            });
            assert!(used <= estimate, "{shape:?} on {threads} threads: {used} bytes allocated, {estimate} estimated");
            if threads == 1 {
                // With one thread every buffer counted is made: the estimate is the allocation (give or take the
                // 64 KiB it allows for small ones), not a bound far above it.
                assert!(used + (64 << 10) >= estimate / 2, "{shape:?}: {used} bytes allocated, {estimate} estimated");
            }
        }
    }
}
