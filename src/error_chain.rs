//! Reading error chains: `reqwest` and `hyper` wrap the error that matters (an I/O error, the refusal)
//! several layers deep. A leaf for the probes and the alert sender; it must not format messages for
//! users beyond the innermost cause.

/// Walks an error's `source()` chain looking for an I/O error (reqwest and hyper wrap it deeply).
pub fn io_error_kind(err: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        current = e.source();
    }
    None
}

/// The innermost message of an error chain: `reqwest`'s outer layers only say "error sending request".
pub fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
}
