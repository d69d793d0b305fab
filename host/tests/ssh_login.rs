//! The SSH endpoint against the real OpenSSH client, on loopback:
//! wrong password, unknown user, right password; interactive pty,
//! scripted `config edit` + `commit`, one-shot commands; the host key is
//! kept in zefs. Checklist B4 (credentials from zefs).

mod common;

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Arc, Mutex},
};
use ze::{
    runtime::{
        shell::{Backend, InterfaceInfo},
        ssh::{self, Accounts, BackendFactory, Shared},
    },
    zefs::{UserRecord, Zefs},
};

#[derive(Clone, Default)]
struct TestBackend {
    active: Arc<Mutex<Option<String>>>,
}

impl Backend for TestBackend {
    fn version(&self) -> String {
        "ze 0.1.0 (built test)\nimage: ze-20260617-160000.img (built 20260617-160000)\nappliance: prod\n".into()
    }
    fn interfaces(&self) -> anyhow::Result<Vec<InterfaceInfo>> {
        Ok(vec![])
    }
    fn running_config(&self) -> anyhow::Result<(String, String)> {
        Ok(match self.active.lock().unwrap().clone() {
            Some(t) => (t, "active".into()),
            None => ("sshserver { }\n".into(), "bootstrap".into()),
        })
    }
    fn validate(&self, text: &str) -> anyhow::Result<()> {
        ze::config::brace::parse(text)?;
        Ok(())
    }
    fn commit(&self, text: &str) -> anyhow::Result<()> {
        *self.active.lock().unwrap() = Some(text.into());
        Ok(())
    }
}

impl BackendFactory for TestBackend {
    type Backend = TestBackend;
    fn backend(&self) -> TestBackend {
        self.clone()
    }
}

struct Server {
    addr: SocketAddr,
    backend: TestBackend,
    db: PathBuf,
    _dir: tempfile::TempDir,
    _rt: tokio::runtime::Runtime,
    stop: tokio::sync::watch::Sender<bool>,
}

fn start() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("database.zefs");
    let mut db = Zefs::new();
    db.set_user(
        "admin",
        &UserRecord {
            role: "admin".into(),
            password_hash: ze::credentials::hash_password("secret").unwrap(),
        },
    )
    .unwrap();
    db.store(&db_path).unwrap();
    let backend = TestBackend::default();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let accounts = Accounts::new(db_path.clone());
    let key = accounts.host_key().unwrap();
    let config = Arc::new(ssh::server_config(key));
    let shared = Shared::new(accounts, backend.clone());
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    rt.spawn(ssh::serve(listener, config, shared, rx));
    Server {
        addr,
        backend,
        db: db_path,
        _dir: dir,
        _rt: rt,
        stop,
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

fn ssh(
    server: &Server,
    user: &str,
    password: &str,
    extra: &[&str],
    command: &[&str],
    stdin: Option<&str>,
) -> Output {
    let known = server._dir.path().join("known_hosts");
    let mut cmd = common::ssh_with_password(
        Command::new("sshpass"),
        password,
        &known,
        server.addr.port(),
    );
    cmd.args(extra)
        .arg(format!("{user}@127.0.0.1"))
        .args(command);
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .expect("sshpass and ssh (packages sshpass, openssh-client)");
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn b4_right_password_logs_in_and_runs_a_command() {
    let s = start();
    let out = ssh(&s, "admin", "secret", &[], &["show", "version"], None);
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("image: ze-20260617-160000.img"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn b4_wrong_password_and_unknown_user_are_refused() {
    let s = start();
    for (user, pw) in [("admin", "Secret"), ("root", "secret"), ("nobody", "x")] {
        let out = ssh(&s, user, pw, &[], &["show", "version"], None);
        assert!(!out.status.success(), "{user}/{pw} got in");
        assert!(
            text(&out.stderr).contains("Permission denied"),
            "{}",
            text(&out.stderr)
        );
        assert!(!text(&out.stdout).contains("image:"));
    }
    // Three failures are free; now the address must wait, even with the
    // right password …
    let out = ssh(&s, "admin", "secret", &[], &["show", "version"], None);
    assert!(!out.status.success(), "a rate-limited address got in");
    // … and after the delay, the right password works.
    std::thread::sleep(ze::runtime::ratelimit::BASE_DELAY + std::time::Duration::from_millis(300));
    let out = ssh(&s, "admin", "secret", &[], &["show", "version"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn scripted_session_edits_and_commits() {
    let s = start();
    let script = "show configuration\nconfig edit\nsshserver {\n    listen 0.0.0.0:22;\n}\n.\ncommit\nexit\n";
    let out = ssh(&s, "admin", "secret", &["-T"], &[], Some(script));
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(stdout.contains("from bootstrap"), "{stdout}");
    assert!(stdout.contains("committed"), "{stdout}");
    assert_eq!(
        s.backend.active.lock().unwrap().as_deref(),
        Some("sshserver {\n    listen 0.0.0.0:22;\n}\n")
    );
}

#[test]
fn interactive_pty_session_echoes_and_prompts() {
    let s = start();
    // -tt forces a pty even though stdin is a pipe.
    let out = ssh(
        &s,
        "admin",
        "secret",
        &["-tt"],
        &[],
        Some("show version\rexit\r"),
    );
    let stdout = text(&out.stdout);
    assert!(stdout.contains("ze> show version\r\n"), "{stdout:?}");
    assert!(
        stdout.contains("image: ze-20260617-160000.img (built 20260617-160000)\r\n"),
        "{stdout:?}"
    );
    assert!(stdout.contains("bye"), "{stdout:?}");
}

#[test]
fn host_key_is_generated_once_and_kept_in_zefs() {
    let s = start();
    let db = Zefs::load(&s.db).unwrap();
    let first = db.get(ssh::HOST_KEY).expect("host key stored").to_vec();
    let again = Accounts::new(s.db.clone()).host_key().unwrap();
    assert_eq!(
        again.to_openssh(Default::default()).unwrap().as_bytes(),
        first.as_slice()
    );
    assert!(Path::new(&s.db).exists());
}
