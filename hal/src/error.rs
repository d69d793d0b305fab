//! The error type shared by every hal call.

use core::fmt;

/// What went wrong in a hal call. Small and `Copy` so that the firmware can
/// carry it through its state machines without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The path or object does not exist (ENOENT).
    NotFound,
    /// The data did not fit the caller's buffer.
    TooLarge,
    /// The content was not what the reader expects (e.g. `size` is not a number).
    Malformed,
    /// Any other kernel error, as its errno value.
    Os(i32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("not found"),
            Error::TooLarge => f.write_str("too large for the buffer"),
            Error::Malformed => f.write_str("malformed content"),
            Error::Os(errno) => write!(f, "os error {errno}"),
        }
    }
}
