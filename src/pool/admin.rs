//! [`AdminPool`]: the cross-tenant reporting role's pool.

use deadpool_postgres::{Object, Pool};

use super::{build, safety, PoolError, PoolOptions};

/// The cross-tenant reporting pool: a BYPASSRLS, non-superuser, read-only role. Never
/// reachable from tenant routes.
#[derive(Clone)]
pub struct AdminPool {
    pool: Pool,
}

impl std::fmt::Debug for AdminPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminPool")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl AdminPool {
    /// Builds the pool and refuses a role that is (or can become) superuser, lacks
    /// BYPASSRLS, or can write any table.
    pub async fn connect(
        config: tokio_postgres::Config,
        opts: PoolOptions,
    ) -> Result<Self, PoolError> {
        let pool = Self {
            pool: build(config, &opts)?,
        };
        let client = pool.pool.get().await?;
        let (role, reasons) = safety::admin_role_problems(&client).await?;
        if !reasons.is_empty() {
            return Err(PoolError::UnsafeRole {
                pool: "admin",
                role,
                reasons,
            });
        }
        Ok(pool)
    }

    /// A connection for reports. Each statement runs in its own implicit transaction.
    pub async fn get(&self) -> Result<Object, PoolError> {
        Ok(self.pool.get().await?)
    }
}
