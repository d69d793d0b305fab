//! Boot the installer kernel + initrd in QEMU (TCG) with blank disks and a
//! user-mode network, capture the serial console, type on it, and wait for
//! the machine to reboot or power off (`-no-reboot` makes QEMU exit).

use anyhow::{Context, bail, ensure};
use std::{
    io::{Read, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// The machine to boot.
#[derive(Debug, Clone)]
pub struct Vm {
    /// `amd64` or `arm64`.
    pub arch: String,
    /// The installer kernel.
    pub kernel: PathBuf,
    /// The initrd.
    pub initrd: PathBuf,
    /// The kernel command line.
    pub append: String,
    /// Raw disk images and their controllers, in order.
    pub disks: Vec<Drive>,
    /// The NIC model (`virtio-net-pci`, `e1000`).
    pub nic: String,
    /// The NIC's tap device (with QEMU run inside its namespace), instead
    /// of QEMU's user-mode network.
    pub tap: Option<String>,
    /// A QEMU monitor on this unix socket (to read the VGA text screen).
    pub monitor: Option<PathBuf>,
    /// Print the serial console live on stderr.
    pub echo: bool,
    /// Memory in MiB.
    pub memory_mib: u32,
}

/// How a disk is attached to a machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    /// virtio-blk-pci (`vda`, `vdb`, …).
    Virtio,
    /// An NVMe controller of its own (`nvme0n1`, …).
    Nvme,
    /// A port of the machine's one AHCI controller (`ide-hd`: `sda`, …).
    Sata,
    /// A removable USB mass-storage device (`usb-storage`) on the
    /// machine's one xHCI controller (`qemu-xhci`).
    Usb,
}

/// A raw disk image and how it is attached.
#[derive(Debug, Clone)]
pub struct Drive {
    /// The image.
    pub path: PathBuf,
    /// The controller.
    pub bus: Bus,
    /// The serial number the device reports, if any.
    pub serial: Option<String>,
}

impl Drive {
    /// A virtio disk without a serial.
    pub fn virtio(path: impl Into<PathBuf>) -> Drive {
        Drive {
            path: path.into(),
            bus: Bus::Virtio,
            serial: None,
        }
    }

    /// A disk on `bus` reporting `serial`.
    pub fn new(path: impl Into<PathBuf>, bus: Bus, serial: &str) -> Drive {
        Drive {
            path: path.into(),
            bus,
            serial: Some(serial.into()),
        }
    }
}

/// Add `drives` to `c` (`-drive` and `-device` each, ids `d0`, `d1`, …),
/// with the one AHCI and the one xHCI controller they need.
pub fn attach(c: &mut Command, drives: &[Drive]) {
    if drives.iter().any(|d| d.bus == Bus::Sata) {
        c.args(["-device", "ahci,id=ahci0"]);
    }
    if drives.iter().any(|d| d.bus == Bus::Usb) {
        c.args(["-device", "qemu-xhci,id=xhci0"]);
    }
    let mut port = 0;
    for (i, d) in drives.iter().enumerate() {
        c.arg("-drive").arg(format!(
            "file={},format=raw,if=none,id=d{i}",
            d.path.display()
        ));
        let mut dev = match d.bus {
            Bus::Virtio => format!("virtio-blk-pci,drive=d{i}"),
            Bus::Nvme => format!("nvme,drive=d{i}"),
            Bus::Sata => {
                port += 1;
                format!("ide-hd,bus=ahci0.{},drive=d{i}", port - 1)
            }
            Bus::Usb => format!("usb-storage,bus=xhci0.0,drive=d{i},removable=on"),
        };
        match (&d.serial, d.bus) {
            (Some(s), _) => dev.push_str(&format!(",serial={s}")),
            // NVMe needs a serial; give the one QEMU's docs use.
            (None, Bus::Nvme) => dev.push_str(&format!(",serial=ze{i}")),
            (None, _) => {}
        }
        c.arg("-device").arg(dev);
    }
}

impl Vm {
    /// The QEMU command line.
    pub fn command(&self) -> Command {
        let (program, machine): (&str, &[&str]) = match self.arch.as_str() {
            "arm64" => ("qemu-system-aarch64", &["-M", "virt", "-cpu", "cortex-a57"]),
            _ => ("qemu-system-x86_64", &[]),
        };
        let mut c = Command::new(program);
        c.args(machine)
            .args(["-accel", "tcg", "-smp", "1", "-m"])
            .arg(self.memory_mib.to_string())
            .args(["-display", "none", "-no-reboot", "-serial", "stdio"]);
        match &self.monitor {
            Some(p) => c
                .arg("-monitor")
                .arg(format!("unix:{},server=on,wait=off", p.display())),
            None => c.args(["-monitor", "none"]),
        };
        c.arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(&self.initrd)
            .arg("-append")
            .arg(&self.append)
            .arg("-netdev")
            .arg(match &self.tap {
                Some(t) => format!("tap,id=n0,ifname={t},script=no,downscript=no"),
                None => "user,id=n0".into(),
            })
            .arg("-device")
            .arg(format!("{},netdev=n0", self.nic));
        attach(&mut c, &self.disks);
        c
    }

    /// Start the machine.
    pub fn start(&self) -> anyhow::Result<Session> {
        spawn(self.command(), self.echo, self.monitor.clone())
    }
}

/// Start QEMU as `cmd` (which must put the serial console on stdio) and
/// capture its console; `monitor` is its monitor socket, if any.
pub fn spawn(mut cmd: Command, echo: bool, monitor: Option<PathBuf>) -> anyhow::Result<Session> {
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().with_context(|| {
        format!(
            "cannot start {:?} (make deps installs QEMU)",
            cmd.get_program()
        )
    })?;
    let serial = Arc::new(Mutex::new(String::new()));
    let arrivals: Arc<Mutex<Vec<(Duration, usize)>>> = Arc::default();
    let mut out = child.stdout.take().context("no stdout")?;
    let s = serial.clone();
    let a = arrivals.clone();
    let start = Instant::now();
    let reader = thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 {
                break;
            }
            let text = String::from_utf8_lossy(&buf[..n]).replace('\r', "");
            if echo {
                eprint!("{text}");
            }
            let mut all = s.lock().unwrap_or_else(|e| e.into_inner());
            all.push_str(&text);
            a.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((start.elapsed(), all.len()));
        }
    });
    let mut err = child.stderr.take().context("no stderr")?;
    let errors = Arc::new(Mutex::new(String::new()));
    let e = errors.clone();
    thread::spawn(move || {
        let mut text = String::new();
        let _ = err.read_to_string(&mut text);
        e.lock().unwrap_or_else(|x| x.into_inner()).push_str(&text);
    });
    let stdin = child.stdin.take();
    Ok(Session {
        monitor,
        child,
        stdin,
        serial,
        arrivals,
        errors,
        reader: Some(reader),
        start,
    })
}

/// A running machine.
#[derive(Debug)]
pub struct Session {
    monitor: Option<PathBuf>,
    child: Child,
    stdin: Option<ChildStdin>,
    serial: Arc<Mutex<String>>,
    arrivals: Arc<Mutex<Vec<(Duration, usize)>>>,
    errors: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
    start: Instant,
}

/// How a machine ended.
#[derive(Debug)]
pub struct Ended {
    /// Everything printed on the serial console (CR removed).
    pub serial: String,
    /// QEMU's exit status (`None` when it was killed at the timeout).
    pub status: Option<ExitStatus>,
    /// QEMU's own error output.
    pub errors: String,
    /// From start to exit.
    pub elapsed: Duration,
}

impl Session {
    /// The serial output so far.
    pub fn serial(&self) -> String {
        self.serial
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// When (since start) the serial output first reached byte `offset`.
    pub fn arrival(&self, offset: usize) -> Option<Duration> {
        self.arrivals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|(_, len)| *len >= offset)
            .map(|(t, _)| *t)
    }

    /// Time since start.
    pub fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }

    /// Wait until the serial output after byte `from` contains `pattern`;
    /// returns the byte offset just past it.
    pub fn wait_for(
        &mut self,
        pattern: &str,
        from: usize,
        timeout: Duration,
    ) -> anyhow::Result<usize> {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.serial();
            if let Some(at) = text.get(from..).and_then(|t| t.find(pattern)) {
                return Ok(from + at + pattern.len());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!("QEMU exited ({status}) before the console showed {pattern:?}");
            }
            if Instant::now() >= deadline {
                bail!(
                    "the console did not show {pattern:?} within {} s",
                    timeout.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The VGA text memory (32 KiB at 0xb8000, 80 columns; Linux's vgacon
    /// scrolls by moving the visible window through it), read through the
    /// monitor: the recent console lines, oldest first in memory order.
    pub fn vga_text(&self) -> anyhow::Result<String> {
        use std::os::unix::net::UnixStream;
        let path = self.monitor.as_ref().context("no monitor socket")?;
        let mut m = UnixStream::connect(path)
            .with_context(|| format!("connect to the QEMU monitor {}", path.display()))?;
        m.set_read_timeout(Some(Duration::from_secs(10)))?;
        m.write_all(b"xp /16384hx 0xb8000\n")?;
        let mut out = String::new();
        let mut buf = [0u8; 8192];
        // 16384 halfwords are 2048 rows of 8; the prompt follows the last.
        while !out.contains("00000000000bfff0:") || !out.trim_end().ends_with("(qemu)") {
            let n = m.read(&mut buf)?;
            if n == 0 {
                break;
            }
            out.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        if std::env::var_os("ZE_QEMU_DEBUG_MONITOR").is_some() {
            eprintln!("monitor: {out:?}");
        }
        Ok(vga_from_monitor(&out))
    }

    /// Save the display as a PPM file (the monitor's `screendump`); waits
    /// until QEMU has written it.
    pub fn screendump(&self, out: &std::path::Path) -> anyhow::Result<()> {
        use std::os::unix::net::UnixStream;
        let path = self.monitor.as_ref().context("no monitor socket")?;
        let mut m = UnixStream::connect(path)
            .with_context(|| format!("connect to the QEMU monitor {}", path.display()))?;
        m.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _ = std::fs::remove_file(out);
        m.write_all(format!("screendump {}\n", out.display()).as_bytes())?;
        let mut seen = String::new();
        let mut buf = [0u8; 1024];
        // The banner's prompt, then the command's: two prompts.
        while seen.matches("(qemu)").count() < 2 {
            let n = m.read(&mut buf)?;
            if n == 0 {
                break;
            }
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        ensure!(
            out.is_file(),
            "screendump wrote no {}: {seen:?}",
            out.display()
        );
        Ok(())
    }

    /// Type `bytes` on the serial console.
    pub fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        let stdin = self.stdin.as_mut().context("stdin closed")?;
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    /// Wait for QEMU to exit, killing it after `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Ended {
        let deadline = Instant::now() + timeout;
        let status = loop {
            match self.child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break None;
                }
            }
        };
        let elapsed = self.start.elapsed();
        drop(self.stdin.take());
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        thread::sleep(Duration::from_millis(20));
        Ended {
            serial: self.serial(),
            status,
            errors: self
                .errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            elapsed,
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Decode the monitor's `xp /Nhx 0xb8000` dump: each halfword is a
/// character (low byte) and its attribute; 80 per row.
pub fn vga_from_monitor(dump: &str) -> String {
    let mut chars = Vec::new();
    for line in dump.lines() {
        let line = line.trim_end_matches('\r');
        let Some((addr, rest)) = line.split_once(':') else {
            continue;
        };
        if !addr.trim().starts_with("00000000000b") {
            continue;
        }
        for word in rest.split_whitespace() {
            if let Some(hex) = word.strip_prefix("0x")
                && let Ok(v) = u16::from_str_radix(hex, 16)
            {
                let c = (v & 0xff) as u8;
                chars.push(if c.is_ascii_graphic() || c == b' ' {
                    c as char
                } else {
                    ' '
                });
            }
        }
    }
    chars
        .chunks(80)
        .map(|row| row.iter().collect::<String>().trim_end().to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_attaches_disks_and_network() {
        let vm = Vm {
            arch: "amd64".into(),
            kernel: "/k".into(),
            initrd: "/i".into(),
            append: "console=ttyS0 ze.server=10.0.2.2".into(),
            disks: vec![Drive::virtio("/a.img"), Drive::virtio("/b.img")],
            nic: "e1000".into(),
            tap: None,
            monitor: Some("/m.sock".into()),
            echo: false,
            memory_mib: 512,
        };
        let c = vm.command();
        let args: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = args.join(" ");
        assert_eq!(c.get_program(), "qemu-system-x86_64");
        assert!(line.contains("-accel tcg"), "{line}");
        assert!(line.contains("-no-reboot"));
        assert!(line.contains("-serial stdio -monitor unix:/m.sock,server=on,wait=off"));
        assert!(line.contains("-device e1000,netdev=n0"));
        assert!(
            line.contains("file=/a.img,format=raw,if=none,id=d0 -device virtio-blk-pci,drive=d0")
        );
        assert!(line.contains("id=d1"));
        assert!(!line.contains("kvm"));
    }

    #[test]
    fn h1_drives_get_their_controllers() {
        let mut c = Command::new("qemu-system-x86_64");
        attach(
            &mut c,
            &[
                Drive::new("/stick.img", Bus::Usb, "ZEUSB0001"),
                Drive::new("/nvme.img", Bus::Nvme, "ZENVME0001"),
                Drive::new("/a.img", Bus::Sata, "ZESATA0001"),
                Drive::new("/b.img", Bus::Sata, "ZESATA0002"),
                Drive::virtio("/v.img"),
            ],
        );
        let line: Vec<String> = c
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let line = line.join(" ");
        for want in [
            "-device ahci,id=ahci0 -device qemu-xhci,id=xhci0",
            "-device usb-storage,bus=xhci0.0,drive=d0,removable=on,serial=ZEUSB0001",
            "-device nvme,drive=d1,serial=ZENVME0001",
            "-device ide-hd,bus=ahci0.0,drive=d2,serial=ZESATA0001",
            "-device ide-hd,bus=ahci0.1,drive=d3,serial=ZESATA0002",
            "file=/v.img,format=raw,if=none,id=d4 -device virtio-blk-pci,drive=d4",
        ] {
            assert!(line.contains(want), "{want} not in {line}");
        }
    }

    #[test]
    fn vga_dump_decodes_rows() {
        let mut dump = String::from("(qemu) xp /2000hx 0xb8000\n");
        let text = "[ze-install] hi";
        let mut words: Vec<String> = text.bytes().map(|b| format!("0x07{b:02x}")).collect();
        words.resize(160, "0x0720".into());
        for (i, chunk) in words.chunks(8).enumerate() {
            dump.push_str(&format!(
                "{:016x}: {}\r\n",
                0xb8000 + i * 16,
                chunk.join(" ")
            ));
        }
        let screen = vga_from_monitor(&dump);
        assert_eq!(screen.lines().next(), Some("[ze-install] hi"));
        assert_eq!(screen.split('\n').count(), 2);
    }
}
