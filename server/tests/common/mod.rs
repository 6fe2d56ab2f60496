//! Plumbing for the tests of the `tower-bayeux` binary: starting it as a child process (killed
//! on drop) and reading its `listening on` lines, a small HTTP/1.1 client over TCP or a unix
//! socket (hyper's client connection API, one connection per request), a hand-rolled Bayeux
//! long-polling client on top of it, and temporary directories.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::HeaderMap;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_tower-bayeux");
/// How long the server may take to print its `listening on` lines.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Limit for one HTTP exchange (only there to turn a hang into a failure).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Limit for a process to exit (only there to turn a hang into a failure).
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------------------------
// Temporary directories
// ---------------------------------------------------------------------------------------------

/// A fresh directory under the system temp dir, removed on drop.
pub struct TempDir {
    pub path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short names: unix socket paths are limited to ~108 bytes.
        let path = std::env::temp_dir().join(format!("tbs-{}-{n}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        TempDir { path }
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Writes `contents` to `name` in the directory and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.join(name);
        std::fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
        path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// The binary with a clean environment: no inherited `TOWER_BAYEUX_*` variable, stdin closed.
pub fn command() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("TOWER_BAYEUX_") {
            command.env_remove(&key);
        }
    }
    command.stdin(Stdio::null());
    command
}

/// Where a listener of the server is.
#[derive(Clone, Debug)]
pub enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// A running `tower-bayeux`, killed on drop.
pub struct Server {
    child: Child,
    exited: Option<ExitStatus>,
    /// The TCP listeners from the `listening on http://…` lines, in order.
    pub http: Vec<SocketAddr>,
    /// The unix sockets from the `listening on unix:…` lines, in order.
    pub unix: Vec<PathBuf>,
    /// Everything the server wrote to stderr so far.
    stderr: Arc<Mutex<String>>,
}

impl Server {
    /// `tower-bayeux --listen 127.0.0.1:0 <args>`, once it listens.
    pub fn start(args: &[&str]) -> Server {
        let mut command = command();
        command.args(["--listen", "127.0.0.1:0"]).args(args);
        Server::spawn(command, 1, 0)
    }

    /// Spawns `command` and waits for `tcp` `listening on http://` lines and `unix`
    /// `listening on unix:` lines on its stdout.
    pub fn spawn(mut command: Command, tcp: usize, unix: usize) -> Server {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let log = Arc::new(Mutex::new(String::new()));
        // Guard first, so the process is killed even if we panic below.
        let mut server = Server {
            child,
            exited: None,
            http: Vec::new(),
            unix: Vec::new(),
            stderr: log.clone(),
        };

        thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[tower-bayeux stderr] {line}");
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                eprintln!("[tower-bayeux stdout] {line}");
                if let Some(rest) = line.trim().strip_prefix("listening on ") {
                    let _ = tx.send(rest.trim().to_owned());
                }
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        while server.http.len() < tcp || server.unix.len() < unix {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(at) => {
                    if let Some(addr) = at.strip_prefix("http://") {
                        let addr = addr.trim_end_matches('/');
                        server.http.push(
                            addr.parse().unwrap_or_else(|e| {
                                panic!("bad address in `listening on {at}`: {e}")
                            }),
                        );
                    } else if let Some(path) = at.strip_prefix("unix:") {
                        server.unix.push(PathBuf::from(path));
                    } else {
                        panic!("unexpected `listening on {at}` line");
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Ok(Some(status)) = server.child.try_wait() {
                        server.exited = Some(status);
                        panic!(
                            "tower-bayeux exited ({status}) before printing its `listening on` lines; stderr:\n{}",
                            server.stderr()
                        );
                    }
                    if Instant::now() >= deadline {
                        panic!(
                            "tower-bayeux did not print {tcp} `listening on http://…` and {unix} `listening on unix:…` lines within {START_TIMEOUT:?} (got {:?} and {:?}); stderr:\n{}",
                            server.http,
                            server.unix,
                            server.stderr()
                        );
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    thread::sleep(Duration::from_millis(200));
                    panic!(
                        "tower-bayeux closed its stdout before printing its `listening on` lines (got {:?} and {:?}; exit: {:?}); stderr:\n{}",
                        server.http,
                        server.unix,
                        server.child.try_wait().ok().flatten(),
                        server.stderr()
                    );
                }
            }
        }
        server
    }

    /// The first TCP listener.
    pub fn addr(&self) -> Addr {
        Addr::Tcp(*self.http.first().expect("a TCP listener"))
    }

    /// The first unix socket.
    pub fn unix_addr(&self) -> Addr {
        Addr::Unix(self.unix.first().expect("a unix socket").clone())
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the server wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends SIGTERM (through `kill`, std has no signal API).
    pub fn sigterm(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(
            status.success(),
            "kill -TERM {} failed: {status}",
            self.pid()
        );
    }

    /// Waits (asynchronously) for the process to exit, failing after [`EXIT_TIMEOUT`].
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + EXIT_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "tower-bayeux still running {EXIT_TIMEOUT:?} after it was told to stop; stderr:\n{}",
                self.stderr()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// What a run of the binary to its end gave.
pub struct Finished {
    /// `None` if it was still running after [`EXIT_TIMEOUT`] (then it was killed).
    pub status: Option<ExitStatus>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` to its end (killed after [`EXIT_TIMEOUT`]), collecting its output.
pub fn run_to_end(mut command: Command) -> Finished {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {BIN}: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + EXIT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    Finished {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP response, its body as text.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}), status {}: {:?}", self.status, self.body))
    }

    /// Asserts the status, with the body in the message.
    pub fn expect(&self, status: u16, what: &str) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "{what}: unexpected status, body {:?}",
            self.body
        );
        self
    }
}

/// A request to send.
pub struct Req {
    pub method: &'static str,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Req {
    pub fn get(path: impl Into<String>) -> Req {
        Req {
            method: "GET",
            path: path.into(),
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    pub fn post(path: impl Into<String>, body: impl Into<Bytes>) -> Req {
        Req {
            method: "POST",
            path: path.into(),
            headers: Vec::new(),
            body: body.into(),
        }
    }

    pub fn method(mut self, method: &'static str) -> Req {
        self.method = method;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Req {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn json(self) -> Req {
        self.header("content-type", "application/json")
    }

    pub fn bearer(self, secret: &str) -> Req {
        self.header("authorization", &format!("Bearer {secret}"))
    }

    /// Sends the request on a new connection to `addr`, within [`REQUEST_TIMEOUT`].
    pub async fn send(self, addr: &Addr) -> Reply {
        self.send_within(addr, REQUEST_TIMEOUT).await
    }

    /// Sends the request on a new connection to `addr`, failing after `limit`.
    pub async fn send_within(self, addr: &Addr, limit: Duration) -> Reply {
        let what = format!("{} {} to {addr:?}", self.method, self.path);
        match tokio::time::timeout(limit, self.exchange(addr)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(e)) => panic!("{what} failed: {e}"),
            Err(_) => panic!("{what}: no reply within {limit:?}"),
        }
    }

    async fn exchange(self, addr: &Addr) -> Result<Reply, String> {
        let mut request = Request::builder()
            .method(self.method)
            .uri(&self.path)
            .header("host", "localhost");
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(self.body))
            .map_err(|e| e.to_string())?;
        match addr {
            Addr::Tcp(addr) => {
                let stream = TcpStream::connect(addr)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                exchange(stream, request).await
            }
            Addr::Unix(path) => {
                let stream = UnixStream::connect(path)
                    .await
                    .map_err(|e| format!("connect: {e}"))?;
                exchange(stream, request).await
            }
        }
    }
}

async fn exchange<S>(stream: S, request: Request<Full<Bytes>>) -> Result<Reply, String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let driver = tokio::spawn(async move {
        let _ = connection.await;
    });
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let (parts, body) = response.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    drop(sender);
    driver.abort();
    Ok(Reply {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(body.to_vec()).map_err(|e| format!("body not UTF-8: {e}"))?,
    })
}

pub async fn get(addr: &Addr, path: &str) -> Reply {
    Req::get(path).send(addr).await
}

/// `POST /api/publish` of `body` with `Authorization: Bearer <secret>` (if any).
pub async fn publish(addr: &Addr, secret: Option<&str>, body: &str) -> Reply {
    let mut req = Req::post("/api/publish", body.to_owned()).json();
    if let Some(secret) = secret {
        req = req.bearer(secret);
    }
    req.send(addr).await
}

// ---------------------------------------------------------------------------------------------
// Bayeux long-polling client
// ---------------------------------------------------------------------------------------------

/// A long-polling Bayeux session, driven by hand with JSON POSTs.
pub struct Client {
    pub addr: Addr,
    pub path: String,
    /// `BAYEUX_BROWSER=…`, from the handshake's `Set-Cookie`.
    pub cookie: Option<String>,
    pub client_id: String,
    next_id: u64,
}

impl Client {
    /// Handshakes at `path`; returns the client and the handshake reply message.
    pub async fn handshake(addr: &Addr, path: &str) -> (Client, Value) {
        let reply = Req::post(
            path,
            json!([{
                "channel": "/meta/handshake",
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "id": "1",
            }])
            .to_string(),
        )
        .json()
        .send(addr)
        .await;
        reply.expect(200, "handshake");
        let cookie = reply
            .headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .map(str::trim)
            .find(|v| v.starts_with("BAYEUX_BROWSER="))
            .map(str::to_owned);
        let messages = reply.json();
        let message = messages
            .as_array()
            .and_then(|a| a.first())
            .unwrap_or_else(|| panic!("handshake reply is not a non-empty array: {messages}"))
            .clone();
        assert_eq!(message["channel"], "/meta/handshake", "{message}");
        assert_eq!(message["successful"], true, "handshake failed: {message}");
        let client_id = message["clientId"]
            .as_str()
            .unwrap_or_else(|| panic!("no clientId: {message}"))
            .to_owned();
        let client = Client {
            addr: addr.clone(),
            path: path.to_owned(),
            cookie,
            client_id,
            next_id: 2,
        };
        (client, message)
    }

    fn id(&mut self) -> String {
        self.next_id += 1;
        self.next_id.to_string()
    }

    /// POSTs `messages` (a JSON array) and returns the reply array, within `limit`.
    pub async fn send_within(&mut self, messages: Value, limit: Duration) -> Vec<Value> {
        let mut req = Req::post(self.path.clone(), messages.to_string()).json();
        if let Some(cookie) = &self.cookie {
            req = req.header("cookie", cookie);
        }
        let reply = req.send_within(&self.addr, limit).await;
        reply.expect(200, "Bayeux request");
        let value = reply.json();
        value
            .as_array()
            .unwrap_or_else(|| panic!("Bayeux reply is not an array: {value}"))
            .clone()
    }

    /// Subscribes to `channel`, asserting success.
    pub async fn subscribe(&mut self, channel: &str) {
        let id = self.id();
        let message = json!([{
            "channel": "/meta/subscribe",
            "clientId": self.client_id,
            "subscription": channel,
            "id": id,
        }]);
        let replies = self.send_within(message, REQUEST_TIMEOUT).await;
        let reply = replies
            .iter()
            .find(|m| m["channel"] == "/meta/subscribe")
            .unwrap_or_else(|| panic!("no /meta/subscribe reply: {replies:?}"));
        assert_eq!(reply["successful"], true, "subscribe failed: {reply}");
    }

    /// The `/meta/connect` message, with `advice.timeout` if given.
    pub fn connect_message(&mut self, timeout_ms: Option<u64>) -> Value {
        let id = self.id();
        let mut message = json!({
            "channel": "/meta/connect",
            "clientId": self.client_id,
            "connectionType": "long-polling",
            "id": id,
        });
        if let Some(timeout) = timeout_ms {
            message["advice"] = json!({ "timeout": timeout });
        }
        json!([message])
    }

    /// One `/meta/connect` (held at most `timeout_ms` if given); the whole reply array.
    pub async fn connect(&mut self, timeout_ms: Option<u64>) -> Vec<Value> {
        let message = self.connect_message(timeout_ms);
        let replies = self.send_within(message, REQUEST_TIMEOUT).await;
        let reply = connect_reply(&replies);
        assert_eq!(reply["successful"], true, "connect failed: {reply}");
        replies
    }

    /// Connects (held at most 1 s each) until a delivery satisfies `done`; all deliveries
    /// received, in order. Fails after 20 s.
    pub async fn receive_until(&mut self, done: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut received = Vec::new();
        loop {
            let replies = self.connect(Some(1000)).await;
            let before = received.len();
            received.extend(deliveries(&replies));
            if received[before..].iter().any(&done) {
                return received;
            }
            assert!(
                Instant::now() < deadline,
                "the awaited delivery did not come within 20 s; received {received:?}"
            );
        }
    }
}

/// The `/meta/connect` reply in a reply array.
pub fn connect_reply(replies: &[Value]) -> &Value {
    replies
        .iter()
        .find(|m| m["channel"] == "/meta/connect")
        .unwrap_or_else(|| panic!("no /meta/connect reply in {replies:?}"))
}

/// The messages of a reply array that are not replies to meta messages.
pub fn deliveries(replies: &[Value]) -> Vec<Value> {
    replies
        .iter()
        .filter(|m| {
            !m["channel"]
                .as_str()
                .is_some_and(|c| c.starts_with("/meta/"))
        })
        .cloned()
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Prometheus text
// ---------------------------------------------------------------------------------------------

/// The samples of metric `name` in Prometheus text `text`: `(labels, value)` pairs, the
/// labels as written between the braces (empty without them).
pub fn samples(text: &str, name: &str) -> Vec<(String, f64)> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let (labels, rest) = if let Some(inner) = rest.strip_prefix('{') {
            let end = inner
                .find('}')
                .unwrap_or_else(|| panic!("bad metric line {line:?}"));
            (inner[..end].to_owned(), &inner[end + 1..])
        } else if rest.starts_with(' ') {
            (String::new(), rest)
        } else {
            continue; // another metric with `name` as a prefix
        };
        let value = rest
            .split_whitespace()
            .next()
            .unwrap_or_else(|| panic!("no value in metric line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|e| panic!("bad value in metric line {line:?}: {e}"));
        found.push((labels, value));
    }
    found
}

/// The sum of the samples of metric `name`, failing if there are none.
pub fn metric(text: &str, name: &str) -> f64 {
    let samples = samples(text, name);
    assert!(!samples.is_empty(), "no `{name}` sample in:\n{text}");
    samples.iter().map(|(_, v)| v).sum()
}

/// Whether `path` exists (without following symlinks).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

// ---------------------------------------------------------------------------------------------
// redis-server
// ---------------------------------------------------------------------------------------------

/// A `redis-server` of the test's own on a free port, without persistence, killed on drop.
/// `redis-server` must be on PATH (CI installs it): without it the test FAILS.
pub struct Redis {
    child: Option<Child>,
    pub port: u16,
}

impl Redis {
    pub async fn start() -> Redis {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut redis = Redis { child: None, port };
        redis.spawn().await;
        redis
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("this test needs `redis-server` on PATH (Debian: apt-get install redis-server): {e}")
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.pings().await {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether it answers `PING` with `+PONG`.
    async fn pings(&self) -> bool {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)).await else {
            return false;
        };
        if stream.write_all(b"PING\r\n").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 16];
        let read = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf)).await;
        matches!(read, Ok(Ok(n)) if buf[..n].starts_with(b"+PONG"))
    }

    /// Kills it (as a crash would).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` every 100 ms until it returns true; fails with `what` after `limit`.
pub async fn eventually<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not so after {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
