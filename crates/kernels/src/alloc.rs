//! Allocator settings for tensor work, applied once by the program (the `medseg` binary calls
//! [`keep_freed_memory`] first thing in `main`, as ripgrep sets its allocator in `main.rs`).
//!
//! burn's flex backend gives every op a freshly allocated output. glibc serves large requests
//! (above its mmap threshold: 128 KiB, adapting up to 32 MiB) with new `mmap` pages and unmaps
//! them on free, so each op's output is page-faulted in and zeroed by the kernel again: 9 % of a
//! 2D training step was the kernel clearing pages. Keeping freed memory in the heap lets the
//! next op reuse it (2D train step 2.24 -> 1.87 s, 3D 1.04 -> 0.99 s; peak RSS unchanged —
//! BENCHMARKS.md). The cost: memory freed late in a run is kept by the process instead of being
//! returned to the system.

/// Serves large allocations from the heap and never trims it (glibc on Linux; a no-op
/// elsewhere). Skipped when the user set any `MALLOC_*` tunable, so those keep their meaning.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::vars_os().any(|(k, _)| k.to_string_lossy().starts_with("MALLOC_")) {
            return;
        }
        unsafe extern "C" {
            fn mallopt(param: i32, value: i32) -> i32;
        }
        // glibc's <malloc.h>
        const M_TRIM_THRESHOLD: i32 = -1;
        const M_MMAP_MAX: i32 = -4;
        // SAFETY: mallopt only changes allocator tunables; called before any thread starts.
        unsafe {
            mallopt(M_MMAP_MAX, 0);
            mallopt(M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}
