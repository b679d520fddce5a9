//! Cost of the per-tenant and per-credential limits on the request path
//! (`tenantguard::http::limits::Limits::admit` and the permit's drop): the concurrency
//! map and the two governor rate checks, as a request pays them.
//!
//! `cargo bench --bench limits` (env: BENCH_OPS per thread, default 2,000,000). Prints
//! nanoseconds per admitted request for 1 and 2 threads, 400 tenants with 2 keys each,
//! with every limit on (generous enough never to refuse) and with the rates off.

use std::time::Instant;

use tenantguard::http::limits::Limits;
use tenantguard::TenantId;
use uuid::Uuid;

fn run(limits: &Limits, tenants: &[(TenantId, [u128; 2])], ops: usize, offset: usize) -> usize {
    let mut admitted = 0;
    for i in 0..ops {
        let (t, keys) = &tenants[(i + offset) % tenants.len()];
        if let Ok(p) = limits.admit(*t, keys[i & 1]) {
            admitted += 1;
            drop(p);
        }
    }
    admitted
}

fn measure(name: &str, make: impl Fn() -> Limits, tenants: &[(TenantId, [u128; 2])], ops: usize) {
    for threads in [1usize, 2] {
        let limits = make();
        let start = Instant::now();
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let limits = &limits;
                    s.spawn(move || run(limits, tenants, ops, t * 7))
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
        });
        let elapsed = start.elapsed();
        let total = ops * threads;
        println!(
            "{name:<34} threads={threads}: {:>6.0} ns per request (wall / requests per thread), {admitted}/{total} admitted",
            elapsed.as_nanos() as f64 / ops as f64
        );
    }
}

fn main() {
    let ops: usize = std::env::var("BENCH_OPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let tenants: Vec<(TenantId, [u128; 2])> = (0..400)
        .map(|_| {
            (
                TenantId::from_uuid(Uuid::now_v7()),
                [Uuid::now_v7().as_u128(), Uuid::now_v7().as_u128()],
            )
        })
        .collect();
    measure(
        "concurrency + rates (10^9/s)",
        || Limits::new(16, 8, 1_000_000_000, 1_000_000_000),
        &tenants,
        ops,
    );
    measure(
        "concurrency only (rates off)",
        || Limits::new(16, 8, 0, 0),
        &tenants,
        ops,
    );
}
