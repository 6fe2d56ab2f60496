//! Where a broadcast leaves this node and where one published elsewhere enters it.
//!
//! A broadcast published on this node (by a client, or through the server API) is handed to
//! the engine's [`Broker`], which passes it on to the other nodes of the Bayeux space; then it
//! reaches this node's own subscribers. Broadcasts from other nodes enter through
//! [`Inner::fan_out`](super::Inner::fan_out), like local ones. The broker also hears which
//! channels this node has subscribers for (so that it receives only those) and carries
//! deliveries to sessions held by other nodes. A single node has no one to tell: its broker is
//! [`Local`].

use std::sync::{OnceLock, Weak};
use std::time::Duration;

use bytes::Bytes;

use crate::protocol::{ChannelName, Message, parse_messages};

use super::history::{Position, Read, Replay, Retention, Unpositioned};
use super::session::Delivery;
use super::{BoxFuture, Error, Inner};

/// How long a reply waits for the broker: a subscribe reply for a node's first subscription to
/// a channel to hold at the broker, a handshake reply for a node's first connection to it. If
/// the broker takes longer, the reply goes anyway (broadcasts from other nodes start arriving
/// later).
pub(crate) const BROKER_WAIT: Duration = Duration::from_secs(2);

/// A broadcast on its way to subscribers: its channel, its message, and the message serialised
/// once for every recipient that needs no copy of its own (and for other nodes).
pub(crate) struct Broadcast {
    channel: ChannelName,
    source: Source,
}

enum Source {
    /// Published on this node: serialised the first time that is needed (a broadcast nobody
    /// receives never is).
    Here {
        message: Message,
        delivery: OnceLock<Delivery>,
    },
    /// From another node, as the JSON it was sent as (queued as it is): parsed only for a
    /// recipient with session extensions; `None` once known not to be a message.
    Elsewhere {
        delivery: Delivery,
        message: OnceLock<Option<Message>>,
    },
}

impl Broadcast {
    pub(crate) fn new(channel: ChannelName, message: Message) -> Self {
        Self {
            channel,
            source: Source::Here {
                message,
                delivery: OnceLock::new(),
            },
        }
    }

    /// A broadcast that arrives serialised, from another node.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn from_json(channel: ChannelName, json: Bytes) -> Self {
        Self {
            channel,
            source: Source::Elsewhere {
                delivery: Delivery::from_json(json),
                message: OnceLock::new(),
            },
        }
    }

    pub(crate) fn channel(&self) -> &ChannelName {
        &self.channel
    }

    /// The message; `None` if it arrived as JSON that is not a message.
    pub(crate) fn message(&self) -> Option<&Message> {
        match &self.source {
            Source::Here { message, .. } => Some(message),
            Source::Elsewhere { delivery, message } => message
                .get_or_init(|| parse_messages(delivery.json()).ok()?.pop())
                .as_ref(),
        }
    }

    /// The message serialised.
    pub(crate) fn delivery(&self) -> &Delivery {
        match &self.source {
            Source::Here { message, delivery } => delivery.get_or_init(|| Delivery::new(message)),
            Source::Elsewhere { delivery, .. } => delivery,
        }
    }
}

/// What a broker has done since the node started, from [`Bayeux::stats`](crate::Bayeux::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Whether the broker is connected now (both ways).
    pub connected: bool,
    /// Broadcasts this node handed to the broker, and deliveries to other nodes' sessions.
    pub messages_out: u64,
    /// Of those, the ones that could not be sent (the broker was unreachable or its outbound
    /// queue full): other nodes missed them.
    pub dropped_out: u64,
    /// Broadcasts and deliveries received from other nodes.
    pub messages_in: u64,
    /// Messages from other nodes dropped because this node did not take them fast enough (its
    /// inbound buffer was full): its clients missed them.
    pub dropped_in: u64,
    /// How often the broker reconnected after losing its connection; every time, messages
    /// published meanwhile may have been missed.
    pub reconnects: u64,
    /// Channels and patterns this node is subscribed to at the broker now.
    pub subscriptions: usize,
    /// Messages of channels with history that this node missed (a lost connection, a full
    /// inbound buffer) and read back from the history before going on.
    pub recovered: u64,
}

/// Passes what this node publishes on to the other nodes, and brings in theirs.
pub(crate) trait Broker: Send + Sync + 'static {
    /// Starts the broker's background work, once, inside a tokio runtime; `node` is the way
    /// back in for what other nodes send.
    fn start(&self, node: Weak<Inner>) {
        let _ = node;
    }

    /// Resolves once the broker has made its first attempt to connect, after which other
    /// nodes can reach this node's sessions if it succeeded; `None` when there is nothing (more)
    /// to wait for. A handshake waits for it (for a while), so that a clientId handed out is
    /// reachable from every node.
    fn ready(&self) -> Option<BoxFuture<'static, ()>> {
        None
    }

    /// This node's id, which begins every clientId it hands out, so that other nodes can tell
    /// where a session lives. `None` for a single node.
    fn node_id(&self) -> Option<&str> {
        None
    }

    /// Sends `broadcast`, published on this node, to the other nodes with subscribers for its
    /// channel. This node's own subscribers get it from the engine, not from here. Must not
    /// block: it is called on the publisher's path.
    fn publish(&self, broadcast: &Broadcast);

    /// This node's interest in `channel` (a channel or a pattern) changed: its first local
    /// subscriber came (`true`), or its last one left (`false`). Called in the order the
    /// changes happen, under the engine's channel table lock, so it must not block. For a new
    /// interest it may return a future that resolves once broadcasts on the channel from other
    /// nodes will arrive, which the subscribe reply waits for (for a while).
    fn interest(&self, channel: &ChannelName, interested: bool) -> Option<BoxFuture<'static, ()>> {
        let _ = (channel, interested);
        None
    }

    /// Delivers `message` (serialised) to the session `client_id` held by another node.
    /// `None` when no other node can hold it.
    fn deliver(
        &self,
        client_id: &str,
        message: Bytes,
    ) -> Option<BoxFuture<'static, Result<(), Error>>> {
        let _ = (client_id, message);
        None
    }

    /// Whether the broker keeps the channels' history (shared by every node) instead of this
    /// node's memory. Then a broadcast on a channel with history gets its position from
    /// [`publish_history`](Self::publish_history) and reaches every node's subscribers, this
    /// node's included, through
    /// [`Inner::fan_out_positioned`](super::Inner::fan_out_positioned).
    fn keeps_history(&self) -> bool {
        false
    }

    /// Gives `message` the next position of `channel`'s history, keeps it, and sends it to
    /// every node with subscribers for it.
    fn publish_history(
        &self,
        channel: &ChannelName,
        retention: Retention,
        message: Unpositioned,
    ) -> BoxFuture<'static, Result<Position, Error>> {
        let _ = (channel, retention, message);
        Box::pin(async { Err(Error::HistoryUnavailable("no broker keeps it".to_owned())) })
    }

    /// Reads `channel`'s position, and as much of its history as `read` asks.
    fn read_history(
        &self,
        channel: &ChannelName,
        retention: Retention,
        read: Read,
    ) -> BoxFuture<'static, Result<Replay, Error>> {
        let _ = (channel, retention, read);
        Box::pin(async { Err(Error::HistoryUnavailable("no broker keeps it".to_owned())) })
    }

    /// The node has shut down: stop the background work, after sending what was handed over.
    /// Other nodes then see this node as gone (deliveries to its sessions fail).
    fn stop(&self) {}

    /// What the broker has done, for [`Stats`](super::Stats).
    fn stats(&self) -> Option<BrokerStats> {
        None
    }
}

/// The broker of a single node: there is no other node to tell.
pub(crate) struct Local;

impl Broker for Local {
    fn publish(&self, _broadcast: &Broadcast) {}
}
