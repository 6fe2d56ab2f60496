//! Several nodes, one Bayeux space, through Redis pub/sub (feature `redis`).
//!
//! Each node subscribes in Redis only to the Bayeux channels and patterns it has local
//! subscribers for, each under its own Redis channel (`<prefix><bayeux channel>`, the pattern
//! names such as `/chat/*` taken literally). A node publishing a broadcast on `/chat/room`
//! publishes it on the Redis channels of `/chat/room` and of the patterns that match it
//! (`/chat/*`, `/chat/**`, `/**`): every node with interest gets it, once per Redis channel it is
//! subscribed to, keeps the first copy, and fans it out to its local subscribers as it fans out
//! its own. A node with no subscriber for a channel gets no Redis traffic for it, and no Redis
//! glob is involved. The JSON sent is the JSON each receiving node queues: a broadcast is
//! serialised once in the whole space.
//!
//! Deliveries to one session cross to the node that holds it on that node's own Redis channel:
//! its id begins every clientId it hands out.
//!
//! Redis pub/sub is at most once: what is published while a node is not subscribed (Redis or
//! the node reconnecting) is gone for that node. The broker reconnects with backoff,
//! subscribes again to everything the node has interest in, counts what it could not send or
//! take, and tells [event](crate::ServerEvent) listeners.

mod history;
mod publisher;
mod subscriber;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::engine::{
    Broadcast, Broker, BrokerStats, Error, HistoryRead, Inner, Position, Replay, Retention,
    Unpositioned,
};
use crate::protocol::ChannelName;

/// Connects the nodes of one Bayeux space through Redis: give one to each node's builder
/// ([`BayeuxBuilder::broker`](crate::BayeuxBuilder::broker)), all with the same Redis and
/// prefix.
///
/// ```no_run
/// use tower_bayeux::{Bayeux, RedisBroker};
///
/// let bayeux = Bayeux::builder()
///     .broker(RedisBroker::new("redis://127.0.0.1:6379").prefix("chat:"))
///     .build();
/// # let _ = bayeux;
/// ```
///
/// It uses two connections to Redis (one subscribing, one publishing, RESP3), made when the
/// node starts working (its first handshake or publish); Redis may be down then: the node
/// serves its own clients meanwhile and connects when it can.
pub struct RedisBroker {
    url: String,
    prefix: String,
    inbound_capacity: usize,
    outbound_capacity: usize,
}

impl fmt::Debug for RedisBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBroker")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisBroker {
    /// A broker on the Redis at `url` (`redis://host:port/db`, `rediss://` for TLS when the
    /// redis crate is built with it).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            prefix: "bayeux:".to_owned(),
            inbound_capacity: 10_000,
            outbound_capacity: 10_000,
        }
    }

    /// What the Redis channels of this Bayeux space begin with, so that several spaces (or
    /// other applications) can share one Redis.
    ///
    /// Default: `bayeux:`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How many messages from other nodes may wait for this node to take them; past it they
    /// are dropped and counted ([`BrokerStats::dropped_in`]), so a node that falls behind
    /// does not grow its memory without bound.
    ///
    /// Default: 10,000.
    #[must_use]
    pub fn inbound_capacity(mut self, messages: usize) -> Self {
        self.inbound_capacity = messages.max(1);
        self
    }

    /// How many of this node's messages may wait to be sent to Redis; past it (Redis slow or
    /// down) they are dropped and counted ([`BrokerStats::dropped_out`]).
    ///
    /// Default: 10,000.
    #[must_use]
    pub fn outbound_capacity(mut self, messages: usize) -> Self {
        self.outbound_capacity = messages.max(1);
        self
    }

    /// Makes the broker the engine will hold.
    pub(crate) fn into_broker(self) -> Arc<dyn Broker> {
        let (outgoing, outgoing_rx) = mpsc::channel(self.outbound_capacity);
        let (interest, interest_rx) = mpsc::unbounded_channel();
        let node = node_id();
        let shared = Arc::new(Shared {
            node_channel: format!("{}node:{node}", self.prefix),
            node,
            prefix: self.prefix,
            url: self.url,
            inbound_capacity: self.inbound_capacity,
            outgoing,
            interest,
            receivers: Mutex::new(Some((outgoing_rx, interest_rx))),
            subscribed: AtomicBool::new(false),
            publishing: AtomicBool::new(false),
            counters: Counters::default(),
            stop: CancellationToken::new(),
            tried: watch::channel(false).0,
            overflowed: AtomicBool::new(false),
        });
        Arc::new(RedisBrokerHandle(shared))
    }
}

/// 32 random bits as 8 hex digits.
fn node_id() -> String {
    let random = getrandom::u32().unwrap_or_else(|_| {
        // Not a secret (clientIds keep their own 160 random bits): any varying value will do.
        std::process::id()
            ^ std::time::SystemTime::now()
                .elapsed()
                .map_or(0, |d| d.subsec_nanos())
    });
    format!("{random:08x}")
}

/// How long the first connection attempt to Redis may take, and the longest pause between
/// attempts.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const MIN_BACKOFF: Duration = Duration::from_millis(100);

type Receivers = (
    mpsc::Receiver<publisher::Outgoing>,
    mpsc::UnboundedReceiver<subscriber::Interest>,
);

pub(crate) struct Shared {
    node: String,
    prefix: String,
    node_channel: String,
    url: String,
    inbound_capacity: usize,
    outgoing: mpsc::Sender<publisher::Outgoing>,
    interest: mpsc::UnboundedSender<subscriber::Interest>,
    /// Taken by [`Broker::start`].
    receivers: Mutex<Option<Receivers>>,
    /// Whether the subscribing connection is up, and the publishing one.
    subscribed: AtomicBool,
    publishing: AtomicBool,
    counters: Counters,
    /// Cancelled when the node shuts down or drops its engine.
    stop: CancellationToken,
    /// Set once the subscribing connection has been tried (made or not).
    tried: watch::Sender<bool>,
    /// Set when the inbound buffer dropped a message, until the subscriber catches up.
    overflowed: AtomicBool,
}

#[derive(Default)]
struct Counters {
    messages_out: AtomicU64,
    dropped_out: AtomicU64,
    messages_in: AtomicU64,
    dropped_in: AtomicU64,
    reconnects: AtomicU64,
    subscriptions: AtomicUsize,
    recovered: AtomicU64,
}

impl Shared {
    fn client(&self) -> redis::RedisResult<redis::Client> {
        use redis::IntoConnectionInfo;
        let info = self.url.as_str().into_connection_info()?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(redis::ProtocolVersion::RESP3);
        redis::Client::open(info.set_redis_settings(settings))
    }

    /// The Redis channel of a Bayeux channel or pattern.
    fn redis_channel(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Reads `read` of `channel`'s history, through the publishing connection (after what
    /// this node sent before).
    fn read_history(
        &self,
        channel: &ChannelName,
        retention: Retention,
        read: HistoryRead,
    ) -> crate::engine::BoxFuture<'static, Result<Replay, Error>> {
        let (done, answer) = oneshot::channel();
        let outgoing = publisher::Outgoing::Read {
            channel: channel.clone(),
            retention,
            read,
            done,
        };
        if self.outgoing.try_send(outgoing).is_err() {
            return Box::pin(async { Err(unavailable("the broker's outbound queue is full")) });
        }
        Box::pin(async move { answered(answer.await) })
    }
}

fn unavailable(reason: &str) -> Error {
    Error::HistoryUnavailable(reason.to_owned())
}

/// What the publishing connection answered, as the engine's result.
fn answered<T>(answer: Result<Result<T, String>, oneshot::error::RecvError>) -> Result<T, Error> {
    match answer {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(reason)) => Err(unavailable(&reason)),
        Err(_) => Err(unavailable("the broker stopped")),
    }
}

/// The broker the engine holds.
struct RedisBrokerHandle(Arc<Shared>);

impl Broker for RedisBrokerHandle {
    fn start(&self, node: Weak<Inner>) {
        let Some((outgoing, interest)) = self.0.receivers.lock().take() else {
            return;
        };
        let client = match self.0.client() {
            Ok(client) => client,
            Err(err) => {
                tracing::error!(%err, "invalid Redis URL: this node runs alone");
                return;
            }
        };
        tokio::spawn(publisher::run(self.0.clone(), client.clone(), outgoing));
        tokio::spawn(subscriber::run(self.0.clone(), client, node, interest));
    }

    fn ready(&self) -> Option<crate::engine::BoxFuture<'static, ()>> {
        if *self.0.tried.borrow() {
            return None;
        }
        let mut tried = self.0.tried.subscribe();
        Some(Box::pin(async move {
            let _ = tried.wait_for(|tried| *tried).await;
        }))
    }

    fn node_id(&self) -> Option<&str> {
        Some(&self.0.node)
    }

    fn publish(&self, broadcast: &Broadcast) {
        let outgoing = publisher::Outgoing::Broadcast {
            channel: broadcast.channel().clone(),
            json: broadcast.delivery().json().clone(),
        };
        self.0.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        if self.0.outgoing.try_send(outgoing).is_err() {
            self.0.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn interest(
        &self,
        channel: &ChannelName,
        interested: bool,
    ) -> Option<crate::engine::BoxFuture<'static, ()>> {
        let name = self.0.redis_channel(channel.as_str());
        if !interested {
            let _ = self
                .0
                .interest
                .send(subscriber::Interest::Unsubscribe(name));
            return None;
        }
        // Told once the subscription holds at Redis; while Redis cannot be reached, at once
        // (the subscription is made when the broker connects).
        let (done, ready) = oneshot::channel();
        let _ = self
            .0
            .interest
            .send(subscriber::Interest::Subscribe(name, done));
        Some(Box::pin(async move {
            let _ = ready.await;
        }))
    }

    fn deliver(
        &self,
        client_id: &str,
        message: Bytes,
    ) -> Option<crate::engine::BoxFuture<'static, Result<(), Error>>> {
        let node = client_id.get(..self.0.node.len())?;
        if node == self.0.node || !node.bytes().all(|b| b.is_ascii_hexdigit()) {
            // Ours (and not live here), or not a clientId of this space at all.
            return None;
        }
        let unreachable = {
            let client_id = client_id.to_owned();
            move |reason: &str| Error::NodeUnreachable {
                client_id,
                reason: reason.to_owned(),
            }
        };
        let (done, answer) = oneshot::channel();
        let outgoing = publisher::Outgoing::Deliver {
            channel: self.0.redis_channel(&format!("node:{node}")),
            payload: wire::deliver(&self.0.node, client_id, &message),
            done,
        };
        self.0.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        if self.0.outgoing.try_send(outgoing).is_err() {
            self.0.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            return Some(Box::pin(async move {
                Err(unreachable("the broker's outbound queue is full"))
            }));
        }
        Some(Box::pin(async move {
            match answer.await {
                Ok(Ok(0)) => Err(unreachable("no node listens for it: the node is gone")),
                Ok(Ok(_)) => Ok(()),
                Ok(Err(reason)) => Err(unreachable(&reason)),
                Err(_) => Err(unreachable("the broker stopped")),
            }
        }))
    }

    fn keeps_history(&self) -> bool {
        true
    }

    fn publish_history(
        &self,
        channel: &ChannelName,
        retention: Retention,
        message: Unpositioned,
    ) -> crate::engine::BoxFuture<'static, Result<Position, Error>> {
        let (done, answer) = oneshot::channel();
        let outgoing = publisher::Outgoing::History {
            channel: channel.clone(),
            retention,
            message,
            done,
        };
        self.0.counters.messages_out.fetch_add(1, Ordering::Relaxed);
        if self.0.outgoing.try_send(outgoing).is_err() {
            self.0.counters.dropped_out.fetch_add(1, Ordering::Relaxed);
            return Box::pin(async { Err(unavailable("the broker's outbound queue is full")) });
        }
        Box::pin(async move { answered(answer.await) })
    }

    fn read_history(
        &self,
        channel: &ChannelName,
        retention: Retention,
        read: HistoryRead,
    ) -> crate::engine::BoxFuture<'static, Result<Replay, Error>> {
        self.0.read_history(channel, retention, read)
    }

    fn stop(&self) {
        self.0.stop.cancel();
        self.0.tried.send_replace(true);
    }

    fn stats(&self) -> Option<BrokerStats> {
        let counters = &self.0.counters;
        let stats = BrokerStats {
            connected: self.0.subscribed.load(Ordering::Acquire)
                && self.0.publishing.load(Ordering::Acquire),
            messages_out: counters.messages_out.load(Ordering::Relaxed),
            dropped_out: counters.dropped_out.load(Ordering::Relaxed),
            messages_in: counters.messages_in.load(Ordering::Relaxed),
            dropped_in: counters.dropped_in.load(Ordering::Relaxed),
            reconnects: counters.reconnects.load(Ordering::Relaxed),
            subscriptions: counters.subscriptions.load(Ordering::Relaxed),
            recovered: counters.recovered.load(Ordering::Relaxed),
        };
        Some(stats)
    }
}

impl Drop for RedisBrokerHandle {
    fn drop(&mut self) {
        // The engine is gone: its tasks (which keep `Shared`) must not outlive it.
        self.0.stop.cancel();
    }
}

/// The pause before connection attempt `attempt` (0-based): doubling from 100 ms to 5 s.
fn backoff(attempt: u32) -> Duration {
    MIN_BACKOFF
        .saturating_mul(1 << attempt.min(6))
        .min(MAX_BACKOFF)
}
