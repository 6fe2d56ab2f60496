//! Bayeux in an axum app, behind CORS and an authentication middleware.
//!
//! ```text
//! cargo run --example axum -- --addr 127.0.0.1:8080
//! ```
//!
//! Then open <http://127.0.0.1:8080/>: the page handshakes with `fetch`, subscribes to `/time`
//! and `/chat/**`, and long-polls. What it shows:
//!
//! - `Router::layer(BayeuxLayer::new(bayeux))`: Bayeux at `/cometd`, the app's routes elsewhere;
//! - outer layers run first: CORS answers preflights (for websockets, which CORS does not
//!   cover, the engine checks `Origin` against the same front-end origin), and the auth
//!   middleware turns
//!   `Authorization: Bearer <name>` (or `X-User: <name>`) into a `User` request extension;
//! - the engine reads that extension through `tower_bayeux::context::current()`: a
//!   `SecurityPolicy` lets only identified users publish to `/chat/**`, `/service/whoami`
//!   answers with the user, and `/chat/**` messages are signed with it;
//! - a server-side publisher puts the time on `/time` every few seconds;
//! - graceful shutdown on Ctrl-C.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::Request;
use axum::http::{HeaderValue, Method, header};
use axum::middleware::{self, Next};
use axum::response::{Html, Response};
use axum::{Router, routing::get};
use clap::Parser;
use serde_json::{Value, json};
use tower_bayeux::{
    Bayeux, BayeuxLayer, ChannelName, Message, SecurityPolicy, ServerSession, context,
};
use tower_http::cors::CorsLayer;

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// A front-end origin allowed to call `/cometd` from another port or host (a dev server).
    #[arg(long, default_value = "http://localhost:3000")]
    allow_origin: String,
}

/// The identity the auth middleware found, as a request extension.
#[derive(Clone, Debug)]
struct User(String);

/// Identifies the caller from `Authorization: Bearer <name>` or `X-User: <name>`. A real app
/// would verify a token here; requests without one are served anonymously.
async fn authenticate(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let name = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok()?.strip_prefix("Bearer "))
        .or_else(|| headers.get("x-user")?.to_str().ok())
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(str::to_owned);
    if let Some(name) = name {
        request.extensions_mut().insert(User(name));
    }
    next.run(request).await
}

/// The user behind the HTTP request whose messages are being processed, if any.
fn current_user() -> Option<String> {
    let ctx = context::current()?;
    ctx.extension::<User>().map(|user| user.0.clone())
}

struct Policy;

impl SecurityPolicy for Policy {
    async fn can_publish(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        match channel.as_str() {
            // Only the server publishes the time.
            "/time" => false,
            chat if chat.starts_with("/chat/") => current_user().is_some(),
            _ => true,
        }
    }
}

fn services(bayeux: &Bayeux) {
    bayeux
        .channel("/service/whoami")
        .add_listener(|event| async move {
            let answer = json!({ "user": current_user() });
            let _ = event.session().deliver("/service/whoami", answer).await;
            event.proceed()
        });

    // The policy only lets identified users through, so sign their chat messages.
    bayeux
        .channel("/chat/**")
        .add_listener(|mut event| async move {
            if let (Some(user), Some(Value::Object(data))) =
                (current_user(), event.message_mut().data.as_mut())
            {
                data.insert("from".to_owned(), user.into());
            }
            event.proceed()
        });
}

/// Publishes the time on `/time` every few seconds, from outside any request.
async fn clock(bayeux: Bayeux) {
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    loop {
        ticker.tick().await;
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if let Err(err) = bayeux.publish("/time", json!({ "unix": unix })).await {
            eprintln!("publish failed: {err}");
        }
    }
}

/// Waits for Ctrl-C, then shuts the engine down: held long-polls are answered at once and
/// told to come back after a random interval, websockets are closed, and new handshakes are
/// refused, so `axum::serve` has no long-poll left to wait for.
async fn shutdown(bayeux: Bayeux) {
    let _ = tokio::signal::ctrl_c().await;
    bayeux.shutdown().await;
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();

    // CORS does not govern websockets: the engine checks their `Origin` itself, and the
    // front-end origin allowed to call `/cometd` may open websockets there too.
    let bayeux = Bayeux::builder()
        .security_policy(Policy)
        .websocket_allowed_origin(args.allow_origin.clone())
        .build();
    services(&bayeux);
    tokio::spawn(clock(bayeux.clone()));

    // The browser cookie must travel on cross-origin calls, hence credentials.
    let cors = CorsLayer::new()
        .allow_origin(args.allow_origin.parse::<HeaderValue>()?)
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE, header::AUTHORIZATION])
        .allow_credentials(true);

    // The last layer added runs first: CORS, then authentication, then Bayeux.
    let app = Router::new()
        .route(
            "/",
            get(|| async { Html(include_str!("assets/index.html")) }),
        )
        .layer(BayeuxLayer::new(bayeux.clone()).path("/cometd"))
        .layer(middleware::from_fn(authenticate))
        .layer(cors);

    let listener = tokio::net::TcpListener::bind(args.addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    // `into_make_service`: one router shared by every connection (see the README's
    // "Mounting in axum").
    axum::serve(listener, app.into_make_service())
        .with_graceful_shutdown(shutdown(bayeux))
        .await?;
    Ok(())
}
