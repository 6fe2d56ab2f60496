//! The Bayeux engine: sessions, channels, subscriptions, the security policy and the server
//! API. It knows nothing of HTTP: transports hand it batches of messages with a [`Link`]
//! saying what the connection is, and write out what it answers.

mod acknowledgement;
mod attributes;
mod batch;
mod broker;
mod browsers;
mod channel;
mod config;
mod connect;
mod event;
mod extension;
mod handshake;
mod history;
mod lifecycle;
mod policy;
mod publish;
mod queue;
mod session;
mod stats;
mod subscription;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::{ChannelName, ErrorCode, InvalidChannel};

pub use attributes::SessionAttributes;
pub use channel::{HistoryPosition, MessageEvent, Published, ServerChannel, Verdict};
pub use event::{RemoveReason, ServerEvent};
pub use extension::{Extension, SessionExtension};
pub use policy::SecurityPolicy;
pub use queue::QueueFullPolicy;
pub use session::ServerSession;
pub(crate) use stats::{Counters, Transport};
pub use stats::{SessionsByTransport, Stats};

#[cfg(feature = "websocket")]
pub(crate) use batch::{BatchError, BatchOutcome};
pub(crate) use batch::{Carrier, Link};
#[cfg(feature = "redis")]
pub(crate) use broker::Broadcast;
pub(crate) use broker::Broker;
pub use broker::BrokerStats;
pub(crate) use channel::ChannelTable;
pub(crate) use config::Config;
pub(crate) use connect::ConnectEnd;
pub use history::{ENTRY_COST as HISTORY_ENTRY_COST, HistoryPage, Retention};
#[cfg(feature = "redis")]
pub(crate) use history::{Position, Replay, Unpositioned, after as history_after};
pub(crate) use history::{Read as HistoryRead, Since};
pub(crate) use session::Delivery;

pub(crate) type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Errors of the server-side API.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A channel name breaks the Bayeux grammar.
    #[error(transparent)]
    InvalidChannel(#[from] InvalidChannel),
    /// Server-side publish goes to broadcast channels only.
    #[error(
        "cannot publish to {0}: only broadcast channels (not meta, service or wildcard ones) \
         take publishes; use ServerSession::deliver to answer on a service channel"
    )]
    NotBroadcast(ChannelName),
    /// The session has been removed.
    #[error("session {0} has been removed")]
    SessionRemoved(String),
    /// No live session has this id on this node, and no other node can hold it.
    #[error("no live session {0}")]
    SessionUnknown(String),
    /// The node that holds the session (the one whose id begins its clientId) cannot be
    /// reached: it is gone, or the broker is down.
    #[error("the node holding session {client_id} cannot be reached: {reason}")]
    NodeUnreachable {
        /// The session's id.
        client_id: String,
        /// What went wrong.
        reason: String,
    },
    /// An extension dropped the message.
    #[error("an extension dropped the message")]
    MessageDeleted,
    /// No history is kept for the channel (see
    /// [`BayeuxBuilder::history`](crate::BayeuxBuilder::history)).
    #[error("no history is kept for {0}")]
    NoHistory(ChannelName),
    /// The channel's history is kept by the broker, which cannot be reached now: a message was
    /// not published, or the history not read.
    #[error("the history of the channel cannot be reached: {0}")]
    HistoryUnavailable(String),
}

/// Identifies a listener, to remove it later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ListenerId(u64);

impl ListenerId {
    pub(crate) fn next() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Self(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A name that is valid by construction, taken by [`Bayeux::channel`](crate::Bayeux::channel):
/// a [`ChannelName`], or a string literal (`&'static str`), checked as
/// [`ChannelName::from_static`] checks it. Names built at run time go through
/// [`Bayeux::try_channel`](crate::Bayeux::try_channel) and [`IntoChannelName`].
pub trait ChannelLiteral {
    /// The name.
    fn channel_name(self) -> ChannelName;
}

impl ChannelLiteral for &'static str {
    fn channel_name(self) -> ChannelName {
        ChannelName::from_static(self)
    }
}

impl ChannelLiteral for ChannelName {
    fn channel_name(self) -> ChannelName {
        self
    }
}

impl ChannelLiteral for &ChannelName {
    fn channel_name(self) -> ChannelName {
        self.clone()
    }
}

/// Something that names a channel: a `&str` or `String` (validated) or a [`ChannelName`].
pub trait IntoChannelName {
    /// Validates and converts.
    fn into_channel_name(self) -> Result<ChannelName, InvalidChannel>;
}

impl IntoChannelName for ChannelName {
    fn into_channel_name(self) -> Result<ChannelName, InvalidChannel> {
        Ok(self)
    }
}

impl IntoChannelName for &ChannelName {
    fn into_channel_name(self) -> Result<ChannelName, InvalidChannel> {
        Ok(self.clone())
    }
}

impl IntoChannelName for &str {
    fn into_channel_name(self) -> Result<ChannelName, InvalidChannel> {
        ChannelName::new(self)
    }
}

impl IntoChannelName for String {
    fn into_channel_name(self) -> Result<ChannelName, InvalidChannel> {
        ChannelName::new(self)
    }
}

impl IntoChannelName for &String {
    fn into_channel_name(self) -> Result<ChannelName, InvalidChannel> {
        ChannelName::new(self)
    }
}

type EventListener = Arc<dyn Fn(&ServerEvent) + Send + Sync>;

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) sessions: RwLock<std::collections::HashMap<Arc<str>, ServerSession>>,
    pub(crate) channels: RwLock<ChannelTable>,
    browsers: browsers::Browsers,
    event_listeners: RwLock<Arc<Vec<(ListenerId, EventListener)>>>,
    /// Set by [`Engine::shutdown`]: no new sessions, held connects told to come back later.
    closing: AtomicBool,
    /// Cancelled by [`Engine::shutdown`]: connections close.
    shutdown: CancellationToken,
    /// What [`Engine::shutdown`] waits for: connections, held connects and session-removed
    /// listeners.
    tasks: TaskTracker,
    /// Where broadcasts leave this node and arrive from others.
    pub(crate) broker: Arc<dyn Broker>,
    /// The retained messages of the channels with history.
    pub(crate) history: history::History,
    /// Running totals for [`Stats`].
    pub(crate) counters: Counters,
    /// Set once the sweeper and the broker's background work run.
    started: AtomicBool,
    /// This engine, for the tasks it starts (which must not keep it alive).
    me: Weak<Inner>,
}

/// The engine handle: cheap to clone, every clone is the same engine. Applications hold it
/// inside [`Bayeux`](crate::Bayeux); transports call the named methods below (and
/// [`Engine::process_batch`]).
#[derive(Clone)]
pub(crate) struct Engine {
    pub(crate) inner: Arc<Inner>,
}

impl Engine {
    pub(crate) fn new(config: Config) -> Self {
        let browsers = browsers::Browsers::new(
            config.max_sessions_per_cookie,
            config.max_sessions_per_browser,
        );
        let broker = config
            .broker
            .clone()
            .unwrap_or_else(|| Arc::new(broker::Local));
        let history = history::History::new(config.history.clone(), config.max_history_bytes);
        Self {
            inner: Arc::new_cyclic(|me| Inner {
                config,
                sessions: RwLock::default(),
                channels: RwLock::default(),
                browsers,
                event_listeners: RwLock::default(),
                closing: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                broker,
                history,
                counters: Counters::default(),
                started: AtomicBool::new(false),
                me: me.clone(),
            }),
        }
    }

    /// A handle on the channel `name`.
    pub(crate) fn channel(&self, name: ChannelName) -> ServerChannel {
        ServerChannel {
            engine: self.clone(),
            name,
        }
    }

    /// The channels that exist now.
    pub(crate) fn channel_names(&self) -> Vec<ChannelName> {
        self.inner.channels.read().names()
    }

    /// The live session with this id.
    pub(crate) fn session(&self, id: &str) -> Option<ServerSession> {
        self.inner.sessions.read().get(id).cloned()
    }

    /// Every live session.
    pub(crate) fn sessions(&self) -> Vec<ServerSession> {
        self.inner.sessions.read().values().cloned().collect()
    }

    pub(crate) fn session_count(&self) -> usize {
        self.inner.sessions.read().len()
    }

    pub(crate) fn is_shut_down(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Cancelled when the engine shuts down: connections then say goodbye and close.
    #[cfg(feature = "websocket")]
    pub(crate) fn shutdown_signal(&self) -> &CancellationToken {
        &self.inner.shutdown
    }

    /// Spawns a task [`shutdown`](Self::shutdown) waits for (a connection being served).
    #[cfg(feature = "websocket")]
    pub(crate) fn spawn_tracked<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.tasks.spawn(task);
    }

    /// Makes [`shutdown`](Self::shutdown) wait until the token is dropped.
    #[cfg(feature = "websocket")]
    pub(crate) fn track(&self) -> tokio_util::task::task_tracker::TaskTrackerToken {
        self.inner.tasks.token()
    }

    pub(crate) fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        {
            let sessions = self.inner.sessions.read();
            stats.sessions = sessions.len();
            for session in sessions.values() {
                let state = session.0.state.lock();
                stats.queued_messages += state.queue.len();
                stats.held_connects += usize::from(state.held.is_some());
                stats.sessions_by_transport.count(state.transport);
            }
        }
        {
            let channels = self.inner.channels.read();
            stats.channels = channels.len();
            stats.subscriptions = channels.subscriptions();
        }
        stats.browsers = self.inner.browsers.len();
        stats.broker = self.inner.broker.stats();
        let history = self.inner.history.stats();
        stats.history_channels = history.channels;
        stats.history_messages = history.messages;
        stats.history_bytes = history.bytes;
        self.inner.counters.read_into(&mut stats);
        stats
    }

    pub(crate) fn on_event<F>(&self, listener: F) -> ListenerId
    where
        F: Fn(&ServerEvent) + Send + Sync + 'static,
    {
        let id = ListenerId::next();
        let mut listeners = self.inner.event_listeners.write();
        let mut next = Vec::clone(&listeners);
        next.push((id, Arc::new(listener)));
        *listeners = Arc::new(next);
        id
    }

    pub(crate) fn remove_event_listener(&self, id: ListenerId) -> bool {
        let mut listeners = self.inner.event_listeners.write();
        let mut next = Vec::clone(&listeners);
        next.retain(|(listener_id, _)| *listener_id != id);
        let removed = next.len() != listeners.len();
        *listeners = Arc::new(next);
        removed
    }
}

impl Inner {
    pub(crate) fn emit(&self, event: &ServerEvent) {
        let listeners = self.event_listeners.read().clone();
        for (_, listener) in listeners.iter() {
            listener(event);
        }
    }

    pub(crate) fn expiry_from(&self, now: Instant) -> Instant {
        now + self.config.interval + self.config.max_interval
    }

    /// Adds a handshaken session to the table, within the session limits.
    pub(crate) fn register(&self, session: &ServerSession) -> Result<(), ErrorCode> {
        let mut sessions = self.sessions.write();
        if self
            .config
            .max_sessions
            .is_some_and(|max| sessions.len() >= max)
        {
            return Err(ErrorCode::TooManySessions);
        }
        if let Some(browser) = &session.0.browser
            && !self.browsers.add_session(browser)
        {
            return Err(ErrorCode::TooManySessions);
        }
        sessions.insert(session.0.id.clone(), session.clone());
        Ok(())
    }
}

impl Inner {
    /// A new session id: 160 random bits, after this node's id when there are several nodes
    /// (so that any node can tell where the session lives).
    pub(crate) fn new_session_id(&self) -> Arc<str> {
        let random = random_id();
        match self.broker.node_id() {
            Some(node) => Arc::from(format!("{node}{random}")),
            None => random,
        }
    }
}

/// A random id of 160 bits from the operating system's CSPRNG, as 40 hex digits.
pub(crate) fn random_id() -> Arc<str> {
    let mut bytes = [0u8; 20];
    if let Err(err) = getrandom::fill(&mut bytes) {
        // Without a CSPRNG no id would be safe to hand out; there is nothing to fall back on.
        panic!("the operating system's random number generator failed: {err}");
    }
    let mut out = String::with_capacity(40);
    for byte in bytes {
        use std::fmt::Write;
        let _ = write!(out, "{byte:02x}");
    }
    Arc::from(out)
}
