//! Review case of the lattice PIR core: a query for an absurd number of columns is refused
//! before its randomness is drawn (it aborted the process on the allocation).

use _core::lwepir;

#[test]
fn a_query_beyond_the_parameters_columns_is_refused_before_allocating() {
    let seed = [7u8; 16];
    for m in [(1usize << 20) + 1, 1 << 40, usize::MAX / 4] {
        assert!(lwepir::query(&seed, m, &[1]).is_err(), "m = {m}");
    }
    assert!(lwepir::query(&seed, 1 << 10, &[1]).is_ok());
}
