//! A fault-injecting HTTP proxy on loopback, between devices and the server.
//!
//! Devices talk to the proxy as if it were the server. For every request the
//! proxy draws one fault from a seeded sequence (so a failing run replays):
//!
//! - **reset**: the connection is closed before the request is forwarded;
//! - **lost answer**: the server handles the request, the answer never
//!   arrives (the connection closes);
//! - **truncated answer**: the answer is cut part-way through its body;
//! - **duplicate**: the request reaches the server twice (a retrying
//!   middlebox); the device gets the second answer;
//! - **delay**: the answer arrives late (tens of milliseconds);
//! - or nothing: the request and its answer pass through.
//!
//! The proxy speaks just enough HTTP/1.1 for this: it reads one request (head
//! and `Content-Length` body), forwards it on a fresh upstream connection with
//! `Connection: close`, reads the whole answer, and answers the device with
//! `Connection: close`, so every request has a connection of its own.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Per-request chances, in percent.
#[derive(Debug, Clone, Copy)]
pub struct FaultMix {
    /// Closed before forwarding.
    pub reset: u64,
    /// Handled, answer lost.
    pub lose_answer: u64,
    /// Answer cut short.
    pub truncate: u64,
    /// Sent to the server twice.
    pub duplicate: u64,
    /// Answer delayed.
    pub delay: u64,
}

impl FaultMix {
    /// About one request in three meets a fault.
    pub const ROUGH: FaultMix = FaultMix {
        reset: 6,
        lose_answer: 6,
        truncate: 6,
        duplicate: 6,
        delay: 8,
    };
}

/// What the proxy did, by fault.
#[derive(Debug, Default)]
pub struct ProxyCounts {
    /// Requests seen.
    pub requests: AtomicU64,
    /// Connections reset before forwarding.
    pub resets: AtomicU64,
    /// Answers lost after the server handled the request.
    pub lost_answers: AtomicU64,
    /// Answers cut short.
    pub truncated: AtomicU64,
    /// Requests sent twice.
    pub duplicated: AtomicU64,
    /// Answers delayed.
    pub delayed: AtomicU64,
}

impl ProxyCounts {
    /// Faults injected in all.
    pub fn faults(&self) -> u64 {
        [
            &self.resets,
            &self.lost_answers,
            &self.truncated,
            &self.duplicated,
            &self.delayed,
        ]
        .iter()
        .map(|c| c.load(Ordering::SeqCst))
        .sum()
    }
}

/// A running proxy; stops when dropped.
#[derive(Debug)]
pub struct FaultyProxy {
    /// `http://127.0.0.1:<port>`: give this to devices as the server.
    pub base: String,
    /// What it did.
    pub counts: Arc<ProxyCounts>,
    /// While false, every request passes through untouched.
    pub faults_on: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    port: u16,
}

/// SplitMix64, seeded: the same faults in the same order for the same seed.
struct Draws(u64);

impl Draws {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Fault {
    None,
    Reset,
    LoseAnswer,
    Truncate,
    Duplicate,
    Delay,
}

impl FaultyProxy {
    /// Starts a proxy in front of `upstream` (`http://host:port`).
    pub fn start(upstream: &str, mix: FaultMix, seed: u64) -> FaultyProxy {
        let upstream = upstream
            .strip_prefix("http://")
            .expect("an http:// upstream")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let counts = Arc::new(ProxyCounts::default());
        let faults_on = Arc::new(AtomicBool::new(true));
        let stop = Arc::new(AtomicBool::new(false));
        let draws = Arc::new(Mutex::new(Draws(seed)));
        {
            let (counts, faults_on, stop) = (counts.clone(), faults_on.clone(), stop.clone());
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let fault = if faults_on.load(Ordering::SeqCst) {
                        draw(&draws, mix)
                    } else {
                        Fault::None
                    };
                    let (upstream, counts) = (upstream.clone(), counts.clone());
                    std::thread::spawn(move || {
                        // A connection that fails half-way is one of the
                        // faults we inject or cause: nothing to report.
                        let _ = serve(conn, &upstream, fault, &counts);
                    });
                }
            });
        }
        FaultyProxy {
            base: format!("http://127.0.0.1:{port}"),
            counts,
            faults_on,
            stop,
            port,
        }
    }
}

impl Drop for FaultyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

fn draw(draws: &Mutex<Draws>, mix: FaultMix) -> Fault {
    let roll = draws.lock().map(|mut d| d.next() % 100).unwrap_or(100);
    let mut edge = 0;
    for (chance, fault) in [
        (mix.reset, Fault::Reset),
        (mix.lose_answer, Fault::LoseAnswer),
        (mix.truncate, Fault::Truncate),
        (mix.duplicate, Fault::Duplicate),
        (mix.delay, Fault::Delay),
    ] {
        edge += chance;
        if roll < edge {
            return fault;
        }
    }
    Fault::None
}

/// Reads one HTTP/1.1 request: its head (with `Connection: close` put in
/// place of any connection header) and its body.
fn read_request(conn: &TcpStream) -> std::io::Result<Vec<u8>> {
    let mut reader = BufReader::new(conn);
    let mut head = Vec::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.extend_from_slice(line.as_bytes());
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    head.extend_from_slice(&body);
    Ok(head)
}

/// Sends `request` on a fresh connection and reads the whole answer.
fn forward(upstream: &str, request: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream)?;
    up.set_read_timeout(Some(Duration::from_secs(60)))?;
    up.write_all(request)?;
    let mut answer = Vec::new();
    up.read_to_end(&mut answer)?;
    Ok(answer)
}

fn serve(
    mut conn: TcpStream,
    upstream: &str,
    fault: Fault,
    counts: &ProxyCounts,
) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let request = read_request(&conn)?;
    counts.requests.fetch_add(1, Ordering::SeqCst);
    let answer = match fault {
        Fault::Reset => {
            counts.resets.fetch_add(1, Ordering::SeqCst);
            return conn.shutdown(Shutdown::Both);
        }
        Fault::Duplicate => {
            counts.duplicated.fetch_add(1, Ordering::SeqCst);
            let _ = forward(upstream, &request)?;
            forward(upstream, &request)?
        }
        _ => forward(upstream, &request)?,
    };
    match fault {
        Fault::LoseAnswer => {
            counts.lost_answers.fetch_add(1, Ordering::SeqCst);
            conn.shutdown(Shutdown::Both)
        }
        Fault::Truncate => {
            counts.truncated.fetch_add(1, Ordering::SeqCst);
            // Past the head, into the body when there is one.
            let head_end = answer
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(answer.len() / 2, |p| p + 4);
            let body = answer.len().saturating_sub(head_end);
            let cut = head_end + body / 2;
            conn.write_all(&answer[..cut.min(answer.len().saturating_sub(1))])?;
            conn.shutdown(Shutdown::Both)
        }
        Fault::Delay => {
            counts.delayed.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(40));
            conn.write_all(&answer)?;
            conn.shutdown(Shutdown::Write)
        }
        _ => {
            conn.write_all(&answer)?;
            conn.shutdown(Shutdown::Write)
        }
    }
}
