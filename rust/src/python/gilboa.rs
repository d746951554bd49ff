//! Dealer-free MPC's kernels in `rainbridge._core` (see `crate::gilboa`): buffers in (numpy
//! arrays, bytes), `bytes` out, the GIL released around each batch. A buffer of the wrong
//! length is a `ValueError`; the protocol checks its peer's messages before they get here.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{bytes_filled, bytes_out, to_py, Bytes};
use crate::gilboa;

/// 64-bit little-endian words from a byte buffer (a numpy uint64 array's bytes).
fn words_of(buf: &[u8], what: &str) -> PyResult<Vec<u64>> {
    if !buf.len().is_multiple_of(8) {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "{what} must be whole 64-bit words, got {} bytes",
            buf.len()
        )));
    }
    Ok(buf
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes")))
        .collect())
}

fn words_out(py: Python<'_>, words: &[u64]) -> PyResult<Py<PyBytes>> {
    bytes_filled(py, 8 * words.len(), |buf| {
        for (d, w) in buf.chunks_exact_mut(8).zip(words) {
            d.copy_from_slice(&w.to_le_bytes());
        }
        Ok(())
    })
}

/// The IKNP receiver's streams: `choose` gives the message `u` and the rows `t`.
#[pyclass(module = "rainbridge._core")]
pub(super) struct IknpReceiver(gilboa::IknpReceiver);

#[pymethods]
impl IknpReceiver {
    #[new]
    fn new(k0: &[u8], k1: &[u8]) -> PyResult<Self> {
        Ok(IknpReceiver(
            gilboa::IknpReceiver::new(k0, k1).map_err(to_py)?,
        ))
    }

    fn choose(
        &mut self,
        py: Python<'_>,
        choice: &Bound<'_, PyAny>,
        m: usize,
    ) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
        let c = Bytes::new(choice, "choice")?;
        let inner = &mut self.0;
        let cs = c.slice();
        let (u, t) = py.allow_threads(|| inner.choose(cs, m)).map_err(to_py)?;
        Ok((PyBytes::new(py, &u).unbind(), PyBytes::new(py, &t).unbind()))
    }
}

/// The IKNP sender's streams and `Δ`: `rows` gives `q` for the receiver's message.
#[pyclass(module = "rainbridge._core")]
pub(super) struct IknpSender(gilboa::IknpSender);

#[pymethods]
impl IknpSender {
    #[new]
    fn new(keys: &[u8], delta: &[u8]) -> PyResult<Self> {
        Ok(IknpSender(
            gilboa::IknpSender::new(keys, delta).map_err(to_py)?,
        ))
    }

    fn rows(&mut self, py: Python<'_>, u: &Bound<'_, PyAny>, m: usize) -> PyResult<Py<PyBytes>> {
        let b = Bytes::new(u, "u")?;
        let inner = &mut self.0;
        let us = b.slice();
        bytes_filled(py, 16 * m, |rows| inner.rows_into(us, m, rows))
    }
}

/// 128 AES-CTR key streams read in lockstep (the reference's `_Streams`), for tests.
#[pyclass(module = "rainbridge._core")]
pub(super) struct OtStreams(gilboa::Streams);

#[pymethods]
impl OtStreams {
    #[new]
    fn new(keys: &[u8]) -> PyResult<Self> {
        Ok(OtStreams(gilboa::Streams::new(keys).map_err(to_py)?))
    }

    fn read(&mut self, py: Python<'_>, nbytes: usize) -> PyResult<Py<PyBytes>> {
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.read(nbytes));
        Ok(PyBytes::new(py, &r).unbind())
    }
}

/// `words` words of the OT hash of every 16-byte row (XOR `xor` first), indices from `first`.
#[pyfunction]
#[pyo3(signature = (rows, first, words, xor = None))]
pub(super) fn ot_hash(
    py: Python<'_>,
    rows: &Bound<'_, PyAny>,
    first: u64,
    words: usize,
    xor: Option<&[u8]>,
) -> PyResult<Py<PyBytes>> {
    let b = Bytes::new(rows, "rows")?;
    let bs = b.slice();
    if !bs.len().is_multiple_of(16) {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "rows are 16 bytes each",
        ));
    }
    let xor = match xor {
        None => 0,
        Some(x) => u128::from_le_bytes(
            x.try_into()
                .map_err(|_| pyo3::exceptions::PyValueError::new_err("xor is 16 bytes"))?,
        ),
    };
    let out = py.allow_threads(|| {
        let mut out = vec![0u64; bs.len() / 16 * words];
        gilboa::Tccr::new().hash(bs, xor, first, words, &mut out);
        out
    });
    words_out(py, &out)
}

#[pyfunction]
pub(super) fn ot_choice_bits(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    bits: usize,
) -> PyResult<Py<PyBytes>> {
    let b = Bytes::new(x, "x")?;
    let xs = words_of(b.slice(), "x")?;
    let r = py.allow_threads(|| gilboa::choice_bits(&xs, bits));
    bytes_out(py, r)
}

/// Gilboa's sender: returns (corrections, shares as 64-bit words).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(super) fn gilboa_send(
    py: Python<'_>,
    q: &Bound<'_, PyAny>,
    delta: &[u8],
    first: u64,
    y: &Bound<'_, PyAny>,
    bits: usize,
    words: usize,
    gf2: bool,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let (qb, yb) = (Bytes::new(q, "q")?, Bytes::new(y, "y")?);
    let ys = words_of(yb.slice(), "y")?;
    let qs = qb.slice();
    let (d, v) = py
        .allow_threads(|| {
            gilboa::send(
                &gilboa::Tccr::new(),
                qs,
                delta,
                first,
                &ys,
                bits,
                words,
                gf2,
            )
        })
        .map_err(to_py)?;
    Ok((PyBytes::new(py, &d).unbind(), words_out(py, &v)?))
}

/// Gilboa's receiver: returns its shares as 64-bit words.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub(super) fn gilboa_receive(
    py: Python<'_>,
    t: &Bound<'_, PyAny>,
    first: u64,
    x: &Bound<'_, PyAny>,
    d: &Bound<'_, PyAny>,
    bits: usize,
    words: usize,
    gf2: bool,
) -> PyResult<Py<PyBytes>> {
    let (tb, xb, db) = (
        Bytes::new(t, "t")?,
        Bytes::new(x, "x")?,
        Bytes::new(d, "d")?,
    );
    let xs = words_of(xb.slice(), "x")?;
    let (ts, ds) = (tb.slice(), db.slice());
    let u = py
        .allow_threads(|| {
            gilboa::receive(&gilboa::Tccr::new(), ts, first, &xs, ds, bits, words, gf2)
        })
        .map_err(to_py)?;
    words_out(py, &u)
}
