//! The silent correlated-OT roles of `rainbridge._core`: message-driven state machines whose
//! every step runs with the GIL released; the Python extension moves the messages.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{bytes_out, to_py, Bytes};
use crate::block::Block;
use crate::silentot;

fn blocks_out(py: Python<'_>, blocks: &[Block]) -> PyResult<Py<PyBytes>> {
    super::bytes_filled(py, 16 * blocks.len(), |buf| {
        for (d, b) in buf.chunks_exact_mut(16).zip(blocks) {
            d.copy_from_slice(&b.to_le_bytes());
        }
        Ok(())
    })
}

/// `(trees, depth, base_ots, request_len, tree_msg_len)` of a batch of `m` correlations.
#[pyfunction]
pub(super) fn silent_cot_layout(m: usize) -> PyResult<(usize, usize, usize, usize, usize)> {
    let l = silentot::Layout::new(m).map_err(to_py)?;
    Ok((
        l.trees,
        l.depth,
        l.base_ots(),
        l.request_len(),
        l.tree_msg_len(),
    ))
}

#[pyclass(module = "rainbridge._core")]
pub(super) struct SilentCotReceiver(silentot::Receiver);

#[pymethods]
impl SilentCotReceiver {
    /// Returns the role and its first message (the base-OT setup).
    #[staticmethod]
    fn start(py: Python<'_>) -> PyResult<(Self, Py<PyBytes>)> {
        let (r, msg) = py.allow_threads(silentot::Receiver::new).map_err(to_py)?;
        Ok((SilentCotReceiver(r), PyBytes::new(py, &msg).unbind()))
    }

    fn on_base(&mut self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.on_base(m.slice()));
        bytes_out(py, r)
    }

    fn request(&mut self, py: Python<'_>, m: usize) -> PyResult<Py<PyBytes>> {
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.request(m));
        bytes_out(py, r)
    }

    /// The tree message: returns the choice bits (packed, little-endian) and `M` (16 bytes
    /// each).
    fn on_trees(
        &mut self,
        py: Python<'_>,
        msg: &Bound<'_, PyAny>,
    ) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let (bits, rows) = py
            .allow_threads(|| inner.on_trees(m.slice()))
            .map_err(to_py)?;
        Ok((PyBytes::new(py, &bits).unbind(), blocks_out(py, &rows)?))
    }
}

#[pyclass(module = "rainbridge._core")]
pub(super) struct SilentCotSender(silentot::Sender);

#[pymethods]
impl SilentCotSender {
    #[new]
    fn new() -> Self {
        SilentCotSender(silentot::Sender::new())
    }

    /// `Δ`, 16 bytes.
    fn delta(&self, py: Python<'_>) -> Py<PyBytes> {
        PyBytes::new(py, &self.0.delta().to_le_bytes()).unbind()
    }

    fn on_setup(&mut self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let r = py.allow_threads(|| inner.on_setup(m.slice()));
        bytes_out(py, r)
    }

    fn on_matrix(&mut self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<()> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        py.allow_threads(|| inner.on_matrix(m.slice()))
            .map_err(to_py)
    }

    /// A request: returns the tree message and `K` (16 bytes each).
    fn on_request(
        &mut self,
        py: Python<'_>,
        msg: &Bound<'_, PyAny>,
    ) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
        let m = Bytes::new(msg, "message")?;
        let inner = &mut self.0;
        let (trees, keys) = py
            .allow_threads(|| inner.on_request(m.slice()))
            .map_err(to_py)?;
        Ok((PyBytes::new(py, &trees).unbind(), blocks_out(py, &keys)?))
    }
}
