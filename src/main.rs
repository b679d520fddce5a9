//! The `tenantguard` command: a thin shell over the library (see `src/cli`).

/// mimalloc instead of glibc's malloc for the whole binary: a request allocates ~80 small
/// blocks on its way through hyper, axum, tracing and tokio-postgres, and glibc's
/// malloc/free took ~180 instructions a pair there (callgrind, bench/RESULTS.md); the
/// library itself leaves the choice to whoever links it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    tenantguard::cli::main()
}
