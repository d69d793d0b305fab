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
    /// A read reached the end of the device before the bytes asked for.
    EndOfDevice,
    /// Any other kernel error, as its errno value.
    Os(i32),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::NotFound => f.write_str("not found"),
            Error::TooLarge => f.write_str("too large for the buffer"),
            Error::Malformed => f.write_str("malformed content"),
            Error::EndOfDevice => f.write_str("read past the end of the device"),
            Error::Os(errno) => {
                write!(f, "os error {errno}")?;
                match errno_name(*errno) {
                    Some(name) => write!(f, " ({name})"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// What the errno values the installer meets on its disks and consoles
/// mean (Linux `asm-generic/errno*.h`).
pub fn errno_name(errno: i32) -> Option<&'static str> {
    Some(match errno {
        1 => "operation not permitted",
        5 => "I/O error",
        6 => "no such device or address",
        13 => "permission denied",
        16 => "device busy",
        19 => "no such device",
        22 => "invalid argument",
        28 => "no space left on device",
        30 => "read-only filesystem",
        110 => "timed out",
        123 => "no medium",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn errors_say_what_the_errno_means() {
        assert_eq!(Error::Os(123).to_string(), "os error 123 (no medium)");
        assert_eq!(Error::Os(5).to_string(), "os error 5 (I/O error)");
        assert_eq!(Error::Os(4242).to_string(), "os error 4242");
        assert_eq!(Error::NotFound.to_string(), "not found");
    }
}
