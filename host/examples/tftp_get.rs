//! A lean TFTP read client for benchmarks (`bench/pxe.sh`): RRQ with
//! blksize and windowsize (RFC 2348, RFC 7440), ACK at the end of each
//! window (or of the file), data discarded; prints bytes, seconds and
//! MiB/s. It exists because atftp, the only packaged client with
//! windowsize, spends more CPU per block than the server does, so it
//! hides what a larger window gains.
//!
//! ```text
//! cargo run --release --example tftp_get -- <server> <file> <blksize> <windowsize>
//! ```

use std::{
    net::UdpSocket,
    process::ExitCode,
    time::{Duration, Instant},
};
use ze::wire::tftp::Repr;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let [_, server, file, blksize, windowsize] = args.as_slice() else {
        eprintln!("usage: tftp_get <server[:port]> <file> <blksize> <windowsize>");
        return ExitCode::from(2);
    };
    match run(server, file, blksize, windowsize) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tftp_get: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(server: &str, file: &str, blksize: &str, windowsize: &str) -> Result<(), String> {
    let server = if server.contains(':') {
        server.to_string()
    } else {
        format!("{server}:69")
    };
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    let rrq = Repr::Read(ze::wire::tftp::Request {
        filename: file,
        mode: "octet",
        options: vec![("blksize", blksize), ("windowsize", windowsize)],
    })
    .to_bytes();
    let started = Instant::now();
    sock.send_to(&rrq, &server).map_err(|e| e.to_string())?;
    let mut blk: usize = 512;
    let mut window: u64 = 1;
    let mut expect: u64 = 1;
    let mut bytes: u64 = 0;
    let mut buf = vec![0u8; 65_536];
    let mut peer = None;
    loop {
        let (n, from) = sock
            .recv_from(&mut buf)
            .map_err(|e| format!("no reply: {e}"))?;
        match Repr::parse(&buf[..n]).map_err(|e| e.to_string())? {
            Repr::OptionAck { options } => {
                for (k, v) in options {
                    match k {
                        "blksize" => blk = v.parse().map_err(|_| "bad blksize")?,
                        "windowsize" => window = v.parse().map_err(|_| "bad windowsize")?,
                        _ => {}
                    }
                }
                peer = Some(from);
                sock.send_to(&Repr::Ack { block: 0 }.to_bytes(), from)
                    .map_err(|e| e.to_string())?;
            }
            Repr::Data { block, data } => {
                let peer = *peer.get_or_insert(from);
                let last = data.len() < blk;
                if block == expect as u16 {
                    bytes += data.len() as u64;
                    if last || expect.is_multiple_of(window) {
                        sock.send_to(&Repr::Ack { block }.to_bytes(), peer)
                            .map_err(|e| e.to_string())?;
                    }
                    expect += 1;
                    if last {
                        break;
                    }
                } else {
                    // Out of order: acknowledge what arrived in order.
                    let ack = Repr::Ack {
                        block: (expect - 1) as u16,
                    };
                    sock.send_to(&ack.to_bytes(), peer)
                        .map_err(|e| e.to_string())?;
                }
            }
            Repr::Error { code, message } => {
                return Err(format!("server error {}: {message}", code.code()));
            }
            other => return Err(format!("unexpected {other:?}")),
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{bytes} bytes in {secs:.3} s: {:.1} MiB/s (blksize {blk}, windowsize {window})",
        bytes as f64 / secs / 1_048_576.0
    );
    Ok(())
}
