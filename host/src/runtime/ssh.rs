//! `sshserver`: the appliance's SSH endpoint. A password login is checked
//! against the bcrypt hash in zefs (`auth/user/<name>`) and lands in the
//! operator CLI ([`super::shell`]).
//!
//! - The host key (ed25519) is generated at first start and kept in zefs
//!   at `ssh/host-key/ed25519`, so the key survives restarts and the
//!   operator's `known_hosts` stays valid.
//! - Failed logins are rate-limited per source address
//!   ([`super::ratelimit`], checked and counted before the password is)
//!   and logged; an unknown user costs the same bcrypt work as a wrong
//!   password, so timing does not reveal which names exist.
//! - A connection must log in within [`LOGIN_DEADLINE`] (handshake and
//!   authentication together, enforced here around russh, which would
//!   wait 10 minutes for a silent client), or it is closed.
//! - Connections that have not logged in are capped apart from sessions
//!   ([`Gate`]): at most [`MAX_UNAUTHENTICATED`], and at most
//!   [`MAX_UNAUTHENTICATED_PER_ADDRESS`] from one address (beyond that,
//!   closed at once); at the first cap the oldest is closed for the new
//!   one. Sessions ([`MAX_SESSIONS`]) are taken only at login, so
//!   connections that never log in cannot take an operator's place.
//! - With a pty (`ssh host`), the CLI is interactive with echo and line
//!   editing; without one (`ssh -T host < script`) lines are read plainly;
//!   `ssh host 'show version'` runs one command.

pub use super::sshgate::{MAX_SESSIONS, MAX_UNAUTHENTICATED, MAX_UNAUTHENTICATED_PER_ADDRESS};
use super::{
    lineedit::{Event, LineEditor},
    ratelimit::{LoginLimiter, Verdict},
    shell::{Backend, Shell},
    sshgate::{Gate, Slot, SlotState},
};
use crate::zefs::{self, Zefs};
use anyhow::Context;
use russh::{
    Channel, ChannelId,
    keys::{PrivateKey, ssh_key::LineEnding},
    server::{Auth, Msg, Session},
};
use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use tokio::net::TcpListener;

/// The zefs key of the host key.
pub const HOST_KEY: &str = "ssh/host-key/ed25519";
/// How long a connection has for the handshake and the login together.
pub const LOGIN_DEADLINE: Duration = Duration::from_secs(30);
/// A session idle this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
/// How long a rejected password takes, whatever the reason.
pub const REJECTION_TIME: Duration = Duration::from_millis(500);
/// Password attempts allowed per connection.
pub const MAX_AUTH_ATTEMPTS: usize = 6;
/// A bcrypt hash (cost 10) checked for unknown users, so that they cost
/// as much as a wrong password.
fn dummy_hash() -> String {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        bcrypt::hash("ze: no such user", crate::credentials::BCRYPT_COST).unwrap_or_default()
    })
    .clone()
}

/// Where accounts and the host key live: the appliance's `database.zefs`.
#[derive(Debug, Clone)]
pub struct Accounts {
    db: PathBuf,
}

impl Accounts {
    /// Accounts read from the database at `db`.
    pub fn new(db: PathBuf) -> Self {
        Accounts { db }
    }

    /// The bcrypt hash of `user`, read fresh from the database, so that a
    /// changed password applies to the next login.
    pub fn password_hash(&self, user: &str) -> Option<String> {
        Zefs::load(&self.db)
            .ok()?
            .user(user)
            .map(|u| u.password_hash)
    }

    /// The host key, generated and stored on first use.
    pub fn host_key(&self) -> anyhow::Result<PrivateKey> {
        let mut db = Zefs::load(&self.db)?;
        if let Some(pem) = db.get(HOST_KEY) {
            let text = std::str::from_utf8(pem).context("the stored SSH host key is not text")?;
            return PrivateKey::from_openssh(text).context("the stored SSH host key is not valid");
        }
        let mut seed = [0u8; 32];
        crate::random::fill_or_report(&mut seed, || {
            tracing::warn!(target: "sshserver", "waiting for the kernel's random number generator to be seeded (no hardware RNG?) before making the host key");
        })
            .map_err(|e| anyhow::anyhow!("no randomness for the host key: {e}"))?;
        let key = PrivateKey::from(russh::keys::ssh_key::private::Ed25519Keypair::from_seed(
            &seed,
        ));
        let pem = key
            .to_openssh(LineEnding::LF)
            .context("cannot encode the SSH host key")?;
        db.insert(HOST_KEY, pem.as_bytes())?;
        db.store(&self.db)?;
        tracing::info!(target: "sshserver", "generated host key {}", key.public_key().fingerprint(Default::default()));
        Ok(key)
    }
}

/// Makes a [`Backend`] for each session.
pub trait BackendFactory: Send + Sync + 'static {
    /// The backend type.
    type Backend: Backend + Send + 'static;
    /// A backend for a new session.
    fn backend(&self) -> Self::Backend;
}

/// State shared by every connection.
pub struct Shared<F: BackendFactory> {
    accounts: Accounts,
    factory: F,
    limiter: Mutex<LoginLimiter>,
    gate: Gate,
}

/// What one password attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The password is right.
    Accepted,
    /// The password was checked (bcrypt) and is wrong, or the user is
    /// unknown; `failures` counts this address's failures.
    Rejected { known: bool, failures: u32 },
    /// Too many failures from the address: refused without a check; it
    /// may try again after this long.
    Limited(Duration),
}

impl<F: BackendFactory> std::fmt::Debug for Shared<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("accounts", &self.accounts)
            .finish_non_exhaustive()
    }
}

impl<F: BackendFactory> Shared<F> {
    /// State for a server.
    pub fn new(accounts: Accounts, factory: F) -> Arc<Self> {
        Arc::new(Shared {
            accounts,
            factory,
            limiter: Mutex::new(LoginLimiter::new()),
            gate: Gate::default(),
        })
    }

    /// Check one password of `user` from `ip`. The limiter is asked and
    /// the attempt counted in one step, before bcrypt runs, so parallel
    /// guesses from one address get at most the free failures checked.
    pub async fn check_login(&self, ip: IpAddr, user: &str, password: &str) -> Login {
        let verdict = self
            .limiter
            .lock()
            .map(|mut l| l.attempt(ip, Instant::now()))
            .unwrap_or(Verdict::Allow);
        if let Verdict::Wait(wait) = verdict {
            return Login::Limited(wait);
        }
        let hash = self.accounts.password_hash(user);
        let known = hash.is_some();
        let hash = hash.unwrap_or_else(dummy_hash);
        let password = password.to_string();
        let ok =
            tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false)
                && known;
        let mut limiter = self.limiter.lock().unwrap_or_else(|e| e.into_inner());
        if ok {
            limiter.succeeded(ip);
            Login::Accepted
        } else {
            Login::Rejected {
                known,
                failures: limiter.failures(ip),
            }
        }
    }
}

fn methods() -> russh::MethodSet {
    let mut methods = russh::MethodSet::empty();
    methods.push(russh::MethodKind::Password);
    methods
}

/// A rejection that tells the client password login may be tried again.
fn password_only() -> Auth {
    Auth::Reject {
        proceed_with_methods: Some(methods()),
        partial_success: false,
    }
}

/// The russh server configuration ze uses.
pub fn server_config(host_key: PrivateKey) -> russh::server::Config {
    russh::server::Config {
        methods: methods(),
        auth_rejection_time: REJECTION_TIME,
        auth_rejection_time_initial: Some(Duration::ZERO),
        keys: vec![host_key],
        inactivity_timeout: Some(IDLE_TIMEOUT),
        max_auth_attempts: MAX_AUTH_ATTEMPTS,
        nodelay: true,
        ..Default::default()
    }
}

/// Accept connections on `listener` until `shutdown` turns true.
pub async fn serve<F: BackendFactory>(
    listener: TcpListener,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared<F>>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(target: "sshserver", "accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let slot = match shared.gate.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(why) => {
                tracing::warn!(target: "sshserver", "refused connection from {peer}: {why}");
                continue;
            }
        };
        // A second descriptor of the socket, to shut it down from here:
        // russh runs the session on a task of its own, which ends when
        // its reads see the end of the stream.
        let closer = match std::os::fd::AsFd::as_fd(&stream).try_clone_to_owned() {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(target: "sshserver", "refused connection from {peer}: {e}");
                shared.gate.release(&slot);
                continue;
            }
        };
        let handler = Conn {
            shared: Arc::clone(&shared),
            slot: Arc::clone(&slot),
            peer,
            user: None,
            channels: HashMap::new(),
        };
        let (config, shared) = (Arc::clone(&config), Arc::clone(&shared));
        tokio::spawn(async move {
            let conn = async {
                match russh::server::run_stream(config, stream, handler).await {
                    Ok(session) => {
                        if let Err(e) = session.await {
                            tracing::debug!(target: "sshserver", "session from {peer} ended: {e}");
                        }
                    }
                    Err(e) => {
                        tracing::debug!(target: "sshserver", "handshake with {peer} failed: {e}")
                    }
                }
            };
            tokio::pin!(conn);
            let deadline = tokio::time::sleep(LOGIN_DEADLINE);
            tokio::pin!(deadline);
            loop {
                let logged_in = slot.state() == SlotState::Session;
                tokio::select! {
                    () = &mut conn => break,
                    () = slot.wake.notified() => {
                        if slot.state() == SlotState::Evicted {
                            let _ = rustix::net::shutdown(&closer, rustix::net::Shutdown::Both);
                            break;
                        }
                    }
                    () = &mut deadline, if !logged_in => {
                        tracing::warn!(target: "sshserver", from = %peer.ip(), "closed the connection: not logged in within {} s", LOGIN_DEADLINE.as_secs());
                        let _ = rustix::net::shutdown(&closer, rustix::net::Shutdown::Both);
                        break;
                    }
                }
            }
            shared.gate.release(&slot);
        });
    }
}

struct ChanState<B: Backend> {
    pty: bool,
    editor: LineEditor,
    shell: Option<Shell<B>>,
}

struct Conn<F: BackendFactory> {
    shared: Arc<Shared<F>>,
    slot: Arc<Slot>,
    peer: SocketAddr,
    user: Option<String>,
    channels: HashMap<ChannelId, ChanState<F::Backend>>,
}

/// `\n` → `\r\n` for a terminal.
fn for_terminal(text: &str, pty: bool) -> Vec<u8> {
    if pty {
        text.replace('\n', "\r\n").into_bytes()
    } else {
        text.as_bytes().to_vec()
    }
}

impl<F: BackendFactory> Conn<F> {
    fn finish(&mut self, channel: ChannelId, session: &mut Session) -> Result<(), russh::Error> {
        self.channels.remove(&channel);
        session.exit_status_request(channel, 0)?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    /// Feed keystrokes or lines to the channel's shell.
    fn input(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), russh::Error> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let Some(shell) = state.shell.as_mut() else {
            return Ok(()); // data before a shell request: ignored
        };
        let mut echo = Vec::new();
        let events = state.editor.feed(data, &mut echo);
        if state.pty && !echo.is_empty() {
            session.data(channel, echo)?;
        }
        let mut exit = false;
        for event in events {
            let reply = match event {
                Event::Line(line) => shell.line(&line),
                Event::Cancel => shell.cancel(),
                Event::Eof => shell.eof(),
            };
            if !reply.output.is_empty() {
                session.data(channel, for_terminal(&reply.output, state.pty))?;
            }
            if reply.exit {
                exit = true;
                break;
            }
        }
        if exit {
            return self.finish(channel, session);
        }
        if state.pty {
            session.data(channel, for_terminal(shell.prompt(), true))?;
        }
        Ok(())
    }
}

impl<F: BackendFactory> russh::server::Handler for Conn<F> {
    type Error = russh::Error;

    async fn auth_password(&mut self, user: &str, password: &str) -> Result<Auth, Self::Error> {
        let ip = self.peer.ip();
        match self.shared.check_login(ip, user, password).await {
            Login::Limited(wait) => {
                tracing::warn!(target: "sshserver", user, from = %ip, retry_secs = wait.as_secs().max(1), "login refused: too many failures");
                Ok(password_only())
            }
            Login::Accepted if !self.shared.gate.promote(&self.slot) => {
                tracing::warn!(target: "sshserver", user, from = %ip, "login refused: {MAX_SESSIONS} sessions are open");
                Ok(password_only())
            }
            Login::Accepted => {
                tracing::info!(target: "sshserver", user, from = %ip, "login");
                self.user = Some(user.to_string());
                Ok(Auth::Accept)
            }
            Login::Rejected { known, failures } => {
                // The user name is the client's: a field, so that it is quoted
                // and escaped in the log line rather than spliced into it.
                tracing::warn!(
                    target: "sshserver",
                    user,
                    from = %ip,
                    reason = if known { "bad-password" } else { "unknown-user" },
                    failures,
                    "login failed"
                );
                Ok(password_only())
            }
        }
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: russh::server::ChannelOpenHandle,
        _session: &mut Session,
    ) -> Result<(), Self::Error> {
        self.channels.insert(
            channel.id(),
            ChanState {
                pty: false,
                editor: LineEditor::new(false),
                shell: None,
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        _term: &str,
        _col_width: u32,
        _row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        if let Some(state) = self.channels.get_mut(&channel) {
            state.pty = true;
            state.editor.set_echo(true);
            session.channel_success(channel)?;
        } else {
            session.channel_failure(channel)?;
        }
        Ok(())
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let user = self.user.clone().unwrap_or_default();
        let Some(state) = self.channels.get_mut(&channel) else {
            session.channel_failure(channel)?;
            return Ok(());
        };
        let shell = Shell::new(self.shared.factory.backend(), &user);
        session.channel_success(channel)?;
        let mut greeting = shell.banner();
        if state.pty {
            greeting.push_str(shell.prompt());
        }
        session.data(channel, for_terminal(&greeting, state.pty))?;
        state.shell = Some(shell);
        Ok(())
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        let user = self.user.clone().unwrap_or_default();
        let command = String::from_utf8_lossy(data).into_owned();
        tracing::info!(target: "sshserver", user = %user, from = %self.peer.ip(), command = %command, "exec");
        let mut shell = Shell::new(self.shared.factory.backend(), &user);
        let reply = tokio::task::block_in_place(|| shell.line(&command));
        session.channel_success(channel)?;
        let pty = self.channels.get(&channel).is_some_and(|s| s.pty);
        session.data(channel, for_terminal(&reply.output, pty))?;
        let failed =
            reply.output.starts_with("error") || reply.output.starts_with("unknown command");
        self.channels.remove(&channel);
        session.exit_status_request(channel, u32::from(failed))?;
        session.eof(channel)?;
        session.close(channel)?;
        Ok(())
    }

    async fn data(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        tokio::task::block_in_place(|| self.input(channel, data, session))
    }

    async fn channel_eof(
        &mut self,
        channel: ChannelId,
        session: &mut Session,
    ) -> Result<(), Self::Error> {
        // The client closed its input: finish a pending edit, then end.
        let output = match self
            .channels
            .get_mut(&channel)
            .and_then(|s| s.shell.as_mut())
        {
            Some(shell) => shell.eof().output,
            None => return Ok(()),
        };
        let pty = self.channels.get(&channel).is_some_and(|s| s.pty);
        if !output.is_empty() {
            session.data(channel, for_terminal(&output, pty))?;
        }
        self.finish(channel, session)
    }
}

/// Make sure the database exists before serving: an appliance without one
/// cannot authenticate anybody.
pub fn check_database(db: &std::path::Path) -> anyhow::Result<()> {
    Zefs::load(db)
        .map(|_| ())
        .with_context(|| format!("sshserver needs {}", zefs::FILE_NAME))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{runtime::plugins::ApplianceBackend, zefs::UserRecord};

    fn shared(dir: &std::path::Path) -> Arc<Shared<ApplianceBackend>> {
        let db = dir.join(zefs::FILE_NAME);
        let mut z = Zefs::new();
        z.set_user(
            "admin",
            &UserRecord {
                role: "admin".into(),
                password_hash: crate::credentials::hash_password("secret").unwrap(),
            },
        )
        .unwrap();
        z.store(&db).unwrap();
        let backend = ApplianceBackend::new(
            db.clone(),
            String::new(),
            "bootstrap".into(),
            crate::plugins::PLUGINS,
        );
        Shared::new(Accounts::new(db), backend)
    }

    #[test]
    fn parallel_wrong_passwords_from_one_address_get_three_bcrypt_checks() {
        let dir = tempfile::tempdir().unwrap();
        let shared = shared(dir.path());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let ip: IpAddr = "192.0.2.9".parse().unwrap();
        let outcomes: Vec<Login> = rt.block_on(async {
            let tasks: Vec<_> = (0..16)
                .map(|i| {
                    let s = Arc::clone(&shared);
                    let user = if i % 2 == 0 { "admin" } else { "nobody" };
                    tokio::spawn(async move { s.check_login(ip, user, "wrong").await })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        let checked = outcomes
            .iter()
            .filter(|o| matches!(o, Login::Rejected { .. }))
            .count();
        let limited = outcomes
            .iter()
            .filter(|o| matches!(o, Login::Limited(_)))
            .count();
        assert_eq!((checked, limited), (3, 13), "{outcomes:?}");
        // Another address is not held back, and the right password works.
        let other: IpAddr = "192.0.2.10".parse().unwrap();
        assert_eq!(
            rt.block_on(shared.check_login(other, "admin", "secret")),
            Login::Accepted
        );
    }
}
