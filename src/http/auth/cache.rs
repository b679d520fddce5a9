//! The in-memory cache of verified API keys, keyed by the key as presented, so that a hit
//! costs no SHA-256 (in the callgrind profile of a GET, hashing the key for the old
//! sha256-keyed cache was about 7% of the request's instructions under valgrind).
//!
//! Timing: what a lookup's time depends on must say nothing about any cached key's
//! secret. The map's key is a 64-bit SipHash-1-3 of the presented key under a random
//! per-process seed (std's `RandomState`), so a client cannot aim at a cached key's slot
//! without the seed, and a hit on the 64-bit value alone proves nothing: the stored key
//! is then compared with the presented one in constant time (`subtle`), and only a full
//! match counts. (The old cache compared SHA-256 digests with `==`; this is no weaker.)
//! The keys are held as secrets that are zeroed when an entry goes.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretSlice};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::principal::Role;
use crate::pool::TenantId;

/// Most cached keys; past this the cache is emptied (it refills from hot keys).
const CACHE_MAX: usize = 100_000;

/// A verified key, as a hit returns it.
pub(super) struct Hit {
    pub(super) tenant: TenantId,
    pub(super) key_id: Uuid,
    pub(super) role: Role,
    /// `api_key:<id>`, made once when the key was cached.
    pub(super) actor: String,
}

struct Entry {
    key: SecretSlice<u8>,
    expires: Instant,
    tenant: TenantId,
    key_id: Uuid,
    role: Role,
    actor: String,
}

/// The map's keys are already keyed hashes: hashing them again would only cost time.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
    // Only `u64` keys are hashed here; any other input is folded in, never dropped.
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

/// Verified API keys for a time-to-live (0 disables the cache).
pub(super) struct KeyCache {
    ttl: Duration,
    seed: RandomState,
    entries: Mutex<HashMap<u64, Entry, BuildHasherDefault<Prehashed>>>,
}

impl KeyCache {
    pub(super) fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            seed: RandomState::new(),
            entries: Mutex::new(HashMap::default()),
        }
    }

    /// The verified key `token`, if it is cached and not expired.
    pub(super) fn get(&self, token: &str) -> Option<Hit> {
        if self.ttl.is_zero() {
            return None;
        }
        let slot = self.seed.hash_one(token.as_bytes());
        let entries = self.entries.lock().ok()?;
        let e = entries.get(&slot)?;
        let same: bool = e.key.expose_secret().ct_eq(token.as_bytes()).into();
        (same && e.expires > Instant::now()).then(|| Hit {
            tenant: e.tenant,
            key_id: e.key_id,
            role: e.role,
            actor: e.actor.clone(),
        })
    }

    /// Caches `token` as verified (a no-op with a zero TTL).
    pub(super) fn put(&self, token: &str, tenant: TenantId, key_id: Uuid, role: Role) {
        if self.ttl.is_zero() {
            return;
        }
        let slot = self.seed.hash_one(token.as_bytes());
        let entry = Entry {
            key: SecretSlice::from(token.as_bytes().to_vec()),
            expires: Instant::now() + self.ttl,
            tenant,
            key_id,
            role,
            actor: actor(key_id),
        };
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= CACHE_MAX {
                entries.clear();
            }
            entries.insert(slot, entry);
        }
    }

    /// Forgets a key at once (when it is revoked here).
    pub(super) fn evict(&self, key_id: Uuid) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.retain(|_, e| e.key_id != key_id);
        }
    }
}

/// How audit rows name a key's caller.
pub(super) fn actor(key_id: Uuid) -> String {
    format!("api_key:{key_id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant() -> TenantId {
        TenantId::from_uuid(Uuid::now_v7())
    }

    #[test]
    fn only_the_exact_key_hits() {
        let cache = KeyCache::new(Duration::from_secs(60));
        let t = tenant();
        let id = Uuid::now_v7();
        let key = "tgk_0123456789abcdef0123456789abcdef_secretsecretsecret";
        cache.put(key, t, id, Role::Member);
        let hit = cache.get(key).expect("a hit");
        assert_eq!((hit.tenant, hit.key_id, hit.role), (t, id, Role::Member));
        assert_eq!(hit.actor, format!("api_key:{id}"));
        // One character off, a prefix, an extension: all misses.
        assert!(cache
            .get("tgk_0123456789abcdef0123456789abcdef_secretsecretsecreT")
            .is_none());
        assert!(cache
            .get("tgk_0123456789abcdef0123456789abcdef_secretsecretsecre")
            .is_none());
        assert!(cache
            .get("tgk_0123456789abcdef0123456789abcdef_secretsecretsecrett")
            .is_none());
        cache.evict(id);
        assert!(cache.get(key).is_none());
    }

    #[test]
    fn a_zero_ttl_caches_nothing_and_entries_expire() {
        let off = KeyCache::new(Duration::ZERO);
        off.put("k", tenant(), Uuid::now_v7(), Role::Viewer);
        assert!(off.get("k").is_none());
        let short = KeyCache::new(Duration::from_millis(1));
        short.put("k", tenant(), Uuid::now_v7(), Role::Viewer);
        std::thread::sleep(Duration::from_millis(5));
        assert!(short.get("k").is_none());
    }

    #[test]
    fn a_slot_collision_is_a_miss_not_a_hit() {
        // Force two keys into one slot: the stored key decides, not the slot.
        let cache = KeyCache::new(Duration::from_secs(60));
        let id = Uuid::now_v7();
        cache.put("the-real-key", tenant(), id, Role::Owner);
        let slot = cache.seed.hash_one("the-real-key".as_bytes());
        let mut entries = cache.entries.lock().unwrap();
        let real = entries.remove(&slot).unwrap();
        let other = cache.seed.hash_one("another-key".as_bytes());
        entries.insert(other, real);
        drop(entries);
        assert!(cache.get("another-key").is_none());
    }
}
