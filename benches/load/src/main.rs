//! A Bayeux load generator for any server: fan-out, echo and soak workloads over long-polling or
//! websocket, with latency percentiles, loss/duplicate accounting and the server's CPU and RSS.
//!
//! ```text
//! cargo run --release --example conformance -- --addr 127.0.0.1:8080 &
//! cargo run --release -p tower-bayeux-load -- --url http://127.0.0.1:8080/cometd \
//!     --transport long-polling --mode fanout --clients 1000 --rooms 10 --rate 2000
//! ```
//!
//! Modes:
//! - `fanout`: `--clients` sessions, each subscribed to one of `--rooms` channels
//!   `/bench/room/<k>`, keep their `/meta/connect` loop going as the official client does (first
//!   connect with `advice: {timeout: 0}`, then plain ones, reconnecting as soon as a reply
//!   arrives). `--publishers` separate sessions publish at an aggregate `--rate` (0: as fast as
//!   replies come back, `--batch` messages per request or frame) payloads of `--payload` bytes
//!   `{"t": <send time, ns>, "p": <publisher>, "s": <sequence>, "x": "..."}`.
//!   `--publishers 0` leaves the sessions idle (memory per session with `--server-pid`/`--spawn`).
//! - `echo`: `--clients` sessions each publish to `/service/echo` and wait for the echo, one at a
//!   time.
//! - `soak`: `fanout` for a long `--duration`, where a fraction `--slow` of the sessions pause
//!   (websocket: stop reading the socket; long-polling: send no `/meta/connect`) for `--slow-pause`
//!   seconds every `--slow-period` seconds, and a fraction `--vanish` drop their connection
//!   without a `/meta/disconnect` after about `--vanish-after` seconds and are replaced by fresh
//!   sessions; reports every `--report-every` seconds.
//!
//! Clusters: with several `--url`s the subscribing (and echoing) sessions are spread over them
//! (`--spread`), the publishers go to `--publish-url`, `--publish-rooms` leaves rooms without
//! publishes, and `--server-pid` may name every process of the server (nodes, Redis).
//!
//! Accounting: every (publisher, room) pair is a stream with its own sequence numbers, and each
//! subscriber checks the sequence of what it receives: a gap is messages the server dropped; the
//! `/meta/overflow` markers (`data.dropped`) received just before a gap say how many of them were
//! dropped with notice, the rest were lost without notice. Publishes whose reply failed are not
//! counted missing. Throughput and latency cover the publishes sent after `--warmup`.

mod hist;
mod http;
mod scan;

use std::collections::{BTreeMap, VecDeque};
use std::io::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{Notify, Semaphore, watch};
use tokio_tungstenite::tungstenite::Message as Frame;

use hist::Histogram;
use http::{HttpConn, Jar, Target, Ws};
use scan::Msg;

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Transport {
    LongPolling,
    Websocket,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Spread {
    Sessions,
    Rooms,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Mode {
    Fanout,
    Echo,
    Soak,
}

#[derive(Parser, Clone, Debug)]
#[command(about = "Bayeux load generator (fan-out, echo, soak) for any Bayeux/CometD server")]
struct Args {
    /// The Bayeux endpoint (`http://host:port/path`; websocket uses the same path). Repeat it
    /// to drive a cluster: the subscribing (and echoing) sessions are spread over the URLs (see
    /// `--spread`), the publishers go to `--publish-url`.
    #[arg(long, default_value = "http://127.0.0.1:8080/cometd")]
    url: Vec<String>,
    /// The endpoint of the publishing sessions (default: the first `--url`).
    #[arg(long)]
    publish_url: Option<String>,
    /// How subscribing sessions are spread over several `--url`s: `sessions` splits every
    /// room's sessions evenly over the URLs; `rooms` puts each room's sessions on one URL, the
    /// rooms in contiguous blocks (with 10 rooms and 2 URLs: rooms 0-4 on the first, 5-9 on the
    /// second).
    #[arg(long, value_enum, default_value = "sessions")]
    spread: Spread,
    #[arg(long, value_enum, default_value = "long-polling")]
    transport: Transport,
    #[arg(long, value_enum, default_value = "fanout")]
    mode: Mode,
    /// Subscribing sessions (fanout, soak) or echoing sessions (echo).
    #[arg(long, default_value_t = 1000)]
    clients: usize,
    /// Room channels `/bench/room/<k>`; client `i` joins room `i % rooms`.
    #[arg(long, default_value_t = 10)]
    rooms: usize,
    /// Publish only to the rooms `0..N` (default: all of them); the other rooms' sessions stay
    /// subscribed and receive nothing.
    #[arg(long)]
    publish_rooms: Option<usize>,
    /// Publishing sessions (not subscribed). 0: idle sessions only.
    #[arg(long, default_value_t = 10)]
    publishers: usize,
    /// Aggregate publishes per second; 0 publishes as fast as replies come back.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Approximate size of a publish's `data`, in bytes.
    #[arg(long, default_value_t = 100)]
    payload: usize,
    /// Publishes per request (long-polling) or frame (websocket) when unthrottled, and the most
    /// a throttled publisher sends at once to catch up with its schedule. Either way a publisher
    /// has one request or frame awaiting its replies at a time.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Measured seconds (after the warm-up).
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Seconds of publishing before measuring.
    #[arg(long, default_value_t = 3.0)]
    warmup: f64,
    /// Runtime worker threads (1: a current-thread runtime, leaving the other cores to the server).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Sessions set up concurrently.
    #[arg(long, default_value_t = 200)]
    ramp: usize,
    /// Send `advice: {timeout: MS}` on every `/meta/connect` (default: as the official client,
    /// only `{timeout: 0}` on the first one).
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// Fraction of sessions that pause reading (soak).
    #[arg(long, default_value_t = 0.0)]
    slow: f64,
    /// Seconds a slow session pauses.
    #[arg(long, default_value_t = 2.0)]
    slow_pause: f64,
    /// Seconds between the starts of a slow session's pauses.
    #[arg(long, default_value_t = 10.0)]
    slow_period: f64,
    /// Socket receive buffer of slow sessions, in bytes, so that back-pressure reaches the server
    /// soon (0: the system default).
    #[arg(long, default_value_t = 16384)]
    slow_rcvbuf: u32,
    /// Fraction of sessions that vanish without disconnecting and are replaced (soak).
    #[arg(long, default_value_t = 0.0)]
    vanish: f64,
    /// Mean lifetime in seconds of a vanishing session (uniform in 0.5x..1.5x).
    #[arg(long, default_value_t = 30.0)]
    vanish_after: f64,
    /// Seconds between progress reports (default: 1, or 10 in soak mode).
    #[arg(long)]
    report_every: Option<f64>,
    /// The server's pid, for its CPU time and RSS (from /proc). Repeat it for a server made of
    /// several processes (cluster nodes, Redis): the server CPU is their sum, each one's is
    /// reported too, and the RSS lines are the first process's.
    #[arg(long)]
    server_pid: Vec<u32>,
    /// Start the server with this shell command (its pid is tracked; it is killed at the end).
    #[arg(long)]
    spawn: Option<String>,
    /// A URL answering `GET` with the server's own counters (JSON, printed as is with each
    /// report), e.g. the conformance server's `/stats` where it has one.
    #[arg(long)]
    stats_url: Option<String>,
    /// Most seconds to wait for in-flight deliveries after publishing stops.
    #[arg(long, default_value_t = 10.0)]
    drain: f64,
    /// A label echoed in the final `RESULT` line.
    #[arg(long, default_value = "")]
    label: String,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    Setup,
    Run,
    Drain,
    Done,
}

#[derive(Default)]
struct Counters {
    offered: AtomicU64,
    skipped: AtomicU64,
    accepted: AtomicU64,
    accepted_m: AtomicU64,
    expected_m: AtomicU64,
    pub_failed: AtomicU64,
    delivered: AtomicU64,
    delivered_m: AtomicU64,
    dup: AtomicU64,
    gaps: AtomicU64,
    noticed: AtomicU64,
    lost: AtomicU64,
    tail_lost: AtomicU64,
    echoes_m: AtomicU64,
    handshakes: AtomicU64,
    rehandshakes: AtomicU64,
    live: AtomicI64,
    vanished: AtomicU64,
    kicked: AtomicU64,
    pauses: AtomicU64,
    errors: AtomicU64,
    /// Connect responses (long-polling) and frames (websocket) received by subscribing sessions.
    frames: AtomicU64,
}

struct Shared {
    args: Args,
    /// The endpoints: those of `--url` (subscribing and echoing sessions), then that of the
    /// publishers.
    targets: Vec<Target>,
    start: Instant,
    /// Publishes sent at or after this time (ns since start) are measured.
    measure_from: AtomicU64,
    room_subs: Vec<AtomicI64>,
    /// Highest accepted sequence per stream (`publisher * rooms + room`).
    max_accepted: Vec<AtomicU64>,
    /// Sequences whose publish failed or got no reply, per stream.
    failed: Mutex<Vec<(usize, u64)>>,
    c: Counters,
    hist: Histogram,
    interval_hist: Histogram,
    errors: Mutex<BTreeMap<String, u64>>,
    phase: watch::Sender<Phase>,
    ready: AtomicUsize,
    publishers_ready: AtomicUsize,
    pending_publishes: AtomicI64,
    /// `"x"` of the payload.
    padding: String,
    seed: AtomicU64,
}

impl Shared {
    fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    fn error(&self, what: impl Into<String>) {
        self.c.errors.fetch_add(1, Relaxed);
        *self.errors.lock().unwrap().entry(what.into()).or_default() += 1;
    }

    fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    fn rand(&self) -> f64 {
        // splitmix64
        let mut z = self.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// The rooms published to: `0..publish_rooms`.
    fn publish_rooms(&self) -> usize {
        self.args
            .publish_rooms
            .map_or(self.args.rooms, |n| n.clamp(1, self.args.rooms))
    }

    /// The endpoint of the publishers (an index into `targets`).
    fn publish_target(&self) -> usize {
        self.targets.len() - 1
    }

    /// The endpoint of subscribing or echoing session `slot` (an index into `targets`).
    fn session_target(&self, slot: usize) -> usize {
        let n = self.targets.len() - 1;
        if n <= 1 {
            return 0;
        }
        let rooms = self.args.rooms;
        match self.args.spread {
            Spread::Sessions => (slot / rooms) % n,
            Spread::Rooms => (slot % rooms) * n / rooms,
        }
    }

    fn streams_per_room(&self) -> usize {
        self.args.publishers.div_ceil(self.publish_rooms()).max(1)
    }

    /// The publisher of a room's `idx`-th stream.
    fn stream_publisher(&self, room: usize, idx: usize) -> usize {
        let (p, k) = (self.args.publishers, self.publish_rooms());
        if p > k {
            room + idx * k
        } else {
            room % p.max(1)
        }
    }

    fn failed_in(&self, stream: usize, after: u64, upto: u64) -> u64 {
        let failed = self.failed.lock().unwrap();
        failed
            .iter()
            .filter(|&&(s, q)| s == stream && q > after && q <= upto)
            .count() as u64
    }

    fn ws(&self) -> bool {
        self.args.transport == Transport::Websocket
    }

    fn connection_type(&self) -> &'static str {
        if self.ws() {
            "websocket"
        } else {
            "long-polling"
        }
    }
}

async fn wait_phase(rx: &mut watch::Receiver<Phase>, at_least: Phase) {
    let _ = rx.wait_for(|p| *p as u8 >= at_least as u8).await;
}

// ---------------------------------------------------------------------------------------------
// Messages

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
}

fn push_num(out: &mut Vec<u8>, n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    let mut n = n;
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

fn handshake_msg(out: &mut Vec<u8>, id: u64) {
    push_str(out, r#"{"id":""#);
    push_num(out, id);
    push_str(
        out,
        r#"","channel":"/meta/handshake","version":"1.0","minimumVersion":"1.0","supportedConnectionTypes":["websocket","long-polling","callback-polling"],"advice":{"timeout":60000,"interval":0}}"#,
    );
}

fn subscribe_msg(out: &mut Vec<u8>, id: u64, client_id: &str, channel: &str) {
    push_str(out, r#"{"id":""#);
    push_num(out, id);
    push_str(out, r#"","channel":"/meta/subscribe","subscription":""#);
    push_str(out, channel);
    push_str(out, r#"","clientId":""#);
    push_str(out, client_id);
    push_str(out, r#""}"#);
}

fn connect_msg(out: &mut Vec<u8>, id: u64, client_id: &str, kind: &str, timeout: Option<u64>) {
    push_str(out, r#"{"id":""#);
    push_num(out, id);
    push_str(out, r#"","channel":"/meta/connect","connectionType":""#);
    push_str(out, kind);
    push_str(out, "\"");
    if let Some(t) = timeout {
        push_str(out, r#","advice":{"timeout":"#);
        push_num(out, t);
        push_str(out, "}");
    }
    push_str(out, r#","clientId":""#);
    push_str(out, client_id);
    push_str(out, r#""}"#);
}

#[allow(clippy::too_many_arguments)]
fn publish_msg(
    out: &mut Vec<u8>,
    id: u64,
    channel: &str,
    client_id: &str,
    t: u64,
    p: u64,
    s: u64,
    padding: &str,
) {
    push_str(out, r#"{"id":""#);
    push_num(out, id);
    push_str(out, r#"","channel":""#);
    push_str(out, channel);
    push_str(out, r#"","data":{"t":"#);
    push_num(out, t);
    push_str(out, r#","p":"#);
    push_num(out, p);
    push_str(out, r#","s":"#);
    push_num(out, s);
    push_str(out, r#","x":""#);
    push_str(out, padding);
    push_str(out, r#""},"clientId":""#);
    push_str(out, client_id);
    push_str(out, r#""}"#);
}

// ---------------------------------------------------------------------------------------------
// Per-session receive state

/// Sequence tracking of one subscribed session.
struct Tracker {
    room: usize,
    /// Whether its deliveries' latency is recorded (slow sessions' is not: they pause on purpose).
    timed: bool,
    /// Last sequence seen per stream of the room; 0 with `seen` set means "from the start".
    last: Vec<u64>,
    seen: Vec<bool>,
    /// Overflow notices not yet matched with a gap.
    credit: u64,
}

impl Tracker {
    fn new(sh: &Shared, room: usize, from_start: bool) -> Self {
        let n = if room < sh.publish_rooms() {
            sh.streams_per_room()
        } else {
            0
        };
        Self {
            room,
            timed: true,
            last: vec![0; n],
            seen: vec![from_start; n],
            credit: 0,
        }
    }

    fn stream(&self, sh: &Shared, idx: usize) -> usize {
        sh.stream_publisher(self.room, idx) * sh.args.rooms + self.room
    }

    fn gap(&mut self, sh: &Shared, idx: usize, after: u64, upto: u64, local: &mut Local) -> u64 {
        let failed = sh.failed_in(self.stream(sh, idx), after, upto);
        let missing = (upto - after).saturating_sub(failed);
        let covered = missing.min(self.credit);
        self.credit -= covered;
        local.gaps += missing;
        local.lost += missing - covered;
        missing - covered
    }

    /// Messages accepted but never received, at the end of the run.
    fn finish(&mut self, sh: &Shared) {
        let mut local = Local::default();
        for idx in 0..self.last.len() {
            if !self.seen[idx] {
                continue;
            }
            let max = sh.max_accepted[self.stream(sh, idx)].load(Relaxed);
            if max > self.last[idx] {
                let lost = self.gap(sh, idx, self.last[idx], max, &mut local);
                sh.c.tail_lost.fetch_add(lost, Relaxed);
                self.last[idx] = max;
            }
        }
        local.flush(sh);
    }
}

/// Counts gathered while reading one response or frame, added to the shared ones once.
#[derive(Default)]
struct Local {
    delivered: u64,
    delivered_m: u64,
    dup: u64,
    gaps: u64,
    lost: u64,
    noticed: u64,
}

impl Local {
    fn flush(&self, sh: &Shared) {
        let c = &sh.c;
        for (counter, v) in [
            (&c.delivered, self.delivered),
            (&c.delivered_m, self.delivered_m),
            (&c.dup, self.dup),
            (&c.gaps, self.gaps),
            (&c.lost, self.lost),
            (&c.noticed, self.noticed),
        ] {
            if v != 0 {
                counter.fetch_add(v, Relaxed);
            }
        }
    }
}

#[derive(Clone, Copy)]
struct PendingPublish {
    id: u64,
    stream: usize,
    room: usize,
    seq: u64,
    t: u64,
}

/// A publishing session's publishes awaiting their reply.
#[derive(Default)]
struct Pending {
    q: VecDeque<PendingPublish>,
}

impl Pending {
    fn resolve(&mut self, sh: &Shared, id: u64, ok: bool, error: Option<&[u8]>) -> bool {
        let pos = if self.q.front().is_some_and(|p| p.id == id) {
            Some(0)
        } else {
            self.q.iter().position(|p| p.id == id)
        };
        let Some(pos) = pos else { return false };
        let p = self.q.remove(pos).expect("present");
        sh.pending_publishes.fetch_sub(1, Relaxed);
        if ok {
            sh.c.accepted.fetch_add(1, Relaxed);
            if p.t >= sh.measure_from.load(Relaxed) {
                sh.c.accepted_m.fetch_add(1, Relaxed);
                let subs = sh.room_subs[p.room].load(Relaxed).max(0) as u64;
                sh.c.expected_m.fetch_add(subs, Relaxed);
            }
            sh.max_accepted[p.stream].fetch_max(p.seq, Relaxed);
        } else {
            sh.c.pub_failed.fetch_add(1, Relaxed);
            sh.failed.lock().unwrap().push((p.stream, p.seq));
            let err = error
                .map(scan::unescape)
                .unwrap_or_else(|| "no error".into());
            sh.error(format!("publish failed: {err}"));
        }
        true
    }

    /// Publishes that will get no reply (connection lost): counted failed.
    fn abandon(&mut self, sh: &Shared, why: &str) {
        for p in self.q.drain(..) {
            sh.pending_publishes.fetch_sub(1, Relaxed);
            sh.c.pub_failed.fetch_add(1, Relaxed);
            sh.failed.lock().unwrap().push((p.stream, p.seq));
            sh.error(format!("publish unanswered: {why}"));
        }
    }
}

struct EchoState {
    got: AtomicU64,
    notify: Notify,
}

/// What a response or frame said, beyond the deliveries handled on the way.
#[derive(Default)]
struct Outcome {
    connect: Option<ConnectReply>,
    handshake: Option<Result<(String, Option<u64>), String>>,
    subscribed: Option<Result<(), String>>,
    echo: Option<u64>,
}

struct ConnectReply {
    ok: bool,
    rehandshake: bool,
    stop: bool,
    interval: u64,
    error: Option<String>,
}

struct Reader<'a> {
    sh: &'a Shared,
    tracker: Option<&'a mut Tracker>,
    pending: Option<&'a mut Pending>,
    echo: Option<&'a EchoState>,
}

impl Reader<'_> {
    fn read(&mut self, body: &[u8]) -> Outcome {
        let sh = self.sh;
        let now = sh.now();
        let measure_from = sh.measure_from.load(Relaxed);
        let mut out = Outcome::default();
        let mut local = Local::default();
        let result = scan::for_each(body, |m: Msg<'_>| {
            if m.is_reply() {
                let ok = m.successful == Some(true);
                let error = || m.error.map(scan::unescape);
                if m.channel_is("/meta/connect") {
                    let reconnect = m.reconnect.unwrap_or(b"retry");
                    out.connect = Some(ConnectReply {
                        ok,
                        rehandshake: scan::json_str_eq(reconnect, "handshake"),
                        stop: scan::json_str_eq(reconnect, "none"),
                        interval: m.interval.unwrap_or(0),
                        error: error(),
                    });
                } else if m.channel_is("/meta/handshake") {
                    out.handshake = Some(match (ok, m.client_id) {
                        (true, Some(id)) => Ok((scan::unescape(id), m.timeout)),
                        _ => Err(error().unwrap_or_else(|| "handshake failed".into())),
                    });
                } else if m.channel_is("/meta/subscribe") {
                    out.subscribed = Some(if ok {
                        Ok(())
                    } else {
                        Err(error().unwrap_or_else(|| "subscribe failed".into()))
                    });
                } else if m.channel_is("/meta/disconnect") || m.channel_is("/meta/unsubscribe") {
                } else if let (Some(pending), Some(id)) = (self.pending.as_deref_mut(), m.id_num())
                {
                    pending.resolve(sh, id, ok, m.error);
                } else if !ok && self.echo.is_some() {
                    sh.error(format!(
                        "echo publish failed: {}",
                        error().unwrap_or_default()
                    ));
                }
                return;
            }
            if m.channel_is("/meta/overflow") {
                let n = m.dropped.unwrap_or(0);
                local.noticed += n;
                if let Some(t) = self.tracker.as_deref_mut() {
                    t.credit += n;
                }
                return;
            }
            if m.channel_is("/meta/disconnect") {
                out.connect = Some(ConnectReply {
                    ok: false,
                    rehandshake: true,
                    stop: false,
                    interval: 0,
                    error: Some("server-side /meta/disconnect".into()),
                });
                return;
            }
            let (Some(t), Some(p), Some(s)) = (m.t, m.p, m.s) else {
                return;
            };
            if let Some(echo) = self.echo {
                echo.got.fetch_max(s, Relaxed);
                echo.notify.notify_one();
                out.echo = Some(out.echo.unwrap_or(0).max(s));
                let latency = now.saturating_sub(t);
                sh.interval_hist.record(latency);
                if t >= measure_from {
                    sh.hist.record(latency);
                    sh.c.echoes_m.fetch_add(1, Relaxed);
                }
                return;
            }
            let Some(tracker) = self.tracker.as_deref_mut() else {
                return;
            };
            let idx = p as usize / sh.publish_rooms();
            if idx >= tracker.last.len() {
                return;
            }
            let fresh = if !tracker.seen[idx] {
                tracker.seen[idx] = true;
                tracker.last[idx] = s;
                true
            } else if s > tracker.last[idx] {
                let last = tracker.last[idx];
                if s > last + 1 {
                    tracker.gap(sh, idx, last, s - 1, &mut local);
                }
                tracker.last[idx] = s;
                true
            } else {
                false
            };
            if fresh {
                local.delivered += 1;
                let latency = now.saturating_sub(t);
                if tracker.timed {
                    sh.interval_hist.record(latency);
                }
                if t >= measure_from {
                    local.delivered_m += 1;
                    if tracker.timed {
                        sh.hist.record(latency);
                    }
                }
            } else {
                local.dup += 1;
            }
        });
        if result.is_err() {
            sh.error("unparsable response");
        }
        local.flush(sh);
        out
    }
}

// ---------------------------------------------------------------------------------------------
// Long-polling sessions

struct LpSession {
    /// Its endpoint (an index into `Shared::targets`).
    target: usize,
    conn: HttpConn,
    jar: Jar,
    client_id: String,
    next_id: u64,
    /// Hold time advised by the server (ms).
    timeout: u64,
    body: Vec<u8>,
}

const NETWORK_DELAY: Duration = Duration::from_secs(10);

impl LpSession {
    fn path(sh: &Shared, target: usize, suffix: &str) -> String {
        format!("{}/{}", sh.targets[target].path, suffix)
    }

    async fn handshake(sh: &Shared, target: usize, rcvbuf: Option<u32>) -> Result<Self, String> {
        let mut conn = HttpConn::new(sh.targets[target].addr, rcvbuf);
        let mut jar = Jar::default();
        let mut body = Vec::with_capacity(512);
        body.push(b'[');
        handshake_msg(&mut body, 1);
        body.push(b']');
        let path = Self::path(sh, target, "handshake");
        let reply = tokio::time::timeout(
            NETWORK_DELAY,
            conn.post(&sh.targets[target], &path, &body, &mut jar),
        )
        .await
        .map_err(|_| "handshake: timeout".to_string())?
        .map_err(|e| format!("handshake: {e}"))?;
        if reply.status != 200 {
            return Err(format!("handshake: HTTP {}", reply.status));
        }
        let out = Reader {
            sh,
            tracker: None,
            pending: None,
            echo: None,
        }
        .read(conn.body(&reply));
        sh.c.handshakes.fetch_add(1, Relaxed);
        match out.handshake {
            Some(Ok((client_id, timeout))) => Ok(Self {
                target,
                conn,
                jar,
                client_id,
                next_id: 2,
                timeout: timeout.unwrap_or(60_000),
                body,
            }),
            Some(Err(e)) => Err(format!("handshake: {e}")),
            None => Err("handshake: no reply".into()),
        }
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Sends the messages in `self.body` and reads the reply with `reader`.
    async fn exchange(
        &mut self,
        sh: &Shared,
        suffix: &str,
        reader: &mut Reader<'_>,
        wait: Duration,
    ) -> Result<Outcome, String> {
        let path = Self::path(sh, self.target, suffix);
        let reply = tokio::time::timeout(
            wait,
            self.conn
                .post(&sh.targets[self.target], &path, &self.body, &mut self.jar),
        )
        .await
        .map_err(|_| {
            self.conn.close();
            format!("{suffix}: timeout")
        })?
        .map_err(|e| format!("{suffix}: {e}"))?;
        if reply.status != 200 {
            return Err(format!("{suffix}: HTTP {}", reply.status));
        }
        Ok(reader.read(self.conn.body(&reply)))
    }

    async fn subscribe(&mut self, sh: &Shared, room: usize) -> Result<(), String> {
        let id = self.id();
        self.body.clear();
        self.body.push(b'[');
        subscribe_msg(
            &mut self.body,
            id,
            &self.client_id,
            &format!("/bench/room/{room}"),
        );
        self.body.push(b']');
        let mut reader = Reader {
            sh,
            tracker: None,
            pending: None,
            echo: None,
        };
        match self
            .exchange(sh, "", &mut reader, NETWORK_DELAY)
            .await?
            .subscribed
        {
            Some(r) => r.map_err(|e| format!("subscribe: {e}")),
            None => Err("subscribe: no reply".into()),
        }
    }

    fn connect_body(&mut self, sh: &Shared, first: bool) {
        let id = self.id();
        self.body.clear();
        self.body.push(b'[');
        let timeout = if first {
            Some(0)
        } else {
            sh.args.connect_timeout_ms
        };
        connect_msg(&mut self.body, id, &self.client_id, "long-polling", timeout);
        self.body.push(b']');
    }

    fn connect_wait(&self, sh: &Shared) -> Duration {
        let hold = sh.args.connect_timeout_ms.unwrap_or(self.timeout);
        Duration::from_millis(hold) + NETWORK_DELAY
    }
}

/// What ended a session's connect loop.
enum End {
    /// The run is over.
    Done,
    /// Handshake again: the server no longer knows the session, or closed its socket.
    Rehandshake,
    /// The session vanished on purpose (soak churn); a fresh one replaces it.
    Vanished,
}

/// How a subscribing session behaves.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Normal,
    Slow,
    Vanishing,
}

struct Behaviour {
    class: Class,
    /// When a vanishing session goes away (ns since start).
    vanish_at: u64,
    /// Next pause of a slow session (ns since start).
    next_pause: u64,
}

impl Behaviour {
    fn new(sh: &Shared, class: Class) -> Self {
        let now = sh.now();
        let vanish_at = match class {
            Class::Vanishing => now + (sh.args.vanish_after * (0.5 + sh.rand()) * 1e9) as u64,
            _ => u64::MAX,
        };
        let next_pause = match class {
            Class::Slow => now + (sh.args.slow_period * sh.rand() * 1e9) as u64,
            _ => u64::MAX,
        };
        Self {
            class,
            vanish_at,
            next_pause,
        }
    }

    fn vanish_due(&self, sh: &Shared) -> bool {
        self.class == Class::Vanishing && sh.phase() == Phase::Run && sh.now() >= self.vanish_at
    }

    /// A pause to take now, if one is due.
    fn pause_due(&mut self, sh: &Shared) -> Option<Duration> {
        if self.class != Class::Slow || sh.phase() != Phase::Run || sh.now() < self.next_pause {
            return None;
        }
        self.next_pause = sh.now() + (sh.args.slow_period * 1e9) as u64;
        sh.c.pauses.fetch_add(1, Relaxed);
        Some(Duration::from_secs_f64(sh.args.slow_pause))
    }
}

/// Sleeps `d`, or less if the run starts draining.
async fn pause(sh: &Shared, d: Duration) {
    let mut rx = sh.phase.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = wait_phase(&mut rx, Phase::Drain) => {}
    }
}

fn rcvbuf_for(sh: &Shared, class: Class) -> Option<u32> {
    (class == Class::Slow && sh.args.slow_rcvbuf > 0).then_some(sh.args.slow_rcvbuf)
}

/// Runs the connect loop of a long-polling session until the run ends or the session must
/// handshake again.
async fn lp_connect_loop(
    sh: &Shared,
    s: &mut LpSession,
    mut tracker: Option<&mut Tracker>,
    echo: Option<&EchoState>,
    behaviour: &mut Behaviour,
) -> End {
    let mut rx = sh.phase.subscribe();
    let mut first = true;
    let mut backoff = Duration::ZERO;
    loop {
        if sh.phase() == Phase::Done {
            return End::Done;
        }
        if behaviour.vanish_due(sh) {
            s.conn.close();
            sh.c.vanished.fetch_add(1, Relaxed);
            return End::Vanished;
        }
        if let Some(d) = behaviour.pause_due(sh) {
            pause(sh, d).await;
        }
        if !backoff.is_zero() {
            pause(sh, backoff).await;
        }
        s.connect_body(sh, first);
        let wait = s.connect_wait(sh);
        let mut reader = Reader {
            sh,
            tracker: tracker.as_deref_mut(),
            pending: None,
            echo,
        };
        let result = tokio::select! {
            r = s.exchange(sh, "connect", &mut reader, wait) => r,
            _ = wait_phase(&mut rx, Phase::Done) => return End::Done,
        };
        if result.is_ok() {
            sh.c.frames.fetch_add(1, Relaxed);
        }
        match result {
            Ok(out) => match out.connect {
                Some(c) if c.ok => {
                    first = false;
                    backoff = Duration::from_millis(c.interval);
                    if c.stop {
                        sh.error("connect: advice reconnect none");
                        return End::Rehandshake;
                    }
                }
                Some(c) => {
                    sh.error(format!(
                        "connect failed: {}",
                        c.error.unwrap_or_else(|| "no error".into())
                    ));
                    if c.rehandshake || c.stop {
                        return End::Rehandshake;
                    }
                    first = true;
                    backoff = Duration::from_secs(1);
                }
                None => {
                    sh.error("connect: no reply");
                    backoff = Duration::from_secs(1);
                }
            },
            Err(e) => {
                sh.error(e);
                first = true;
                backoff = Duration::from_secs(1);
            }
        }
    }
}

fn class_of(sh: &Shared, slot: usize) -> Class {
    // Spread the classes evenly over slots (and so over rooms).
    let x = (slot as f64 * 0.618_033_988_75).fract();
    if x < sh.args.slow {
        Class::Slow
    } else if x < sh.args.slow + sh.args.vanish {
        Class::Vanishing
    } else {
        Class::Normal
    }
}

/// A subscribing session (fanout, soak), replaced by a fresh one whenever it ends before the run.
async fn subscriber(sh: Arc<Shared>, slot: usize, ramp: Arc<Semaphore>) {
    let room = slot % sh.args.rooms;
    let target = sh.session_target(slot);
    let class = class_of(&sh, slot);
    let mut initial = true;
    let mut permit = Some(ramp.acquire_owned().await.expect("open"));
    loop {
        if sh.phase() as u8 >= Phase::Drain as u8 && !initial {
            return;
        }
        let from_start = initial && sh.phase() == Phase::Setup;
        let mut tracker = Tracker::new(&sh, room, from_start);
        tracker.timed = class != Class::Slow;
        let mut behaviour = Behaviour::new(&sh, class);
        let end = if sh.ws() {
            ws_session(
                &sh,
                target,
                class,
                &mut behaviour,
                Some((room, &mut tracker)),
                None,
                &mut permit,
                initial,
            )
            .await
        } else {
            lp_subscriber_session(
                &sh,
                target,
                room,
                class,
                &mut behaviour,
                &mut tracker,
                &mut permit,
                initial,
            )
            .await
        };
        match end {
            Ok(End::Done) => {
                tracker.finish(&sh);
                return;
            }
            Ok(End::Rehandshake) => {
                sh.c.rehandshakes.fetch_add(1, Relaxed);
            }
            Ok(End::Vanished) => {}
            Err(e) => {
                sh.error(e);
                pause(&sh, Duration::from_secs(1)).await;
            }
        }
        if initial && permit.is_none() {
            initial = false;
        }
        if sh.phase() == Phase::Done {
            return;
        }
    }
}

/// Marks a session subscribed (once per slot for the set-up count) and live.
struct LiveGuard<'a> {
    sh: &'a Shared,
    room: Option<usize>,
}

impl<'a> LiveGuard<'a> {
    fn new(sh: &'a Shared, room: Option<usize>) -> Self {
        sh.c.live.fetch_add(1, Relaxed);
        if let Some(room) = room {
            sh.room_subs[room].fetch_add(1, Relaxed);
        }
        Self { sh, room }
    }
}

impl Drop for LiveGuard<'_> {
    fn drop(&mut self) {
        self.sh.c.live.fetch_sub(1, Relaxed);
        if let Some(room) = self.room {
            self.sh.room_subs[room].fetch_sub(1, Relaxed);
        }
    }
}

fn mark_ready(sh: &Shared, permit: &mut Option<tokio::sync::OwnedSemaphorePermit>, initial: bool) {
    if initial && permit.take().is_some() {
        sh.ready.fetch_add(1, Relaxed);
    }
}

#[allow(clippy::too_many_arguments)]
async fn lp_subscriber_session(
    sh: &Shared,
    target: usize,
    room: usize,
    class: Class,
    behaviour: &mut Behaviour,
    tracker: &mut Tracker,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    initial: bool,
) -> Result<End, String> {
    let mut s = LpSession::handshake(sh, target, rcvbuf_for(sh, class)).await?;
    // The official client's first connect (advice timeout 0) precedes its subscriptions.
    s.connect_body(sh, true);
    let mut reader = Reader {
        sh,
        tracker: None,
        pending: None,
        echo: None,
    };
    let out = s
        .exchange(sh, "connect", &mut reader, NETWORK_DELAY)
        .await?;
    if !out.connect.is_some_and(|c| c.ok) {
        return Err("first connect failed".into());
    }
    s.subscribe(sh, room).await?;
    let _live = LiveGuard::new(sh, Some(room));
    mark_ready(sh, permit, initial);
    let end = lp_connect_loop(sh, &mut s, Some(tracker), None, behaviour).await;
    Ok(end)
}

// ---------------------------------------------------------------------------------------------
// Websocket sessions

/// Sends the messages in `body` (already a JSON array) as one text frame.
async fn ws_send(ws: &mut Ws, body: &[u8]) -> Result<(), String> {
    let text = String::from_utf8(body.to_vec()).expect("ASCII JSON");
    ws.send(Frame::text(text))
        .await
        .map_err(|e| format!("ws send: {e}"))
}

struct WsState {
    ws: Ws,
    client_id: String,
    next_id: u64,
    body: Vec<u8>,
}

impl WsState {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    async fn send_connect(&mut self, sh: &Shared, first: bool) -> Result<(), String> {
        let id = self.id();
        self.body.clear();
        self.body.push(b'[');
        let timeout = if first {
            Some(0)
        } else {
            sh.args.connect_timeout_ms
        };
        connect_msg(&mut self.body, id, &self.client_id, "websocket", timeout);
        self.body.push(b']');
        let body = std::mem::take(&mut self.body);
        let r = ws_send(&mut self.ws, &body).await;
        self.body = body;
        r
    }
}

/// Reads one frame's payload (`None`: the socket ended).
async fn ws_next(ws: &mut Ws) -> Option<Result<bytes::Bytes, String>> {
    loop {
        return match ws.next().await? {
            Ok(Frame::Text(t)) => Some(Ok(bytes::Bytes::from(t))),
            Ok(Frame::Binary(b)) => Some(Ok(b)),
            Ok(Frame::Close(_)) => None,
            Ok(_) => continue,
            Err(e) => Some(Err(format!("ws: {e}"))),
        };
    }
}

async fn ws_handshake(sh: &Shared, target: usize, class: Class) -> Result<WsState, String> {
    let mut jar = Jar::default();
    let mut ws = tokio::time::timeout(
        NETWORK_DELAY,
        http::ws_connect(&sh.targets[target], &mut jar, rcvbuf_for(sh, class)),
    )
    .await
    .map_err(|_| "ws upgrade: timeout".to_string())?
    .map_err(|e| format!("ws upgrade: {e}"))?;
    let mut body = Vec::with_capacity(512);
    body.push(b'[');
    handshake_msg(&mut body, 1);
    body.push(b']');
    ws_send(&mut ws, &body).await?;
    let deadline = tokio::time::Instant::now() + NETWORK_DELAY;
    loop {
        let frame = tokio::time::timeout_at(deadline, ws_next(&mut ws))
            .await
            .map_err(|_| "ws handshake: timeout".to_string())?
            .ok_or("ws handshake: socket closed")??;
        let out = Reader {
            sh,
            tracker: None,
            pending: None,
            echo: None,
        }
        .read(&frame);
        match out.handshake {
            Some(Ok((client_id, _))) => {
                sh.c.handshakes.fetch_add(1, Relaxed);
                return Ok(WsState {
                    ws,
                    client_id,
                    next_id: 1,
                    body,
                });
            }
            Some(Err(e)) => return Err(format!("ws handshake: {e}")),
            None => {}
        }
    }
}

/// One websocket session: a subscriber (`room`), an echo client (`echo`) or, with neither, idle.
/// Connect replies are answered with the next connect at once; the socket is not read during a
/// slow session's pauses.
#[allow(clippy::too_many_arguments)]
async fn ws_session(
    sh: &Shared,
    target: usize,
    class: Class,
    behaviour: &mut Behaviour,
    mut room: Option<(usize, &mut Tracker)>,
    echo: Option<(u64, &EchoState)>,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
    initial: bool,
) -> Result<End, String> {
    let mut st = ws_handshake(sh, target, class).await?;
    st.send_connect(sh, true).await?;
    let mut subscribed = false;
    if let Some((r, _)) = &room {
        let id = st.id();
        st.body.clear();
        st.body.push(b'[');
        subscribe_msg(&mut st.body, id, &st.client_id, &format!("/bench/room/{r}"));
        st.body.push(b']');
        let body = std::mem::take(&mut st.body);
        ws_send(&mut st.ws, &body).await?;
        st.body = body;
    } else {
        subscribed = true;
    }
    let mut live: Option<LiveGuard> = None;
    if subscribed {
        live = Some(LiveGuard::new(sh, None));
        mark_ready(sh, permit, initial);
    }
    let mut rx = sh.phase.subscribe();
    // Echo: the sequence awaited and when it was sent.
    let mut echo_seq = 0u64;
    let mut echo_sent = 0u64;
    let echo_padding = &sh.padding;
    let mut connect_out = true;
    let setup_deadline = tokio::time::Instant::now() + NETWORK_DELAY;
    loop {
        if behaviour.vanish_due(sh) {
            sh.c.vanished.fetch_add(1, Relaxed);
            return Ok(End::Vanished);
        }
        if subscribed && let Some(d) = behaviour.pause_due(sh) {
            pause(sh, d).await;
        }
        // Echo clients send their next echo once the previous one came back.
        if let Some((slot, _)) = echo
            && subscribed
            && sh.phase() == Phase::Run
            && echo_sent == 0
        {
            echo_seq += 1;
            let id = st.id();
            let t = sh.now();
            st.body.clear();
            st.body.push(b'[');
            publish_msg(
                &mut st.body,
                id,
                "/service/echo",
                &st.client_id,
                t,
                slot,
                echo_seq,
                echo_padding,
            );
            st.body.push(b']');
            let body = std::mem::take(&mut st.body);
            ws_send(&mut st.ws, &body).await?;
            st.body = body;
            echo_sent = t;
        }
        if sh.phase() == Phase::Done {
            return Ok(End::Done);
        }
        if echo_sent != 0 && sh.now() - echo_sent > NETWORK_DELAY.as_nanos() as u64 {
            sh.error("echo: timeout");
            echo_sent = 0;
        }
        let frame = tokio::select! {
            f = ws_next(&mut st.ws) => f,
            _ = rx.changed() => continue,
            _ = tokio::time::sleep_until(setup_deadline), if !subscribed => return Err("ws subscribe: timeout".into()),
            _ = tokio::time::sleep(Duration::from_millis(250)), if behaviour.class != Class::Normal || echo_sent != 0 => continue,
        };
        let frame = match frame {
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                if sh.phase() == Phase::Done {
                    return Ok(End::Done);
                }
                sh.c.kicked.fetch_add(1, Relaxed);
                sh.error(e);
                return Ok(End::Rehandshake);
            }
            None => {
                if sh.phase() == Phase::Done {
                    return Ok(End::Done);
                }
                sh.c.kicked.fetch_add(1, Relaxed);
                sh.error("ws: closed by the server");
                return Ok(End::Rehandshake);
            }
        };
        sh.c.frames.fetch_add(1, Relaxed);
        let out = Reader {
            sh,
            tracker: room.as_mut().map(|(_, t)| &mut **t),
            pending: None,
            echo: echo.map(|(_, e)| e),
        }
        .read(&frame);
        if let Some(r) = out.subscribed {
            r.map_err(|e| format!("subscribe: {e}"))?;
            subscribed = true;
            live = Some(LiveGuard::new(sh, room.as_ref().map(|(r, _)| *r)));
            mark_ready(sh, permit, initial);
        }
        if let Some(got) = out.echo
            && got >= echo_seq
        {
            echo_sent = 0;
        }
        if let Some(c) = out.connect {
            connect_out = false;
            if !c.ok || c.stop {
                sh.error(format!(
                    "connect failed: {}",
                    c.error.unwrap_or_else(|| "advice reconnect none".into())
                ));
                if c.rehandshake || c.stop {
                    drop(live);
                    return Ok(End::Rehandshake);
                }
            }
            if c.interval > 0 {
                pause(sh, Duration::from_millis(c.interval)).await;
            }
        }
        if !connect_out {
            st.send_connect(sh, false).await?;
            connect_out = true;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Publishers

/// Rooms publisher `p` publishes to.
fn rooms_of(sh: &Shared, p: usize) -> Vec<usize> {
    let (np, k) = (sh.args.publishers, sh.publish_rooms());
    if np > k {
        vec![p % k]
    } else {
        (0..k).filter(|r| r % np == p).collect()
    }
}

struct Schedule {
    rooms: Vec<usize>,
    seqs: Vec<u64>,
    next_room: usize,
    /// Next send time (ns since start) when throttled.
    next: u64,
    period: u64,
}

impl Schedule {
    fn new(sh: &Shared, p: usize) -> Self {
        let rooms = rooms_of(sh, p);
        let period = if sh.args.rate > 0.0 {
            (sh.args.publishers as f64 / sh.args.rate * 1e9) as u64
        } else {
            0
        };
        Self {
            seqs: vec![0; rooms.len()],
            rooms,
            next_room: 0,
            next: sh.now() + period * p as u64 / sh.args.publishers.max(1) as u64,
            period,
        }
    }

    /// Waits until publishes are due; returns how many to send now.
    async fn due(&mut self, sh: &Shared) -> usize {
        let batch = sh.args.batch.max(1);
        if self.period == 0 {
            return batch;
        }
        let now = sh.now();
        if now < self.next {
            tokio::time::sleep(Duration::from_nanos(self.next - now)).await;
        }
        let now = sh.now();
        let mut n = ((now - self.next) / self.period + 1) as usize;
        // More than a second behind: the server does not keep up; skip instead of bursting.
        let max_debt = (1e9 / self.period as f64).ceil() as usize;
        if n > max_debt.max(batch) {
            let skipped = n - batch;
            sh.c.skipped.fetch_add(skipped as u64, Relaxed);
            self.next += skipped as u64 * self.period;
            n = batch;
        }
        let n = n.min(batch);
        self.next += n as u64 * self.period;
        n
    }

    /// Appends `n` publishes to `body` (a JSON array being built), recording them as pending.
    #[allow(clippy::too_many_arguments)]
    fn write(
        &mut self,
        sh: &Shared,
        p: usize,
        n: usize,
        client_id: &str,
        next_id: &mut u64,
        body: &mut Vec<u8>,
        pending: &mut Pending,
    ) {
        let t = sh.now();
        for _ in 0..n {
            let i = self.next_room;
            self.next_room = (self.next_room + 1) % self.rooms.len();
            let room = self.rooms[i];
            self.seqs[i] += 1;
            *next_id += 1;
            if body.len() > 1 {
                body.push(b',');
            }
            let channel = format!("/bench/room/{room}");
            publish_msg(
                body,
                *next_id,
                &channel,
                client_id,
                t,
                p as u64,
                self.seqs[i],
                &sh.padding,
            );
            pending.q.push_back(PendingPublish {
                id: *next_id,
                stream: p * sh.args.rooms + room,
                room,
                seq: self.seqs[i],
                t,
            });
        }
        sh.pending_publishes.fetch_add(n as i64, Relaxed);
        sh.c.offered.fetch_add(n as u64, Relaxed);
    }
}

async fn lp_publisher(sh: Arc<Shared>, p: usize) {
    let target = sh.publish_target();
    let s = match LpSession::handshake(&sh, target, None).await {
        Ok(s) => s,
        Err(e) => {
            sh.error(format!("publisher {e}"));
            return;
        }
    };
    // The session's connect loop on its own connection, the publishes on another one with the
    // same cookies (as the official client's two connections).
    let mut publish = LpSession {
        target,
        conn: HttpConn::new(sh.targets[target].addr, None),
        jar: s.jar.clone(),
        client_id: s.client_id.clone(),
        next_id: 1_000_000_000,
        timeout: s.timeout,
        body: Vec::with_capacity(4096),
    };
    let connect_sh = sh.clone();
    let connect = tokio::spawn(async move {
        let mut s = s;
        let mut behaviour = Behaviour::new(&connect_sh, Class::Normal);
        let _ = lp_connect_loop(&connect_sh, &mut s, None, None, &mut behaviour).await;
    });
    sh.publishers_ready.fetch_add(1, Relaxed);
    let mut rx = sh.phase.subscribe();
    wait_phase(&mut rx, Phase::Run).await;
    let mut schedule = Schedule::new(&sh, p);
    let mut pending = Pending::default();
    while sh.phase() == Phase::Run {
        let n = tokio::select! {
            n = schedule.due(&sh) => n,
            _ = wait_phase(&mut rx, Phase::Drain) => break,
        };
        if sh.phase() != Phase::Run {
            break;
        }
        publish.body.clear();
        publish.body.push(b'[');
        let mut next_id = publish.next_id;
        schedule.write(
            &sh,
            p,
            n,
            &publish.client_id,
            &mut next_id,
            &mut publish.body,
            &mut pending,
        );
        publish.next_id = next_id;
        publish.body.push(b']');
        let mut reader = Reader {
            sh: &sh,
            tracker: None,
            pending: Some(&mut pending),
            echo: None,
        };
        match publish.exchange(&sh, "", &mut reader, NETWORK_DELAY).await {
            Ok(_) => {}
            Err(e) => {
                sh.error(format!("publish {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        pending.abandon(&sh, "no reply in the response");
    }
    let _ = rx.wait_for(|p| *p == Phase::Done).await;
    connect.abort();
}

async fn ws_publisher(sh: Arc<Shared>, p: usize) {
    let mut st = match ws_handshake(&sh, sh.publish_target(), Class::Normal).await {
        Ok(st) => st,
        Err(e) => {
            sh.error(format!("publisher {e}"));
            return;
        }
    };
    if let Err(e) = st.send_connect(&sh, true).await {
        sh.error(format!("publisher {e}"));
        return;
    }
    sh.publishers_ready.fetch_add(1, Relaxed);
    let mut rx = sh.phase.subscribe();
    let mut pending = Pending::default();
    let mut schedule: Option<Schedule> = None;
    loop {
        let phase = sh.phase();
        if phase == Phase::Run && schedule.is_none() {
            schedule = Some(Schedule::new(&sh, p));
        }
        // As over long-polling, one batch in flight at a time: a throttled publisher that falls
        // behind catches up with bigger batches (up to --batch), then skips ahead, instead of
        // queueing without bound in an overloaded server.
        let can_send = phase == Phase::Run && pending.q.is_empty();
        let can_send = can_send && schedule.is_some();
        let sched = schedule.as_mut();
        let frame = tokio::select! {
            f = ws_next(&mut st.ws) => f,
            n = async { sched.expect("guarded").due(&sh).await }, if can_send => {
                let schedule = schedule.as_mut().expect("guarded");
                st.body.clear();
                st.body.push(b'[');
                let mut next_id = st.next_id;
                schedule.write(&sh, p, n, &st.client_id, &mut next_id, &mut st.body, &mut pending);
                st.next_id = next_id;
                st.body.push(b']');
                let body = std::mem::take(&mut st.body);
                if let Err(e) = ws_send(&mut st.ws, &body).await {
                    sh.error(format!("publisher {e}"));
                    pending.abandon(&sh, "socket failed");
                    break;
                }
                st.body = body;
                continue;
            }
            _ = rx.changed() => continue,
        };
        match frame {
            Some(Ok(f)) => {
                let out = Reader {
                    sh: &sh,
                    tracker: None,
                    pending: Some(&mut pending),
                    echo: None,
                }
                .read(&f);
                if out.connect.is_some()
                    && let Err(e) = st.send_connect(&sh, false).await
                {
                    sh.error(format!("publisher {e}"));
                    pending.abandon(&sh, "socket failed");
                    break;
                }
            }
            Some(Err(e)) => {
                sh.error(format!("publisher {e}"));
                pending.abandon(&sh, "socket failed");
                break;
            }
            None => {
                sh.error("publisher: socket closed by the server");
                pending.abandon(&sh, "socket closed");
                break;
            }
        }
        if sh.phase() == Phase::Done {
            pending.abandon(&sh, "run over");
            break;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Echo clients

async fn echo_client(sh: Arc<Shared>, slot: usize, ramp: Arc<Semaphore>) {
    let mut permit = Some(ramp.acquire_owned().await.expect("open"));
    let state = EchoState {
        got: AtomicU64::new(0),
        notify: Notify::new(),
    };
    let result = if sh.ws() {
        let mut behaviour = Behaviour::new(&sh, Class::Normal);
        ws_session(
            &sh,
            sh.session_target(slot),
            Class::Normal,
            &mut behaviour,
            None,
            Some((slot as u64, &state)),
            &mut permit,
            true,
        )
        .await
    } else {
        lp_echo(&sh, slot, &state, &mut permit).await
    };
    if let Err(e) = result {
        sh.error(format!("echo client: {e}"));
    }
}

async fn lp_echo(
    sh: &Arc<Shared>,
    slot: usize,
    state: &EchoState,
    permit: &mut Option<tokio::sync::OwnedSemaphorePermit>,
) -> Result<End, String> {
    let target = sh.session_target(slot);
    let mut s = LpSession::handshake(sh, target, None).await?;
    let mut publish = LpSession {
        target,
        conn: HttpConn::new(sh.targets[target].addr, None),
        jar: s.jar.clone(),
        client_id: s.client_id.clone(),
        next_id: 1_000_000_000,
        timeout: s.timeout,
        body: Vec::with_capacity(1024),
    };
    let _live = LiveGuard::new(sh, None);
    mark_ready(sh, permit, true);
    let connect_loop = async {
        let mut behaviour = Behaviour::new(sh, Class::Normal);
        lp_connect_loop(sh, &mut s, None, Some(state), &mut behaviour).await
    };
    let echo_loop = async {
        let mut rx = sh.phase.subscribe();
        wait_phase(&mut rx, Phase::Run).await;
        let mut seq = 0u64;
        while sh.phase() == Phase::Run {
            seq += 1;
            let id = publish.id();
            publish.body.clear();
            publish.body.push(b'[');
            let client_id = publish.client_id.clone();
            publish_msg(
                &mut publish.body,
                id,
                "/service/echo",
                &client_id,
                sh.now(),
                slot as u64,
                seq,
                &sh.padding,
            );
            publish.body.push(b']');
            let mut reader = Reader {
                sh,
                tracker: None,
                pending: None,
                echo: Some(state),
            };
            if let Err(e) = publish.exchange(sh, "", &mut reader, NETWORK_DELAY).await {
                sh.error(format!("echo publish: {e}"));
                pause(sh, Duration::from_millis(100)).await;
                continue;
            }
            // The echo rode this response, or comes on the session's connect.
            let deadline = tokio::time::Instant::now() + NETWORK_DELAY;
            while state.got.load(Relaxed) < seq {
                tokio::select! {
                    _ = state.notify.notified() => {}
                    _ = tokio::time::sleep_until(deadline) => {
                        sh.error("echo: timeout");
                        break;
                    }
                    _ = wait_phase(&mut rx, Phase::Drain) => break,
                }
            }
        }
    };
    tokio::select! {
        end = connect_loop => Ok(end),
        _ = async { echo_loop.await; std::future::pending::<()>().await } => unreachable!(),
    }
}

// ---------------------------------------------------------------------------------------------
// /proc

/// CPU seconds (user + system) of a process, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the command.
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// A `/proc/<pid>/status` field in kB (`VmRSS`, `VmHWM`).
fn status_kb(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The server's own counters, from `--stats-url`.
async fn server_stats(url: &str) -> String {
    let fetch = async {
        let target = Target::parse(url).ok()?;
        let mut conn = HttpConn::new(target.addr, None);
        let path = url
            .find("://")
            .and_then(|i| url[i + 3..].find('/').map(|j| &url[i + 3 + j..]))
            .unwrap_or("/");
        let reply = conn.get(&target, path).await.ok()?;
        let body = conn.body(&reply);
        Some(String::from_utf8_lossy(body).trim().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), fetch)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| "unavailable".into())
}

fn mb(kb: Option<u64>) -> String {
    kb.map_or("-".into(), |kb| format!("{:.1}MB", kb as f64 / 1024.0))
}

fn ms(ns: u64) -> String {
    let ms = ns as f64 / 1e6;
    if ms < 10.0 {
        format!("{ms:.2}ms")
    } else {
        format!("{ms:.1}ms")
    }
}

// ---------------------------------------------------------------------------------------------
// Main

fn main() {
    let args = Args::parse();
    let mut builder = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(args.threads);
        b
    };
    let runtime = builder.enable_all().build().expect("runtime");
    let code = runtime.block_on(run(args));
    std::process::exit(code);
}

struct Cpu {
    gen_cpu: f64,
    /// The server processes' CPU seconds, summed.
    srv_cpu: Option<f64>,
    /// Each server process's.
    each: Vec<Option<f64>>,
    at: Instant,
}

impl Cpu {
    fn now(pids: &[u32]) -> Self {
        let each: Vec<Option<f64>> = pids.iter().map(|p| cpu_seconds(&p.to_string())).collect();
        Self {
            gen_cpu: cpu_seconds("self").unwrap_or(0.0),
            srv_cpu: each.iter().flatten().copied().reduce(|a, b| a + b),
            each,
            at: Instant::now(),
        }
    }
}

async fn run(args: Args) -> i32 {
    // The sessions' endpoints, then the publishers'.
    let publish_url = args.publish_url.as_ref().or(args.url.first());
    let mut targets = Vec::new();
    for url in args.url.iter().chain(publish_url) {
        match Target::parse(url) {
            Ok(t) => targets.push(t),
            Err(e) => {
                eprintln!("{e}");
                return 2;
            }
        }
    }
    if targets.len() < 2 {
        eprintln!("--url is needed");
        return 2;
    }
    if args.rooms == 0 {
        eprintln!("--rooms must be at least 1");
        return 2;
    }
    let mut child = None;
    let mut pids = args.server_pid.clone();
    if let Some(cmd) = &args.spawn {
        match std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("exec {cmd}"))
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .spawn()
        {
            Ok(c) => {
                pids.insert(0, c.id());
                child = Some(c);
            }
            Err(e) => {
                eprintln!("--spawn: {e}");
                return 2;
            }
        }
    }
    // Wait for the server (every endpoint) to accept connections.
    let up = Instant::now();
    for target in &targets {
        loop {
            if tokio::net::TcpStream::connect(target.addr).await.is_ok() {
                break;
            }
            if up.elapsed() > Duration::from_secs(60) {
                eprintln!("{}: not accepting connections", target.addr);
                return 1;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let code = drive(args, targets, pids).await;
    if let Some(mut c) = child {
        let _ = c.kill();
        let _ = c.wait();
    }
    code
}

async fn drive(args: Args, targets: Vec<Target>, pids: Vec<u32>) -> i32 {
    // RSS is the first process's; CPU the sum of all of them.
    let pid = pids.first().copied();
    let report_every =
        args.report_every
            .unwrap_or(if args.mode == Mode::Soak { 10.0 } else { 1.0 });
    let streams = args.publishers.max(1) * args.rooms;
    let (phase, _) = watch::channel(Phase::Setup);
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64);
    let sh = Arc::new(Shared {
        targets,
        start: Instant::now(),
        measure_from: AtomicU64::new(u64::MAX),
        room_subs: (0..args.rooms).map(|_| AtomicI64::new(0)).collect(),
        max_accepted: (0..streams).map(|_| AtomicU64::new(0)).collect(),
        failed: Mutex::new(Vec::new()),
        c: Counters::default(),
        hist: Histogram::default(),
        interval_hist: Histogram::default(),
        errors: Mutex::new(BTreeMap::new()),
        phase,
        ready: AtomicUsize::new(0),
        publishers_ready: AtomicUsize::new(0),
        pending_publishes: AtomicI64::new(0),
        padding: "a".repeat(args.payload.saturating_sub(48)),
        seed: AtomicU64::new(seed),
        args,
    });
    let args = &sh.args;
    let rss0 = pid.and_then(|p| status_kb(p, "VmRSS"));
    println!(
        "load: {:?} over {:?} to {} — {} clients, {} rooms, {} publishers, rate {}, payload {} B, {} s + {} s warm-up, {} thread(s){}",
        args.mode,
        args.transport,
        args.url.join(" "),
        args.clients,
        args.rooms,
        args.publishers,
        if args.rate > 0.0 {
            format!("{}/s", args.rate)
        } else {
            "unthrottled".into()
        },
        args.payload,
        args.duration,
        args.warmup,
        args.threads,
        pid.map_or(String::new(), |p| format!(
            ", server pid {p}, RSS {}",
            mb(rss0)
        )),
    );
    if args.url.len() > 1 || args.publish_url.is_some() || args.publish_rooms.is_some() {
        let n = sh.targets.len() - 1;
        let mut per_url = vec![(0usize, std::collections::BTreeSet::new()); n];
        for slot in 0..args.clients {
            let (count, rooms) = &mut per_url[sh.session_target(slot)];
            *count += 1;
            rooms.insert(slot % args.rooms);
        }
        for (url, (count, rooms)) in args.url.iter().zip(&per_url) {
            let rooms: Vec<String> = rooms.iter().map(|r| r.to_string()).collect();
            println!(
                "cluster: {count} sessions at {url} (rooms {})",
                rooms.join(",")
            );
        }
        println!(
            "cluster: publishers at {} to rooms 0-{}{}",
            args.publish_url.as_ref().unwrap_or(&args.url[0]),
            sh.publish_rooms() - 1,
            if pids.len() > 1 {
                format!(
                    "; server processes {}",
                    pids.iter()
                        .map(|p| p.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                )
            } else {
                String::new()
            }
        );
    }
    let mut tasks = Vec::new();
    let ramp = Arc::new(Semaphore::new(args.ramp.max(1)));
    let setup = Instant::now();
    for slot in 0..args.clients {
        let (sh, ramp) = (sh.clone(), ramp.clone());
        tasks.push(match args.mode {
            Mode::Echo => tokio::spawn(echo_client(sh, slot, ramp)),
            _ => tokio::spawn(subscriber(sh, slot, ramp)),
        });
    }
    // Set-up: every session handshaken, connected and subscribed.
    let mut last_print = Instant::now();
    while sh.ready.load(Relaxed) < args.clients {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if last_print.elapsed() > Duration::from_secs(2) {
            last_print = Instant::now();
            println!(
                "setup: {}/{} sessions ready, {} errors",
                sh.ready.load(Relaxed),
                args.clients,
                sh.c.errors.load(Relaxed)
            );
        }
        if setup.elapsed() > Duration::from_secs(180) {
            println!(
                "setup: giving up waiting ({} ready)",
                sh.ready.load(Relaxed)
            );
            break;
        }
    }
    let setup_s = setup.elapsed().as_secs_f64();
    println!(
        "setup: {} sessions ready in {:.1} s ({:.0}/s)",
        sh.ready.load(Relaxed),
        setup_s,
        sh.ready.load(Relaxed) as f64 / setup_s.max(1e-9)
    );
    // Memory per session, once the sessions settle.
    let mut rss_sessions = None;
    if let Some(pid) = pid {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let rss1 = status_kb(pid, "VmRSS");
        if let (Some(a), Some(b)) = (rss0, rss1) {
            let per = (b.saturating_sub(a)) as f64 * 1024.0 / args.clients.max(1) as f64;
            println!(
                "memory: server RSS {} before the sessions, {} with {} sessions: {:.1} KB per session",
                mb(rss0),
                mb(rss1),
                sh.ready.load(Relaxed),
                per / 1024.0
            );
            rss_sessions = Some((b, per));
        }
    }
    let publishers = if args.mode == Mode::Echo {
        0
    } else {
        args.publishers
    };
    for p in 0..publishers {
        let sh = sh.clone();
        tasks.push(if sh.ws() {
            tokio::spawn(ws_publisher(sh, p))
        } else {
            tokio::spawn(lp_publisher(sh, p))
        });
    }
    let wait_pubs = Instant::now();
    while sh.publishers_ready.load(Relaxed) < publishers
        && wait_pubs.elapsed() < Duration::from_secs(30)
    {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let run_start = sh.now();
    let warm_ns = (args.warmup * 1e9) as u64;
    sh.measure_from.store(run_start + warm_ns, Relaxed);
    sh.phase.send_replace(Phase::Run);
    let total = Duration::from_secs_f64(args.warmup + args.duration);
    let started = Instant::now();
    let mut cpu_prev = Cpu::now(&pids);
    let mut cpu_window_start: Option<Cpu> = None;
    // Deliveries and accepted publishes counted at the start of the measured window.
    let mut window_counts = (0u64, 0u64, 0u64);
    let mut prev_delivered = 0u64;
    let mut prev_accepted = 0u64;
    let mut prev_echoes = 0u64;
    let mut prev_offered = 0u64;
    let mut rss_peak_sampled = 0u64;
    let mut next_report = started + Duration::from_secs_f64(report_every);
    let warm_at = started + Duration::from_secs_f64(args.warmup);
    let end_at = started + total;
    loop {
        let now = Instant::now();
        if cpu_window_start.is_none() && now >= warm_at {
            cpu_window_start = Some(Cpu::now(&pids));
            window_counts = (
                sh.c.delivered.load(Relaxed),
                sh.c.accepted.load(Relaxed),
                sh.c.frames.load(Relaxed),
            );
        }
        if now >= end_at {
            break;
        }
        let wake = next_report.min(end_at).min(if cpu_window_start.is_none() {
            warm_at
        } else {
            end_at
        });
        tokio::time::sleep_until(tokio::time::Instant::from_std(wake)).await;
        if Instant::now() < next_report {
            continue;
        }
        next_report += Duration::from_secs_f64(report_every);
        let cpu = Cpu::now(&pids);
        let dt = cpu.at.duration_since(cpu_prev.at).as_secs_f64();
        let gen_pct = (cpu.gen_cpu - cpu_prev.gen_cpu) / dt * 100.0;
        let srv_pct = match (cpu.srv_cpu, cpu_prev.srv_cpu) {
            (Some(a), Some(b)) => format!("{:.0}%", (a - b) / dt * 100.0),
            _ => "-".into(),
        };
        let rss = pid.and_then(|p| status_kb(p, "VmRSS"));
        rss_peak_sampled = rss_peak_sampled.max(rss.unwrap_or(0));
        let c = &sh.c;
        let delivered = c.delivered.load(Relaxed);
        let accepted = c.accepted.load(Relaxed);
        let echoes = c.echoes_m.load(Relaxed);
        let offered = c.offered.load(Relaxed);
        let snap = sh.interval_hist.snapshot(true);
        let phase = if Instant::now() < warm_at {
            "warm"
        } else {
            "run "
        };
        let elapsed = started.elapsed().as_secs_f64();
        match args.mode {
            Mode::Echo => println!(
                "[{elapsed:6.1}s] {phase} echoes/s {:>8.0}  p50 {} p99 {} max {} | errors {} | live {} | cpu gen {gen_pct:.0}% server {srv_pct} | rss {}",
                (echoes - prev_echoes) as f64 / dt,
                ms(snap.quantile(0.5)),
                ms(snap.quantile(0.99)),
                ms(snap.max()),
                c.errors.load(Relaxed),
                c.live.load(Relaxed),
                mb(rss),
            ),
            Mode::Fanout => println!(
                "[{elapsed:6.1}s] {phase} pub/s {:>7.0} (offered {:.0}) deliveries/s {:>9.0}  p50 {} p99 {} max {} | gaps {} dropped {} dup {} | errors {} | cpu gen {gen_pct:.0}% server {srv_pct} | rss {}",
                (accepted - prev_accepted) as f64 / dt,
                (offered - prev_offered) as f64 / dt,
                (delivered - prev_delivered) as f64 / dt,
                ms(snap.quantile(0.5)),
                ms(snap.quantile(0.99)),
                ms(snap.max()),
                c.gaps.load(Relaxed),
                c.noticed.load(Relaxed),
                c.dup.load(Relaxed),
                c.errors.load(Relaxed),
                mb(rss),
            ),
            Mode::Soak => println!(
                "[{elapsed:6.0}s] rss {} | live {} (vanished {}, kicked {}, re-handshakes {}, pauses {}) | accepted {} delivered {} dropped-with-notice {} lost-without-notice {} dup {} | deliveries/s {:.0} p99 {} | errors {} | cpu gen {gen_pct:.0}% server {srv_pct}",
                mb(rss),
                c.live.load(Relaxed),
                c.vanished.load(Relaxed),
                c.kicked.load(Relaxed),
                c.rehandshakes.load(Relaxed),
                c.pauses.load(Relaxed),
                accepted,
                delivered,
                c.noticed.load(Relaxed),
                c.lost.load(Relaxed),
                c.dup.load(Relaxed),
                (delivered - prev_delivered) as f64 / dt,
                ms(snap.quantile(0.99)),
                c.errors.load(Relaxed),
            ),
        }
        if let Some(url) = &args.stats_url {
            println!("         server stats: {}", server_stats(url).await);
        }
        let _ = std::io::stdout().flush();
        prev_delivered = delivered;
        prev_accepted = accepted;
        prev_echoes = echoes;
        prev_offered = offered;
        cpu_prev = cpu;
    }
    let cpu_end = Cpu::now(&pids);
    let window_delivered = sh.c.delivered.load(Relaxed) - window_counts.0;
    let window_frames = sh.c.frames.load(Relaxed) - window_counts.2;
    let window_accepted = sh.c.accepted.load(Relaxed) - window_counts.1;
    let cpu_start = cpu_window_start.unwrap_or_else(|| Cpu::now(&pids));
    let window = cpu_end
        .at
        .duration_since(cpu_start.at)
        .as_secs_f64()
        .max(1e-9);
    // Drain: publishers stop, slow sessions read again, in-flight deliveries arrive.
    sh.phase.send_replace(Phase::Drain);
    let drain_start = Instant::now();
    let mut last_change = Instant::now();
    let mut last_delivered = sh.c.delivered.load(Relaxed) + sh.c.echoes_m.load(Relaxed);
    while drain_start.elapsed() < Duration::from_secs_f64(args.drain) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let d = sh.c.delivered.load(Relaxed) + sh.c.echoes_m.load(Relaxed);
        if d != last_delivered {
            last_delivered = d;
            last_change = Instant::now();
        }
        let quiet = if args.slow > 0.0 { 2.0 } else { 0.5 };
        if sh.pending_publishes.load(Relaxed) <= 0 && last_change.elapsed().as_secs_f64() > quiet {
            break;
        }
    }
    sh.phase.send_replace(Phase::Done);
    let final_stats = match &args.stats_url {
        Some(url) => Some(server_stats(url).await),
        None => None,
    };
    let join = async {
        for t in tasks {
            let _ = t.await;
        }
    };
    if tokio::time::timeout(Duration::from_secs(15), join)
        .await
        .is_err()
    {
        println!("(some sessions did not finish within 15 s; their tails are not counted)");
    }

    // Summary.
    let c = &sh.c;
    let snap = sh.hist.snapshot(false);
    let dur = args.duration.max(1e-9);
    let delivered_m = c.delivered_m.load(Relaxed);
    let expected_m = c.expected_m.load(Relaxed);
    let accepted_m = c.accepted_m.load(Relaxed);
    let echoes_m = c.echoes_m.load(Relaxed);
    let gen_cpu = cpu_end.gen_cpu - cpu_start.gen_cpu;
    let srv_cpu = match (cpu_end.srv_cpu, cpu_start.srv_cpu) {
        (Some(a), Some(b)) => Some(a - b),
        _ => None,
    };
    let rss_end = pid.and_then(|p| status_kb(p, "VmRSS"));
    let rss_peak = pid.and_then(|p| status_kb(p, "VmHWM"));
    println!("---");
    match args.mode {
        Mode::Echo => println!(
            "echo: {} echoes in {:.0} s = {:.0}/s; latency p50 {} p99 {} p99.9 {} max {}",
            echoes_m,
            dur,
            echoes_m as f64 / dur,
            ms(snap.quantile(0.5)),
            ms(snap.quantile(0.99)),
            ms(snap.quantile(0.999)),
            ms(snap.max()),
        ),
        _ => {
            println!(
                "publishes: offered {} (skipped behind schedule {}), accepted {} ({:.0}/s in the measured window), failed {}",
                c.offered.load(Relaxed),
                c.skipped.load(Relaxed),
                c.accepted.load(Relaxed),
                window_accepted as f64 / window,
                c.pub_failed.load(Relaxed),
            );
            println!(
                "deliveries: {:.0}/s received in the measured window ({:.0} {}/s, {:.1} messages each); of the publishes sent in it: expected {} delivered {}, expected - delivered = {}",
                window_delivered as f64 / window,
                window_frames as f64 / window,
                if sh.ws() { "frames" } else { "responses" },
                window_delivered as f64 / window_frames.max(1) as f64,
                expected_m,
                delivered_m,
                expected_m as i64 - delivered_m as i64,
            );
            println!(
                "accounting (whole run): delivered {} unique, duplicates {}, gaps {} = dropped with notice {} + lost without notice {} (of which at the end {})",
                c.delivered.load(Relaxed),
                c.dup.load(Relaxed),
                c.gaps.load(Relaxed),
                c.gaps.load(Relaxed) - c.lost.load(Relaxed),
                c.lost.load(Relaxed),
                c.tail_lost.load(Relaxed),
            );
            if c.noticed.load(Relaxed) != c.gaps.load(Relaxed) - c.lost.load(Relaxed) {
                println!(
                    "  (overflow markers announced {} dropped messages in all; sessions that vanished or were disconnected take their unmatched notices with them)",
                    c.noticed.load(Relaxed)
                );
            }
            println!(
                "latency publish->delivery{}: p50 {} p99 {} p99.9 {} max {} ({} samples)",
                if args.slow > 0.0 {
                    " (sessions not slow on purpose)"
                } else {
                    ""
                },
                ms(snap.quantile(0.5)),
                ms(snap.quantile(0.99)),
                ms(snap.quantile(0.999)),
                ms(snap.max()),
                snap.count(),
            );
            println!(
                "sessions: live {} at the end, handshakes {}, re-handshakes {}, vanished {}, disconnected by the server {}, slow pauses {}",
                c.live.load(Relaxed),
                c.handshakes.load(Relaxed),
                c.rehandshakes.load(Relaxed),
                c.vanished.load(Relaxed),
                c.kicked.load(Relaxed),
                c.pauses.load(Relaxed),
            );
        }
    }
    println!(
        "cpu over the measured {:.1} s: generator {:.1} s ({:.0}% of a core){}",
        window,
        gen_cpu,
        gen_cpu / window * 100.0,
        srv_cpu.map_or(String::new(), |s| format!(
            ", server {:.1} s ({:.0}% of a core)",
            s,
            s / window * 100.0
        )),
    );
    // Each server process's CPU over the window and peak RSS, when there are several.
    let each_cpu: Vec<Option<f64>> = cpu_end
        .each
        .iter()
        .zip(&cpu_start.each)
        .map(|(a, b)| Some((*a)? - (*b)?))
        .collect();
    let each_hwm: Vec<Option<u64>> = pids.iter().map(|&p| status_kb(p, "VmHWM")).collect();
    if pids.len() > 1 {
        let each: Vec<String> = pids
            .iter()
            .zip(&each_cpu)
            .zip(&each_hwm)
            .map(|((p, cpu), hwm)| {
                format!(
                    "pid {p} {} ({}), peak RSS {}",
                    cpu.map_or("-".into(), |s| format!("{s:.1} s")),
                    cpu.map_or("-".into(), |s| format!(
                        "{:.0}% of a core",
                        s / window * 100.0
                    )),
                    mb(*hwm)
                )
            })
            .collect();
        println!("cpu per server process: {}", each.join("; "));
    }
    if pid.is_some() {
        println!(
            "server RSS: {} at the end, peak {} (VmHWM), highest sampled {}",
            mb(rss_end),
            mb(rss_peak),
            mb(Some(rss_peak_sampled))
        );
    }
    if let Some(stats) = &final_stats {
        println!("server stats after the drain: {stats}");
    }
    let errors = sh.errors.lock().unwrap().clone();
    println!("errors: {}", c.errors.load(Relaxed));
    for (what, n) in &errors {
        println!("  {n:>8}  {what}");
    }
    let mut result = serde_json::json!({
        "label": args.label,
        "mode": format!("{:?}", args.mode).to_lowercase(),
        "transport": sh.connection_type(),
        "clients": args.clients,
        "rooms": args.rooms,
        "publishers": publishers,
        "rate": args.rate,
        "payload": args.payload,
        "duration_s": args.duration,
        "setup_s": setup_s,
        "sessions_ready": sh.ready.load(Relaxed),
        "publishes_per_s": window_accepted as f64 / window,
        "offered": c.offered.load(Relaxed),
        "accepted": c.accepted.load(Relaxed),
        "accepted_measured": accepted_m,
        "frames_per_s": window_frames as f64 / window,
        "deliveries_per_s": if args.mode == Mode::Echo { echoes_m as f64 / dur } else { window_delivered as f64 / window },
        "expected": expected_m,
        "delivered": delivered_m,
        "duplicates": c.dup.load(Relaxed),
        "gaps": c.gaps.load(Relaxed),
        "dropped_notice": c.noticed.load(Relaxed),
        "lost_without_notice": c.lost.load(Relaxed),
        "p50_ms": snap.quantile(0.5) as f64 / 1e6,
        "p99_ms": snap.quantile(0.99) as f64 / 1e6,
        "p999_ms": snap.quantile(0.999) as f64 / 1e6,
        "max_ms": snap.max() as f64 / 1e6,
        "errors": c.errors.load(Relaxed),
        "error_kinds": errors,
        "gen_cpu_s": gen_cpu,
        "window_s": window,
        "server_cpu_s": srv_cpu,
        "server_rss_kb": rss_end,
        "server_rss_peak_kb": rss_peak,
        "server_rss_before_kb": rss0,
        "server_rss_sessions_kb": rss_sessions.map(|(kb, _)| kb),
        "server_bytes_per_session": rss_sessions.map(|(_, per)| per),
    });
    if pids.len() > 1 {
        result["server_pids"] = serde_json::json!(pids);
        result["server_cpu_s_each"] = serde_json::json!(each_cpu);
        result["server_rss_peak_kb_each"] = serde_json::json!(each_hwm);
    }
    println!("RESULT {result}");
    0
}
