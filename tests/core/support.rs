//! Shared helpers for the core tests.

pub use tenantguard::testing::TestDb;
pub use tenantguard::TenantId;
use tokio_postgres::Client;

/// Inserts two tenants (as the superuser) and returns their ids.
pub async fn two_tenants(su: &Client) -> (TenantId, TenantId) {
    let rows = su
        .query(
            "INSERT INTO tenants (name) VALUES ('tenant a'), ('tenant b') RETURNING id",
            &[],
        )
        .await
        .expect("insert tenants");
    let a: uuid::Uuid = rows[0].get(0);
    let b: uuid::Uuid = rows[1].get(0);
    (a.into(), b.into())
}
