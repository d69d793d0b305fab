//! The appliance's TLS identity: a self-signed ECDSA P-256 certificate for
//! the appliance name, made once by `ze appliance init` and baked into
//! every image's zefs (`tls/cert.pem`, `tls/key.pem`), so clients can pin
//! it across rebuilds. Replace the two files in the appliance directory
//! with your own to use a certificate from your CA.

use anyhow::Context;

/// Years the certificate is valid.
pub const VALID_YEARS: i32 = 10;

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Identity {
    /// `-----BEGIN CERTIFICATE-----…`
    pub cert_pem: String,
    /// `-----BEGIN PRIVATE KEY-----…` (PKCS #8).
    pub key_pem: String,
}

/// A self-signed certificate for `name` (DNS names `name` and
/// `name.local`), valid from `now`'s date for ten years.
pub fn self_signed(name: &str, now: i64) -> anyhow::Result<Identity> {
    let key = rcgen::KeyPair::generate().context("cannot generate a TLS key")?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_string(), format!("{name}.local")])
        .with_context(|| format!("{name:?} cannot be a certificate name"))?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "ze appliance");
    let (y, m, d) = crate::timefmt::date(now);
    let (y, m, d) = (y as i32, m as u8, d.min(28) as u8);
    params.not_before = rcgen::date_time_ymd(y, m, d);
    params.not_after = rcgen::date_time_ymd(y + VALID_YEARS, m, d);
    let cert = params
        .self_signed(&key)
        .context("cannot sign the TLS certificate")?;
    Ok(Identity {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a1_openssl_reads_the_certificate() {
        let id = self_signed("prod", 1_781_712_000).unwrap();
        assert!(id.cert_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(id.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("cert.pem");
        std::fs::write(&cert, &id.cert_pem).unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "x509",
                "-noout",
                "-subject",
                "-dates",
                "-ext",
                "subjectAltName",
                "-in",
            ])
            .arg(&cert)
            .output()
            .expect("openssl is needed by this test");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text}");
        assert!(text.contains("CN = prod"), "{text}");
        assert!(
            text.contains("notBefore=Jun 17 00:00:00 2026 GMT"),
            "{text}"
        );
        assert!(text.contains("notAfter=Jun 17 00:00:00 2036 GMT"), "{text}");
        assert!(text.contains("DNS:prod, DNS:prod.local"), "{text}");
    }
}
