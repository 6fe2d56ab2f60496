//! [`BayeuxBuilder`]: every setting of the engine and of the transports, in one place.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use crate::Bayeux;
use crate::engine::{self, Engine, Extension, QueueFullPolicy, Retention, SecurityPolicy};
use crate::transport::{SameSite, TransportConfig};

/// Builds a [`Bayeux`] engine. Every setting has a default, given in its method's docs.
///
/// ```
/// use std::time::Duration;
/// use tower_bayeux::Bayeux;
///
/// let bayeux = Bayeux::builder()
///     .timeout(Duration::from_secs(25))
///     .max_interval(Duration::from_secs(15))
///     .build();
/// # let _ = bayeux;
/// ```
#[must_use]
#[derive(Default)]
pub struct BayeuxBuilder {
    engine: engine::Config,
    transport: TransportConfig,
    /// `None`: the engine's `timeout + interval + max_interval`.
    #[cfg(feature = "websocket")]
    websocket_idle_timeout: Option<Duration>,
}

impl std::fmt::Debug for BayeuxBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BayeuxBuilder").finish_non_exhaustive()
    }
}

impl BayeuxBuilder {
    /// How long a `/meta/connect` is held when nothing is there to deliver, and the `timeout`
    /// advised to clients. A client's own `advice.timeout` shortens it for that connect.
    ///
    /// Default: 20 seconds (the CometD Java server's). Keep it below the idle timeout of any
    /// proxy in front of the server.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.engine.timeout = timeout;
        self
    }

    /// The `interval` advised to clients: how long they wait between a connect reply and their
    /// next `/meta/connect`.
    ///
    /// Default: 0 (reconnect at once, true long-polling).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.engine.interval = interval;
        self
    }

    /// How long a session lives without a `/meta/connect`: it expires `interval + max_interval`
    /// after its last connect reply (or its handshake) when no new connect arrives.
    ///
    /// Default: 10 seconds.
    pub fn max_interval(mut self, max_interval: Duration) -> Self {
        self.engine.max_interval = max_interval;
        self
    }

    /// How often expired sessions and unused channels are swept away.
    ///
    /// Default: 1 second.
    pub fn sweep_period(mut self, sweep_period: Duration) -> Self {
        self.engine.sweep_period = sweep_period.max(Duration::from_millis(1));
        self
    }

    /// The name of the browser cookie.
    ///
    /// Default: `BAYEUX_BROWSER`.
    pub fn browser_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.transport.cookie.name = name.into();
        self
    }

    /// Whether the browser cookie is `HttpOnly`.
    ///
    /// Default: `true`.
    pub fn browser_cookie_http_only(mut self, http_only: bool) -> Self {
        self.transport.cookie.http_only = http_only;
        self
    }

    /// Whether the browser cookie is `Secure`.
    ///
    /// Default: `false`. Turn it on when the site is served over HTTPS (it is required with
    /// `SameSite=None` and `Partitioned`).
    pub fn browser_cookie_secure(mut self, secure: bool) -> Self {
        self.transport.cookie.secure = secure;
        self
    }

    /// The `SameSite` attribute of the browser cookie.
    ///
    /// Default: not set (the browser's default applies).
    pub fn browser_cookie_same_site(mut self, same_site: SameSite) -> Self {
        self.transport.cookie.same_site = Some(same_site);
        self
    }

    /// The `Path` attribute of the browser cookie; `None` leaves it out.
    ///
    /// Default: `Some("/")`.
    pub fn browser_cookie_path(mut self, path: Option<String>) -> Self {
        self.transport.cookie.path = path;
        self
    }

    /// The `Domain` attribute of the browser cookie.
    ///
    /// Default: not set (the cookie belongs to the exact host).
    pub fn browser_cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.transport.cookie.domain = Some(domain.into());
        self
    }

    /// The `Max-Age` attribute of the browser cookie, in whole seconds.
    ///
    /// Default: not set (a session cookie, dropped when the browser closes).
    pub fn browser_cookie_max_age(mut self, max_age: Duration) -> Self {
        self.transport.cookie.max_age = Some(max_age);
        self
    }

    /// Whether the browser cookie is `Partitioned` (CHIPS), for pages embedded on other sites.
    ///
    /// Default: `false`.
    pub fn browser_cookie_partitioned(mut self, partitioned: bool) -> Self {
        self.transport.cookie.partitioned = partitioned;
        self
    }

    /// How many sessions of one browser (one browser cookie) may hold a long-poll at the same
    /// time; `None` is unlimited. The others get `multiple-clients` advice and poll every
    /// [`multi_session_interval`](Self::multi_session_interval), so a browser's connection limit
    /// is not exhausted by tabs.
    ///
    /// Default: `Some(1)`. `Some(0)` never holds a long-poll.
    pub fn max_sessions_per_browser(mut self, max: Option<usize>) -> Self {
        self.engine.max_sessions_per_browser = max;
        self
    }

    /// The polling interval advised to sessions over the per-browser limit. Zero makes those
    /// connects fail with `reconnect: none` instead.
    ///
    /// Default: 2 seconds.
    pub fn multi_session_interval(mut self, interval: Duration) -> Self {
        self.engine.multi_session_interval = interval;
        self
    }

    /// The HTTP status answered to a held `/meta/connect` that a newer connect of the same
    /// session displaced. Values outside 400–599 are replaced by 500.
    ///
    /// Default: 500 (as the CometD servers; the client ignores it because the reply it waits
    /// for is the newer connect's).
    pub fn duplicate_meta_connect_http_status(mut self, status: StatusCode) -> Self {
        self.transport.duplicate_meta_connect_status =
            if status.is_client_error() || status.is_server_error() {
                status
            } else {
                StatusCode::INTERNAL_SERVER_ERROR
            };
        self
    }

    /// The largest request accepted, in bytes: an HTTP body (larger ones get `413 Payload Too
    /// Large`), the `message` parameters of a callback-polling request, or a websocket message
    /// (larger ones close the connection with code 1009).
    ///
    /// Default: 1 MiB.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.transport.max_body_size = bytes;
        self
    }

    /// The security policy asked before handshakes, channel creation, subscriptions and
    /// publishes.
    ///
    /// Default: none (everything a client may do by the protocol is allowed).
    pub fn security_policy(mut self, policy: impl SecurityPolicy) -> Self {
        self.engine.policy = Some(Arc::new(policy));
        self
    }

    /// The most messages one request (or websocket frame) may carry; larger batches are
    /// refused (`413`, or close code 1009).
    ///
    /// Default: 1000.
    pub fn max_messages_per_batch(mut self, max: usize) -> Self {
        self.transport.parse_limits.max_messages = max.max(1);
        self
    }

    /// The largest single message a client may send, in bytes of JSON; a batch holding a larger
    /// one is refused (`413`, or close code 1009).
    ///
    /// Default: 64 KiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.transport.parse_limits.max_message_size = bytes;
        self
    }

    /// The longest channel name a client may use (publish, subscribe); longer ones are refused
    /// with `405::channel_invalid` or `405::subscription_invalid`.
    ///
    /// Default: 256 bytes.
    pub fn max_channel_length(mut self, bytes: usize) -> Self {
        self.engine.max_channel_length = bytes;
        self
    }

    /// The most channels and patterns one session may subscribe to; past it, subscriptions fail
    /// with `403::subscription_limit`.
    ///
    /// Default: 1000.
    pub fn max_subscriptions_per_session(mut self, max: usize) -> Self {
        self.engine.max_subscriptions_per_session = max;
        self
    }

    /// The most live sessions one browser cookie may have (one per tab; a client that
    /// handshakes in a loop hits it); past it, handshakes fail with `403::too_many_sessions`.
    /// `None` is unlimited.
    ///
    /// Default: `Some(100)`.
    pub fn max_sessions_per_cookie(mut self, max: Option<usize>) -> Self {
        self.engine.max_sessions_per_cookie = max;
        self
    }

    /// The most live sessions the server holds; past it, handshakes fail with
    /// `403::too_many_sessions` and advice to try again later. `None` is unlimited.
    ///
    /// Default: `None`.
    pub fn max_sessions(mut self, max: Option<usize>) -> Self {
        self.engine.max_sessions = max;
        self
    }

    /// The most messages waiting for one session (sent but unacknowledged ones included); past
    /// it the [queue-full policy](Self::queue_full_policy) applies.
    ///
    /// Default: 1000.
    pub fn max_queue_messages(mut self, max: usize) -> Self {
        self.engine.queue.max_messages = max.max(1);
        self
    }

    /// The most bytes of JSON waiting for one session; past it the
    /// [queue-full policy](Self::queue_full_policy) applies.
    ///
    /// Default: 1 MiB.
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.engine.queue.max_bytes = bytes;
        self
    }

    /// What happens when a session's queue is full; listeners hear
    /// [`ServerEvent::QueueFull`](crate::ServerEvent::QueueFull) either way.
    ///
    /// Default: [`QueueFullPolicy::DropOldest`].
    pub fn queue_full_policy(mut self, policy: QueueFullPolicy) -> Self {
        self.engine.queue.policy = policy;
        self
    }

    /// On [`Bayeux::shutdown`], clients are told to reconnect after a random interval up to
    /// this long, so they do not all come back at once.
    ///
    /// Default: 5 seconds.
    pub fn shutdown_jitter(mut self, jitter: Duration) -> Self {
        self.engine.shutdown_jitter = jitter;
        self
    }

    /// Whether the messages queued for a long-polling or callback-polling session travel only
    /// on the replies to its `/meta/connect`s (CometD's `metaConnectDeliveryOnly`).
    ///
    /// Default: `true`, which keeps every publisher's messages in order for every subscriber.
    /// An HTTP client has two connections: one holds its connect, the other carries its
    /// publishes and subscribes. With this on, a session's messages leave through one reply
    /// stream, the connect's, and the client sends its next connect only after it has the reply
    /// to the previous one. With `false`, queued messages also ride on the reply to any other
    /// request of the session (as on the CometD servers by default): a client's own echo then
    /// comes back on its publish reply instead of waking its held connect, which saves a
    /// response per echo, but two replies carrying messages can be in flight at once and the
    /// client processes whichever arrives first, so a later message can overtake an earlier
    /// one. Websocket sessions are not affected (one connection keeps its order), nor are
    /// sessions using the ack extension (their messages travel on connect replies only).
    pub fn meta_connect_delivery_only(mut self, only: bool) -> Self {
        self.engine.meta_connect_delivery_only = only;
        self
    }

    /// Adds a server-wide [`Extension`]. Incoming messages pass the extensions in the order they
    /// were added, outgoing ones in reverse order. Built in: [`AckExtension`],
    /// [`TimesyncExtension`] and [`TimestampExtension`].
    ///
    /// Default: none.
    ///
    /// [`AckExtension`]: crate::ext::AckExtension
    /// [`TimesyncExtension`]: crate::ext::TimesyncExtension
    /// [`TimestampExtension`]: crate::ext::TimestampExtension
    pub fn extension(mut self, extension: impl Extension) -> Self {
        self.engine.extensions.push(Arc::new(extension));
        self
    }

    /// Keeps the history of the broadcast channels matching `pattern` (a channel, or a pattern
    /// such as `/chat/**`) as `retention` says, so that clients can resume where they left off
    /// and [`Bayeux::history`] can read it. The first pattern added that matches a channel
    /// applies to it. Every message on such a channel carries its position
    /// (`ext.history = {"offset": N, "epoch": "E"}`); see the README's "History and replay".
    /// An invalid literal panics, as [`ChannelName::from_static`](crate::ChannelName::from_static)
    /// does.
    ///
    /// The history is kept in this node's memory, or with a Redis
    /// [`broker`](Self::broker), in Redis, shared by the nodes (same offsets everywhere).
    ///
    /// Default: no channel has history.
    pub fn history(mut self, pattern: impl engine::ChannelLiteral, retention: Retention) -> Self {
        self.engine
            .history
            .push((pattern.channel_name(), retention));
        self
    }

    /// The most memory the histories of all channels may hold, counted as each retained
    /// message's JSON plus [`HISTORY_ENTRY_COST`](crate::HISTORY_ENTRY_COST) bytes; past it
    /// the oldest messages of all channels are dropped first.
    ///
    /// Default: 64 MiB.
    pub fn max_history_bytes(mut self, bytes: usize) -> Self {
        self.engine.max_history_bytes = bytes;
        self
    }

    /// Connects this node to the other nodes of one Bayeux space through Redis: broadcasts
    /// published on any node reach the subscribers of every node, and
    /// [`Bayeux::deliver`](crate::Bayeux::deliver) reaches a session on any node. See
    /// [`RedisBroker`](crate::RedisBroker) and the README's "Running several nodes".
    ///
    /// Default: none (a single node).
    #[cfg(feature = "redis")]
    pub fn broker(mut self, broker: crate::RedisBroker) -> Self {
        self.engine.broker = Some(broker.into_broker());
        self
    }

    /// Whether clients may use the `websocket` transport (an upgrade at the Bayeux path). When
    /// off, upgrades are refused and clients fall back to long-polling.
    ///
    /// Default: `true`. The server must serve connections with upgrades enabled (`axum::serve`
    /// does; with hyper, `serve_connection(..).with_upgrades()`).
    #[cfg(feature = "websocket")]
    pub fn websocket(mut self, enabled: bool) -> Self {
        self.transport.websocket.enabled = enabled;
        self
    }

    /// How long a websocket may go without receiving anything before the server closes it.
    ///
    /// Default: `timeout + interval + max_interval`, the time after which a session whose
    /// client sent no `/meta/connect` expires anyway.
    #[cfg(feature = "websocket")]
    pub fn websocket_idle_timeout(mut self, timeout: Duration) -> Self {
        self.websocket_idle_timeout = Some(timeout);
        self
    }

    /// How long writing one frame to a websocket may take before the server gives up on the
    /// connection (a client that stopped reading), closing it; its session then expires as a
    /// dropped long-poll's would.
    ///
    /// Default: 10 seconds.
    #[cfg(feature = "websocket")]
    pub fn websocket_write_timeout(mut self, timeout: Duration) -> Self {
        self.transport.websocket.write_timeout = timeout;
        self
    }

    /// Adds an origin that may open websockets to the Bayeux path besides the page's own, as
    /// browsers send it in the `Origin` header: `scheme://host` with an optional `:port`, such
    /// as `"https://app.example.com"` (a default port may be given or left out). Origins are
    /// compared exactly (scheme, host, port, ASCII case-insensitively); there are no patterns
    /// or wildcards: add every origin. One that does not parse matches nothing.
    ///
    /// Default: none; only the request's own origin (the scheme, host and port of its `Host`
    /// header) is accepted. See [`websocket_check_origin`](Self::websocket_check_origin).
    #[cfg(feature = "websocket")]
    pub fn websocket_allowed_origin(mut self, origin: impl Into<String>) -> Self {
        self.transport.websocket.allowed_origins.push(origin.into());
        self
    }

    /// Whether websocket upgrades carrying an `Origin` header must come from the request's own
    /// origin or an [allowed one](Self::websocket_allowed_origin); others get `403 Forbidden`
    /// and no upgrade. Upgrades without `Origin` (clients that are not browsers) are accepted.
    ///
    /// Default: `true`. Browsers send cookies with a websocket upgrade whatever page opens it,
    /// and CORS does not apply to websockets: without this check, a page on any site can open a
    /// websocket to the Bayeux path with the user's cookies and read their messages when
    /// sessions are authenticated by cookie. Turn it off only when nothing is authorised by
    /// cookies, or when a layer in front checks `Origin` itself.
    #[cfg(feature = "websocket")]
    pub fn websocket_check_origin(mut self, check: bool) -> Self {
        self.transport.websocket.check_origin = check;
        self
    }

    /// Whether a websocket connection's [request context](crate::context::RequestContext)
    /// keeps the upgrade request's extensions (what layers in front inserted: claims from an
    /// auth layer, the peer address, ...) for listeners to read. The method, URI and headers are
    /// always kept, as copies.
    ///
    /// Default: `true`. The context lives as long as the connection, and so does everything in
    /// the extensions: turn this off when no listener reads them. In particular axum's router
    /// (with [`Router::layer`](https://docs.rs/axum/0.8/axum/struct.Router.html#method.layer))
    /// inserts its `OriginalUri`, a slice of hyper's read buffer, which keeps that buffer (8 to
    /// 16 KB) allocated for each websocket's whole life: at 10,000 idle websockets, 21 KB of
    /// server memory per connection instead of 9.4 KB.
    #[cfg(feature = "websocket")]
    pub fn websocket_keep_extensions(mut self, keep: bool) -> Self {
        self.transport.websocket.keep_extensions = keep;
        self
    }

    /// Whether clients may use the `callback-polling` (JSONP) transport: `GET` requests with a
    /// `jsonp` callback name and the messages in `message` parameters.
    ///
    /// Default: `false`. JSONP exists for browsers without CORS, and its replies are scripts that
    /// any page may include: with cookie-based authentication a page on another site can make
    /// the user's browser run a session and read its messages through it. Turn it on only for
    /// old clients that need it, and not when sessions are authorised by cookies.
    #[cfg(feature = "jsonp")]
    pub fn callback_polling(mut self, enabled: bool) -> Self {
        self.transport.callback_polling = enabled;
        self
    }

    /// Whether an HTTP request without the browser cookie may continue a session by its
    /// `clientId` alone (CometD's `trustClientSession`). A request carrying a different browser
    /// cookie is refused either way.
    ///
    /// Default: `false`: a long-polling or callback-polling session is only reachable with the
    /// browser cookie it was created with, so a leaked `clientId` is not enough to read its
    /// messages. Turn it on for HTTP clients that do not keep cookies (some non-browser clients
    /// drop cookies set for an IP-address host). Websocket upgrades without a cookie may always
    /// continue a session by its `clientId`, as CometD's websocket transport allows: a
    /// `clientId` is 160 random bits and only ever sent to its own client.
    pub fn trust_client_session(mut self, trust: bool) -> Self {
        self.transport.trust_client_session = trust;
        self
    }

    /// Builds the engine. It may be built outside a tokio runtime; its session sweeper starts
    /// with the first handshake.
    pub fn build(self) -> Bayeux {
        let Self {
            mut engine,
            transport,
            #[cfg(feature = "websocket")]
            websocket_idle_timeout,
        } = self;
        engine.connection_types = transport.connection_types();
        #[cfg(feature = "websocket")]
        let transport = {
            let mut transport = transport;
            transport.websocket.idle_timeout =
                websocket_idle_timeout.unwrap_or(engine.session_lifetime());
            transport
        };
        Bayeux::from_parts(Engine::new(engine), transport)
    }
}
