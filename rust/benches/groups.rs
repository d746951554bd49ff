//! `cargo bench --bench groups [-- N]`: single-thread and all-thread throughput of the
//! core's kernels (no external harness: prints JSON lines).

use std::time::Instant;

use _core::items::Items;
use _core::{ristretto, x25519, x25519_ifma};

fn rate(n: usize, repeat: usize, mut f: impl FnMut()) -> f64 {
    let mut best = f64::MAX;
    for _ in 0..repeat {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
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
