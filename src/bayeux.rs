//! [`Bayeux`]: the handle applications hold, the engine and the transports' settings together.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::BayeuxBuilder;
use crate::engine::{
    ChannelLiteral, Engine, Error, HistoryPage, IntoChannelName, ListenerId, Published,
    ServerChannel, ServerEvent, ServerSession, Stats,
};
use crate::protocol::{ChannelName, InvalidChannel};
use crate::transport::TransportConfig;

/// The Bayeux server handle: cheap to clone, every clone is the same server.
///
/// Build it once with [`Bayeux::builder`], give it to a [`BayeuxLayer`](crate::BayeuxLayer) or
/// [`BayeuxService`](crate::BayeuxService), and keep clones wherever the application publishes
/// or reacts to sessions.
#[derive(Clone)]
pub struct Bayeux {
    pub(crate) engine: Engine,
    pub(crate) transport: Arc<TransportConfig>,
}

impl fmt::Debug for Bayeux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bayeux")
            .field("sessions", &self.session_count())
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

    pub(crate) fn from_parts(engine: Engine, transport: TransportConfig) -> Self {
        Self {
            engine,
            transport: Arc::new(transport),
        }
    }

    /// A handle on the channel `name`, a literal or a [`ChannelName`]; the channel itself is
    /// created when a listener is added or a client uses it.
    ///
    /// ```
    /// let bayeux = tower_bayeux::Bayeux::builder().build();
    /// bayeux.channel("/service/echo").add_listener(|event| async move { event.proceed() });
    /// ```
    ///
    /// # Panics
    ///
    /// If a literal breaks the channel-name grammar (see [`ChannelName::from_static`]).
    pub fn channel(&self, name: impl ChannelLiteral) -> ServerChannel {
        self.engine.channel(name.channel_name())
    }

    /// A handle on the channel `name`, validated: for names built at run time.
    pub fn try_channel(&self, name: impl IntoChannelName) -> Result<ServerChannel, InvalidChannel> {
        Ok(self.engine.channel(name.into_channel_name()?))
    }

    /// The channels that exist now.
    pub fn channels(&self) -> Vec<ChannelName> {
        self.engine.channel_names()
    }

    /// Publishes `data` to the broadcast channel `channel`; see [`ServerChannel::publish`].
    pub async fn publish(
        &self,
        channel: impl IntoChannelName,
        data: Value,
    ) -> Result<Published, Error> {
        self.try_channel(channel)?.publish(data).await
    }

    /// The history of `channel` after `since` (every retained message without it), as a client
    /// resuming there would get it: its epoch, its latest offset, whether nothing after `since`
    /// is missing, and those messages. `epoch`, if given, must be the channel's current one
    /// for the page to be `recovered`. With a broker that keeps the history (Redis), it is
    /// read from there.
    ///
    /// Fails with [`Error::NoHistory`] for a channel without history, and with
    /// [`Error::HistoryUnavailable`] when the broker keeping it cannot be reached.
    pub async fn history(
        &self,
        channel: impl IntoChannelName,
        since: Option<u64>,
        epoch: Option<&str>,
    ) -> Result<HistoryPage, Error> {
        let channel = channel.into_channel_name()?;
        let read = match since {
            Some(offset) => crate::engine::HistoryRead::After(crate::engine::Since {
                offset,
                epoch: epoch.map(str::to_owned),
            }),
            None => crate::engine::HistoryRead::All,
        };
        let replay = self.engine.inner.read_history(&channel, read).await?;
        Ok(replay.into_page())
    }

    /// The live session with this id.
    pub fn session(&self, id: &str) -> Option<ServerSession> {
        self.engine.session(id)
    }

    /// Delivers `data` on `channel` to the session `client_id` only, on whichever node holds
    /// it: on this node as [`ServerSession::deliver`] does; with several nodes (a
    /// [`RedisBroker`](crate::RedisBroker)), through the broker to the node whose id begins
    /// the clientId, where the session's outgoing extensions see it.
    ///
    /// Fails with [`Error::SessionUnknown`] when no live session has this id here and no other
    /// node can hold it, and with [`Error::NodeUnreachable`] when the node that held it is gone
    /// (or the broker is down). A message that reached a live node is not confirmed further: if
    /// that node no longer holds the session, it is dropped there.
    pub async fn deliver(
        &self,
        client_id: &str,
        channel: impl IntoChannelName,
        data: Value,
    ) -> Result<(), Error> {
        let channel = channel.into_channel_name()?;
        if let Some(session) = self.session(client_id) {
            return session.deliver(channel, data).await;
        }
        let message = crate::Message::with_data(channel.as_str(), data);
        // Perhaps the first thing this node does: its broker must be running.
        self.engine.ensure_started();
        match self
            .engine
            .inner
            .broker
            .deliver(client_id, bytes::Bytes::from(message.to_json()))
        {
            Some(delivery) => delivery.await,
            None => Err(Error::SessionUnknown(client_id.to_owned())),
        }
    }

    /// Every live session.
    pub fn sessions(&self) -> Vec<ServerSession> {
        self.engine.sessions()
    }

    /// How many sessions are live.
    pub fn session_count(&self) -> usize {
        self.engine.session_count()
    }

    /// Shuts the server down gracefully: new handshakes are refused (`503::shutting_down`),
    /// every session is removed (removal listeners hear
    /// [`RemoveReason::Shutdown`](crate::RemoveReason::Shutdown)), held `/meta/connect`s are
    /// answered with what is queued and `reconnect: retry` advice with a random interval up to
    /// [`shutdown_jitter`](BayeuxBuilder::shutdown_jitter) (so clients come back to the next
    /// instance, not all at once), and websockets send what they hold and close with code 1001
    /// (going away).
    ///
    /// Returns once that is done: every held connect has its reply (the HTTP server then
    /// writes it), every websocket has been sent its close frame (or given up on after
    /// [`websocket_write_timeout`](BayeuxBuilder::websocket_write_timeout)), and every
    /// session-removed listener has returned. Websockets served with
    /// [`serve_websocket`](crate::serve_websocket) are waited for too. Calling it again waits
    /// for the same.
    ///
    /// Call it before the HTTP server's own graceful shutdown waits for in-flight requests, so
    /// held long-polls do not keep it waiting:
    ///
    /// ```no_run
    /// # async fn run(app: axum::Router, bayeux: tower_bayeux::Bayeux) -> std::io::Result<()> {
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
    /// axum::serve(listener, app.into_make_service())
    ///     .with_graceful_shutdown(async move {
    ///         let _ = tokio::signal::ctrl_c().await;
    ///         bayeux.shutdown().await;
    ///     })
    ///     .await
    /// # }
    /// ```
    pub async fn shutdown(&self) {
        self.engine.shutdown().await;
    }

    /// Whether [`shutdown`](Self::shutdown) was called.
    pub fn is_shut_down(&self) -> bool {
        self.engine.is_shut_down()
    }

    /// Starts the engine's background work now (the session sweeper and, with a broker, its
    /// connections to Redis) rather than on the first request that needs it. Needs a tokio
    /// runtime; calling it again does nothing.
    ///
    /// A server calls it when it starts, so that a node joins the others (and reports its
    /// broker connected) before its first client arrives.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (it spawns the engine's tasks), as `tokio::spawn` does.
    pub fn start(&self) {
        self.engine.ensure_started();
    }

    /// Counts of what the engine holds now, for monitoring.
    pub fn stats(&self) -> Stats {
        self.engine.stats()
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
        self.engine.on_event(listener)
    }

    /// Removes an event listener. Returns whether it was there.
    pub fn remove_event_listener(&self, id: ListenerId) -> bool {
        self.engine.remove_event_listener(id)
    }
}
