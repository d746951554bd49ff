//! The RR22 PSI roles of `rainbridge._core`: message-driven state machines whose every step
//! runs with the GIL released; the Python role moves the messages over its channel.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{bytes_out, to_py, Bytes, Offsets};
use crate::block::{from_bytes, Block};
use crate::items::Items;
use crate::rr22;
use crate::rr22::lookup;

fn digest_blocks(buf: &Bound<'_, PyAny>) -> PyResult<Vec<Block>> {
    let b = Bytes::new(buf, "digests")?;
    if !b.slice().len().is_multiple_of(16) {
        return Err(PyValueError::new_err("digests must be 16 bytes each"));
    }
    Ok(from_bytes(b.slice()))
}

/// 16-byte digests of items (SHA-256 over the session seed and the item).
#[pyfunction]
pub(super) fn rr22_digests(
    py: Python<'_>,
    seed: &[u8],
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
) -> PyResult<Py<PyBytes>> {
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ds, os) = (d.slice(), o.slice());
    let r = py.allow_threads(|| {
        Items::new(ds, &os).map(|it| crate::block::to_bytes(&rr22::digests(seed, &it)))
    });
    bytes_out(py, r)
}

/// `(m, trees, depth, cots)` for a receiver set of `n` items.
#[pyfunction]
pub(super) fn rr22_layout(n: usize) -> (usize, usize, usize, usize) {
    let l = rr22::Layout::new(n);
    (l.m, l.trees, l.depth, l.cots)
}

#[pyclass(module = "rainbridge._core")]
pub(super) struct Rr22Receiver(rr22::Receiver);

#[pymethods]
impl Rr22Receiver {
    /// Returns the role and its first message.
    #[staticmethod]
    fn start(
        py: Python<'_>,
        seed: &[u8],
        digests: &Bound<'_, PyAny>,
    ) -> PyResult<(Self, Py<PyBytes>)> {
        let d = digest_blocks(digests)?;
        let (r, msg) = py
            .allow_threads(|| rr22::Receiver::new(seed, d))
            .map_err(to_py)?;
        Ok((Rr22Receiver(r), PyBytes::new(py, &msg).unbind()))
    }

    fn on_base(&mut self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.on_base(m.slice()));
        bytes_out(py, r)
    }

    fn on_trees(&mut self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.on_trees(m.slice()));
        bytes_out(py, r)
    }

    fn outputs(&self, py: Python<'_>) -> PyResult<Py<PyBytes>> {
        let inner = &self.0;
        let r = py.allow_threads(|| inner.outputs());
        bytes_out(py, r)
    }

    /// `(distinct, group)`: the distinct 16-byte digests in order of first occurrence, and
    /// per input digest the index (little-endian int64 bytes) of its value among them. A
    /// static method here because both roles group their digests before they start.
    #[staticmethod]
    fn distinct(
        py: Python<'_>,
        digests: &Bound<'_, PyAny>,
    ) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
        let d = Bytes::new(digests, "digests")?;
        let s = d.slice();
        let (uniq, group) = py.allow_threads(|| lookup::distinct(s)).map_err(to_py)?;
        Ok((
            PyBytes::new(py, &uniq).unbind(),
            PyBytes::new(py, &i64_bytes(&group)).unbind(),
        ))
    }

    /// `(i, j)` (little-endian int64 bytes): the pairs with `probe[i] == table[j]` on the
    /// first `width` bytes, `i` ascending; `probe` rows are `stride` bytes apart, `table`
    /// rows `width`.
    #[staticmethod]
    fn match_rows(
        py: Python<'_>,
        probe: &Bound<'_, PyAny>,
        stride: usize,
        table: &Bound<'_, PyAny>,
        width: usize,
    ) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
        let (p, t) = (Bytes::new(probe, "probe")?, Bytes::new(table, "table")?);
        let (ps, ts) = (p.slice(), t.slice());
        let (i, j) = py
            .allow_threads(|| lookup::match_rows(ps, stride, ts, width))
            .map_err(to_py)?;
        Ok((
            PyBytes::new(py, &i64_bytes(&i)).unbind(),
            PyBytes::new(py, &i64_bytes(&j)).unbind(),
        ))
    }
}

fn i64_bytes(v: &[i64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

#[pyclass(module = "rainbridge._core")]
pub(super) struct Rr22Sender(rr22::Sender);

#[pymethods]
impl Rr22Sender {
    #[new]
    fn new(
        py: Python<'_>,
        seed: &[u8],
        digests: &Bound<'_, PyAny>,
        n_receiver: usize,
    ) -> PyResult<Self> {
        let d = digest_blocks(digests)?;
        Ok(Rr22Sender(
            py.allow_threads(|| rr22::Sender::new(seed, d, n_receiver)),
        ))
    }

    fn on_setup(&mut self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.on_setup(m.slice()));
        bytes_out(py, r)
    }

    fn on_matrix(&mut self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.on_matrix(m.slice()));
        bytes_out(py, r)
    }

    fn on_store(&mut self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.on_store(m.slice()));
        bytes_out(py, r)
    }

    /// The work of `on_store` that does not need the masked store (call it while waiting
    /// for the store; optional).
    fn prepare(&mut self, py: Python<'_>) -> PyResult<()> {
        let inner = &mut self.0;
        py.allow_threads(|| inner.prepare()).map_err(to_py)
    }

    /// `(values, order)`: the PRF values in a secret random order, cut to `width` bytes;
    /// value `k` is that of item `order[k]` (`order`: little-endian uint32).
    fn on_store_shuffled(
        &mut self,
        py: Python<'_>,
        msg: &Bound<'_, PyAny>,
        width: usize,
    ) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let (v, o) = py
            .allow_threads(|| inner.on_store_shuffled(m.slice(), width))
            .map_err(to_py)?;
        Ok((PyBytes::new(py, &v).unbind(), PyBytes::new(py, &o).unbind()))
    }
}

/// `(tags, keys)` of the payload variant from 16-byte PRF values.
#[pyfunction]
pub(super) fn rr22_payload_keys(
    py: Python<'_>,
    values: &Bound<'_, PyAny>,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let v = Bytes::new(values, "values")?;
    let s = v.slice();
    let (tags, keys) = py.allow_threads(|| rr22::payload_keys(s)).map_err(to_py)?;
    Ok((
        PyBytes::new(py, &tags).unbind(),
        PyBytes::new(py, &keys).unbind(),
    ))
}

/// Rows of `width` bytes XORed with AES-128-CTR, row `i` under `keys[i]`, the counter from
/// `nonce · 2^64` (encrypts and decrypts payload and label records); returns a new `bytes`.
#[pyfunction]
#[pyo3(signature = (keys, data, width, nonce=0))]
pub(super) fn aes_ctr_rows(
    py: Python<'_>,
    keys: &Bound<'_, PyAny>,
    data: &Bound<'_, PyAny>,
    width: usize,
    nonce: u64,
) -> PyResult<Py<PyBytes>> {
    let (k, d) = (Bytes::new(keys, "keys")?, Bytes::new(data, "data")?);
    let (ks, ds) = (k.slice(), d.slice());
    super::bytes_filled(py, ds.len(), |buf| {
        buf.copy_from_slice(ds);
        rr22::xor_rows(ks, buf, width, nonce)
    })
}
