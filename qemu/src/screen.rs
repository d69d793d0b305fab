//! What a machine's display shows: QEMU's `screendump` (binary PPM, P6)
//! read back, measured, and saved as PNG for people to look at.
//!
//! The harness cannot read text off a framebuffer, so it measures what
//! text does to one: lines of text are bands of pixel rows with lit
//! pixels, separated by dark rows, and a console that prints changes the
//! picture.

use anyhow::{Context, bail, ensure};
use std::{fs, io::Write, path::Path};

/// A screen as RGB bytes, row by row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screen {
    /// Pixels per row.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `width * height * 3` bytes.
    pub rgb: Vec<u8>,
}

fn token<'a>(bytes: &'a [u8], at: &mut usize) -> anyhow::Result<&'a str> {
    while *at < bytes.len() && (bytes[*at].is_ascii_whitespace() || bytes[*at] == b'#') {
        if bytes[*at] == b'#' {
            while *at < bytes.len() && bytes[*at] != b'\n' {
                *at += 1;
            }
        } else {
            *at += 1;
        }
    }
    let start = *at;
    while *at < bytes.len() && !bytes[*at].is_ascii_whitespace() {
        *at += 1;
    }
    std::str::from_utf8(&bytes[start..*at]).context("PPM header")
}

impl Screen {
    /// Parse a binary PPM (P6, maxval 255), as `screendump` writes it.
    pub fn parse_ppm(bytes: &[u8]) -> anyhow::Result<Screen> {
        let mut at = 0;
        ensure!(token(bytes, &mut at)? == "P6", "not a binary PPM (P6)");
        let width: usize = token(bytes, &mut at)?.parse().context("PPM width")?;
        let height: usize = token(bytes, &mut at)?.parse().context("PPM height")?;
        let max: usize = token(bytes, &mut at)?.parse().context("PPM maxval")?;
        ensure!(max == 255, "PPM maxval {max}: only 255 is read");
        let data = bytes.get(at + 1..).unwrap_or_default();
        let len = width * height * 3;
        if data.len() < len {
            bail!("PPM {width}x{height} needs {len} bytes, has {}", data.len());
        }
        Ok(Screen {
            width,
            height,
            rgb: data[..len].to_vec(),
        })
    }

    /// Read a `screendump` file.
    pub fn load(path: &Path) -> anyhow::Result<Screen> {
        let bytes = fs::read(path).with_context(|| format!("read {}", path.display()))?;
        Screen::parse_ppm(&bytes).with_context(|| path.display().to_string())
    }

    fn lit(&self, x: usize, y: usize) -> bool {
        let i = (y * self.width + x) * 3;
        self.rgb[i..i + 3].iter().any(|&c| c >= 0x80)
    }

    /// The fraction of pixels that are lit (any channel at least half on).
    pub fn lit_fraction(&self) -> f64 {
        let lit = (0..self.height)
            .flat_map(|y| (0..self.width).map(move |x| (x, y)))
            .filter(|&(x, y)| self.lit(x, y))
            .count();
        lit as f64 / (self.width * self.height).max(1) as f64
    }

    /// Bands of consecutive pixel rows that have lit pixels: one per line
    /// of text.
    pub fn text_bands(&self) -> usize {
        let mut bands = 0;
        let mut inside = false;
        for y in 0..self.height {
            let row = (0..self.width).any(|x| self.lit(x, y));
            if row && !inside {
                bands += 1;
            }
            inside = row;
        }
        bands
    }

    /// The fraction of pixels that differ from `other` (1.0 when the
    /// sizes differ).
    pub fn difference(&self, other: &Screen) -> f64 {
        if (self.width, self.height) != (other.width, other.height) {
            return 1.0;
        }
        let differ = self
            .rgb
            .chunks_exact(3)
            .zip(other.rgb.chunks_exact(3))
            .filter(|(a, b)| a != b)
            .count();
        differ as f64 / (self.width * self.height).max(1) as f64
    }

    /// Save as PNG (8-bit RGB, zlib-compressed rows).
    pub fn save_png(&self, path: &Path) -> anyhow::Result<()> {
        let mut raw = Vec::with_capacity((self.width * 3 + 1) * self.height);
        for row in self.rgb.chunks_exact(self.width * 3) {
            raw.push(0);
            raw.extend_from_slice(row);
        }
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(&raw)?;
        let idat = z.finish()?;
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&u32::try_from(self.width)?.to_be_bytes());
        ihdr.extend_from_slice(&u32::try_from(self.height)?.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [
            (b"IHDR", &ihdr[..]),
            (b"IDAT", &idat[..]),
            (b"IEND", &[][..]),
        ] {
            out.extend_from_slice(&u32::try_from(data.len())?.to_be_bytes());
            let mut crc = crc32fast::Hasher::new();
            crc.update(kind);
            crc.update(data);
            out.extend_from_slice(kind);
            out.extend_from_slice(data);
            out.extend_from_slice(&crc.finalize().to_be_bytes());
        }
        fs::write(path, out).with_context(|| format!("write {}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16x8 screen with lit rows `rows`.
    fn screen(rows: &[usize]) -> Screen {
        let (w, h) = (16, 8);
        let mut rgb = vec![0u8; w * h * 3];
        for &y in rows {
            for x in 2..6 {
                rgb[(y * w + x) * 3] = 0xaa;
            }
        }
        Screen {
            width: w,
            height: h,
            rgb,
        }
    }

    #[test]
    fn h1_ppm_round_trip_bands_and_difference() {
        let s = screen(&[1, 2, 5]);
        let mut ppm = b"P6\n# a comment\n16 8\n255\n".to_vec();
        ppm.extend_from_slice(&s.rgb);
        assert_eq!(Screen::parse_ppm(&ppm).unwrap(), s);
        assert_eq!(s.text_bands(), 2);
        assert!((s.lit_fraction() - 12.0 / 128.0).abs() < 1e-9);
        assert_eq!(s.difference(&s), 0.0);
        assert!((s.difference(&screen(&[1, 2])) - 4.0 / 128.0).abs() < 1e-9);
        assert_eq!(screen(&[]).text_bands(), 0);
        assert!(Screen::parse_ppm(b"P3\n1 1\n255\n").is_err());
        assert!(Screen::parse_ppm(b"P6\n2 2\n255\n\0\0\0").is_err());
    }

    #[test]
    fn h1_png_has_the_signature_and_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.png");
        screen(&[3]).save_png(&p).unwrap();
        let png = fs::read(&p).unwrap();
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x08"));
        assert!(png.ends_with(b"IEND\xaeB`\x82"));
    }
}
