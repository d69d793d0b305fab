//! Randomness from the kernel's CSPRNG: identities of images (GUIDs,
//! volume serials, media ids) and the appliance's SSH host key.

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

/// Like [`fill`], but if the kernel's generator is not seeded yet (early
/// boot on a machine without a hardware source), call `waiting` once
/// before blocking, so the wait is reported instead of silent.
pub fn fill_or_report(buf: &mut [u8], waiting: impl FnOnce()) -> io::Result<()> {
    match rustix::rand::getrandom(&mut buf[..], rustix::rand::GetRandomFlags::NONBLOCK) {
        Ok(n) if n == buf.len() => Ok(()),
        Ok(_) => fill(buf),
        Err(rustix::io::Errno::AGAIN) => {
            waiting();
            fill(buf)
        }
        Err(_) => fill(buf),
    }
}

/// `n` random bytes as lowercase hex.
pub fn hex(n: usize) -> io::Result<String> {
    let mut bytes = vec![0u8; n];
    fill(&mut bytes)?;
    Ok(crate::digest::hex(&bytes))
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
