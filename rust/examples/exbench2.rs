use std::time::Instant;
fn main() {
    let m = 1usize << 16;
    let total = m + 4096;
    let n = 2 * total;
    let x: Vec<u128> = (0..n as u128)
        .map(|i| i.wrapping_mul(0x9e3779b97f4a7c15f39cc0605cedc835))
        .collect();
    let mut b = x.clone();
    let t = Instant::now();
    for _ in 0..200 {
        _core::exconv::dual_encode(&mut b, total, 5);
    }
    println!(
        "{:.1} ns/out",
        t.elapsed().as_nanos() as f64 / (200 * m) as f64
    );
}
