//! `tenantguard audit` (being built: see the issue tracker).

use std::process::ExitCode;

/// Arguments of `tenantguard audit`.
#[derive(Debug, clap::Args)]
pub struct AuditArgs {}

pub(crate) async fn run(_args: AuditArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("`tenantguard audit` is not built yet")
}
