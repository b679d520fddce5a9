//! `tenantguard serve` (being built: see the issue tracker).

use std::process::ExitCode;

/// Arguments of `tenantguard serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {}

pub(crate) async fn run(_args: ServeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tenantguard serve` is not built yet")
}
