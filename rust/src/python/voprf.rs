//! The batches behind RFC 9497's clients and verifiable mode (`rainbridge.crypto.oprf`,
//! `rainbridge.crypto.voprf`): per-element blinding and unblinding, composite scalars and
//! multi-scalar multiplications, one core call per batch.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{bytes_filled, items, scalar32, to_py, Bytes, Offsets};
use crate::ristretto;

/// HashToScalar (RFC 9497, with `dst`) of every item: 32 bytes each.
#[pyfunction]
pub(super) fn ristretto_hash_to_scalar(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
    dst: &[u8],
) -> PyResult<Py<PyBytes>> {
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ds, os) = (d.slice(), o.slice());
    let it = items(py, ds, &os)?;
    bytes_filled(py, 32 * it.len(), |out| {
        ristretto::hash_to_scalar_batch_into(&it, dst, out)
    })
}

/// `sum_i s_i * P_i` of public scalars and elements (variable time), encoded.
#[pyfunction]
pub(super) fn ristretto_msm_vartime(
    py: Python<'_>,
    scalars: &Bound<'_, PyAny>,
    points: &Bound<'_, PyAny>,
) -> PyResult<Py<PyBytes>> {
    let (s, p) = (
        Bytes::new(scalars, "scalars")?,
        Bytes::new(points, "points")?,
    );
    let (ss, ps) = (s.slice(), p.slice());
    let r = py
        .allow_threads(|| ristretto::msm_vartime(ss, ps))
        .map_err(to_py)?;
    Ok(PyBytes::new(py, &r).unbind())
}

/// `s_i * P_i` (or `s_i^-1 * P_i` with `invert`) for each secret scalar and received element.
#[pyfunction]
#[pyo3(signature = (scalars, points, invert=false))]
pub(super) fn ristretto_mul_each(
    py: Python<'_>,
    scalars: &Bound<'_, PyAny>,
    points: &Bound<'_, PyAny>,
    invert: bool,
) -> PyResult<Py<PyBytes>> {
    let (s, p) = (
        Bytes::new(scalars, "scalars")?,
        Bytes::new(points, "points")?,
    );
    let (ss, ps) = (s.slice(), p.slice());
    bytes_filled(py, ps.len(), |out| {
        ristretto::mul_each_into(ss, ps, invert, out)
    })
}

/// `s_i * HashToGroup(item_i)` (with `dst`) for each item and its own secret scalar.
#[pyfunction]
pub(super) fn ristretto_hash_mul_each(
    py: Python<'_>,
    scalars: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
    dst: &[u8],
) -> PyResult<Py<PyBytes>> {
    let s = Bytes::new(scalars, "scalars")?;
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ss, ds, os) = (s.slice(), d.slice(), o.slice());
    let it = items(py, ds, &os)?;
    bytes_filled(py, 32 * it.len(), |out| {
        ristretto::hash_mul_each_into(ss, &it, dst, out)
    })
}

/// `a * b + c mod l` in constant time (canonical scalars, zero allowed).
#[pyfunction]
pub(super) fn ristretto_scalar_muladd(
    py: Python<'_>,
    a: &[u8],
    b: &[u8],
    c: &[u8],
) -> PyResult<Py<PyBytes>> {
    let r = ristretto::scalar_muladd(&scalar32(a)?, &scalar32(b)?, &scalar32(c)?).map_err(to_py)?;
    Ok(PyBytes::new(py, &r).unbind())
}
