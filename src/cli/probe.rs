//! `tenantguard probe` (being built: see the issue tracker).

use std::process::ExitCode;

/// Arguments of `tenantguard probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {}

pub(crate) async fn run(_args: ProbeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tenantguard probe` is not built yet")
}
