//! Engine configuration and its builder.

use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;

use super::Bayeux;
use super::extension::{ErasedExtension, Extension};
use super::policy::{ErasedPolicy, SecurityPolicy};
use super::queue::{QueueFullPolicy, QueueLimits};

/// The `SameSite` attribute of the browser cookie.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SameSite {
    /// `SameSite=Strict`.
    Strict,
    /// `SameSite=Lax`.
    Lax,
    /// `SameSite=None` (browsers require `Secure` with it).
    None,
}

/// Options of the browser cookie (`BAYEUX_BROWSER` by default) that tells which sessions share
/// a browser, and binds long-polling sessions to it.
#[derive(Clone, Debug)]
pub(crate) struct CookieConfig {
    pub(crate) name: String,
    pub(crate) http_only: bool,
    pub(crate) secure: bool,
    pub(crate) same_site: Option<SameSite>,
    pub(crate) path: Option<String>,
    pub(crate) domain: Option<String>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) partitioned: bool,
}

impl Default for CookieConfig {
    fn default() -> Self {
        Self {
            name: "BAYEUX_BROWSER".to_owned(),
            http_only: true,
            secure: false,
            same_site: None,
            path: Some("/".to_owned()),
            domain: None,
            max_age: None,
            partitioned: false,
        }
    }
}

impl CookieConfig {
    /// The `Set-Cookie` value for a new browser id.
    pub(crate) fn set_cookie(&self, value: &str) -> String {
        let mut builder = cookie::Cookie::build((self.name.as_str(), value))
            .http_only(self.http_only)
            .secure(self.secure)
            .partitioned(self.partitioned);
        if let Some(path) = &self.path {
            builder = builder.path(path.as_str());
        }
        if let Some(domain) = &self.domain {
            builder = builder.domain(domain.as_str());
        }
        if let Some(max_age) = self.max_age {
            let secs = i64::try_from(max_age.as_secs()).unwrap_or(i64::MAX);
            builder = builder.max_age(cookie::time::Duration::seconds(secs));
        }
        if let Some(same_site) = self.same_site {
            builder = builder.same_site(match same_site {
                SameSite::Strict => cookie::SameSite::Strict,
                SameSite::Lax => cookie::SameSite::Lax,
                SameSite::None => cookie::SameSite::None,
            });
        }
        builder.build().to_string()
    }

    /// Finds this cookie's value in the request's `Cookie` headers.
    pub(crate) fn find<'h>(&self, headers: &'h http::HeaderMap) -> Option<&'h str> {
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                (name.trim() == self.name).then(|| value.trim())
            })
            .filter(|value| !value.is_empty() && value.len() <= MAX_BROWSER_ID_LEN)
    }
}

/// Longer cookie values are ignored (a new browser id is issued), so a client cannot make the
/// engine store arbitrarily large keys.
const MAX_BROWSER_ID_LEN: usize = 128;

/// Engine settings, fixed when the engine is built.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    pub(crate) max_interval: Duration,
    pub(crate) sweep_period: Duration,
    pub(crate) cookie: CookieConfig,
    pub(crate) max_sessions_per_browser: Option<usize>,
    pub(crate) multi_session_interval: Duration,
    pub(crate) duplicate_meta_connect_http_status: StatusCode,
    pub(crate) max_body_size: usize,
    pub(crate) max_messages_per_batch: usize,
    pub(crate) max_message_size: usize,
    pub(crate) max_channel_length: usize,
    pub(crate) max_subscriptions_per_session: usize,
    pub(crate) max_sessions_per_cookie: Option<usize>,
    pub(crate) max_sessions: Option<usize>,
    pub(crate) queue: QueueLimits,
    pub(crate) shutdown_jitter: Duration,
    pub(crate) meta_connect_delivery_only: bool,
    pub(crate) policy: Option<Arc<dyn ErasedPolicy>>,
    pub(crate) extensions: Vec<Arc<dyn ErasedExtension>>,
    #[cfg(feature = "websocket")]
    pub(crate) websocket: bool,
    #[cfg(feature = "websocket")]
    pub(crate) websocket_idle_timeout: Option<Duration>,
    #[cfg(feature = "websocket")]
    pub(crate) websocket_write_timeout: Duration,
    /// Origins allowed to open websockets besides the request's own, as given.
    #[cfg(feature = "websocket")]
    pub(crate) websocket_allowed_origins: Vec<String>,
    #[cfg(feature = "websocket")]
    pub(crate) websocket_check_origin: bool,
    #[cfg(feature = "jsonp")]
    pub(crate) callback_polling: bool,
    pub(crate) trust_client_session: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(20),
            interval: Duration::ZERO,
            max_interval: Duration::from_secs(10),
            sweep_period: Duration::from_secs(1),
            cookie: CookieConfig::default(),
            max_sessions_per_browser: Some(1),
            multi_session_interval: Duration::from_secs(2),
            duplicate_meta_connect_http_status: StatusCode::INTERNAL_SERVER_ERROR,
            max_body_size: 1024 * 1024,
            max_messages_per_batch: 1000,
            max_message_size: 64 * 1024,
            max_channel_length: 256,
            max_subscriptions_per_session: 1000,
            max_sessions_per_cookie: Some(100),
            max_sessions: None,
            queue: QueueLimits {
                max_messages: 1000,
                max_bytes: 1024 * 1024,
                policy: QueueFullPolicy::DropOldest,
            },
            shutdown_jitter: Duration::from_secs(5),
            meta_connect_delivery_only: true,
            policy: None,
            extensions: Vec::new(),
            #[cfg(feature = "websocket")]
            websocket: true,
            #[cfg(feature = "websocket")]
            websocket_idle_timeout: None,
            #[cfg(feature = "websocket")]
            websocket_write_timeout: Duration::from_secs(10),
            #[cfg(feature = "websocket")]
            websocket_allowed_origins: Vec::new(),
            #[cfg(feature = "websocket")]
            websocket_check_origin: true,
            #[cfg(feature = "jsonp")]
            callback_polling: false,
            trust_client_session: false,
        }
    }
}

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
    config: Config,
}

impl std::fmt::Debug for BayeuxBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BayeuxBuilder").finish_non_exhaustive()
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Config {
    pub(crate) fn timeout_ms(&self) -> i64 {
        millis(self.timeout)
    }

    pub(crate) fn interval_ms(&self) -> i64 {
        millis(self.interval)
    }

    pub(crate) fn multi_session_interval_ms(&self) -> i64 {
        millis(self.multi_session_interval)
    }

    /// The enabled transports, in the order the handshake reply lists them.
    pub(crate) fn connection_types(&self) -> Vec<&'static str> {
        let mut types = Vec::with_capacity(3);
        if self.websocket_enabled() {
            types.push("websocket");
        }
        types.push("long-polling");
        if self.callback_polling_enabled() {
            types.push("callback-polling");
        }
        types
    }

    pub(crate) fn websocket_enabled(&self) -> bool {
        #[cfg(feature = "websocket")]
        return self.websocket;
        #[cfg(not(feature = "websocket"))]
        false
    }

    pub(crate) fn callback_polling_enabled(&self) -> bool {
        #[cfg(feature = "jsonp")]
        return self.callback_polling;
        #[cfg(not(feature = "jsonp"))]
        false
    }

    /// How long a websocket may stay silent before it is closed.
    #[cfg(feature = "websocket")]
    pub(crate) fn websocket_idle_timeout(&self) -> Duration {
        self.websocket_idle_timeout
            .unwrap_or(self.timeout + self.interval + self.max_interval)
    }
}

impl BayeuxBuilder {
    /// How long a `/meta/connect` is held when nothing is there to deliver, and the `timeout`
    /// advised to clients. A client's own `advice.timeout` shortens it for that connect.
    ///
    /// Default: 20 seconds (the CometD Java server's). Keep it below the idle timeout of any
    /// proxy in front of the server.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.config.timeout = timeout;
        self
    }

    /// The `interval` advised to clients: how long they wait between a connect reply and their
    /// next `/meta/connect`.
    ///
    /// Default: 0 (reconnect at once, true long-polling).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.config.interval = interval;
        self
    }

    /// How long a session lives without a `/meta/connect`: it expires `interval + max_interval`
    /// after its last connect reply (or its handshake) when no new connect arrives.
    ///
    /// Default: 10 seconds.
    pub fn max_interval(mut self, max_interval: Duration) -> Self {
        self.config.max_interval = max_interval;
        self
    }

    /// How often expired sessions and unused channels are swept away.
    ///
    /// Default: 1 second.
    pub fn sweep_period(mut self, sweep_period: Duration) -> Self {
        self.config.sweep_period = sweep_period.max(Duration::from_millis(1));
        self
    }

    /// The name of the browser cookie.
    ///
    /// Default: `BAYEUX_BROWSER`.
    pub fn browser_cookie_name(mut self, name: impl Into<String>) -> Self {
        self.config.cookie.name = name.into();
        self
    }

    /// Whether the browser cookie is `HttpOnly`.
    ///
    /// Default: `true`.
    pub fn browser_cookie_http_only(mut self, http_only: bool) -> Self {
        self.config.cookie.http_only = http_only;
        self
    }

    /// Whether the browser cookie is `Secure`.
    ///
    /// Default: `false`. Turn it on when the site is served over HTTPS (it is required with
    /// `SameSite=None` and `Partitioned`).
    pub fn browser_cookie_secure(mut self, secure: bool) -> Self {
        self.config.cookie.secure = secure;
        self
    }

    /// The `SameSite` attribute of the browser cookie.
    ///
    /// Default: not set (the browser's default applies).
    pub fn browser_cookie_same_site(mut self, same_site: SameSite) -> Self {
        self.config.cookie.same_site = Some(same_site);
        self
    }

    /// The `Path` attribute of the browser cookie; `None` leaves it out.
    ///
    /// Default: `Some("/")`.
    pub fn browser_cookie_path(mut self, path: Option<String>) -> Self {
        self.config.cookie.path = path;
        self
    }

    /// The `Domain` attribute of the browser cookie.
    ///
    /// Default: not set (the cookie belongs to the exact host).
    pub fn browser_cookie_domain(mut self, domain: impl Into<String>) -> Self {
        self.config.cookie.domain = Some(domain.into());
        self
    }

    /// The `Max-Age` attribute of the browser cookie, in whole seconds.
    ///
    /// Default: not set (a session cookie, dropped when the browser closes).
    pub fn browser_cookie_max_age(mut self, max_age: Duration) -> Self {
        self.config.cookie.max_age = Some(max_age);
        self
    }

    /// Whether the browser cookie is `Partitioned` (CHIPS), for pages embedded on other sites.
    ///
    /// Default: `false`.
    pub fn browser_cookie_partitioned(mut self, partitioned: bool) -> Self {
        self.config.cookie.partitioned = partitioned;
        self
    }

    /// How many sessions of one browser (one browser cookie) may hold a long-poll at the same
    /// time; `None` is unlimited. The others get `multiple-clients` advice and poll every
    /// [`multi_session_interval`](Self::multi_session_interval), so a browser's connection limit
    /// is not exhausted by tabs.
    ///
    /// Default: `Some(1)`. `Some(0)` never holds a long-poll.
    pub fn max_sessions_per_browser(mut self, max: Option<usize>) -> Self {
        self.config.max_sessions_per_browser = max;
        self
    }

    /// The polling interval advised to sessions over the per-browser limit. Zero makes those
    /// connects fail with `reconnect: none` instead.
    ///
    /// Default: 2 seconds.
    pub fn multi_session_interval(mut self, interval: Duration) -> Self {
        self.config.multi_session_interval = interval;
        self
    }

    /// The HTTP status answered to a held `/meta/connect` that a newer connect of the same
    /// session displaced. Values outside 400–599 are replaced by 500.
    ///
    /// Default: 500 (as the CometD servers; the client ignores it because the reply it waits
    /// for is the newer connect's).
    pub fn duplicate_meta_connect_http_status(mut self, status: StatusCode) -> Self {
        self.config.duplicate_meta_connect_http_status =
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
        self.config.max_body_size = bytes;
        self
    }

    /// The security policy asked before handshakes, channel creation, subscriptions and
    /// publishes.
    ///
    /// Default: none (everything a client may do by the protocol is allowed).
    pub fn security_policy(mut self, policy: impl SecurityPolicy) -> Self {
        self.config.policy = Some(Arc::new(policy));
        self
    }

    /// The most messages one request (or websocket frame) may carry; larger batches are
    /// refused (`413`, or close code 1009).
    ///
    /// Default: 1000.
    pub fn max_messages_per_batch(mut self, max: usize) -> Self {
        self.config.max_messages_per_batch = max.max(1);
        self
    }

    /// The largest single message a client may send, in bytes of JSON; a batch holding a larger
    /// one is refused (`413`, or close code 1009).
    ///
    /// Default: 64 KiB.
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.config.max_message_size = bytes;
        self
    }

    /// The longest channel name a client may use (publish, subscribe); longer ones are refused
    /// with `405::channel_invalid` or `405::subscription_invalid`.
    ///
    /// Default: 256 bytes.
    pub fn max_channel_length(mut self, bytes: usize) -> Self {
        self.config.max_channel_length = bytes;
        self
    }

    /// The most channels and patterns one session may subscribe to; past it, subscriptions fail
    /// with `403::subscription_limit`.
    ///
    /// Default: 1000.
    pub fn max_subscriptions_per_session(mut self, max: usize) -> Self {
        self.config.max_subscriptions_per_session = max;
        self
    }

    /// The most live sessions one browser cookie may have (one per tab; a client that
    /// handshakes in a loop hits it); past it, handshakes fail with `403::too_many_sessions`.
    /// `None` is unlimited.
    ///
    /// Default: `Some(100)`.
    pub fn max_sessions_per_cookie(mut self, max: Option<usize>) -> Self {
        self.config.max_sessions_per_cookie = max;
        self
    }

    /// The most live sessions the server holds; past it, handshakes fail with
    /// `403::too_many_sessions` and advice to try again later. `None` is unlimited.
    ///
    /// Default: `None`.
    pub fn max_sessions(mut self, max: Option<usize>) -> Self {
        self.config.max_sessions = max;
        self
    }

    /// The most messages waiting for one session (sent but unacknowledged ones included); past
    /// it the [queue-full policy](Self::queue_full_policy) applies.
    ///
    /// Default: 1000.
    pub fn max_queue_messages(mut self, max: usize) -> Self {
        self.config.queue.max_messages = max.max(1);
        self
    }

    /// The most bytes of JSON waiting for one session; past it the
    /// [queue-full policy](Self::queue_full_policy) applies.
    ///
    /// Default: 1 MiB.
    pub fn max_queue_bytes(mut self, bytes: usize) -> Self {
        self.config.queue.max_bytes = bytes;
        self
    }

    /// What happens when a session's queue is full; listeners hear
    /// [`ServerEvent::QueueFull`](crate::ServerEvent::QueueFull) either way.
    ///
    /// Default: [`QueueFullPolicy::DropOldest`].
    pub fn queue_full_policy(mut self, policy: QueueFullPolicy) -> Self {
        self.config.queue.policy = policy;
        self
    }

    /// On [`Bayeux::shutdown`], clients are told to reconnect after a random interval up to
    /// this long, so they do not all come back at once.
    ///
    /// Default: 5 seconds.
    pub fn shutdown_jitter(mut self, jitter: Duration) -> Self {
        self.config.shutdown_jitter = jitter;
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
        self.config.meta_connect_delivery_only = only;
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
        self.config.extensions.push(Arc::new(extension));
        self
    }

    /// Whether clients may use the `websocket` transport (an upgrade at the Bayeux path). When
    /// off, upgrades are refused and clients fall back to long-polling.
    ///
    /// Default: `true`. The server must serve connections with upgrades enabled (`axum::serve`
    /// does; with hyper, `serve_connection(..).with_upgrades()`).
    #[cfg(feature = "websocket")]
    pub fn websocket(mut self, enabled: bool) -> Self {
        self.config.websocket = enabled;
        self
    }

    /// How long a websocket may go without receiving anything before the server closes it.
    ///
    /// Default: `timeout + interval + max_interval`, the time after which a session whose
    /// client sent no `/meta/connect` expires anyway.
    #[cfg(feature = "websocket")]
    pub fn websocket_idle_timeout(mut self, timeout: Duration) -> Self {
        self.config.websocket_idle_timeout = Some(timeout);
        self
    }

    /// How long writing one frame to a websocket may take before the server gives up on the
    /// connection (a client that stopped reading), closing it; its session then expires as a
    /// dropped long-poll's would.
    ///
    /// Default: 10 seconds.
    #[cfg(feature = "websocket")]
    pub fn websocket_write_timeout(mut self, timeout: Duration) -> Self {
        self.config.websocket_write_timeout = timeout;
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
        self.config.websocket_allowed_origins.push(origin.into());
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
        self.config.websocket_check_origin = check;
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
        self.config.callback_polling = enabled;
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
        self.config.trust_client_session = trust;
        self
    }

    /// Builds the engine. It may be built outside a tokio runtime; its session sweeper starts
    /// with the first handshake.
    pub fn build(self) -> Bayeux {
        Bayeux::from_config(self.config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_cookie_carries_every_option() {
        let mut config = CookieConfig::default();
        assert_eq!(
            config.set_cookie("abc"),
            "BAYEUX_BROWSER=abc; HttpOnly; Path=/"
        );
        config.secure = true;
        config.partitioned = true;
        config.same_site = Some(SameSite::Strict);
        config.domain = Some("example.com".into());
        config.max_age = Some(Duration::from_secs(60));
        let cookie = config.set_cookie("abc");
        for part in [
            "BAYEUX_BROWSER=abc",
            "HttpOnly",
            "Secure",
            "Partitioned",
            "SameSite=Strict",
            "Domain=example.com",
            "Max-Age=60",
            "Path=/",
        ] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
    }

    #[test]
    fn finds_the_cookie_among_others() {
        let config = CookieConfig::default();
        let mut headers = http::HeaderMap::new();
        headers.append(
            http::header::COOKIE,
            "a=1; BAYEUX_BROWSER=xyz; b=2".parse().unwrap(),
        );
        assert_eq!(config.find(&headers), Some("xyz"));
        let mut long = http::HeaderMap::new();
        let value = format!("BAYEUX_BROWSER={}", "x".repeat(500));
        long.append(http::header::COOKIE, value.parse().unwrap());
        assert_eq!(config.find(&long), None);
        assert_eq!(config.find(&http::HeaderMap::new()), None);
    }
}
