//! The appliance's daemon plugins: `sshserver` and `dhcpclient`, and the
//! [`ApplianceBackend`] that the operator CLI runs against.
//!
//! ```text
//! sshserver {
//!     listen 0.0.0.0:22;      # repeatable; default 0.0.0.0:22
//! }
//! dhcpclient {
//!     interface eth0;         # repeatable; none = every physical ethernet NIC
//! }
//! ```
//!
//! `sshserver` needs the config database (`PluginEnv::database`): it reads
//! users and the host key there, never from the config text.

use super::{
    bootstrap::LinkKind,
    dhcpclient::{self, Report},
    discover,
    shell::{Backend, InterfaceInfo},
    ssh::{self, Accounts, BackendFactory, Shared},
};
use crate::{
    config::schema::{Block, ConfigError},
    daemon::{Plugin, PluginEnv, PluginKind, Service, Shutdown},
    zefs::{Zefs, keys},
};
use anyhow::Context;
use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::{Arc, Mutex},
    thread,
    time::Duration,
};
use ze_hal::{linux::LinuxOs, os::Os};

/// The `sshserver` plugin.
pub const SSH_KIND: PluginKind = PluginKind {
    name: "sshserver",
    configure: configure_ssh,
};

/// The `dhcpclient` plugin.
pub const DHCP_KIND: PluginKind = PluginKind {
    name: "dhcpclient",
    configure: configure_dhcp,
};

/// The SSH address when none is configured.
pub const DEFAULT_SSH_LISTEN: &str = "0.0.0.0:22";

/// What the operator CLI sees of the running appliance.
#[derive(Debug, Clone)]
pub struct ApplianceBackend {
    database: PathBuf,
    running: Arc<(String, String)>,
    writes: Arc<Mutex<()>>,
    /// The plugin kinds a committed config is checked against.
    kinds: &'static [PluginKind],
}

impl ApplianceBackend {
    /// A backend over `database`, running `config` from `source`; configs
    /// are checked against `kinds` before they are committed.
    pub fn new(
        database: PathBuf,
        config: String,
        source: String,
        kinds: &'static [PluginKind],
    ) -> Self {
        ApplianceBackend {
            database,
            running: Arc::new((config, source)),
            writes: Arc::new(Mutex::new(())),
            kinds,
        }
    }
}

impl Backend for ApplianceBackend {
    fn version(&self) -> String {
        match crate::context::Context::from_env() {
            Ok(ctx) => crate::version::text(&ctx),
            Err(e) => format!("ze {} ({e:#})\n", crate::build::VERSION),
        }
    }

    fn interfaces(&self) -> anyhow::Result<Vec<InterfaceInfo>> {
        discover::interfaces()
    }

    fn running_config(&self) -> anyhow::Result<(String, String)> {
        Ok((self.running.0.clone(), self.running.1.clone()))
    }

    fn validate(&self, text: &str) -> anyhow::Result<()> {
        let env = PluginEnv {
            database: Some(self.database.clone()),
            running: None,
            ..Default::default()
        };
        crate::daemon::Daemon::from_text_with(text, self.kinds, &env)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn commit(&self, text: &str) -> anyhow::Result<()> {
        let _guard = self
            .writes
            .lock()
            .map_err(|_| anyhow::anyhow!("a previous commit failed midway"))?;
        let mut db = Zefs::load(&self.database)?;
        db.insert(keys::ACTIVE_CONFIG, text.as_bytes())?;
        db.store(&self.database)?;
        tracing::info!(target: "ze", bytes = text.len(), "committed a new active configuration");
        Ok(())
    }
}

impl BackendFactory for ApplianceBackend {
    type Backend = ApplianceBackend;
    fn backend(&self) -> ApplianceBackend {
        self.clone()
    }
}

#[derive(Debug)]
struct SshPlugin {
    listen: Vec<SocketAddr>,
    database: PathBuf,
    running: (String, String),
    kinds: &'static [PluginKind],
}

fn configure_ssh(block: &Block<'_>, env: &PluginEnv) -> Result<Box<dyn Plugin>, ConfigError> {
    let mut listen = Vec::new();
    for node in block.all("listen") {
        let key = block.child_key("listen");
        let [addr] = node.args.as_slice() else {
            return Err(ConfigError::new(
                node.pos,
                key,
                "expected one address, e.g. `listen 0.0.0.0:22;`",
            ));
        };
        let addr: SocketAddr = addr.parse().map_err(|_| {
            ConfigError::new(
                node.pos,
                key,
                format!("{addr:?} is not an address:port such as 0.0.0.0:22"),
            )
        })?;
        listen.push(addr);
    }
    if listen.is_empty() {
        listen.push(DEFAULT_SSH_LISTEN.parse().expect("a valid default"));
    }
    let Some(database) = env.database.clone() else {
        return Err(block.error(
            block.pos(),
            "",
            "sshserver needs the config database (users and host key); run it with `ze start`, which finds database.zefs",
        ));
    };
    Ok(Box::new(SshPlugin {
        listen,
        database,
        running: env.running.clone().unwrap_or_default(),
        kinds: env.kinds,
    }))
}

impl Plugin for SshPlugin {
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
        let accounts = Accounts::new(self.database.clone());
        let key = accounts.host_key().context("sshserver: host key")?;
        let mut listeners = Vec::new();
        for addr in &self.listen {
            let l = TcpListener::bind(addr)
                .with_context(|| format!("sshserver: cannot listen on {addr}"))?;
            l.set_nonblocking(true)?;
            listeners.push(l);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sshserver")
            .enable_all()
            .build()
            .context("sshserver: cannot start its runtime")?;
        tracing::info!(
            target: "sshserver",
            listen = self.listen.iter().map(ToString::to_string).collect::<Vec<_>>().join(","),
            fingerprint = %key.public_key().fingerprint(Default::default()),
            "listening"
        );
        let backend = ApplianceBackend::new(
            self.database.clone(),
            self.running.0,
            self.running.1,
            self.kinds,
        );
        Ok(Box::new(SshService {
            runtime,
            listeners,
            config: Arc::new(ssh::server_config(key)),
            shared: Shared::new(accounts, backend),
        }))
    }
}

struct SshService {
    runtime: tokio::runtime::Runtime,
    listeners: Vec<TcpListener>,
    config: Arc<russh::server::Config>,
    shared: Arc<Shared<ApplianceBackend>>,
}

impl Service for SshService {
    fn run(self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()> {
        let SshService {
            runtime,
            listeners,
            config,
            shared,
        } = *self;
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::new();
        for l in listeners {
            let listener = {
                let _enter = runtime.enter();
                tokio::net::TcpListener::from_std(l)?
            };
            tasks.push(runtime.spawn(ssh::serve(
                listener,
                Arc::clone(&config),
                Arc::clone(&shared),
                stopped.clone(),
            )));
        }
        while !shutdown.sleep(Duration::from_secs(3600)) {}
        let _ = stop.send(true);
        // Sessions in progress get the drain time, then the runtime ends them.
        let left = shutdown
            .deadline()
            .map(|d| d.saturating_duration_since(std::time::Instant::now()))
            .unwrap_or(Duration::ZERO);
        runtime.shutdown_timeout(left);
        Ok(())
    }
}

#[derive(Debug)]
struct DhcpPlugin {
    interfaces: Vec<(String, ze_hal::os::LinkInfo)>,
    every_ethernet: bool,
}

fn configure_dhcp(block: &Block<'_>, _env: &PluginEnv) -> Result<Box<dyn Plugin>, ConfigError> {
    let mut names = Vec::new();
    for node in block.all("interface") {
        let key = block.child_key("interface");
        let [name] = node.args.as_slice() else {
            return Err(ConfigError::new(
                node.pos,
                key,
                "expected one interface name, e.g. `interface eth0;`",
            ));
        };
        if name.is_empty() || name.len() > ze_hal::os::MAX_IFNAME || name.contains('/') {
            return Err(ConfigError::new(
                node.pos,
                key,
                format!("{name:?} is not an interface name"),
            ));
        }
        names.push(name.clone());
    }
    Ok(Box::new(DhcpPlugin {
        every_ethernet: names.is_empty(),
        interfaces: names.into_iter().map(|n| (n, empty_link())).collect(),
    }))
}

fn empty_link() -> ze_hal::os::LinkInfo {
    ze_hal::os::LinkInfo {
        index: 0,
        name: heapless::String::new(),
        mac: [0; 6],
        up: false,
        carrier: false,
        loopback: false,
        kind: 0,
        link_kind: heapless::String::new(),
    }
}

impl Plugin for DhcpPlugin {
    fn start(self: Box<Self>) -> anyhow::Result<Box<dyn Service>> {
        let mut os = LinuxOs::new();
        let mut all = Vec::new();
        os.links(&mut |l| all.push(l.clone()))
            .map_err(|e| anyhow::anyhow!("dhcpclient: cannot list interfaces: {e}"))?;
        let chosen: Vec<ze_hal::os::LinkInfo> = if self.every_ethernet {
            all.iter()
                .filter(|l| discover::as_link(l).kind == LinkKind::Ethernet)
                .cloned()
                .collect()
        } else {
            self.interfaces
                .iter()
                .map(|(name, _)| {
                    all.iter()
                        .find(|l| l.name.as_str() == name)
                        .cloned()
                        .with_context(|| {
                            format!(
                                "dhcpclient: no interface named {name} (have: {})",
                                all.iter()
                                    .map(|l| l.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                })
                .collect::<anyhow::Result<_>>()?
        };
        if chosen.is_empty() {
            anyhow::bail!("dhcpclient: no ethernet interface to run on");
        }
        Ok(Box::new(DhcpService { links: chosen }))
    }
}

struct DhcpService {
    links: Vec<ze_hal::os::LinkInfo>,
}

fn log_report(name: &str, report: Report) {
    match report {
        Report::Bound(l) => tracing::info!(
            target: "dhcpclient",
            interface = name,
            ip = %format!("{}/{}", l.addr, l.prefix),
            router = %l.router.map(|r| r.to_string()).unwrap_or_else(|| "-".into()),
            server = %l.server,
            lease_secs = l.duration.as_secs(),
            "lease"
        ),
        Report::Renewed(l) => {
            tracing::debug!(target: "dhcpclient", interface = name, ip = %l.addr, "renewed")
        }
        Report::Lost => {
            tracing::warn!(target: "dhcpclient", interface = name, "lease lost; address removed")
        }
        Report::ApplyFailed(why) => {
            tracing::error!(target: "dhcpclient", interface = name, "{why}")
        }
    }
}

impl Service for DhcpService {
    fn run(self: Box<Self>, shutdown: &Shutdown) -> anyhow::Result<()> {
        let mut threads = Vec::new();
        for link in self.links {
            let stop = shutdown.clone();
            let name = link.name.as_str().to_string();
            threads.push(
                thread::Builder::new()
                    .name(format!("dhcp-{name}"))
                    .spawn(move || {
                        tracing::info!(target: "dhcpclient", interface = %name, "started");
                        let mut os = LinuxOs::new();
                        let result = dhcpclient::run(&mut os, &link, &|| stop.is_triggered(), &mut |r| log_report(&name, r));
                        if let Err(e) = result {
                            tracing::error!(target: "dhcpclient", interface = %name, "stopped: {e:?}");
                        }
                    })
                    .context("dhcpclient: cannot start a thread")?,
            );
        }
        for t in threads {
            let _ = t.join();
        }
        Ok(())
    }
}
