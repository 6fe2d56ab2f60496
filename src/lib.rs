//! A Bayeux 1.0 / CometD server as Tower middleware.
//!
//! `tower-bayeux` serves the protocol of the official CometD clients (the JavaScript `cometd`
//! package, in browsers and in Node, and the Java client) from any tower stack: put a
//! [`BayeuxLayer`] around an axum router or any other service, and requests to the Bayeux path
//! (`/cometd` by default) are answered by the engine while everything else goes through.
//!
//! # Shape
//!
//! - [`Bayeux`]: the server handle, built once with [`Bayeux::builder`] (every setting, of the
//!   engine and of the transports, in one place). Server channels ([`ServerChannel`]) with
//!   async message listeners, server-side publish, sessions ([`ServerSession`]) with direct
//!   delivery, typed per-session values ([`SessionAttributes`]) and removal listeners, engine
//!   [events](ServerEvent), a [`SecurityPolicy`] and [extensions](Extension).
//! - [`BayeuxLayer`] / [`BayeuxService`]: the tower middleware; requests at the Bayeux path go
//!   to the transports: websocket (an upgrade at the path; feature `websocket`, or
//!   [`serve_websocket`] over any stream), long-polling (`POST` of JSON arrays at the path and
//!   below it) and callback-polling (JSONP `GET`s; feature `jsonp`, off unless enabled).
//! - [`context`]: the HTTP request behind the messages being processed, through a task-local.
//! - [`protocol`]: messages, advice, channel names, error strings.
//! - [`ext`]: the built-in ack, timesync and timestamp extensions.
//!
//! Inside, one-way: the layer calls the transports, which turn requests into batches of
//! messages for the engine (which knows nothing of HTTP) and its answers into responses; the
//! engine builds on the protocol types.
//!
//! # Example
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use serde::Deserialize;
//! use tower_bayeux::{Bayeux, BayeuxLayer};
//!
//! /// What clients publish on /service/greet.
//! #[derive(Deserialize)]
//! struct Greeting {
//!     name: String,
//! }
//!
//! /// Kept on each session once it has greeted.
//! #[derive(Clone)]
//! struct Name(String);
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bayeux = Bayeux::builder().build();
//!
//! // A client greets once; the server remembers its name and welcomes it on /hello.
//! bayeux.channel("/service/greet").add_listener_with_state(
//!     bayeux.clone(),
//!     |bayeux, event| async move {
//!         let Ok(greeting) = event.data_as::<Greeting>() else {
//!             return event.veto();
//!         };
//!         event.session().attributes().insert(Name(greeting.name.clone()));
//!         let _ = bayeux
//!             .publish("/hello", serde_json::json!({"welcome": greeting.name}))
//!             .await;
//!         event.proceed()
//!     },
//! );
//!
//! // Echo whatever a client publishes on /service/echo back to it, signed with its name.
//! bayeux.channel("/service/echo").add_listener(|event| async move {
//!     let name = event.session().attributes().get::<Name>().map(|name| name.0);
//!     let echo = serde_json::json!({"from": name, "data": event.data()});
//!     let _ = event.session().deliver("/service/echo", echo).await;
//!     event.proceed()
//! });
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(BayeuxLayer::new(bayeux.clone()));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! axum::serve(listener, app.into_make_service()).await?;
//! # Ok(()) }
//! ```
//!
//! # Mounting in axum
//!
//! - `Router::layer(BayeuxLayer::new(bayeux))` wraps every route and the fallback; the layer
//!   sees full paths and takes `/cometd` and below. Layers added after it (outer ones) run
//!   first: put CORS and authentication there, so preflights are answered and an identity
//!   inserted into the request extensions reaches listeners and the policy through
//!   [`context::current`].
//! - `Router::nest_service("/cometd", BayeuxService::new(bayeux))` strips the prefix; the
//!   standalone service takes every request it is given.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod bayeux;
mod builder;
pub mod context;
mod engine;
pub mod ext;
mod layer;
#[cfg(feature = "metrics")]
mod metrics;
pub mod protocol;
#[cfg(feature = "redis")]
mod redis;
mod transport;

pub use bayeux::Bayeux;
pub use builder::BayeuxBuilder;
pub use engine::{
    BrokerStats, ChannelLiteral, Error, Extension, HISTORY_ENTRY_COST, HistoryPage,
    HistoryPosition, IntoChannelName, ListenerId, MessageEvent, Published, QueueFullPolicy,
    RemoveReason, Retention, SecurityPolicy, ServerChannel, ServerEvent, ServerSession,
    SessionAttributes, SessionExtension, SessionsByTransport, Stats, Verdict,
};
pub use layer::{BayeuxBody, BayeuxLayer, BayeuxService, NotFound, ResponseFuture};
pub use protocol::{ChannelName, ErrorCode, Message};
#[cfg(feature = "redis")]
pub use redis::RedisBroker;
pub use transport::SameSite;
#[cfg(feature = "websocket")]
pub use transport::websocket::serve_websocket;

/// The boxed error request bodies' errors convert into (`tower::BoxError`, without the
/// dependency).
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The README's Rust snippets, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
