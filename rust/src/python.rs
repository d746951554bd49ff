//! The Python module `rainbridge._core`: buffers in, `bytes` out, the GIL released around
//! every batch. The one place where a `CoreError` becomes a Python exception.

use std::borrow::Cow;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::error::CoreError;
use crate::items::Items;
use crate::{baseot, bits, ristretto, x25519};

mod gilboa;
mod lwepir;
mod ou;
mod rr22;
mod silentot;
mod voprf;
use gilboa::{
    gilboa_receive, gilboa_send, ot_choice_bits, ot_hash, IknpReceiver, IknpSender, OtStreams,
};
use ou::{OuCiphertexts, OuNonceMaker, OuNonces, OuPublicKey, OuSecretKey};
use rr22::{aes_ctr_rows, rr22_digests, rr22_layout, rr22_payload_keys, Rr22Receiver, Rr22Sender};
use silentot::{silent_cot_layout, SilentCotReceiver, SilentCotSender};
use voprf::{
    ristretto_hash_mul_each, ristretto_hash_to_scalar, ristretto_msm_vartime, ristretto_mul_each,
    ristretto_scalar_muladd,
};

// Qualified as `rainbridge._core.InvalidElementError` so that it pickles across processes.
create_exception!(
    rainbridge._core,
    InvalidElementError,
    PyValueError,
    "A received group element or a scalar is invalid (non-canonical, not in the group, the identity, low order, or a scalar out of range)."
);

fn to_py(e: CoreError) -> PyErr {
    match e {
        CoreError::InvalidElement { .. } | CoreError::InvalidScalar(_) => {
            InvalidElementError::new_err(e.to_string())
        }
        CoreError::Shape(_) | CoreError::InvalidKey(_) => PyValueError::new_err(e.to_string()),
    }
}

fn memoryview<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    obj.py()
        .import("builtins")?
        .getattr("memoryview")?
        .call1((obj,))
}

/// The bytes of a C-contiguous buffer.
///
/// # Safety
/// `buf` must be C-contiguous; the slice must not outlive `buf`.
unsafe fn raw_bytes(buf: &PyBuffer<u8>) -> &[u8] {
    let (ptr, len) = (buf.buf_ptr() as *const u8, buf.len_bytes());
    if len == 0 || ptr.is_null() {
        // an empty buffer may export a null pointer, which a slice must never hold
        return &[];
    }
    // SAFETY: exported, C-contiguous, `len` bytes from `ptr` (the caller's contract).
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// A read-only byte view of any C-contiguous buffer (bytes, memoryview, numpy array).
struct Bytes(PyBuffer<u8>);

impl Bytes {
    fn new(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Self> {
        if let Ok(buf) = PyBuffer::<u8>::get(obj) {
            if !buf.is_c_contiguous() {
                return Err(PyValueError::new_err(format!(
                    "{what} must be C-contiguous"
                )));
            }
            return Ok(Bytes(buf));
        }
        // Other item types (numpy int8, pyarrow buffers): view their raw bytes.
        let mv = memoryview(obj).map_err(|_| {
            PyTypeError::new_err(format!(
                "{what} must be a bytes-like object (buffer protocol)"
            ))
        })?;
        if mv.getattr("nbytes")?.extract::<usize>()? == 0 {
            // memoryview cannot cast an empty view of several dimensions: none is needed
            let empty = PyBytes::new(obj.py(), b"");
            return Ok(Bytes(PyBuffer::<u8>::get(empty.as_any())?));
        }
        let flat = mv
            .call_method1("cast", ("B",))
            .map_err(|_| PyValueError::new_err(format!("{what} must be C-contiguous")))?;
        Ok(Bytes(PyBuffer::<u8>::get(&flat)?))
    }

    fn slice(&self) -> &[u8] {
        // SAFETY: the buffer is C-contiguous and kept alive (exported) by `self.0` for the
        // borrow's lifetime; Python code mutating it concurrently is the caller's race, as
        // with any buffer-protocol consumer (numpy included).
        unsafe { raw_bytes(&self.0) }
    }
}

/// `n + 1` int64 offsets: an int64 array (numpy, `array('q')`) or a byte buffer holding
/// little-endian int64s. Any other item type is refused rather than reinterpreted.
struct Offsets(PyBuffer<u8>);

impl Offsets {
    fn new(obj: &Bound<'_, PyAny>) -> PyResult<Self> {
        const WHAT: &str =
            "offsets must be a C-contiguous int64 array (or bytes of little-endian int64) of n + 1 entries";
        let bad = || PyValueError::new_err(WHAT);
        let mv = memoryview(obj).map_err(|_| PyTypeError::new_err(WHAT))?;
        if !mv.getattr("c_contiguous")?.extract::<bool>()? {
            return Err(bad());
        }
        let format: String = mv.getattr("format")?.extract()?;
        let itemsize: usize = mv.getattr("itemsize")?.extract()?;
        // Native (`@`/`=`/none) or explicitly little-endian 8-byte signed ints, or raw bytes.
        let int64 = itemsize == 8
            && cfg!(target_endian = "little")
            && matches!(
                format.as_str(),
                "q" | "l" | "@q" | "@l" | "=q" | "=l" | "<q" | "<l"
            );
        let raw = itemsize == 1 && matches!(format.as_str(), "B" | "b" | "c" | "@B" | "@b");
        if !(int64 || raw) {
            return Err(bad());
        }
        let flat = if raw {
            mv
        } else {
            mv.call_method1("cast", ("B",))?
        };
        let buf = PyBuffer::<u8>::get(&flat).map_err(|_| bad())?;
        if buf.len_bytes() % 8 != 0 {
            return Err(PyValueError::new_err(
                "offsets given as bytes must be a whole number of 8-byte little-endian int64s",
            ));
        }
        Ok(Offsets(buf))
    }

    fn slice(&self) -> Cow<'_, [i64]> {
        // SAFETY: the buffer is C-contiguous and held exported by `self.0` while borrowed.
        let bytes = unsafe { raw_bytes(&self.0) };
        // SAFETY: any 8 bytes are a valid i64; `align_to` only yields an aligned middle part.
        let (pre, mid, post) = unsafe { bytes.align_to::<i64>() };
        if pre.is_empty() && post.is_empty() && cfg!(target_endian = "little") {
            Cow::Borrowed(mid)
        } else {
            Cow::Owned(
                bytes
                    .chunks_exact(8)
                    .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                    .collect(),
            )
        }
    }
}

fn scalar32(k: &[u8]) -> PyResult<[u8; 32]> {
    k.try_into()
        .map_err(|_| InvalidElementError::new_err("a scalar must be exactly 32 bytes"))
}

fn backend_arg(backend: Option<&str>) -> PyResult<x25519::Backend> {
    match backend {
        None => Ok(x25519::detect()),
        Some("portable") => Ok(x25519::Backend::Portable),
        Some("avx512ifma") if crate::x25519_ifma::available() => Ok(x25519::Backend::Ifma),
        Some("avx512ifma") => Err(PyValueError::new_err("this CPU has no AVX-512 IFMA")),
        Some(other) => Err(PyValueError::new_err(format!(
            "unknown backend {other:?} (use 'portable' or 'avx512ifma')"
        ))),
    }
}

fn bytes_out(py: Python<'_>, r: crate::Result<Vec<u8>>) -> PyResult<Py<PyBytes>> {
    let v = r.map_err(to_py)?;
    Ok(PyBytes::new(py, &v).unbind())
}

/// A new `bytes` of `len` bytes that `fill` writes in place with the GIL released, so a large
/// batch is never held twice (once in Rust, once copied into Python).
fn bytes_filled<F>(py: Python<'_>, len: usize, fill: F) -> PyResult<Py<PyBytes>>
where
    F: FnOnce(&mut [u8]) -> crate::Result<()> + Send,
{
    PyBytes::new_with(py, len, |buf| py.allow_threads(|| fill(buf)).map_err(to_py))
        .map(Bound::unbind)
}

/// Validates a batch of items (O(n), with the GIL released).
fn items<'a>(py: Python<'_>, data: &'a [u8], offsets: &'a [i64]) -> PyResult<Items<'a>> {
    py.allow_threads(|| Items::new(data, offsets))
        .map_err(to_py)
}

#[pyfunction]
fn items_hash64(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
) -> PyResult<Py<PyBytes>> {
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ds, os) = (d.slice(), o.slice());
    let r = py.allow_threads(|| {
        Items::new(ds, &os).map(|it| {
            crate::items::hash64_batch(&it)
                .iter()
                .flat_map(|h| h.to_le_bytes())
                .collect()
        })
    });
    bytes_out(py, r)
}

#[pyfunction]
fn x25519_backend() -> &'static str {
    x25519::detect().name()
}

#[pyfunction]
fn x25519_random_scalar(py: Python<'_>) -> Py<PyBytes> {
    PyBytes::new(py, &x25519::random_scalar()).unbind()
}

#[pyfunction]
fn x25519_hash_to_point(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
) -> PyResult<Py<PyBytes>> {
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ds, os) = (d.slice(), o.slice());
    let it = items(py, ds, &os)?;
    bytes_filled(py, 32 * it.len(), |out| x25519::hash_batch_into(&it, out))
}

#[pyfunction]
#[pyo3(signature = (scalar, points, backend=None))]
fn x25519_mul(
    py: Python<'_>,
    scalar: &[u8],
    points: &Bound<'_, PyAny>,
    backend: Option<&str>,
) -> PyResult<Py<PyBytes>> {
    let (k, be) = (scalar32(scalar)?, backend_arg(backend)?);
    let p = Bytes::new(points, "points")?;
    let ps = p.slice();
    bytes_filled(py, ps.len(), |out| x25519::mul_batch_into(be, &k, ps, out))
}

#[pyfunction]
#[pyo3(signature = (scalar, data, offsets, backend=None))]
fn x25519_hash_mul(
    py: Python<'_>,
    scalar: &[u8],
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
    backend: Option<&str>,
) -> PyResult<Py<PyBytes>> {
    let (k, be) = (scalar32(scalar)?, backend_arg(backend)?);
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ds, os) = (d.slice(), o.slice());
    let it = items(py, ds, &os)?;
    bytes_filled(py, 32 * it.len(), |out| {
        x25519::hash_mul_batch_into(be, &k, &it, out)
    })
}

#[pyfunction]
fn x25519_base(py: Python<'_>, scalar: &[u8]) -> PyResult<Py<PyBytes>> {
    let k = scalar32(scalar)?;
    Ok(PyBytes::new(py, &x25519::base(&k)).unbind())
}

#[pyfunction]
fn ristretto_random_scalar(py: Python<'_>) -> Py<PyBytes> {
    PyBytes::new(py, &ristretto::random_scalar()).unbind()
}

#[pyfunction]
fn ristretto_hash_to_group(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
    dst: &[u8],
) -> PyResult<Py<PyBytes>> {
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ds, os) = (d.slice(), o.slice());
    let it = items(py, ds, &os)?;
    bytes_filled(py, 32 * it.len(), |out| {
        ristretto::hash_to_group_batch_into(&it, dst, out)
    })
}

#[pyfunction]
fn ristretto_hash_mul(
    py: Python<'_>,
    scalar: &[u8],
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
    dst: &[u8],
) -> PyResult<Py<PyBytes>> {
    let k = scalar32(scalar)?;
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ds, os) = (d.slice(), o.slice());
    let it = items(py, ds, &os)?;
    bytes_filled(py, 32 * it.len(), |out| {
        ristretto::hash_mul_batch_into(&k, &it, dst, out)
    })
}

#[pyfunction]
fn ristretto_mul(
    py: Python<'_>,
    scalar: &[u8],
    points: &Bound<'_, PyAny>,
) -> PyResult<Py<PyBytes>> {
    let k = scalar32(scalar)?;
    let p = Bytes::new(points, "points")?;
    let ps = p.slice();
    bytes_filled(py, ps.len(), |out| ristretto::mul_batch_into(&k, ps, out))
}

#[pyfunction]
fn sm2_ecdh_random_scalar(py: Python<'_>) -> Py<PyBytes> {
    PyBytes::new(py, &crate::sm2_ecdh::random_scalar()).unbind()
}

/// `k·H(x)` for each item on SM2 (hash: SM3, try and increment), 33-byte compressed points.
#[pyfunction]
fn sm2_ecdh_hash_mul(
    py: Python<'_>,
    scalar: &[u8],
    data: &Bound<'_, PyAny>,
    offsets: &Bound<'_, PyAny>,
) -> PyResult<Py<PyBytes>> {
    let k = scalar32(scalar)?;
    let (d, o) = (Bytes::new(data, "data")?, Offsets::new(offsets)?);
    let (ds, os) = (d.slice(), o.slice());
    let it = items(py, ds, &os)?;
    bytes_filled(py, crate::sm2_ecdh::ELEMENT * it.len(), |out| {
        crate::sm2_ecdh::hash_mul_batch_into(&k, &it, out)
    })
}

/// `k·P` for each 33-byte compressed SM2 point (each validated).
#[pyfunction]
fn sm2_ecdh_mul(py: Python<'_>, scalar: &[u8], points: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
    let k = scalar32(scalar)?;
    let p = Bytes::new(points, "points")?;
    let ps = p.slice();
    bytes_filled(py, ps.len(), |out| {
        crate::sm2_ecdh::mul_batch_into(&k, ps, out)
    })
}

#[pyfunction]
fn ristretto_validate(py: Python<'_>, points: &Bound<'_, PyAny>) -> PyResult<()> {
    let p = Bytes::new(points, "points")?;
    let ps = p.slice();
    py.allow_threads(|| ristretto::validate_batch(ps))
        .map_err(to_py)
}

#[pyfunction]
fn ristretto_from_uniform_bytes(py: Python<'_>, buf: &Bound<'_, PyAny>) -> PyResult<Py<PyBytes>> {
    let b = Bytes::new(buf, "buf")?;
    let bs = b.slice();
    let r = py.allow_threads(|| ristretto::from_uniform_bytes_batch(bs));
    bytes_out(py, r)
}

#[pyfunction]
fn ristretto_base_mul(py: Python<'_>, scalar: &[u8]) -> PyResult<Py<PyBytes>> {
    let k = scalar32(scalar)?;
    let r = ristretto::base_mul(&k).map_err(to_py)?;
    Ok(PyBytes::new(py, &r).unbind())
}

#[pyfunction]
fn expand_message_xmd_sha512(
    py: Python<'_>,
    msg: &[u8],
    dst: &[u8],
    length: usize,
) -> PyResult<Py<PyBytes>> {
    if dst.is_empty() || dst.len() > 255 || length == 0 || length > 255 * 64 {
        return Err(PyValueError::new_err(
            "dst must be 1..=255 bytes and length 1..=16320",
        ));
    }
    Ok(PyBytes::new(
        py,
        &crate::hash::expand_message_xmd_sha512_vec(msg, dst, length),
    )
    .unbind())
}

/// An SM2 private key held in the core, so that signing many messages does not recompute the
/// public key and Z_A each time.
#[pyclass(frozen, module = "rainbridge._core")]
struct Sm2Signer(crate::sm2::Signer);

#[pymethods]
impl Sm2Signer {
    #[new]
    fn new(private_key: &[u8], distid: &[u8]) -> PyResult<Self> {
        crate::sm2::Signer::new(private_key, distid)
            .map(Sm2Signer)
            .map_err(to_py)
    }

    fn sign(&self, py: Python<'_>, message: &[u8]) -> PyResult<Py<PyBytes>> {
        let r = py.allow_threads(|| self.0.sign(message));
        bytes_out(py, r)
    }

    fn public_key(&self, py: Python<'_>) -> Py<PyBytes> {
        PyBytes::new(py, &self.0.public_key()).unbind()
    }

    fn __repr__(&self) -> &'static str {
        "Sm2Signer(<secret>)"
    }
}

#[pyfunction]
fn sm2_random_private_key(py: Python<'_>) -> Py<PyBytes> {
    PyBytes::new(py, &crate::sm2::random_private_key()).unbind()
}

#[pyfunction]
fn sm2_public_key(py: Python<'_>, private_key: &[u8]) -> PyResult<Py<PyBytes>> {
    bytes_out(py, crate::sm2::public_key(private_key))
}

#[pyfunction]
fn sm2_sign(
    py: Python<'_>,
    private_key: &[u8],
    distid: &[u8],
    message: &[u8],
) -> PyResult<Py<PyBytes>> {
    let r = py.allow_threads(|| crate::sm2::sign(private_key, distid, message));
    bytes_out(py, r)
}

#[pyfunction]
fn sm2_sign_with_nonce(
    py: Python<'_>,
    private_key: &[u8],
    distid: &[u8],
    message: &[u8],
    nonce: &[u8],
) -> PyResult<Py<PyBytes>> {
    bytes_out(
        py,
        crate::sm2::sign_with_nonce(private_key, distid, message, nonce),
    )
}

#[pyfunction]
fn sm2_verify(
    py: Python<'_>,
    public_key: &[u8],
    distid: &[u8],
    message: &[u8],
    signature: &[u8],
) -> PyResult<bool> {
    py.allow_threads(|| crate::sm2::verify(public_key, distid, message, signature))
        .map_err(to_py)
}

#[pyfunction]
fn sm2_za(py: Python<'_>, public_key: &[u8], distid: &[u8]) -> PyResult<Py<PyBytes>> {
    bytes_out(py, crate::sm2::za(public_key, distid).map(|z| z.to_vec()))
}

#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", env!("CARGO_PKG_VERSION"))?;
    d.set_item("x25519_backend", x25519::detect().name())?;
    d.set_item("avx512ifma", crate::x25519_ifma::available())?;
    d.set_item("target_features", crate::cpu_features())?;
    d.set_item("target_arch", std::env::consts::ARCH)?;
    d.set_item("threads", rayon::current_num_threads())?;
    d.set_item("debug", cfg!(debug_assertions))?;
    Ok(d)
}

#[pyfunction]
fn baseot_sender_setup(py: Python<'_>) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let (secret, msg) = baseot::sender_setup().map_err(to_py)?;
    Ok((
        PyBytes::new(py, &secret).unbind(),
        PyBytes::new(py, &msg).unbind(),
    ))
}

#[pyfunction]
fn baseot_receiver(
    py: Python<'_>,
    sender_msg: &[u8],
    choices: &[u8],
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let a = scalar32(sender_msg)?;
    let (msgs, keys) = py
        .allow_threads(|| baseot::receiver(&a, choices))
        .map_err(to_py)?;
    Ok((
        PyBytes::new(py, &msgs).unbind(),
        PyBytes::new(py, &keys).unbind(),
    ))
}

#[pyfunction]
fn baseot_sender_keys(
    py: Python<'_>,
    secret: &[u8],
    msgs: &[u8],
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let a = scalar32(secret)?;
    let (k0, k1) = py
        .allow_threads(|| baseot::sender_keys(&a, msgs))
        .map_err(to_py)?;
    Ok((
        PyBytes::new(py, &k0).unbind(),
        PyBytes::new(py, &k1).unbind(),
    ))
}

#[pyfunction]
fn transpose_128(
    py: Python<'_>,
    mat: &Bound<'_, PyAny>,
    nbytes: usize,
    m: usize,
) -> PyResult<Py<PyBytes>> {
    let b = Bytes::new(mat, "mat")?;
    let bs = b.slice();
    let r = py.allow_threads(|| bits::transpose_128(bs, nbytes, m));
    bytes_out(py, r)
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add(
        "InvalidElementError",
        m.py().get_type::<InvalidElementError>(),
    )?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    lwepir::register(m)?;
    m.add_function(wrap_pyfunction!(x25519_backend, m)?)?;
    m.add_function(wrap_pyfunction!(items_hash64, m)?)?;
    m.add_function(wrap_pyfunction!(x25519_random_scalar, m)?)?;
    m.add_function(wrap_pyfunction!(x25519_hash_to_point, m)?)?;
    m.add_function(wrap_pyfunction!(x25519_mul, m)?)?;
    m.add_function(wrap_pyfunction!(x25519_base, m)?)?;
    m.add_function(wrap_pyfunction!(x25519_hash_mul, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_random_scalar, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_hash_to_group, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_hash_mul, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_mul, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_validate, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_ecdh_random_scalar, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_ecdh_hash_mul, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_ecdh_mul, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_from_uniform_bytes, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_base_mul, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_hash_to_scalar, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_msm_vartime, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_mul_each, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_hash_mul_each, m)?)?;
    m.add_function(wrap_pyfunction!(ristretto_scalar_muladd, m)?)?;
    m.add_function(wrap_pyfunction!(expand_message_xmd_sha512, m)?)?;
    m.add_function(wrap_pyfunction!(baseot_sender_setup, m)?)?;
    m.add_function(wrap_pyfunction!(transpose_128, m)?)?;
    m.add_function(wrap_pyfunction!(baseot_receiver, m)?)?;
    m.add_class::<IknpReceiver>()?;
    m.add_class::<IknpSender>()?;
    m.add_class::<OtStreams>()?;
    m.add_function(wrap_pyfunction!(ot_hash, m)?)?;
    m.add_function(wrap_pyfunction!(ot_choice_bits, m)?)?;
    m.add_function(wrap_pyfunction!(gilboa_send, m)?)?;
    m.add_function(wrap_pyfunction!(gilboa_receive, m)?)?;
    m.add_function(wrap_pyfunction!(baseot_sender_keys, m)?)?;
    m.add_class::<Sm2Signer>()?;
    m.add_class::<OuSecretKey>()?;
    m.add_class::<OuNonces>()?;
    m.add_class::<OuNonceMaker>()?;
    m.add_class::<OuPublicKey>()?;
    m.add_class::<OuCiphertexts>()?;
    m.add_class::<Rr22Receiver>()?;
    m.add_class::<Rr22Sender>()?;
    m.add_class::<SilentCotReceiver>()?;
    m.add_class::<SilentCotSender>()?;
    m.add_function(wrap_pyfunction!(silent_cot_layout, m)?)?;
    m.add_function(wrap_pyfunction!(rr22_digests, m)?)?;
    m.add_function(wrap_pyfunction!(rr22_layout, m)?)?;
    m.add_function(wrap_pyfunction!(rr22_payload_keys, m)?)?;
    m.add_function(wrap_pyfunction!(aes_ctr_rows, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_random_private_key, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_public_key, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_sign, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_sign_with_nonce, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_verify, m)?)?;
    m.add_function(wrap_pyfunction!(sm2_za, m)?)?;
    Ok(())
}
