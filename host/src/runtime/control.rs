//! The control socket of `ze start` (spec "Systemd Service": the daemon
//! socket is `$XDG_RUNTIME_DIR/ze.socket`, or `daemon { socket …; }`), and
//! `ze cli`, its client: the same operator CLI as an SSH login, for an
//! operator on the machine.
//!
//! The protocol is lines: the client sends one line; the server answers
//! with the shell's output, a NUL byte, the next prompt and a newline.
//!
//! ```text
//! client: show version\n
//! server: ze 0.1.0 (built …)\n…\0ze> \n
//! ```

use super::shell::{Backend, Shell};
use crate::daemon::{Shutdown, Wake};
use anyhow::{Context, bail};
use std::{
    io::{BufRead, BufReader, Read, Write},
    os::{
        fd::AsFd,
        unix::{
            fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
            net::{UnixListener, UnixStream},
        },
    },
    path::{Path, PathBuf},
    thread,
    time::Duration,
};

/// The socket's name under `$XDG_RUNTIME_DIR`.
pub const SOCKET_NAME: &str = "ze.socket";
/// Where the socket is when `$XDG_RUNTIME_DIR` is not set (the systemd
/// unit's `RuntimeDirectory=ze`).
pub const FALLBACK_DIR: &str = "/run/ze";
/// The end of one reply.
pub const END_OF_REPLY: u8 = 0;
/// The most operators connected at once.
pub const MAX_CLIENTS: usize = 8;
/// The longest request line.
pub const MAX_LINE: usize = 64 * 1024;

/// The socket path: `daemon { socket }`, else `$XDG_RUNTIME_DIR/ze.socket`,
/// else `/run/ze/ze.socket`.
pub fn socket_path(configured: Option<&Path>) -> PathBuf {
    if let Some(p) = configured {
        return p.to_path_buf();
    }
    match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(dir) if Path::new(&dir).is_absolute() => Path::new(&dir).join(SOCKET_NAME),
        _ => Path::new(FALLBACK_DIR).join(SOCKET_NAME),
    }
}

/// Bind the socket (mode 0600: the CLI can change the configuration).
/// A stale socket left by a crash is replaced; a live one is an error, and
/// so is anything at `path` that is not a socket (a mistyped
/// `daemon { socket … }` must never delete, say, the database).
///
/// The socket is bound inside a fresh directory of mode 0700 beside
/// `path`, made 0600, and only then renamed into place: at no moment can
/// anyone else connect to it, whatever the umask.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            if UnixStream::connect(path).is_ok() {
                bail!("{} is in use: another ze is running", path.display());
            }
            std::fs::remove_file(path)
                .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
        }
        Ok(m) => bail!(
            "{} exists and is not a socket (a {}): it is left alone; set `daemon {{ socket PATH; }}` to a path of its own",
            path.display(),
            file_kind(&m)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => bail!("cannot look at {}: {e}", path.display()),
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{} names no file", path.display()))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let private = dir.join(format!(
        ".{}.bind-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    // A leftover of a crash at this very step (same name, same pid).
    let _ = std::fs::remove_file(private.join(name));
    let _ = std::fs::remove_dir(&private);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("cannot create {}", private.display()))?;
    let inner = private.join(name);
    let result = (|| {
        let listener = UnixListener::bind(&inner)
            .with_context(|| format!("cannot listen on {}", path.display()))?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))?;
        rustix::fs::renameat_with(
            rustix::fs::CWD,
            &inner,
            rustix::fs::CWD,
            path,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .with_context(|| format!("cannot put the socket at {}", path.display()))?;
        listener.set_nonblocking(true)?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    result
}

/// What kind of file `m` describes, for messages.
fn file_kind(m: &std::fs::Metadata) -> &'static str {
    let t = m.file_type();
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

/// Remove the socket at `path` when serving ends, if it still is one.
fn remove_socket(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket()) {
        let _ = std::fs::remove_file(path);
    }
}

/// Serve the CLI on `listener` until `shutdown`; `make_backend` gives each
/// client its own backend. Removes the socket file at the end.
pub fn serve<B, F>(
    listener: UnixListener,
    path: PathBuf,
    user: &str,
    make_backend: F,
    shutdown: &Shutdown,
) where
    B: Backend + Send + 'static,
    F: Fn() -> B,
{
    let mut clients: Vec<thread::JoinHandle<()>> = Vec::new();
    loop {
        match shutdown.wait(listener.as_fd(), Some(Duration::from_secs(5))) {
            Ok(Wake::Shutdown) | Err(_) => break,
            Ok(Wake::Timeout) => {}
            Ok(Wake::Ready) => {
                while let Ok((stream, _)) = listener.accept() {
                    clients.retain(|c| !c.is_finished());
                    if clients.len() >= MAX_CLIENTS {
                        let _ = (&stream)
                            .write_all(b"too many operators connected; try again later\n\0\n");
                        continue;
                    }
                    let shell = Shell::new(make_backend(), user);
                    let stop = shutdown.clone();
                    if let Ok(h) = thread::Builder::new()
                        .name("control".into())
                        .spawn(move || session(stream, shell, &stop))
                    {
                        clients.push(h);
                    }
                }
            }
        }
    }
    drop(listener);
    remove_socket(&path);
    for c in clients {
        let _ = c.join();
    }
}

fn reply(stream: &mut UnixStream, output: &str, prompt: &str) -> std::io::Result<()> {
    stream.write_all(output.as_bytes())?;
    stream.write_all(&[END_OF_REPLY])?;
    stream.write_all(prompt.as_bytes())?;
    stream.write_all(b"\n")
}

fn session<B: Backend>(stream: UnixStream, mut shell: Shell<B>, shutdown: &Shutdown) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let Ok(mut out) = stream.try_clone() else {
        return;
    };
    if reply(&mut out, &shell.banner(), shell.prompt()).is_err() {
        return;
    }
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while !shutdown.is_triggered() {
        match reader
            .by_ref()
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) => {
                let r = shell.eof();
                let _ = reply(&mut out, &r.output, shell.prompt());
                return;
            }
            Ok(_) if line.last() == Some(&b'\n') => {
                let text = String::from_utf8_lossy(&line)
                    .trim_end_matches(['\n', '\r'])
                    .to_string();
                line.clear();
                let r = shell.line(&text);
                if reply(&mut out, &r.output, shell.prompt()).is_err() || r.exit {
                    return;
                }
            }
            Ok(_) if line.len() >= MAX_LINE => {
                line.clear();
                let _ = reply(&mut out, "error: line too long\n", shell.prompt());
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

/// `ze cli`: run `command` (one line) or, without one, every line of
/// standard input, printing the replies. Prompts are shown only on a
/// terminal.
pub fn client(path: &Path, command: Option<&str>) -> anyhow::Result<()> {
    let stream = UnixStream::connect(path).with_context(|| {
        format!(
            "cannot connect to {}: is `ze start` running? (the socket is daemon {{ socket … }} or $XDG_RUNTIME_DIR/ze.socket)",
            path.display()
        )
    })?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::new(stream);
    let interactive = command.is_none() && crate::prompt::stdin_is_terminal();
    let mut stdout = std::io::stdout().lock();
    let read_reply = |reader: &mut BufReader<UnixStream>| -> anyhow::Result<(String, String)> {
        let mut body = Vec::new();
        reader.read_until(END_OF_REPLY, &mut body)?;
        if body.last() != Some(&END_OF_REPLY) {
            bail!("the daemon closed the connection");
        }
        body.pop();
        let mut prompt = String::new();
        reader.read_line(&mut prompt)?;
        Ok((
            String::from_utf8_lossy(&body).into_owned(),
            prompt.trim_end_matches('\n').to_string(),
        ))
    };
    let (banner, mut prompt) = read_reply(&mut reader)?;
    if interactive {
        stdout.write_all(banner.as_bytes())?;
    }
    if let Some(cmd) = command {
        writeln!(writer, "{cmd}")?;
        let (out, _) = read_reply(&mut reader)?;
        stdout.write_all(out.as_bytes())?;
        return Ok(());
    }
    let stdin = std::io::stdin();
    loop {
        if interactive {
            stdout.write_all(prompt.as_bytes())?;
            stdout.flush()?;
        }
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            writer.shutdown(std::net::Shutdown::Write)?;
            if let Ok((out, _)) = read_reply(&mut reader) {
                stdout.write_all(out.as_bytes())?;
            }
            return Ok(());
        }
        writer.write_all(line.as_bytes())?;
        if !line.ends_with('\n') {
            writer.write_all(b"\n")?;
        }
        match read_reply(&mut reader) {
            Ok((out, next)) => {
                stdout.write_all(out.as_bytes())?;
                prompt = next;
            }
            Err(_) => return Ok(()), // `exit`: the daemon closed the session
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn s6_a_path_that_is_not_a_socket_is_never_removed() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("database.zefs");
        std::fs::write(&db, b"the credentials").unwrap();
        let err = format!("{:#}", bind(&db).unwrap_err());
        assert_eq!(
            err,
            format!(
                "{} exists and is not a socket (a regular file): it is left alone; set `daemon {{ socket PATH; }}` to a path of its own",
                db.display()
            )
        );
        assert_eq!(std::fs::read(&db).unwrap(), b"the credentials");
        // A symbolic link is not followed, and not removed either.
        let link = dir.path().join("ze.socket");
        std::os::unix::fs::symlink(&db, &link).unwrap();
        assert!(format!("{:#}", bind(&link).unwrap_err()).contains("(a symbolic link)"));
        assert!(link.is_symlink() && db.is_file());
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        assert!(format!("{:#}", bind(&sub).unwrap_err()).contains("(a directory)"));
    }

    #[test]
    fn s6_the_socket_is_0600_a_stale_one_is_replaced_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/ze.socket");
        let live = bind(&path).unwrap();
        let m = std::fs::symlink_metadata(&path).unwrap();
        assert!(m.file_type().is_socket());
        assert_eq!(m.mode() & 0o777, 0o600);
        assert!(UnixStream::connect(&path).is_ok());
        let err = format!("{:#}", bind(&path).unwrap_err());
        assert!(err.ends_with("is in use: another ze is running"), "{err}");
        drop(live); // a crash: the file stays, nobody listens
        assert!(path.exists());
        let _again = bind(&path).unwrap();
        assert!(UnixStream::connect(&path).is_ok());
        // Nothing is left of the private directory it was bound in.
        let names: Vec<String> = std::fs::read_dir(dir.path().join("run"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["ze.socket"]);
    }
}
