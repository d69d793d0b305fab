//! Users and passwords: validation, bcrypt hashing (cost 10), and reading
//! a password from a terminal or standard input.

use crate::prompt::{self, Secret};
use anyhow::{Context, bail};
use std::{io::Read, path::Path};

/// The bcrypt cost for every stored password (spec: "SSH Credentials").
pub const BCRYPT_COST: u32 = 10;
/// The longest password bcrypt uses in full (it ignores bytes after 72).
pub const MAX_PASSWORD_BYTES: usize = 72;
/// The longest username.
pub const MAX_USERNAME: usize = 32;

/// Check a username: 1–32 characters, a lowercase letter or `_` first,
/// then lowercase letters, digits, `_`, `-` or `.`.
pub fn validate_username(name: &str) -> anyhow::Result<()> {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let rest_ok =
        chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '-' | '.'));
    if name.is_empty() || name.len() > MAX_USERNAME || !first_ok || !rest_ok {
        bail!(
            "invalid username {name:?}: use 1 to {MAX_USERNAME} characters, starting with a lowercase letter or '_', then lowercase letters, digits, '_', '-' or '.'"
        );
    }
    Ok(())
}

/// Check a password: not empty, at most 72 bytes (bcrypt's limit).
pub fn validate_password(password: &str) -> anyhow::Result<()> {
    if password.is_empty() {
        bail!("the password is empty");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        bail!(
            "the password is {} bytes long; bcrypt uses at most {MAX_PASSWORD_BYTES}",
            password.len()
        );
    }
    Ok(())
}

/// bcrypt-hash a password at cost 10.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    validate_password(password)?;
    bcrypt::hash(password, BCRYPT_COST).context("bcrypt failed")
}

/// Whether `hash` has the form of a bcrypt hash (`$2b$10$…`, 60
/// characters), as configs and machine records must carry it.
pub fn is_bcrypt_hash(hash: &str) -> bool {
    ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p))
        && hash.len() == 60
        && hash.is_ascii()
}

/// Whether `password` matches the bcrypt `hash`.
pub fn verify_password(password: &str, hash: &str) -> bool {
    bcrypt::verify(password, hash).unwrap_or(false)
}

/// Read a password from the first line of standard input; `flag` (e.g.
/// `--password-stdin`) names where it came from in errors. A closed or
/// empty input is an error.
pub fn password_from_stdin(flag: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(4096)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{flag}: cannot read standard input"))?;
    if bytes.is_empty() {
        bail!("{flag}: standard input is closed; no password was read");
    }
    first_line(bytes, flag)
}

/// Read a password from the first line of the file at `path`; `flag`
/// (e.g. `--ssh-password-file`) names where it came from in errors.
pub fn password_from_file(path: &Path, flag: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(4096).read_to_end(&mut bytes))
        .with_context(|| format!("{flag} {}: cannot read it", path.display()))?;
    first_line(bytes, &format!("{flag} {}", path.display()))
}

/// The first line of `bytes` as a valid password.
fn first_line(bytes: Vec<u8>, source: &str) -> anyhow::Result<String> {
    let text =
        String::from_utf8(bytes).with_context(|| format!("{source}: the password is not UTF-8"))?;
    let line = text.lines().next().unwrap_or_default();
    validate_password(line).with_context(|| source.to_string())?;
    Ok(line.to_string())
}

/// Ask for a username on the terminal with `question` until a valid one
/// is given, at most [`prompt::MAX_ATTEMPTS`] times.
pub fn username_from_terminal(question: &str) -> anyhow::Result<String> {
    for _ in 0..prompt::MAX_ATTEMPTS {
        let Some(answer) = prompt::ask(question)? else {
            bail!("no username entered (end of input); nothing was changed");
        };
        let answer = answer.trim().to_string();
        match validate_username(&answer) {
            Ok(()) => return Ok(answer),
            Err(e) => eprintln!("{e}"),
        }
    }
    bail!(
        "no valid username after {} attempts; nothing was changed",
        prompt::MAX_ATTEMPTS
    )
}

/// Ask for a new password twice, without echo. Gives up after three
/// mismatches.
pub fn password_from_terminal() -> anyhow::Result<String> {
    for _ in 0..3 {
        let first = match prompt::ask_secret("Password: ")? {
            Secret::Text(t) => t,
            Secret::Eof => bail!("no password entered (end of input); nothing was changed"),
            Secret::Interrupted => bail!("interrupted; nothing was changed"),
        };
        if let Err(e) = validate_password(&first) {
            eprintln!("{e}; try again");
            continue;
        }
        let second = match prompt::ask_secret("Confirm password: ")? {
            Secret::Text(t) => t,
            Secret::Eof => bail!("no password entered (end of input); nothing was changed"),
            Secret::Interrupted => bail!("interrupted; nothing was changed"),
        };
        if first == second {
            return Ok(first);
        }
        eprintln!("the passwords do not match; try again");
    }
    bail!("the passwords did not match three times; nothing was changed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["admin", "_svc", "a.b-c_9", &"a".repeat(32)] {
            validate_username(ok).unwrap();
        }
        for bad in [
            "",
            "Admin",
            "9lives",
            "-x",
            "a b",
            "a:b",
            "ü",
            &"a".repeat(33),
        ] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn r12_hash_is_bcrypt_cost_10_and_verifies() {
        let hash = hash_password("secret").unwrap();
        assert!(hash.starts_with("$2b$10$"), "{hash}");
        assert!(!hash.contains("secret"));
        assert!(verify_password("secret", &hash));
        assert!(is_bcrypt_hash(&hash));
        assert!(!is_bcrypt_hash("secret"));
        assert!(!is_bcrypt_hash(&format!("{hash}x")));
        assert!(!verify_password("Secret", &hash));
        assert!(hash_password("").is_err());
        assert!(hash_password(&"x".repeat(73)).is_err());
    }

    #[test]
    fn a_password_file_gives_its_first_line_and_errors_name_the_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("pw");
        std::fs::write(&f, "s3cret\nignored\n").unwrap();
        assert_eq!(password_from_file(&f, "--pw-file").unwrap(), "s3cret");
        std::fs::write(&f, "\n").unwrap();
        let err = format!("{:#}", password_from_file(&f, "--pw-file").unwrap_err());
        assert_eq!(
            err,
            format!("--pw-file {}: the password is empty", f.display())
        );
        let missing = d.path().join("nope");
        let err = format!(
            "{:#}",
            password_from_file(&missing, "--pw-file").unwrap_err()
        );
        assert!(
            err.starts_with(&format!(
                "--pw-file {}: cannot read it: ",
                missing.display()
            )),
            "{err}"
        );
    }
}
