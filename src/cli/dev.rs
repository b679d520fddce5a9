//! `tenantguard dev` (being built: see the issue tracker).

use std::process::ExitCode;

/// Arguments of `tenantguard dev`.
#[derive(Debug, clap::Args)]
pub struct DevArgs {}

pub(crate) async fn run(_args: DevArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tenantguard dev` is not built yet")
}
