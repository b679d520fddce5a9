//! API key use, kept in memory and written to `api_keys.last_used_at` in batches, so a
//! request costs no write.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::http::limits::IdHash;
use crate::pool::{TenantId, TenantPool};

/// The last use of each key since the previous flush, per tenant. Keyed by verified ids
/// only (a key is recorded after it was found), so the fast [`IdHash`] serves.
#[derive(Default)]
pub(super) struct LastUsed(Mutex<HashMap<TenantId, KeyTimes, IdHash>>);

/// One tenant's keys and when each was last used.
type KeyTimes = HashMap<Uuid, DateTime<Utc>, IdHash>;

impl LastUsed {
    /// Records a use of `key_id` now.
    pub(super) fn touch(&self, tenant: TenantId, key_id: Uuid) {
        if let Ok(mut m) = self.0.lock() {
            m.entry(tenant).or_default().insert(key_id, Utc::now());
        }
    }

    /// Writes the recorded times, one transaction per tenant. Returns how many keys were
    /// updated.
    pub(super) async fn flush(&self, pool: &TenantPool) -> usize {
        let pending = match self.0.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return 0,
        };
        let mut n = 0;
        for (tenant, keys) in pending {
            let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = keys.into_iter().unzip();
            let result = async {
                let mut tx = pool.begin(tenant).await?;
                let updated = tx
                    .execute(
                        "UPDATE api_keys k SET last_used_at = v.t
                         FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, t)
                         WHERE k.tenant_id = $3 AND k.id = v.id \
                           AND (k.last_used_at IS NULL OR k.last_used_at < v.t)",
                        // The tenant as the routing hint: one shard on Citus.
                        &[&ids, &times, &tenant.as_uuid()],
                    )
                    .await?;
                tx.commit().await?;
                Ok::<_, crate::pool::PoolError>(updated)
            }
            .await;
            match result {
                Ok(u) => n += u as usize,
                Err(e) => {
                    tracing::warn!(%tenant, error = %crate::error_chain(&e), "could not record API key use")
                }
            }
        }
        n
    }
}
