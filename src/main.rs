//! The `tenantguard` command: a thin shell over the library (see `src/cli`).

fn main() -> std::process::ExitCode {
    tenantguard::cli::main()
}
