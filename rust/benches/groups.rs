//! `cargo bench --bench groups [-- N]`: single-thread and all-thread throughput of the
//! core's kernels (no external harness: prints JSON lines). One-thread rates are per CPU
//! second of the worker thread (from `/proc/thread-self/schedstat` where it exists), so a
//! busy machine does not understate them; all-thread rates are wall-clock.

use std::time::Instant;

use _core::items::Items;
use _core::{ristretto, x25519, x25519_ifma};

/// Seconds this thread has run on a CPU (Linux), or `None`. On a busy machine the one-thread
/// rate is taken from this rather than from the wall clock, which counts time spent waiting.
fn thread_cpu_seconds() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn rate(n: usize, repeat: usize, mut f: impl FnMut()) -> f64 {
    let one_thread = rayon::current_num_threads() == 1;
    let mut best = f64::MAX;
    for _ in 0..repeat {
        let (t, c) = (Instant::now(), thread_cpu_seconds());
        f();
        let wall = t.elapsed().as_secs_f64();
        let took = match (one_thread, c, thread_cpu_seconds()) {
            (true, Some(a), Some(b)) => b - a,
            _ => wall,
        };
        best = best.min(took);
    }
    n as f64 / best
}

fn run(label: &str, n: usize) {
    let data: Vec<u8> = (0..n as u64).flat_map(|i| i.to_le_bytes()).collect();
    let offsets: Vec<i64> = (0..=n as i64).map(|i| 8 * i).collect();
    let items = Items::new(&data, &offsets).unwrap();
    let points = x25519::hash_batch(&items);
    let k = x25519::random_scalar();
    let mut backends = vec![x25519::Backend::Portable];
    if x25519_ifma::available() {
        backends.push(x25519::Backend::Ifma);
    }
    for be in backends {
        let r = rate(n, 3, || {
            x25519::mul_batch(be, &k, &points).unwrap();
        });
        println!(
            "{{\"threads\": \"{label}\", \"op\": \"x25519_mul\", \"backend\": \"{}\", \"n\": {n}, \"per_s\": {r:.0}}}",
            be.name()
        );
    }
    let rk = ristretto::random_scalar();
    let rp = ristretto::hash_to_group_batch(&items, b"bench").unwrap();
    let r = rate(n, 3, || {
        ristretto::mul_batch(&rk, &rp).unwrap();
    });
    println!(
        "{{\"threads\": \"{label}\", \"op\": \"ristretto_mul\", \"n\": {n}, \"per_s\": {r:.0}}}"
    );
    let r = rate(n, 3, || {
        ristretto::hash_mul_batch(&rk, &items, b"bench").unwrap();
    });
    println!("{{\"threads\": \"{label}\", \"op\": \"ristretto_hash_mul\", \"n\": {n}, \"per_s\": {r:.0}}}");
}

fn main() {
    let n = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1 << 15);
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    one.install(|| run("1", n));
    run(&rayon::current_num_threads().to_string(), n);
}
