//! Digests and hex: the one place ze hashes a stream and spells bytes as
//! lowercase hex (image digests in logs, boot scripts and manifests; MACs
//! in lease files).

use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// The read size of [`sha256_stream`].
pub const CHUNK: usize = 1 << 20;

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

/// The sha256 of `bytes`, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Hash everything `reader` yields, handing each chunk to `each` as well
/// (to copy, compress or count it). Returns the bytes read and the sha256,
/// hex.
pub fn sha256_stream(
    reader: &mut dyn Read,
    each: &mut dyn FnMut(&[u8]) -> io::Result<()>,
) -> io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        each(&buf[..n])?;
        done += n as u64;
    }
    Ok((done, hex(&hasher.finalize())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_and_known_digests() {
        assert_eq!(hex(&[0x00, 0x7f, 0xab, 0xff]), "007fabff");
        assert_eq!(hex(&[]), "");
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_stream_is_hashed_and_handed_on_in_chunks() {
        let data: Vec<u8> = (0..3 * CHUNK + 17).map(|i| i as u8).collect();
        let mut copy = Vec::new();
        let (n, sum) = sha256_stream(&mut &data[..], &mut |c| {
            copy.extend_from_slice(c);
            Ok(())
        })
        .unwrap();
        assert_eq!(n, data.len() as u64);
        assert_eq!(copy, data);
        assert_eq!(sum, sha256_hex(&data));
        let e = sha256_stream(&mut &data[..], &mut |_| Err(io::Error::other("full"))).unwrap_err();
        assert_eq!(e.to_string(), "full");
    }
}
