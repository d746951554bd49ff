//! The lattice PIR kernels of `rainbridge._core` (rust/src/lwepir.rs): byte buffers (or numpy
//! arrays) in, `bytes` of little-endian words out, the GIL released around each call.

use std::borrow::Cow;

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::{memoryview, raw_bytes, to_py, Bytes};
use crate::lwepir;

create_exception!(
    rainbridge._core,
    LweDecodingError,
    PyValueError,
    "A lattice PIR answer decoded with noise beyond the bound: the hint, the query's secret and the answer do not belong together (a stale hint or a corrupted answer)."
);

/// Little-endian 32-bit words viewed in place when aligned, else copied.
fn words<'a>(b: &'a [u8], what: &str) -> PyResult<Cow<'a, [u32]>> {
    if !b.len().is_multiple_of(4) {
        return Err(PyValueError::new_err(format!(
            "{what} must be a whole number of 4-byte little-endian words, got {} bytes",
            b.len()
        )));
    }
    // SAFETY: any 4 bytes are a valid u32; `align_to` only yields an aligned middle part.
    let (pre, mid, post) = unsafe { b.align_to::<u32>() };
    if pre.is_empty() && post.is_empty() && cfg!(target_endian = "little") {
        Ok(Cow::Borrowed(mid))
    } else {
        Ok(Cow::Owned(
            b.chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
                .collect(),
        ))
    }
}

/// A 32-bit integer array (numpy uint32/int32, `array('I')`) or bytes of little-endian words;
/// 8-byte or other item types are refused rather than reinterpreted.
fn int32s(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u32>> {
    let msg = || format!("{what} must be a C-contiguous 32-bit integer array or bytes of them");
    let mv = memoryview(obj).map_err(|_| PyTypeError::new_err(msg()))?;
    if !mv.getattr("c_contiguous")?.extract::<bool>()? {
        return Err(PyValueError::new_err(msg()));
    }
    let format: String = mv.getattr("format")?.extract()?;
    let itemsize: usize = mv.getattr("itemsize")?.extract()?;
    let ok4 = itemsize == 4
        && matches!(
            format.as_str(),
            "I" | "i" | "@I" | "@i" | "=I" | "=i" | "<I" | "<i" | "L" | "l" | "@L" | "@l"
        );
    let raw = itemsize == 1 && matches!(format.as_str(), "B" | "b" | "c" | "@B" | "@b");
    if !(ok4 || raw) {
        return Err(PyValueError::new_err(msg()));
    }
    let b = Bytes::new(obj, what)?;
    Ok(words(b.slice(), what)?.into_owned())
}

fn words_out(py: Python<'_>, w: &[u32]) -> PyResult<Py<PyBytes>> {
    super::bytes_filled(py, 4 * w.len(), |buf| {
        for (d, x) in buf.chunks_exact_mut(4).zip(w) {
            d.copy_from_slice(&x.to_le_bytes());
        }
        Ok(())
    })
}

/// `H = D·A` (l·N little-endian u32).
#[pyfunction]
pub(super) fn lwe_hint(
    py: Python<'_>,
    db: &Bound<'_, PyAny>,
    l: usize,
    m: usize,
    seed: &[u8],
) -> PyResult<Py<PyBytes>> {
    let d = Bytes::new(db, "db")?;
    let ds = d.slice();
    let h = py
        .allow_threads(|| lwepir::hint(ds, l, m, seed))
        .map_err(to_py)?;
    words_out(py, &h)
}

/// In place `H[r, :] += δ·A[c, :]`; `hint` a writable buffer (bytearray, numpy uint32).
#[pyfunction]
pub(super) fn lwe_hint_patch(
    py: Python<'_>,
    hint: &Bound<'_, PyAny>,
    seed: &[u8],
    m: usize,
    rows: &Bound<'_, PyAny>,
    cols: &Bound<'_, PyAny>,
    deltas: &Bound<'_, PyAny>,
) -> PyResult<()> {
    let (r, c, d) = (
        int32s(rows, "rows")?,
        int32s(cols, "cols")?,
        int32s(deltas, "deltas")?,
    );
    let not_writable = || PyValueError::new_err("hint must be a writable C-contiguous buffer");
    let mv = memoryview(hint).map_err(|_| PyTypeError::new_err("hint must be a buffer"))?;
    if mv.getattr("readonly")?.extract::<bool>()?
        || !mv.getattr("c_contiguous")?.extract::<bool>()?
    {
        return Err(not_writable());
    }
    let flat = mv
        .call_method1("cast", ("B",))
        .map_err(|_| not_writable())?;
    let buf = PyBuffer::<u8>::get(&flat)?;
    if buf.readonly() {
        return Err(not_writable());
    }
    // SAFETY: C-contiguous and writable, exported by `buf` for the whole call; Python code
    // touching it concurrently is the caller's race, as with any buffer consumer.
    let bytes: &mut [u8] = unsafe {
        let view = raw_bytes(&buf);
        std::slice::from_raw_parts_mut(view.as_ptr() as *mut u8, view.len())
    };
    if !bytes.len().is_multiple_of(4) {
        return Err(PyValueError::new_err("hint must be whole 4-byte words"));
    }
    let deltas: Vec<i32> = d.iter().map(|&x| x as i32).collect();
    py.allow_threads(|| {
        // SAFETY: any 4 bytes are a valid u32; only the aligned middle is used in place.
        let (pre, mid, post) = unsafe { bytes.align_to_mut::<u32>() };
        if pre.is_empty() && post.is_empty() && cfg!(target_endian = "little") {
            lwepir::hint_patch(mid, seed, m, &r, &c, &deltas)
        } else {
            let mut h: Vec<u32> = bytes
                .chunks_exact(4)
                .map(|x| u32::from_le_bytes(x.try_into().expect("4 bytes")))
                .collect();
            lwepir::hint_patch(&mut h, seed, m, &r, &c, &deltas)?;
            for (dst, x) in bytes.chunks_exact_mut(4).zip(&h) {
                dst.copy_from_slice(&x.to_le_bytes());
            }
            Ok(())
        }
    })
    .map_err(to_py)
}

/// `D·qu` for each query: b·l little-endian u32.
#[pyfunction]
pub(super) fn lwe_answer(
    py: Python<'_>,
    db: &Bound<'_, PyAny>,
    l: usize,
    m: usize,
    queries: &Bound<'_, PyAny>,
) -> PyResult<Py<PyBytes>> {
    let (d, q) = (Bytes::new(db, "db")?, Bytes::new(queries, "queries")?);
    let ds = d.slice();
    let qs = words(q.slice(), "queries")?;
    let a = py
        .allow_threads(|| lwepir::answer(ds, l, m, &qs))
        .map_err(to_py)?;
    words_out(py, &a)
}

/// `(queries, secrets)`: b·m and b·N little-endian u32, fresh OS randomness.
#[pyfunction]
pub(super) fn lwe_query(
    py: Python<'_>,
    seed: &[u8],
    m: usize,
    columns: &Bound<'_, PyAny>,
) -> PyResult<(Py<PyBytes>, Py<PyBytes>)> {
    let c = int32s(columns, "columns")?;
    let (q, s) = py
        .allow_threads(|| lwepir::query(seed, m, &c))
        .map_err(to_py)?;
    Ok((words_out(py, &q)?, words_out(py, &s)?))
}

/// The decoded columns' bytes and each answer's noise, from Python buffers.
fn decoded(
    py: Python<'_>,
    hint: &Bound<'_, PyAny>,
    l: usize,
    secrets: &Bound<'_, PyAny>,
    answers: &Bound<'_, PyAny>,
) -> PyResult<(Vec<u8>, Vec<u32>)> {
    let (h, s, a) = (
        Bytes::new(hint, "hint")?,
        Bytes::new(secrets, "secrets")?,
        Bytes::new(answers, "answers")?,
    );
    let (hw, sw, aw) = (
        words(h.slice(), "hint")?,
        words(s.slice(), "secrets")?,
        words(a.slice(), "answers")?,
    );
    py.allow_threads(|| lwepir::decode(&hw, l, &sw, &aw))
        .map_err(to_py)
}

/// The columns' bytes (b·l); with `max_noise`, a noise beyond it raises `LweDecodingError`.
#[pyfunction]
#[pyo3(signature = (hint, l, secrets, answers, max_noise=None))]
pub(super) fn lwe_decode(
    py: Python<'_>,
    hint: &Bound<'_, PyAny>,
    l: usize,
    secrets: &Bound<'_, PyAny>,
    answers: &Bound<'_, PyAny>,
    max_noise: Option<u32>,
) -> PyResult<Py<PyBytes>> {
    let (bytes, noise) = decoded(py, hint, l, secrets, answers)?;
    if let Some(bound) = max_noise {
        if let Some((i, n)) = noise.iter().enumerate().find(|(_, &n)| n > bound) {
            return Err(LweDecodingError::new_err(format!(
                "answer {i} decoded with noise {n} > {bound}: the hint is stale or the answer is not for this query"
            )));
        }
    }
    Ok(PyBytes::new(py, &bytes).unbind())
}

/// The noise of each answer (the largest distance from a multiple of Δ), for diagnostics.
#[pyfunction]
pub(super) fn lwe_noise(
    py: Python<'_>,
    hint: &Bound<'_, PyAny>,
    l: usize,
    secrets: &Bound<'_, PyAny>,
    answers: &Bound<'_, PyAny>,
) -> PyResult<Vec<u32>> {
    let (_, noise) = decoded(py, hint, l, secrets, answers)?;
    Ok(noise)
}

/// Which kernel build runs on this CPU ("avx512", "avx2" or "portable").
#[pyfunction]
pub(super) fn lwe_backend() -> &'static str {
    lwepir::Backend::detect().name()
}

pub(super) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("LweDecodingError", m.py().get_type::<LweDecodingError>())?;
    m.add("LWE_N", lwepir::N)?;
    m.add("LWE_LOG_Q", lwepir::LOG_Q)?;
    m.add("LWE_LOG_P", lwepir::LOG_P)?;
    m.add("LWE_SIGMA", lwepir::SIGMA)?;
    m.add("LWE_TAIL", lwepir::TAIL)?;
    m.add_function(wrap_pyfunction!(lwe_hint, m)?)?;
    m.add_function(wrap_pyfunction!(lwe_hint_patch, m)?)?;
    m.add_function(wrap_pyfunction!(lwe_answer, m)?)?;
    m.add_function(wrap_pyfunction!(lwe_query, m)?)?;
    m.add_function(wrap_pyfunction!(lwe_decode, m)?)?;
    m.add_function(wrap_pyfunction!(lwe_noise, m)?)?;
    m.add_function(wrap_pyfunction!(lwe_backend, m)?)?;
    Ok(())
}
