//! The process's allocator settings.
//!
//! glibc's malloc gives each thread that allocates under contention an arena of its own (up to 8
//! per core) and keeps what is freed in it for reuse. ppsync's threads (tokio's workers, the
//! blocking pool's SQLite writer, the page decoder) each grew one: over a simulated week at
//! scale 1 on SQLite the resident set climbed 59 → 133 MB and levelled off only on day 5; with
//! two arenas it was 102 MB from day 2 to day 4, flat (BENCHMARKS.md, the week), and a scale-1
//! backfill ran as fast (peak 57–63 MB against 66–70). No allocator crate (jemalloc, mimalloc)
//! is among the vetted packages; one `mallopt` call is enough.

/// Caps malloc's arenas at two, unless `MALLOC_ARENA_MAX` says otherwise (glibc reads it
/// itself). Call first thing in `main`, before any thread starts.
pub fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a tunable of glibc's allocator; called before other threads
        // exist, it races with no allocation. Its result (0 on a refused value) needs no action:
        // the default stays.
        #[allow(unsafe_code)]
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}
