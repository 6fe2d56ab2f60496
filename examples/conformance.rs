//! The server the interop tests drive with the official CometD clients.
//!
//! ```text
//! cargo run --example conformance -- --addr 127.0.0.1:8080
//! ```
//!
//! Bayeux at `/cometd` (timeout 2 s, max interval 3 s, interval 0, any number of sessions per
//! browser: all the clients of a Node process share one cookie jar), with:
//! - `/service/echo`: data published there comes back to the sender only, on `/service/echo`;
//! - `/service/publish`: data `{channel, data}` is published server-side to `channel`;
//! - `/service/call`: answers a client's `remoteCall` with `{echo: data}` in the reply;
//! - `/service/deliver`: data `{clientId, channel, data}` is delivered to that session, on
//!   whichever node holds it (`Bayeux::deliver`); the reply fails with `404::…` when the id
//!   is of no live session here and of no node still running (a node that is up but no
//!   longer holds the session drops the message);
//! - `/service/whoami`: answers on `/service/whoami` with the `User-Agent` and `X-Test-Header`
//!   of the HTTP request that carried the message, read through the request context;
//! - every built-in extension: ack and timesync (inert for clients that do not ask for them)
//!   and timestamp (a `timestamp` on every message the server sends);
//! - websocket upgrades from its own origin, from `http://allowed.test` and without `Origin`
//!   (others get `403`), and callback-polling (JSONP) enabled;
//! - the history of every channel under `/history/**` (the last 100 messages each; with
//!   `--redis`, kept in Redis and shared by the nodes);
//! - a policy refusing handshakes with `ext.auth.deny == true`, subscriptions under
//!   `/forbidden/**` and client publishes under `/readonly/**`.
//!
//! `--timeout-ms` and `--max-interval-ms` change the hold time and the session expiry (for load
//! runs with the same settings as other servers). `--no-websocket` refuses websocket upgrades, so
//! clients fall back to long-polling. `--trust-client-session` lets HTTP requests without the
//! browser cookie continue a session by its clientId (clients that drop cookies of IP hosts).
//! `--no-timestamp` leaves the timestamp extension out (the load comparisons use it).
//! `--redis URL` joins the nodes started with the same URL into one Bayeux space (needs the
//! `redis` feature: `cargo run --features redis --example conformance -- --redis redis://…`).
//! `--history PATTERN=COUNT` keeps history on more channels (load runs with history).
//!
//! Every other path answers `200 inner`. The first line on stdout is `listening on http://ADDR`.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use clap::Parser;
use serde_json::{Value, json};
use tower_bayeux::ext::{AckExtension, TimestampExtension, TimesyncExtension};
use tower_bayeux::{
    Bayeux, BayeuxLayer, ChannelName, Message, Retention, SecurityPolicy, ServerSession, context,
};

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Refuse websocket upgrades (clients fall back to long-polling).
    #[arg(long)]
    no_websocket: bool,
    /// How long a `/meta/connect` is held, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    timeout_ms: u64,
    /// How long a session lives without a connect, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    max_interval_ms: u64,
    /// Leave the timestamp extension out (load comparisons: the other servers stamp nothing).
    #[arg(long)]
    no_timestamp: bool,
    /// Let HTTP requests without the browser cookie continue a session by its clientId
    /// (`trust_client_session`), for clients that keep no cookies for IP-address hosts.
    #[arg(long)]
    trust_client_session: bool,
    /// Run on a current-thread tokio runtime instead of the multi-thread one: on one core it
    /// trades a higher median for a shorter latency tail under saturation (see
    /// `benches/results/comparison.md`).
    #[arg(long)]
    current_thread: bool,
    /// Join the other nodes on this Redis (`redis://host:port`) into one Bayeux space; needs
    /// the `redis` feature.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Also keep the last COUNT messages of the channels matching PATTERN (repeatable; for
    /// load runs with history, e.g. `--history /bench/**=100`).
    #[arg(long, value_name = "PATTERN=COUNT", value_parser = parse_history)]
    history: Vec<(ChannelName, usize)>,
}

fn parse_history(value: &str) -> Result<(ChannelName, usize), String> {
    let (pattern, count) = value
        .split_once('=')
        .ok_or("expected PATTERN=COUNT, e.g. /chat/**=100")?;
    let pattern = ChannelName::new(pattern).map_err(|err| err.to_string())?;
    let count = count.parse().map_err(|_| format!("not a count: {count}"))?;
    Ok((pattern, count))
}

struct ConformancePolicy;

fn under(channel: &ChannelName, root: &str) -> bool {
    channel
        .as_str()
        .strip_prefix(root)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

impl SecurityPolicy for ConformancePolicy {
    async fn can_handshake(&self, _session: &ServerSession, message: &Message) -> bool {
        let deny = message
            .ext
            .as_ref()
            .and_then(|ext| ext.get("auth"))
            .and_then(|auth| auth.get("deny"))
            .and_then(Value::as_bool);
        deny != Some(true)
    }

    async fn can_subscribe(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        !under(channel, "/forbidden")
    }

    async fn can_publish(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        !under(channel, "/readonly")
    }
}

fn header(ctx: &context::RequestContext, name: &str) -> Value {
    ctx.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map_or(Value::Null, |v| Value::String(v.to_owned()))
}

fn services(bayeux: &Bayeux) {
    bayeux
        .channel("/service/echo")
        .add_listener(|event| async move {
            let _ = event
                .session()
                .deliver("/service/echo", event.data().clone())
                .await;
            event.proceed()
        });

    let server = bayeux.clone();
    bayeux
        .channel("/service/publish")
        .add_listener(move |mut event| {
            let server = server.clone();
            async move {
                let data = event.data().clone();
                let target = data
                    .get("channel")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let payload = data.get("data").cloned().unwrap_or(Value::Null);
                if let Err(err) = server.publish(target, payload).await {
                    event.reply_mut().fail(format!("400::{err}"));
                    return event.veto();
                }
                event.proceed()
            }
        });

    // A remote call (`cometd.remoteCall("call", data, ...)`): the reply carries the answer.
    bayeux
        .channel("/service/call")
        .add_listener(|mut event| async move {
            event.reply_mut().data = Some(json!({"echo": event.data().clone()}));
            event.proceed()
        });

    let server = bayeux.clone();
    bayeux
        .channel("/service/deliver")
        .add_listener(move |mut event| {
            let server = server.clone();
            async move {
                let data = event.data().clone();
                let field = |name| data.get(name).and_then(Value::as_str).unwrap_or_default();
                let payload = data.get("data").cloned().unwrap_or(Value::Null);
                if let Err(err) = server
                    .deliver(field("clientId"), field("channel"), payload)
                    .await
                {
                    event.reply_mut().fail(format!("404::{err}"));
                    return event.veto();
                }
                event.proceed()
            }
        });

    bayeux
        .channel("/service/whoami")
        .add_listener(|event| async move {
            let data = match context::current() {
                Some(ctx) => json!({
                    "userAgent": header(&ctx, "user-agent"),
                    "header": header(&ctx, "x-test-header"),
                }),
                None => json!({"userAgent": null, "header": null}),
            };
            let _ = event.session().deliver("/service/whoami", data).await;
            event.proceed()
        });
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    let mut runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    runtime.enable_all().build()?.block_on(serve(args))
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut builder = Bayeux::builder();
    if !args.no_timestamp {
        builder = builder.extension(TimestampExtension::new());
    }
    let mut bayeux = builder
        .timeout(Duration::from_millis(args.timeout_ms))
        .max_interval(Duration::from_millis(args.max_interval_ms))
        .interval(Duration::ZERO)
        .max_sessions_per_browser(None)
        .max_sessions_per_cookie(None)
        .security_policy(ConformancePolicy)
        .extension(AckExtension::new())
        .extension(TimesyncExtension::new())
        .websocket(!args.no_websocket)
        .websocket_allowed_origin("http://allowed.test")
        // No listener reads extensions, and axum's `OriginalUri` would keep each websocket's
        // upgrade buffer.
        .websocket_keep_extensions(false)
        .callback_polling(true)
        .trust_client_session(args.trust_client_session)
        .history("/history/**", Retention::last(100));
    for (pattern, count) in args.history {
        bayeux = bayeux.history(pattern, Retention::last(count));
    }
    let bayeux = match args.redis {
        #[cfg(feature = "redis")]
        Some(url) => bayeux.broker(tower_bayeux::RedisBroker::new(url)).build(),
        #[cfg(not(feature = "redis"))]
        Some(_) => {
            return Err("--redis needs the `redis` feature (cargo run --features redis)".into());
        }
        None => bayeux.build(),
    };
    services(&bayeux);

    let app = Router::new()
        .fallback(|| async { "inner" })
        .layer(BayeuxLayer::new(bayeux).path("/cometd"));

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    let mut stdout = std::io::stdout();
    writeln!(stdout, "listening on http://{}", listener.local_addr()?)?;
    stdout.flush()?;
    axum::serve(listener, app.into_make_service()).await?;
    Ok(())
}
