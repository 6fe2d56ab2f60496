//! The Bayeux engine: sessions, channels, subscriptions, the security policy and the server
//! API. It knows nothing of HTTP; transports feed it batches of messages.

mod channel;
mod config;
mod event;
mod extension;
mod policy;
pub(crate) mod process;
mod queue;
mod session;

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::protocol::{ChannelName, ErrorCode, InvalidChannel};

pub use channel::{MessageEvent, ServerChannel, Verdict};
pub use config::{BayeuxBuilder, SameSite};
pub use event::{RemoveReason, ServerEvent};
pub use extension::{Extension, SessionExtension};
pub use policy::SecurityPolicy;
pub use queue::QueueFullPolicy;
pub use session::ServerSession;

pub(crate) use channel::ChannelTable;
pub(crate) use config::Config;
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
    /// An extension dropped the message.
    #[error("an extension dropped the message")]
    MessageDeleted,
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

/// Per-browser bookkeeping: how many sessions it has, and which of them hold a long-poll.
#[derive(Default)]
struct BrowserState {
    sessions: usize,
    /// `(session id, connect generation)` of the held connects.
    holding: Vec<(Arc<str>, u64)>,
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) sessions: RwLock<HashMap<Arc<str>, ServerSession>>,
    pub(crate) channels: RwLock<ChannelTable>,
    browsers: Mutex<HashMap<Arc<str>, BrowserState>>,
    event_listeners: RwLock<Arc<Vec<(ListenerId, EventListener)>>>,
    sweeper_started: AtomicBool,
    /// Set by [`Bayeux::shutdown`]: no new sessions, held connects told to come back later.
    pub(crate) closing: AtomicBool,
    /// Cancelled by [`Bayeux::shutdown`]: websocket connections close.
    pub(crate) shutdown: CancellationToken,
    /// What [`Bayeux::shutdown`] waits for: websocket connections, held connects and
    /// session-removed listeners.
    pub(crate) tasks: TaskTracker,
    /// The connection types the transports offer, for the handshake reply.
    pub(crate) connection_types: Vec<&'static str>,
}

/// The Bayeux engine handle: cheap to clone, every clone is the same engine.
///
/// Build it once with [`Bayeux::builder`], give it to a [`BayeuxLayer`](crate::BayeuxLayer) or
/// [`BayeuxService`](crate::BayeuxService), and keep clones wherever the application publishes
/// or reacts to sessions.
#[derive(Clone)]
pub struct Bayeux {
    pub(crate) inner: Arc<Inner>,
}

impl fmt::Debug for Bayeux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bayeux")
            .field("sessions", &self.inner.sessions.read().len())
            .finish_non_exhaustive()
    }
}

impl Default for Bayeux {
    fn default() -> Self {
        Self::builder().build()
    }
}

impl Bayeux {
    /// A builder with every setting at its default.
    pub fn builder() -> BayeuxBuilder {
        BayeuxBuilder::default()
    }

    pub(crate) fn from_config(config: Config) -> Self {
        let connection_types = config.connection_types();
        Self {
            inner: Arc::new(Inner {
                config,
                sessions: RwLock::default(),
                channels: RwLock::default(),
                browsers: Mutex::default(),
                event_listeners: RwLock::default(),
                sweeper_started: AtomicBool::new(false),
                closing: AtomicBool::new(false),
                shutdown: CancellationToken::new(),
                tasks: TaskTracker::new(),
                connection_types,
            }),
        }
    }

    /// A handle on the channel `name` (validated); the channel is created when a listener is
    /// added or a client uses it.
    pub fn channel(&self, name: impl IntoChannelName) -> Result<ServerChannel, InvalidChannel> {
        Ok(ServerChannel {
            bayeux: self.clone(),
            name: name.into_channel_name()?,
        })
    }

    /// The channels that exist now.
    pub fn channels(&self) -> Vec<ChannelName> {
        self.inner.channels.read().names()
    }

    /// Publishes `data` to the broadcast channel `channel`; see [`ServerChannel::publish`].
    pub async fn publish(&self, channel: impl IntoChannelName, data: Value) -> Result<(), Error> {
        self.channel(channel)?.publish(data).await
    }

    /// The live session with this id.
    pub fn session(&self, id: &str) -> Option<ServerSession> {
        self.inner.sessions.read().get(id).cloned()
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<ServerSession> {
        self.inner.sessions.read().values().cloned().collect()
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.inner.sessions.read().len()
    }

    /// Shuts the engine down gracefully: new handshakes are refused (`503::shutting_down`),
    /// every session is removed (removal listeners hear [`RemoveReason::Shutdown`]), held
    /// `/meta/connect`s are answered with what is queued and `reconnect: retry` advice with a
    /// random interval up to [`shutdown_jitter`](BayeuxBuilder::shutdown_jitter) (so clients come
    /// back to the next instance, not all at once), and websockets send what they hold and
    /// close with code 1001 (going away).
    ///
    /// Returns once that is done: every held connect has its reply (the HTTP server then
    /// writes it), every websocket has been sent its close frame (or given up on after
    /// [`websocket_write_timeout`](BayeuxBuilder::websocket_write_timeout)), and every
    /// session-removed listener has returned. Websockets served with
    /// [`serve_websocket`](Self::serve_websocket) are waited for too. Calling it again waits
    /// for the same.
    ///
    /// Call it before the HTTP server's own graceful shutdown waits for in-flight requests, so
    /// held long-polls do not keep it waiting:
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router, bayeux: tower_bayeux::Bayeux) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// axum::serve(listener, app)
    ///     .with_graceful_shutdown(async move {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///         bayeux.shutdown().await;
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        if !self.inner.closing.swap(true, Ordering::AcqRel) {
            tracing::info!(sessions = self.session_count(), "shutting down");
            for session in self.sessions() {
                self.inner.remove_session(&session, RemoveReason::Shutdown);
            }
            self.inner.shutdown.cancel();
            self.inner.tasks.close();
        }
        self.inner.tasks.wait().await;
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.inner.closing.load(Ordering::Acquire)
    }

    /// Counts of what the engine holds now, for monitoring.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats::default();
        {
            let sessions = self.inner.sessions.read();
            stats.sessions = sessions.len();
            for session in sessions.values() {
                let state = session.0.state.lock();
                stats.queued_messages += state.queue.len();
                stats.held_connects += usize::from(state.held.is_some());
            }
        }
        stats.channels = self.inner.channels.read().len();
        stats.browsers = self.inner.browsers.lock().len();
        stats
    }

    /// Adds a listener for engine events (sessions added and removed, subscriptions, channels).
    /// See [`ServerEvent`] for when and how it is called.
    ///
    /// ```
    /// use tower_bayeux::{Bayeux, ServerEvent};
    ///
    /// let bayeux = Bayeux::builder().build();
    /// bayeux.on_event(|event| {
    ///     if let ServerEvent::SessionRemoved { session, reason } = event {
    ///         println!("{} left ({reason:?})", session.id());
    ///     }
    /// });
    /// ```
    pub fn on_event<F>(&self, listener: F) -> ListenerId
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

    /// Removes an event listener. Returns whether it was there.
    pub fn remove_event_listener(&self, id: ListenerId) -> bool {
        let mut listeners = self.inner.event_listeners.write();
        let mut next = Vec::clone(&listeners);
        next.retain(|(listener_id, _)| *listener_id != id);
        let removed = next.len() != listeners.len();
        *listeners = Arc::new(next);
        removed
    }

    /// The body size limit transports apply.
    pub(crate) fn max_body_size(&self) -> usize {
        self.inner.config.max_body_size
    }

    /// The bounds transports parse batches within.
    pub(crate) fn parse_limits(&self) -> crate::protocol::ParseLimits {
        crate::protocol::ParseLimits {
            max_messages: self.inner.config.max_messages_per_batch,
            max_message_size: self.inner.config.max_message_size,
        }
    }

    /// Starts the sweeper task if it is not running; needs a tokio runtime.
    fn ensure_sweeper(&self) {
        if self.inner.sweeper_started.swap(true, Ordering::AcqRel) {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let period = self.inner.config.sweep_period;
        tokio::spawn(sweep_loop(weak, period));
    }
}

async fn sweep_loop(engine: Weak<Inner>, period: std::time::Duration) {
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let Some(inner) = engine.upgrade() else {
            return;
        };
        if inner.closing.load(Ordering::Acquire) {
            return;
        }
        inner.sweep();
    }
}

impl Inner {
    /// Follows up on queueing a delivery: a full queue is reported to listeners, and under the
    /// disconnect policy its session removed. Returns whether the delivery was queued.
    pub(crate) fn queued(&self, session: &ServerSession, push: Option<queue::Push>) -> bool {
        use queue::Push;
        let Some(push) = push else {
            return false;
        };
        let full = matches!(push, Push::Full | Push::DroppedOldest { first: true });
        if full {
            tracing::debug!(client_id = %session.id(), ?push, "session queue full");
            self.emit(&ServerEvent::QueueFull {
                session: session.clone(),
                policy: self.config.queue.policy,
            });
        }
        if push == Push::Full {
            self.remove_session(session, RemoveReason::QueueFull);
            return false;
        }
        true
    }

    pub(crate) fn emit(&self, event: &ServerEvent) {
        let listeners = self.event_listeners.read().clone();
        for (_, listener) in listeners.iter() {
            listener(event);
        }
    }

    pub(crate) fn expiry_from(&self, now: Instant) -> Instant {
        now + self.config.interval + self.config.max_interval
    }

    /// Removes expired sessions and unused channels.
    fn sweep(&self) {
        let now = Instant::now();
        let expired: Vec<ServerSession> = self
            .sessions
            .read()
            .values()
            .filter(|session| {
                let state = session.0.state.lock();
                state.held.is_none() && state.expire_at.is_some_and(|at| at <= now)
            })
            .cloned()
            .collect();
        for session in expired {
            tracing::debug!(client_id = %session.id(), "session expired");
            self.remove_session(&session, RemoveReason::Timeout);
        }
        let removed = self.channels.write().sweep();
        for name in removed {
            self.emit(&ServerEvent::ChannelRemoved(name));
        }
    }

    /// Removes a session: unsubscribes it everywhere, wakes its held connect, and tells
    /// listeners: event listeners at once, session-removed listeners in a task of their own,
    /// so that neither the caller (a publisher whose message overflowed the session's queue,
    /// the sweeper) nor other sessions wait on them. Returns `false` if it was already removed.
    pub(crate) fn remove_session(&self, session: &ServerSession, reason: RemoveReason) -> bool {
        if self.sessions.write().remove(&session.0.id).is_none() {
            return false;
        }
        let (subscriptions, held, push) = {
            let mut state = session.0.state.lock();
            state.removed = Some(reason);
            state.expire_at = None;
            if reason == RemoveReason::QueueFull {
                // Nothing more goes to a client that could not keep up.
                state.queue.clear();
            }
            (
                std::mem::take(&mut state.subscriptions),
                state.held.take(),
                state.push.take(),
            )
        };
        if let Some(slot) = held {
            let _ = slot.wake.send(session::Wake::Removed);
        }
        if let Some(push) = push {
            // The connection writes what is left (a server-side /meta/disconnect).
            push.notify.notify_one();
        }
        if let Some(browser) = &session.0.browser {
            let mut browsers = self.browsers.lock();
            if let Some(entry) = browsers.get_mut(browser) {
                entry.sessions = entry.sessions.saturating_sub(1);
                if entry.sessions == 0 && entry.holding.is_empty() {
                    browsers.remove(browser);
                }
            }
        }
        {
            let mut channels = self.channels.write();
            for name in &subscriptions {
                if let Some(entry) = channels.get_mut(name) {
                    entry.subscribers.remove(&session.0.id);
                }
            }
        }
        for channel in subscriptions {
            self.emit(&ServerEvent::Unsubscribed {
                session: session.clone(),
                channel,
                message: None,
            });
        }
        self.emit(&ServerEvent::SessionRemoved {
            session: session.clone(),
            reason,
        });
        let listeners = session.take_removed_listeners(reason);
        self.run_removed_listeners(session, reason, listeners);
        tracing::debug!(client_id = %session.id(), ?reason, "session removed");
        true
    }

    /// Runs session-removed listeners in a task of their own: in order, one after the other,
    /// each panic contained (as an extension's).
    pub(crate) fn run_removed_listeners(
        &self,
        session: &ServerSession,
        reason: RemoveReason,
        listeners: Vec<session::RemovedListener>,
    ) {
        if listeners.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(
                client_id = %session.id(),
                "session-removed listeners not run: no tokio runtime"
            );
            return;
        };
        let session = session.clone();
        self.tasks.spawn_on(
            async move {
                for listener in listeners {
                    let removed = session.clone();
                    let run = async move { listener(removed, reason).await };
                    if extension::CatchUnwind(run).await.is_err() {
                        tracing::error!(
                            client_id = %session.id(),
                            "session-removed listener panicked"
                        );
                    }
                }
            },
            &runtime,
        );
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
        if let Some(browser) = &session.0.browser {
            let mut browsers = self.browsers.lock();
            let entry = browsers.entry(browser.clone()).or_default();
            if self
                .config
                .max_sessions_per_cookie
                .is_some_and(|max| entry.sessions >= max)
            {
                if entry.sessions == 0 && entry.holding.is_empty() {
                    browsers.remove(browser);
                }
                return Err(ErrorCode::TooManySessions);
            }
            entry.sessions += 1;
        }
        sessions.insert(session.0.id.clone(), session.clone());
        Ok(())
    }

    /// Claims a long-poll for `session` within its browser's limit. A session that already
    /// holds one keeps its place (its new connect displaces the old).
    pub(crate) fn try_hold(&self, browser: &Arc<str>, session: &Arc<str>, generation: u64) -> bool {
        if self.config.max_sessions_per_browser.is_none() {
            // Nothing to count: keep the shared lock off the connect path.
            return true;
        }
        let mut browsers = self.browsers.lock();
        let entry = browsers.entry(browser.clone()).or_default();
        if let Some(held) = entry.holding.iter_mut().find(|(id, _)| id == session) {
            held.1 = generation;
            return true;
        }
        match self.config.max_sessions_per_browser {
            Some(max) if entry.holding.len() >= max => false,
            _ => {
                entry.holding.push((session.clone(), generation));
                true
            }
        }
    }

    /// Releases the long-poll claimed by connect `generation` of `session`, if still its own.
    pub(crate) fn release_hold(&self, browser: &Arc<str>, session: &Arc<str>, generation: u64) {
        if self.config.max_sessions_per_browser.is_none() {
            return;
        }
        let mut browsers = self.browsers.lock();
        if let Some(entry) = browsers.get_mut(browser) {
            entry
                .holding
                .retain(|(id, held)| !(id == session && *held == generation));
            if entry.sessions == 0 && entry.holding.is_empty() {
                browsers.remove(browser);
            }
        }
    }

    /// A random reconnect interval for clients of a server shutting down.
    pub(crate) fn shutdown_interval_ms(&self) -> i64 {
        let jitter = u64::try_from(self.config.shutdown_jitter.as_millis()).unwrap_or(u64::MAX);
        if jitter == 0 {
            return 0;
        }
        let random = getrandom::u64().unwrap_or(jitter / 2);
        i64::try_from(random % jitter).unwrap_or(0)
    }
}

/// What the engine holds, from [`Bayeux::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Live sessions.
    pub sessions: usize,
    /// Channels with subscribers or listeners (or used since the last sweep).
    pub channels: usize,
    /// Browser cookies with live sessions or held connects.
    pub browsers: usize,
    /// Messages waiting for their sessions (sent but unacknowledged ones included).
    pub queued_messages: usize,
    /// `/meta/connect`s held now, waiting for messages or their timeout.
    pub held_connects: usize,
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
