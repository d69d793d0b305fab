//! Randomness for identities (GUIDs, volume serials, media ids) from the
//! kernel's CSPRNG.

use std::io;

/// Fill `buf` from `getrandom(2)`.
pub fn fill(buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0;
    while done < buf.len() {
        match rustix::rand::getrandom(&mut buf[done..], rustix::rand::GetRandomFlags::empty()) {
            Ok(n) => done += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// `n` random bytes as lowercase hex.
pub fn hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    fill(&mut bytes)?;
    Ok(to_hex(&bytes))
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_ids_differ_and_have_the_length_asked() {
        let a = super::hex(16).unwrap();
        let b = super::hex(16).unwrap();
        assert_eq!(a.len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
    }
}
