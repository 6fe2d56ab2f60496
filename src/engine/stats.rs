//! What the engine holds and has done, for monitoring: [`Stats`] and the running totals behind
//! it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use super::BrokerStats;

/// What the engine holds now and what it has done since it started, from
/// [`Bayeux::stats`](crate::Bayeux::stats).
///
/// The counts of what it holds are read when asked (a pass over the sessions and a look at the
/// channel table); the totals (`messages_*`) are running counters, kept with one atomic add per
/// broadcast rather than per recipient.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live sessions.
    pub sessions: usize,
    /// Live sessions by the transport of their latest `/meta/connect`.
    pub sessions_by_transport: SessionsByTransport,
    /// Channels with subscribers or listeners (or used since the last sweep).
    pub channels: usize,
    /// Subscriptions: a session subscribed to a channel or a pattern counts once for each.
    pub subscriptions: usize,
    /// Browser cookies with live sessions or held connects.
    pub browsers: usize,
    /// Messages waiting for their sessions (sent but unacknowledged ones included).
    pub queued_messages: usize,
    /// `/meta/connect`s held now, waiting for messages or their timeout.
    pub held_connects: usize,
    /// Open websocket connections.
    pub websocket_connections: usize,
    /// Messages broadcast from this node since it started (clients' publishes to broadcast
    /// channels and the server's own), whether or not anyone subscribed.
    pub messages_published: u64,
    /// Broadcast messages queued for this node's subscribers since it started (one per
    /// recipient; messages from other nodes and history replays included).
    pub messages_delivered: u64,
    /// Messages dropped from full session queues since the node started (see
    /// [`QueueFullPolicy`](crate::QueueFullPolicy)).
    pub messages_dropped: u64,
    /// What the broker connecting this node to others has done (`None` for a single node).
    pub broker: Option<BrokerStats>,
    /// Channels with a history now.
    pub history_channels: usize,
    /// Messages retained in the channels' histories.
    pub history_messages: usize,
    /// What the retained messages cost, as counted against `max_history_bytes`.
    pub history_bytes: usize,
}

/// Live sessions by the transport of their latest `/meta/connect`, in [`Stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SessionsByTransport {
    /// `long-polling`.
    pub long_polling: usize,
    /// `callback-polling` (JSONP).
    pub callback_polling: usize,
    /// `websocket`.
    pub websocket: usize,
    /// Handshaken, no `/meta/connect` yet (or one naming another transport).
    pub unconnected: usize,
}

impl SessionsByTransport {
    pub(crate) fn count(&mut self, transport: Transport) {
        match transport {
            Transport::None => self.unconnected += 1,
            Transport::LongPolling => self.long_polling += 1,
            Transport::CallbackPolling => self.callback_polling += 1,
            Transport::Websocket => self.websocket += 1,
        }
    }
}

/// The transport a session last connected with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Transport {
    #[default]
    None,
    LongPolling,
    CallbackPolling,
    Websocket,
}

impl Transport {
    /// From a `/meta/connect`'s `connectionType`.
    pub(crate) fn of_connect(connection_type: Option<&str>) -> Self {
        match connection_type {
            Some("long-polling") => Self::LongPolling,
            Some("callback-polling") => Self::CallbackPolling,
            Some("websocket") => Self::Websocket,
            _ => Self::None,
        }
    }
}

/// The running totals of [`Stats`]: relaxed atomics, added to once per broadcast.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    published: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    websockets: AtomicUsize,
}

impl Counters {
    pub(crate) fn published(&self) {
        self.published.fetch_add(1, Relaxed);
    }

    pub(crate) fn delivered(&self, count: usize) {
        if count > 0 {
            self.delivered.fetch_add(count as u64, Relaxed);
        }
    }

    pub(crate) fn dropped(&self, count: usize) {
        if count > 0 {
            self.dropped.fetch_add(count as u64, Relaxed);
        }
    }

    /// Counts a websocket connection open, until [`websocket_closed`](Self::websocket_closed).
    pub(crate) fn websocket_opened(&self) {
        self.websockets.fetch_add(1, Relaxed);
    }

    pub(crate) fn websocket_closed(&self) {
        self.websockets.fetch_sub(1, Relaxed);
    }

    pub(crate) fn read_into(&self, stats: &mut Stats) {
        stats.messages_published = self.published.load(Relaxed);
        stats.messages_delivered = self.delivered.load(Relaxed);
        stats.messages_dropped = self.dropped.load(Relaxed);
        stats.websocket_connections = self.websockets.load(Relaxed);
    }
}
