//! The Okamoto–Uchiyama classes of `rainbridge._core`: keys with their tables built once,
//! and received ciphertexts checked once and kept in the core for histograms.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{bytes_out, to_py, Bytes};
use crate::ou;

fn ints<T: Copy, const W: usize>(b: &[u8], what: &str, conv: fn([u8; W]) -> T) -> PyResult<Vec<T>> {
    if !b.len().is_multiple_of(W) {
        return Err(PyValueError::new_err(format!(
            "{what} must hold whole {W}-byte little-endian integers"
        )));
    }
    Ok(b.chunks_exact(W)
        .map(|c| conv(c.try_into().expect("W bytes")))
        .collect())
}

/// An Okamoto–Uchiyama public key with its fixed-base tables (built once).
#[pyclass(frozen, module = "rainbridge._core")]
pub(super) struct OuPublicKey(Arc<ou::PublicKey>);

#[pymethods]
impl OuPublicKey {
    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        py.allow_threads(|| ou::PublicKey::from_bytes(data))
            .map(|k| OuPublicKey(Arc::new(k)))
            .map_err(to_py)
    }

    fn to_bytes(&self, py: Python<'_>) -> Py<PyBytes> {
        PyBytes::new(py, &self.0.to_bytes()).unbind()
    }

    #[getter]
    fn plaintext_bits(&self) -> u32 {
        self.0.plaintext_bits()
    }

    #[getter]
    fn n_bits(&self) -> u32 {
        self.0.n_bits()
    }

    /// Encrypts rows of `slots` signed int64 values (little-endian bytes, row-major),
    /// packed into slots of `slot_bits` bits; one ciphertext per row.
    fn encrypt_packed(
        &self,
        py: Python<'_>,
        values: &Bound<'_, PyAny>,
        slots: usize,
        slot_bits: u32,
    ) -> PyResult<Py<PyBytes>> {
        let v = Bytes::new(values, "values")?;
        let v = ints(v.slice(), "values", i64::from_le_bytes)?;
        let r = py.allow_threads(|| self.0.encrypt_packed(&v, slots, slot_bits));
        bytes_out(py, r)
    }

    fn add(
        &self,
        py: Python<'_>,
        a: &Bound<'_, PyAny>,
        b: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyBytes>> {
        let (a, b) = (Bytes::new(a, "a")?, Bytes::new(b, "b")?);
        let r = py.allow_threads(|| self.0.add(a.slice(), b.slice()));
        bytes_out(py, r)
    }

    fn rerandomize(&self, py: Python<'_>, a: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let a = Bytes::new(a, "ciphertexts")?;
        let r = py.allow_threads(|| self.0.rerandomize(a.slice()));
        bytes_out(py, r)
    }

    /// Checks received ciphertexts once and keeps them in the core for histograms.
    fn load(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<OuCiphertexts> {
        let d = Bytes::new(data, "ciphertexts")?;
        let cts = py
            .allow_threads(|| self.0.parse(d.slice()))
            .map_err(to_py)?;
        Ok(OuCiphertexts {
            key: self.0.clone(),
            cts,
        })
    }

    fn __repr__(&self) -> String {
        format!("OuPublicKey({} bits)", self.0.n_bits())
    }
}

/// Ciphertexts checked against a public key, held in the core in Montgomery form.
#[pyclass(frozen, module = "rainbridge._core")]
pub(super) struct OuCiphertexts {
    key: Arc<ou::PublicKey>,
    cts: Vec<crypto_bigint::U2048>,
}

#[pymethods]
impl OuCiphertexts {
    fn __len__(&self) -> usize {
        self.cts.len()
    }

    /// Per-node, per-feature, per-bin encrypted sums (see the core's `histogram`):
    /// `bins` is rows × features uint8 (row-major), `node_of_row` int32 per row (-1: none),
    /// `nodes` int32 node ids; nodes × features × n_bins ciphertexts out. With
    /// `rerandomize=False` the sums are left as they are (a block's partial histogram, to be
    /// added to the others' and re-randomised before it leaves the party).
    #[pyo3(signature = (bins, features, node_of_row, nodes, n_bins, rerandomize = true))]
    #[allow(clippy::too_many_arguments)]
    fn histogram(
        &self,
        py: Python<'_>,
        bins: &Bound<'_, PyAny>,
        features: usize,
        node_of_row: &Bound<'_, PyAny>,
        nodes: &Bound<'_, PyAny>,
        n_bins: usize,
        rerandomize: bool,
    ) -> PyResult<Py<PyBytes>> {
        let b = Bytes::new(bins, "bins")?;
        let nr = Bytes::new(node_of_row, "node_of_row")?;
        let nr = ints(nr.slice(), "node_of_row", i32::from_le_bytes)?;
        let nd = Bytes::new(nodes, "nodes")?;
        let nd = ints(nd.slice(), "nodes", i32::from_le_bytes)?;
        let r = py.allow_threads(|| {
            if rerandomize {
                self.key
                    .histogram(&self.cts, b.slice(), features, &nr, &nd, n_bins)
            } else {
                self.key
                    .histogram_sums(&self.cts, b.slice(), features, &nr, &nd, n_bins)
            }
        });
        bytes_out(py, r)
    }
}

/// Encryption nonces of one secret key made ahead of use; spent by the one encryption
/// that takes them (`OuSecretKey.encrypt_packed_ahead`).
#[pyclass(module = "rainbridge._core")]
pub(super) struct OuNonces(Option<ou::Nonces>);

#[pymethods]
impl OuNonces {
    fn __len__(&self) -> usize {
        self.0.as_ref().map_or(0, |n| n.len())
    }

    fn __repr__(&self) -> String {
        match &self.0 {
            Some(n) => format!("OuNonces({} unused)", n.len()),
            None => "OuNonces(spent)".into(),
        }
    }
}

/// A reserve of one secret key's encryption nonces, filled by a background thread at the
/// lowest CPU priority (see `ou::NonceMaker`).
#[pyclass(frozen, module = "rainbridge._core")]
pub(super) struct OuNonceMaker(ou::NonceMaker);

#[pymethods]
impl OuNonceMaker {
    #[new]
    fn new(key: &OuSecretKey) -> Self {
        OuNonceMaker(ou::NonceMaker::new(key.0.clone()))
    }

    /// Starts filling the reserve up to `target` nonces in the background; returns at once.
    fn fill(&self, target: usize) {
        self.0.fill(target)
    }

    /// The nonces ready now (at most `at_most`), as a list of zero or one `OuNonces` for
    /// `encrypt_packed_ahead`; stops the filling and discards the rest.
    fn take(&self, py: Python<'_>, at_most: usize) -> PyResult<Vec<OuNonces>> {
        let got = py.allow_threads(|| self.0.take(at_most)).map_err(to_py)?;
        Ok(got.into_iter().map(|n| OuNonces(Some(n))).collect())
    }

    #[getter]
    fn ready(&self) -> usize {
        self.0.ready()
    }
}

/// An Okamoto–Uchiyama secret key (decryption precomputed).
#[pyclass(frozen, module = "rainbridge._core")]
pub(super) struct OuSecretKey(Arc<ou::SecretKey>, Arc<ou::PublicKey>);

#[pymethods]
impl OuSecretKey {
    #[staticmethod]
    #[pyo3(signature = (n_bits=2048))]
    fn generate(py: Python<'_>, n_bits: u32) -> PyResult<Self> {
        let sk = py
            .allow_threads(|| ou::SecretKey::generate(n_bits))
            .map_err(to_py)?;
        Self::wrap(py, sk)
    }

    #[staticmethod]
    fn from_bytes(py: Python<'_>, data: &[u8]) -> PyResult<Self> {
        let sk = py
            .allow_threads(|| ou::SecretKey::from_bytes(data))
            .map_err(to_py)?;
        Self::wrap(py, sk)
    }

    fn to_bytes(&self, py: Python<'_>) -> Py<PyBytes> {
        PyBytes::new(py, &self.0.to_bytes()).unbind()
    }

    fn public_key(&self) -> OuPublicKey {
        OuPublicKey(self.1.clone())
    }

    /// Encrypts like `OuPublicKey.encrypt_packed` (same arguments, same wire format; the
    /// two kinds of ciphertexts add together) by the key owner's faster CRT path.
    fn encrypt_packed(
        &self,
        py: Python<'_>,
        values: &Bound<'_, PyAny>,
        slots: usize,
        slot_bits: u32,
    ) -> PyResult<Py<PyBytes>> {
        let v = Bytes::new(values, "values")?;
        let v = ints(v.slice(), "values", i64::from_le_bytes)?;
        let r = py.allow_threads(|| self.0.encrypt_packed(&v, slots, slot_bits));
        bytes_out(py, r)
    }

    /// `count` encryption nonces for later use by `encrypt_packed_ahead`, computed on the
    /// calling thread alone (the GIL released): for a low-priority thread's idle time.
    fn nonces(&self, py: Python<'_>, count: usize) -> OuNonces {
        OuNonces(Some(py.allow_threads(|| self.0.nonces(count))))
    }

    /// `encrypt_packed` whose first rows take the nonces of `nonces` (in order; each
    /// object is consumed, and refused if used before) and the rest fresh randomness.
    fn encrypt_packed_ahead(
        &self,
        py: Python<'_>,
        values: &Bound<'_, PyAny>,
        slots: usize,
        slot_bits: u32,
        nonces: Vec<PyRefMut<'_, OuNonces>>,
    ) -> PyResult<Py<PyBytes>> {
        let v = Bytes::new(values, "values")?;
        let v = ints(v.slice(), "values", i64::from_le_bytes)?;
        if nonces.iter().any(|n| n.0.is_none()) {
            return Err(PyValueError::new_err(
                "these nonces were used by an earlier encryption; a nonce is used once",
            ));
        }
        let parts: Vec<ou::Nonces> = nonces
            .into_iter()
            .map(|mut n| n.0.take().expect("checked above"))
            .collect();
        let r = py.allow_threads(|| match ou::Nonces::concat(parts)? {
            Some(all) => self.0.encrypt_packed_ahead(&v, slots, slot_bits, all),
            None => self.0.encrypt_packed(&v, slots, slot_bits),
        });
        bytes_out(py, r)
    }

    /// Decrypts packed ciphertexts: float64 little-endian bytes, `slots` per ciphertext,
    /// each slot's signed integer scaled by 2^-frac_bits.
    fn decrypt_packed(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        slots: usize,
        slot_bits: u32,
        frac_bits: u32,
    ) -> PyResult<Py<PyBytes>> {
        let d = Bytes::new(data, "ciphertexts")?;
        let r = py
            .allow_threads(|| {
                self.0
                    .decrypt_packed(d.slice(), slots, slot_bits, frac_bits)
            })
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect());
        bytes_out(py, r)
    }

    /// Decrypts one signed int64 per ciphertext (int64 little-endian bytes).
    fn decrypt_i64(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
        let d = Bytes::new(data, "ciphertexts")?;
        let r = py
            .allow_threads(|| self.0.decrypt_i64(d.slice()))
            .map(|v| v.iter().flat_map(|x| x.to_le_bytes()).collect());
        bytes_out(py, r)
    }

    fn __repr__(&self) -> String {
        format!("OuSecretKey({} bits, <secret>)", self.1.n_bits())
    }
}

impl OuSecretKey {
    fn wrap(py: Python<'_>, sk: ou::SecretKey) -> PyResult<Self> {
        // the public half is rebuilt once so that both objects can share it cheaply
        let pk = py
            .allow_threads(|| ou::PublicKey::from_bytes(&sk.public().to_bytes()))
            .map_err(to_py)?;
        Ok(OuSecretKey(Arc::new(sk), Arc::new(pk)))
    }
}
