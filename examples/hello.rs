//! The smallest server: a standalone `BayeuxService` on plain hyper 1, no framework.
//!
//! ```text
//! cargo run --example hello -- --addr 127.0.0.1:8080
//! ```
//!
//! Bayeux is served at `/cometd` (every other path answers 404). Publishing `{"name": "Ada"}`
//! to `/service/hello` gets `{"greeting": "hello, Ada"}` back on `/service/hello`, for the
//! sender only:
//!
//! ```text
//! curl -si -c jar -H 'Content-Type: application/json' http://127.0.0.1:8080/cometd/handshake \
//!   -d '[{"channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]'
//! curl -s -b jar -H 'Content-Type: application/json' http://127.0.0.1:8080/cometd \
//!   -d '[{"channel":"/service/hello","clientId":"<clientId>","data":{"name":"Ada"}}]'
//! ```

use std::net::SocketAddr;

use clap::Parser;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tower::ServiceExt;
use tower_bayeux::{Bayeux, BayeuxService};

#[derive(Parser)]
struct Args {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();

    let bayeux = Bayeux::builder().build();
    bayeux
        .channel("/service/hello")
        .add_listener(|event| async move {
            let name = event.data()["name"].as_str().unwrap_or("world");
            let greeting = json!({ "greeting": format!("hello, {name}") });
            // A service channel is never broadcast: answer the sender directly.
            let _ = event.session().deliver("/service/hello", greeting).await;
            event.proceed()
        });

    // Bayeux at /cometd and below, 404 for everything else.
    let service = BayeuxService::new(bayeux).path("/cometd");

    let listener = TcpListener::bind(args.addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    loop {
        let (stream, _peer) = listener.accept().await?;
        let service = service.clone();
        tokio::spawn(async move {
            // Adapt the tower service to hyper's: one clone per request, as hyper wants `&self`.
            let service =
                hyper::service::service_fn(move |request| service.clone().oneshot(request));
            let connection = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                // Upgrades on, so a websocket transport can take the connection over.
                .with_upgrades();
            if let Err(err) = connection.await {
                eprintln!("connection error: {err}");
            }
        });
    }
}
