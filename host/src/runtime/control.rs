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
        unix::{fs::PermissionsExt, net::UnixListener, net::UnixStream},
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
/// A stale socket left by a crash is replaced; a live one is an error.
pub fn bind(path: &Path) -> anyhow::Result<UnixListener> {
    if path.exists() {
        if UnixStream::connect(path).is_ok() {
            bail!("{} is in use: another ze is running", path.display());
        }
        std::fs::remove_file(path)
            .with_context(|| format!("cannot remove the stale socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let listener =
        UnixListener::bind(path).with_context(|| format!("cannot listen on {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
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
    let _ = std::fs::remove_file(&path);
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
