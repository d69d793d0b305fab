//! The daemon's log: one line per event, `<plugin>: <message> key=value…`,
//! e.g. `dhcpserver: lease request=DISCOVER reply=OFFER mac=… ip=… bootfile=…`.
//!
//! Each plugin logs with its name as the `tracing` target. Levels come from
//! (most specific first) the environment — `ze.log.<plugin>` or
//! `ZE_LOG_<PLUGIN>`, then `ze.log` or `ZE_LOG` — and then the config's
//! `daemon { log <level>; log <plugin> <level>; }`, and default to info.
//! Values that came from the network are quoted and escaped, so a file
//! name cannot forge a log line, nor hide or reorder its text with
//! invisible characters (Unicode format controls such as U+202E, and the
//! line and paragraph separators U+2028/U+2029, are escaped like control
//! characters).
//!
//! Under a flood the log stays bounded ([`super::summary`]): repeated
//! events from one source are summarised, and each plugin logs at a
//! bounded rate; the lines that are written are whole and unchanged.

use super::summary::Summariser;
use std::{
    collections::BTreeMap,
    fmt::{self, Write as _},
    io::Write,
    str::FromStr,
    sync::{Arc, Mutex, OnceLock, RwLock},
    time::{Duration, Instant},
};
use tracing::{Event, Level, Metadata, Subscriber, field::Field};
use tracing_subscriber::{layer::Context, prelude::*};

/// The environment variable for the overall level (spec: `ze.log`).
pub const ENV_DOTTED: &str = "ze.log";
/// The shell-friendly spelling of [`ENV_DOTTED`].
pub const ENV_UPPER: &str = "ZE_LOG";

/// How much to log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    Off,
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    fn allows(self, level: &Level) -> bool {
        let need = match *level {
            Level::ERROR => LogLevel::Error,
            Level::WARN => LogLevel::Warn,
            Level::INFO => LogLevel::Info,
            Level::DEBUG => LogLevel::Debug,
            Level::TRACE => LogLevel::Trace,
        };
        self >= need
    }

    /// The names accepted in configs and the environment.
    pub const NAMES: &'static str = "off, error, warn, info, debug or trace";
}

impl FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "off" | "none" => LogLevel::Off,
            "error" => LogLevel::Error,
            "warn" | "warning" => LogLevel::Warn,
            "info" => LogLevel::Info,
            "debug" => LogLevel::Debug,
            "trace" => LogLevel::Trace,
            _ => return Err(format!("{s:?} is not a log level ({})", LogLevel::NAMES)),
        })
    }
}

/// The level for each target, and the default for the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLevels {
    /// Level for targets without their own.
    pub default: LogLevel,
    /// Level per target (plugin name).
    pub targets: BTreeMap<String, LogLevel>,
}

impl Default for LogLevels {
    fn default() -> Self {
        LogLevels {
            default: LogLevel::Info,
            targets: BTreeMap::new(),
        }
    }
}

impl LogLevels {
    /// Whether an event at `level` for `target` is logged.
    pub fn enabled(&self, target: &str, level: &Level) -> bool {
        let head = target.split("::").next().unwrap_or(target);
        self.targets
            .get(head)
            .copied()
            .unwrap_or(self.default)
            .allows(level)
    }

    /// Apply the environment over these (config) levels: a global
    /// variable replaces every config level, a per-plugin variable
    /// replaces that plugin's. `targets` lists the plugin names to look up.
    pub fn with_env(
        mut self,
        get: impl Fn(&str) -> Option<String>,
        targets: &[&str],
    ) -> Result<LogLevels, String> {
        let parse = |var: &str, v: String| {
            v.trim()
                .parse::<LogLevel>()
                .map_err(|e| format!("environment variable {var}: {e}"))
        };
        for var in [ENV_DOTTED, ENV_UPPER] {
            if let Some(v) = get(var).filter(|v| !v.trim().is_empty()) {
                self.default = parse(var, v)?;
                self.targets.clear();
                break;
            }
        }
        for t in targets {
            let dotted = format!("{ENV_DOTTED}.{t}");
            let upper = format!("{ENV_UPPER}_{}", t.to_ascii_uppercase().replace('-', "_"));
            for var in [dotted, upper] {
                if let Some(v) = get(&var).filter(|v| !v.trim().is_empty()) {
                    self.targets.insert((*t).to_string(), parse(&var, v)?);
                    break;
                }
            }
        }
        Ok(self)
    }
}

/// Where log lines go (standard error unless a test captures them).
type Sink = Box<dyn Write + Send>;

/// A `tracing` layer that writes one line per event.
pub struct LineLayer {
    levels: Arc<RwLock<LogLevels>>,
    out: Arc<Output>,
}

/// Where lines go, through the summariser.
struct Output {
    summary: Mutex<Summariser>,
    sink: Mutex<Sink>,
    /// A block kept under the log on a terminal (the fleet's table).
    footer: Mutex<Footer>,
}

/// Renders the footer's text (whole lines, each ending in `\n`).
pub type FooterFn = Box<dyn Fn() -> String + Send>;

#[derive(Default)]
struct Footer {
    render: Option<FooterFn>,
    /// Lines of the footer on the screen now.
    drawn: usize,
}

impl Footer {
    /// Take the footer off the screen: up to its first line, erase below.
    fn erase(&mut self, out: &mut Vec<u8>) {
        if self.drawn > 0 {
            out.extend_from_slice(format!("\r\x1b[{}F\x1b[J", self.drawn).as_bytes());
            self.drawn = 0;
        }
    }

    /// Draw it again, freshly rendered.
    fn draw(&mut self, out: &mut Vec<u8>) {
        if let Some(render) = &self.render {
            let text = render();
            self.drawn = text.matches('\n').count();
            out.extend_from_slice(text.as_bytes());
        }
    }
}

impl Output {
    fn new(sink: Sink) -> Arc<Output> {
        Arc::new(Output {
            summary: Mutex::new(Summariser::new()),
            sink: Mutex::new(sink),
            footer: Mutex::new(Footer::default()),
        })
    }

    /// Redraw the footer in place.
    fn redraw(&self) {
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let mut footer = self.footer.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        footer.erase(&mut out);
        footer.draw(&mut out);
        let _ = sink.write_all(&out);
        let _ = sink.flush();
    }

    /// Write `line` of `target` from `source`, unless the summariser holds
    /// it back; summaries that are due go first.
    fn write(&self, target: &str, source: Option<&str>, line: &str) {
        let mut pending = Vec::new();
        let admit = self
            .summary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .admit(Instant::now(), target, source, &mut pending);
        self.emit(&pending, admit.then_some(line));
    }

    /// Write the summaries of windows that ended.
    fn flush_summaries(&self) {
        let mut pending = Vec::new();
        self.summary
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .flush(Instant::now(), &mut pending);
        self.emit(&pending, None);
    }

    fn emit(&self, summaries: &[String], line: Option<&str>) {
        if summaries.is_empty() && line.is_none() {
            return;
        }
        let mut sink = self.sink.lock().unwrap_or_else(|e| e.into_inner());
        let mut footer = self.footer.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        footer.erase(&mut out);
        for s in summaries.iter().map(String::as_str).chain(line) {
            out.extend_from_slice(s.as_bytes());
        }
        footer.draw(&mut out);
        let _ = sink.write_all(&out);
        let _ = sink.flush();
    }
}

static OUTPUT: OnceLock<Arc<Output>> = OnceLock::new();

/// Keep `render`'s text under the log lines: erased before each line
/// and drawn again after it (for a terminal: the caller checks that
/// standard error is one). `None` stops drawing it and leaves the last
/// one on the screen.
pub fn set_footer(render: Option<FooterFn>) {
    if let Some(out) = OUTPUT.get() {
        let mut footer = out.footer.lock().unwrap_or_else(|e| e.into_inner());
        if render.is_none() {
            footer.drawn = 0;
        }
        footer.render = render;
    }
}

/// Draw the footer again now (its figures changed).
pub fn redraw_footer() {
    if let Some(out) = OUTPUT.get() {
        out.redraw();
    }
}

impl fmt::Debug for LineLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LineLayer").finish_non_exhaustive()
    }
}

/// Changes the levels of the installed logger (e.g. after a config reload).
#[derive(Debug, Clone)]
pub struct LogHandle {
    levels: Arc<RwLock<LogLevels>>,
}

impl LogHandle {
    /// Replace the levels.
    pub fn set(&self, levels: LogLevels) {
        *self.levels.write().unwrap_or_else(|e| e.into_inner()) = levels;
    }
}

static HANDLE: OnceLock<LogHandle> = OnceLock::new();

/// Install the line logger on standard error with `levels`, once per
/// process; later calls only change the levels.
pub fn install(levels: LogLevels) -> LogHandle {
    let handle = HANDLE.get_or_init(|| {
        let levels = Arc::new(RwLock::new(LogLevels::default()));
        let out = Output::new(Box::new(std::io::stderr()));
        let _ = OUTPUT.set(out.clone());
        // Summaries are written when a window ends even if the flood does
        // not come back.
        let flusher = out.clone();
        let _ = std::thread::Builder::new()
            .name("log-summary".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(1));
                    flusher.flush_summaries();
                }
            });
        let layer = LineLayer {
            levels: levels.clone(),
            out,
        };
        let _ = tracing_subscriber::registry().with(layer).try_init();
        LogHandle { levels }
    });
    handle.set(levels);
    handle.clone()
}

impl<S: Subscriber> tracing_subscriber::Layer<S> for LineLayer {
    fn register_callsite(&self, _: &'static Metadata<'static>) -> tracing::subscriber::Interest {
        // Levels can change at run time, so ask `enabled` every time.
        tracing::subscriber::Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>, _: Context<'_, S>) -> bool {
        self.levels
            .read()
            .map(|l| l.enabled(meta.target(), meta.level()))
            .unwrap_or(true)
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let (line, source) = format_event(event);
        let target = event.metadata().target().split("::").next().unwrap_or("ze");
        self.out.write(target, source.as_deref(), &line);
    }
}

/// The fields that name where an event came from (or whom a reply was
/// for), first found wins.
const SOURCE_FIELDS: [&str; 4] = ["client", "from", "mac", "to"];

/// The text of one event, newline included, and its source.
fn format_event(event: &Event<'_>) -> (String, Option<String>) {
    let meta = event.metadata();
    let target = meta.target().split("::").next().unwrap_or("ze");
    let mut v = LineVisitor::default();
    event.record(&mut v);
    let mut line = String::with_capacity(64 + v.fields.len());
    line.push_str(target);
    line.push_str(": ");
    match *meta.level() {
        Level::ERROR => line.push_str("error: "),
        Level::WARN => line.push_str("warning: "),
        Level::DEBUG => line.push_str("debug: "),
        Level::TRACE => line.push_str("trace: "),
        Level::INFO => {}
    }
    escape_into(&mut line, &v.message, false);
    line.push_str(&v.fields);
    line.push('\n');
    (line, v.source)
}

#[derive(Default)]
struct LineVisitor {
    message: String,
    fields: String,
    source: Option<String>,
}

impl LineVisitor {
    fn field(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
            return;
        }
        if self.source.is_none() && SOURCE_FIELDS.contains(&field.name()) {
            // A client's port changes with each request: the address counts.
            let source = value
                .parse::<std::net::SocketAddr>()
                .map_or_else(|_| value.to_string(), |a| a.ip().to_string());
            self.source = Some(source);
        }
        self.fields.push(' ');
        self.fields.push_str(field.name());
        self.fields.push('=');
        write_value(&mut self.fields, value);
    }
}

impl tracing::field::Visit for LineVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.field(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        let text = format!("{value:?}");
        self.field(field, &text);
    }
}

/// Write a field value: bare when it is safe to read back, else quoted
/// with escapes.
pub fn write_value(out: &mut String, value: &str) {
    let bare = !value.is_empty()
        && value.chars().all(|c| {
            !c.is_whitespace() && !c.is_control() && !is_invisible(c) && c != '"' && c != '\\'
        });
    if bare {
        out.push_str(value);
    } else {
        out.push('"');
        escape_into(out, value, true);
        out.push('"');
    }
}

fn escape_into(out: &mut String, text: &str, quoted: bool) {
    for c in text.chars() {
        match c {
            '"' if quoted => out.push_str("\\\""),
            '\\' if quoted => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || is_invisible(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Unicode general categories Cf (format: bidi overrides and isolates,
/// zero-width characters, soft hyphen, …), Zl and Zp (U+2028, U+2029), as
/// of Unicode 15.1: characters that change how a line reads without being
/// seen. Written out rather than taken from a crate: 21 ranges that change
/// rarely, checked against Python's `unicodedata` when written.
const INVISIBLE: &[(u32, u32)] = &[
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
];

/// Whether `c` is in [`INVISIBLE`].
fn is_invisible(c: char) -> bool {
    let c = c as u32;
    INVISIBLE
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn f6_a_footer_stays_under_the_log_lines() {
        let cap = Capture::default();
        let out = Output::new(Box::new(cap.clone()));
        out.emit(&[], Some("first\n"));
        out.footer.lock().unwrap().render = Some(Box::new(|| "table 1\ntable 2\n".into()));
        out.redraw();
        out.emit(&[], Some("second\n"));
        let text = String::from_utf8(cap.0.lock().unwrap().clone()).unwrap();
        // Drawn, then taken off (up two lines, erase) before the next line
        // and drawn again under it.
        assert_eq!(
            text,
            "first\ntable 1\ntable 2\n\r\x1b[2F\x1b[Jsecond\ntable 1\ntable 2\n"
        );
    }

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn capture(levels: LogLevels, f: impl FnOnce()) -> String {
        let cap = Capture::default();
        let layer = LineLayer {
            levels: Arc::new(RwLock::new(levels)),
            out: Output::new(Box::new(cap.clone())),
        };
        let sub = tracing_subscriber::registry().with(layer);
        tracing::subscriber::with_default(sub, f);
        String::from_utf8(cap.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn r15_lines_read_as_the_spec_words_them() {
        let out = capture(LogLevels::default(), || {
            tracing::info!(
                target: "dhcpserver",
                request = "DISCOVER",
                reply = "OFFER",
                mac = "52:54:00:12:34:56",
                ip = %std::net::Ipv4Addr::new(192, 0, 2, 2),
                bootfile = "ipxe.efi",
                "lease"
            );
            tracing::info!(target: "tftpserver", file = "a b\n\"x\"", client = "192.0.2.2:1024", "read request");
            tracing::warn!(target: "imageserver", "slow");
            tracing::debug!(target: "imageserver", "hidden");
        });
        assert_eq!(
            out,
            "dhcpserver: lease request=DISCOVER reply=OFFER mac=52:54:00:12:34:56 ip=192.0.2.2 bootfile=ipxe.efi\n\
             tftpserver: read request file=\"a b\\n\\\"x\\\"\" client=192.0.2.2:1024\n\
             imageserver: warning: slow\n"
        );
    }

    #[test]
    fn r15_invisible_characters_are_escaped_like_control_characters() {
        let out = capture(LogLevels::default(), || {
            tracing::info!(target: "tftpserver", file = "gpj.\u{202e}exe", client = "192.0.2.2:1024", "read request");
            tracing::info!(target: "tftpserver", file = "a\u{2028}tftpserver: forged\u{2029}\u{200b}", client = "192.0.2.2:1025", "read request");
            tracing::info!(target: "tftpserver", file = "caf\u{e9}", client = "192.0.2.2:1026", "read request");
        });
        assert_eq!(
            out,
            "tftpserver: read request file=\"gpj.\\u{202e}exe\" client=192.0.2.2:1024\n\
             tftpserver: read request file=\"a\\u{2028}tftpserver: forged\\u{2029}\\u{200b}\" client=192.0.2.2:1025\n\
             tftpserver: read request file=caf\u{e9} client=192.0.2.2:1026\n"
        );
        for c in [
            '\u{ad}',
            '\u{61c}',
            '\u{2066}',
            '\u{feff}',
            '\u{1343f}',
            '\u{e0001}',
            '\u{e007f}',
        ] {
            assert!(is_invisible(c), "{:x}", c as u32);
        }
        for c in [
            'a',
            'é',
            '\u{2027}',
            '\u{2030}',
            '\u{13440}',
            '\u{e0080}',
            '\u{1f600}',
        ] {
            assert!(!is_invisible(c), "{:x}", c as u32);
        }
        assert!(INVISIBLE.windows(2).all(|w| w[0].1 < w[1].0));
    }

    #[test]
    fn r15_one_source_flooding_is_held_back_and_the_lines_written_are_whole() {
        let out = capture(LogLevels::default(), || {
            for port in 0..100 {
                tracing::info!(target: "tftpserver", file = "ipxe.efi", client = %format!("192.0.2.9:{}", 1000 + port), "read request");
            }
            tracing::info!(target: "tftpserver", file = "ipxe.efi", client = "192.0.2.10:1000", "read request");
            tracing::info!(target: "tftpserver", "listening");
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.len(),
            super::super::summary::PER_SOURCE as usize + 2,
            "{out}"
        );
        assert_eq!(
            lines[0],
            "tftpserver: read request file=ipxe.efi client=192.0.2.9:1000"
        );
        assert!(lines.iter().all(|l| {
            l.starts_with("tftpserver: read request file=ipxe.efi client=192.0.2.")
                || *l == "tftpserver: listening"
        }));
        assert!(out.contains("client=192.0.2.10:1000"));
    }

    #[test]
    fn r16_levels_per_plugin_and_from_the_environment() {
        let mut levels = LogLevels::default();
        levels.targets.insert("tftpserver".into(), LogLevel::Debug);
        let out = capture(levels.clone(), || {
            tracing::debug!(target: "tftpserver", "shown");
            tracing::debug!(target: "dhcpserver", "hidden");
        });
        assert_eq!(out, "tftpserver: debug: shown\n");

        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let names = ["dhcpserver", "tftpserver"];
        let l = levels
            .clone()
            .with_env(env(&[("ze.log", "warn")]), &names)
            .unwrap();
        assert_eq!(l.default, LogLevel::Warn);
        assert!(
            l.targets.is_empty(),
            "a global variable overrides config levels"
        );
        let l = levels
            .clone()
            .with_env(
                env(&[("ZE_LOG", "error"), ("ze.log.dhcpserver", "trace")]),
                &names,
            )
            .unwrap();
        assert_eq!(l.default, LogLevel::Error);
        assert_eq!(l.targets["dhcpserver"], LogLevel::Trace);
        let l = levels
            .clone()
            .with_env(env(&[("ZE_LOG_DHCPSERVER", "off")]), &names)
            .unwrap();
        assert_eq!(l.targets["dhcpserver"], LogLevel::Off);
        assert_eq!(l.targets["tftpserver"], LogLevel::Debug);
        let e = levels
            .with_env(env(&[("ze.log", "loud")]), &names)
            .unwrap_err();
        assert_eq!(
            e,
            "environment variable ze.log: \"loud\" is not a log level (off, error, warn, info, debug or trace)"
        );
    }
}
