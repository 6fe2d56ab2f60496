//! A minimal HTTP/1.1 client for Bayeux long-polling (keep-alive, `Content-Length` or chunked
//! replies, a per-client cookie jar) and the websocket upgrade, over plain `TcpStream`s.
//! Buffers are kept per connection, so the hot path allocates nothing.

use std::fmt;
use std::net::SocketAddr;
use std::ops::Range;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

/// Where the Bayeux endpoint is.
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port`, for the `Host` header.
    pub authority: String,
    /// The endpoint path, without a trailing slash (`/cometd`).
    pub path: String,
}

impl Target {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("ws://"))
            .ok_or_else(|| format!("{url}: only http:// (or ws://) URLs"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr = std::net::ToSocketAddrs::to_socket_addrs(authority)
            .map_err(|e| format!("{authority}: {e}"))?
            .next()
            .ok_or_else(|| format!("{authority}: no address"))?;
        Ok(Self {
            addr,
            authority: authority.to_owned(),
            path: path.trim_end_matches('/').to_owned(),
        })
    }
}

#[derive(Debug)]
pub enum HttpError {
    Io(std::io::Error),
    Protocol(&'static str),
    Status(u16),
    Closed,
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Io(e) => write!(f, "io: {}", e.kind()),
            HttpError::Protocol(what) => write!(f, "http: {what}"),
            HttpError::Status(status) => write!(f, "HTTP {status}"),
            HttpError::Closed => write!(f, "connection closed"),
        }
    }
}

impl From<std::io::Error> for HttpError {
    fn from(e: std::io::Error) -> Self {
        HttpError::Io(e)
    }
}

/// The cookies of one simulated browser: `name=value` pairs from `Set-Cookie`.
#[derive(Default, Clone)]
pub struct Jar {
    pairs: Vec<(String, String)>,
}

impl Jar {
    pub fn store(&mut self, set_cookie: &[u8]) {
        let Ok(line) = std::str::from_utf8(set_cookie) else {
            return;
        };
        let pair = line.split(';').next().unwrap_or("").trim();
        if let Some((name, value)) = pair.split_once('=') {
            match self.pairs.iter_mut().find(|(n, _)| n == name) {
                Some((_, v)) => value.clone_into(v),
                None => self.pairs.push((name.to_owned(), value.to_owned())),
            }
        }
    }

    fn write_header(&self, out: &mut Vec<u8>) {
        if self.pairs.is_empty() {
            return;
        }
        out.extend_from_slice(b"Cookie: ");
        for (i, (n, v)) in self.pairs.iter().enumerate() {
            if i > 0 {
                out.extend_from_slice(b"; ");
            }
            out.extend_from_slice(n.as_bytes());
            out.push(b'=');
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(b"\r\n");
    }
}

pub async fn tcp_connect(addr: SocketAddr, rcvbuf: Option<u32>) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = rcvbuf {
        socket.set_recv_buffer_size(size)?;
    }
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn find_head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.saturating_sub(3);
    buf[start..]
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| start + p + 4)
}

struct Head {
    status: u16,
    len: usize,
    content_length: Option<usize>,
    chunked: bool,
    close: bool,
}

fn parse_head(head: &[u8], jar: &mut Jar) -> Result<Head, HttpError> {
    let mut lines = head.split(|&b| b == b'\n');
    let status_line = lines.next().ok_or(HttpError::Protocol("no status line"))?;
    let http10 = status_line.starts_with(b"HTTP/1.0");
    let status = status_line
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .ok_or(HttpError::Protocol("bad status line"))?;
    let mut parsed = Head {
        status,
        len: head.len(),
        content_length: None,
        chunked: false,
        close: http10,
    };
    for line in lines {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if name.eq_ignore_ascii_case(b"content-length") {
            parsed.content_length = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok());
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            parsed.chunked = value.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            parsed.close = value.eq_ignore_ascii_case(b"close");
        } else if name.eq_ignore_ascii_case(b"set-cookie") {
            jar.store(value);
        }
    }
    Ok(parsed)
}

/// One keep-alive HTTP/1.1 connection of a client.
pub struct HttpConn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    rcvbuf: Option<u32>,
    buf: Vec<u8>,
    req: Vec<u8>,
    /// De-chunked body, when the reply was chunked.
    dechunked: Vec<u8>,
    chunked: bool,
}

/// A reply: its status and where its body is (read with [`HttpConn::body`]).
pub struct Reply {
    pub status: u16,
    body: Range<usize>,
}

impl HttpConn {
    pub fn new(addr: SocketAddr, rcvbuf: Option<u32>) -> Self {
        Self {
            addr,
            stream: None,
            rcvbuf,
            buf: Vec::with_capacity(16 * 1024),
            req: Vec::with_capacity(1024),
            dechunked: Vec::new(),
            chunked: false,
        }
    }

    pub fn body(&self, reply: &Reply) -> &[u8] {
        if self.chunked {
            &self.dechunked
        } else {
            &self.buf[reply.body.clone()]
        }
    }

    /// Drops the connection (a client that vanishes).
    pub fn close(&mut self) {
        self.stream = None;
    }

    /// `POST`s a JSON body to `path`, with the jar's cookies, storing the reply's `Set-Cookie`s.
    pub async fn post(
        &mut self,
        target: &Target,
        path: &str,
        body: &[u8],
        jar: &mut Jar,
    ) -> Result<Reply, HttpError> {
        self.request("POST", target, path, body, jar).await
    }

    /// `GET`s `path`.
    pub async fn get(&mut self, target: &Target, path: &str) -> Result<Reply, HttpError> {
        self.request("GET", target, path, b"", &mut Jar::default())
            .await
    }

    async fn request(
        &mut self,
        method: &str,
        target: &Target,
        path: &str,
        body: &[u8],
        jar: &mut Jar,
    ) -> Result<Reply, HttpError> {
        self.req.clear();
        self.req.extend_from_slice(method.as_bytes());
        self.req.push(b' ');
        self.req.extend_from_slice(path.as_bytes());
        self.req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.req.extend_from_slice(target.authority.as_bytes());
        self.req.extend_from_slice(
            b"\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: ",
        );
        self.req
            .extend_from_slice(body.len().to_string().as_bytes());
        self.req.extend_from_slice(b"\r\n");
        jar.write_header(&mut self.req);
        self.req.extend_from_slice(b"\r\n");
        self.req.extend_from_slice(body);
        // A kept-alive connection the server closed meanwhile fails at once: retry on a new one.
        let reused = self.stream.is_some();
        match self.exchange(jar).await {
            Err(HttpError::Closed | HttpError::Io(_)) if reused => {
                self.stream = None;
                self.exchange(jar).await
            }
            other => other,
        }
    }

    async fn exchange(&mut self, jar: &mut Jar) -> Result<Reply, HttpError> {
        if self.stream.is_none() {
            self.stream = Some(tcp_connect(self.addr, self.rcvbuf).await?);
        }
        let result = self.exchange_on_stream(jar).await;
        match &result {
            Ok(_) => {}
            Err(_) => self.stream = None,
        }
        result
    }

    async fn exchange_on_stream(&mut self, jar: &mut Jar) -> Result<Reply, HttpError> {
        let stream = self.stream.as_mut().expect("connected");
        stream.write_all(&self.req).await?;
        self.buf.clear();
        self.chunked = false;
        let head_end = loop {
            let scanned = self.buf.len();
            if self.buf.capacity() - self.buf.len() < 4096 {
                self.buf.reserve(16 * 1024);
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(HttpError::Closed);
            }
            if let Some(end) = find_head_end(&self.buf, scanned) {
                break end;
            }
            if self.buf.len() > 64 * 1024 {
                return Err(HttpError::Protocol("header too large"));
            }
        };
        let head = parse_head(&self.buf[..head_end], jar)?;
        let body = if head.chunked {
            self.read_chunked(head.len).await?;
            self.chunked = true;
            0..0
        } else if let Some(len) = head.content_length {
            let end = head.len + len;
            while self.buf.len() < end {
                self.buf.reserve(end - self.buf.len());
                let stream = self.stream.as_mut().expect("connected");
                if stream.read_buf(&mut self.buf).await? == 0 {
                    return Err(HttpError::Closed);
                }
            }
            head.len..end
        } else {
            // Delimited by the end of the connection.
            let stream = self.stream.as_mut().expect("connected");
            loop {
                self.buf.reserve(16 * 1024);
                if stream.read_buf(&mut self.buf).await? == 0 {
                    break;
                }
            }
            self.stream = None;
            head.len..self.buf.len()
        };
        if head.close {
            self.stream = None;
        }
        Ok(Reply {
            status: head.status,
            body,
        })
    }

    async fn read_chunked(&mut self, mut pos: usize) -> Result<(), HttpError> {
        self.dechunked.clear();
        loop {
            // A size line.
            let line_end = loop {
                if let Some(p) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") {
                    break pos + p;
                }
                self.fill().await?;
            };
            let size_str = std::str::from_utf8(&self.buf[pos..line_end])
                .map_err(|_| HttpError::Protocol("bad chunk size"))?;
            let size = usize::from_str_radix(size_str.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| HttpError::Protocol("bad chunk size"))?;
            pos = line_end + 2;
            if size == 0 {
                // Trailers (none expected) end with an empty line.
                loop {
                    if let Some(p) = self.buf[pos..].windows(2).position(|w| w == b"\r\n") {
                        if p == 0 {
                            return Ok(());
                        }
                        pos += p + 2;
                        continue;
                    }
                    self.fill().await?;
                }
            }
            while self.buf.len() < pos + size + 2 {
                self.fill().await?;
            }
            self.dechunked.extend_from_slice(&self.buf[pos..pos + size]);
            pos += size + 2;
        }
    }

    async fn fill(&mut self) -> Result<(), HttpError> {
        self.buf.reserve(16 * 1024);
        let stream = self.stream.as_mut().expect("connected");
        if stream.read_buf(&mut self.buf).await? == 0 {
            return Err(HttpError::Closed);
        }
        Ok(())
    }
}

pub type Ws = WebSocketStream<TcpStream>;

/// Opens a websocket to the endpoint: the HTTP upgrade by hand, then tungstenite as a client.
pub async fn ws_connect(
    target: &Target,
    jar: &mut Jar,
    rcvbuf: Option<u32>,
) -> Result<Ws, HttpError> {
    let mut stream = tcp_connect(target.addr, rcvbuf).await?;
    let mut req = Vec::with_capacity(256);
    req.extend_from_slice(b"GET ");
    req.extend_from_slice(if target.path.is_empty() {
        b"/"
    } else {
        target.path.as_bytes()
    });
    req.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    req.extend_from_slice(target.authority.as_bytes());
    req.extend_from_slice(
        b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n",
    );
    jar.write_header(&mut req);
    req.extend_from_slice(b"\r\n");
    stream.write_all(&req).await?;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        let scanned = buf.len();
        buf.reserve(1024);
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HttpError::Closed);
        }
        if let Some(end) = find_head_end(&buf, scanned) {
            break end;
        }
        if buf.len() > 64 * 1024 {
            return Err(HttpError::Protocol("header too large"));
        }
    };
    let head = parse_head(&buf[..head_end], jar)?;
    if head.status != 101 {
        return Err(HttpError::Status(head.status));
    }
    // tungstenite zero-fills its whole read buffer before every read (128 KiB by default), which
    // cost the generator a third of its time at 60k frames/s; frames here are a few KiB at most.
    let config = WebSocketConfig::default()
        .read_buffer_size(8 * 1024)
        .max_message_size(Some(64 << 20))
        .max_frame_size(Some(64 << 20));
    let rest = buf.split_off(head_end);
    Ok(WebSocketStream::from_partially_read(stream, rest, Role::Client, Some(config)).await)
}
