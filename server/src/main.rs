//! `tower-bayeux`: a standalone Bayeux 1.0 / CometD server built on the `tower-bayeux`
//! library, for teams whose backend is not written in Rust. Browsers connect with the official
//! CometD client; backends publish with `POST /api/publish`. See `tower-bayeux --help` and the
//! "Standalone server" section of the repository's README.

mod api;
mod config;
mod services;

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::http::{HeaderValue, Method, StatusCode, header};
use clap::Parser;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use metrics_exporter_prometheus::PrometheusBuilder;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tower::util::{Either, option_layer};
use tower_bayeux::{Bayeux, BayeuxLayer, BayeuxService, Retention};
use tower_http::cors::{AllowOrigin, Cors, CorsLayer};
use tower_http::services::ServeDir;
use tower_layer::Layer;

use config::{Cli, LogFormat, Settings};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// With the `mimalloc` feature, the process allocates with mimalloc instead of the system's
/// allocator (see the README's "Standalone server" for what it changes).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let settings = match Settings::resolve(Cli::parse()) {
        Ok(settings) => settings,
        Err(err) => {
            eprintln!("tower-bayeux: {err}");
            return std::process::ExitCode::from(2);
        }
    };
    init_logging(settings.log_format);
    let mut runtime = match settings.threads {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(threads) => {
            let mut runtime = tokio::runtime::Builder::new_multi_thread();
            runtime.worker_threads(threads);
            runtime
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    let runtime = match runtime.enable_all().build() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("tower-bayeux: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(settings)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err}");
            eprintln!("tower-bayeux: {err}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => logs.init(),
        LogFormat::Json => logs.json().init(),
    }
}

/// The engine with the settings' transports, timings and history.
fn engine(settings: &Settings) -> Result<Bayeux, BoxError> {
    let mut builder = Bayeux::builder()
        .timeout(settings.timeout)
        .interval(settings.interval)
        .max_interval(settings.max_interval)
        .max_sessions_per_browser(settings.max_sessions_per_browser)
        .max_sessions(settings.max_sessions)
        .websocket(settings.websocket)
        // Nothing here reads request extensions, and axum's `OriginalUri` among them would keep
        // each websocket's upgrade buffer (8-16 KB) for its whole life.
        .websocket_keep_extensions(false)
        .callback_polling(settings.callback_polling);
    for origin in &settings.allowed_origins {
        builder = builder.websocket_allowed_origin(origin.clone());
    }
    for history in &settings.history {
        builder = builder.history(history.pattern.clone(), Retention::last(history.count));
    }
    if let Some(url) = &settings.redis {
        builder = builder.broker(tower_bayeux::RedisBroker::new(url.clone()));
    }
    if !settings.client_publish {
        builder = builder.security_policy(services::ReadOnlyClients);
    }
    let bayeux = builder.build();
    services::history(&bayeux);
    Ok(bayeux)
}

/// The site's own routes: the API and the static files (or 404).
fn routes(settings: &Settings, api: api::Api) -> Router {
    let app = api::routes(api, settings.api_max_body);
    match &settings.static_dir {
        Some(dir) => {
            app.fallback_service(ServeDir::new(dir).append_index_html_on_directories(true))
        }
        None => app.fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") }),
    }
}

/// CORS for the allowed origins, if any.
fn cors(settings: &Settings) -> Result<Option<CorsLayer>, BoxError> {
    if settings.allowed_origins.is_empty() {
        return Ok(None);
    }
    let origins = settings
        .allowed_origins
        .iter()
        .map(|origin| {
            HeaderValue::from_str(origin)
                .map_err(|_| format!("--allowed-origin: not an origin: {origin:?}"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST])
            .allow_headers([header::CONTENT_TYPE]),
    ))
}

async fn run(settings: Settings) -> Result<(), BoxError> {
    let metrics = PrometheusBuilder::new()
        .install_recorder()
        .map_err(|err| format!("cannot install the metrics recorder: {err}"))?;
    let bayeux = engine(&settings)?;
    bayeux.start();
    let stopping = Arc::new(AtomicBool::new(false));
    let api = api::Api {
        bayeux: bayeux.clone(),
        secret: settings.publish_secret.as_deref().map(Arc::from),
        metrics,
        started: Instant::now(),
        stopping: stopping.clone(),
    };
    // Bayeux in front of the router rather than inside it (`Router::layer`): its requests skip
    // axum's routing, whose `OriginalUri` would keep each held request's bytes, and with them
    // hyper's read buffer, for the hold.
    let site = option_layer(cors(&settings)?).layer(
        BayeuxLayer::new(bayeux.clone())
            .path(&settings.path)
            .layer(routes(&settings, api)),
    );

    // Bind everything before serving anything, so a bad address fails the start.
    let mut tcp = Vec::new();
    for addr in &settings.listen {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|err| format!("cannot listen on {addr}: {err}"))?;
        tcp.push(listener);
    }
    let unix = match &settings.unix {
        Some(path) => Some((bind_unix(path, settings.unix_mode)?, path.clone())),
        None => None,
    };

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = JoinSet::new();
    let mut stdout = std::io::stdout();
    let mut listeners = Vec::new();
    for listener in tcp {
        let addr = listener.local_addr()?;
        writeln!(stdout, "listening on http://{addr}")?;
        tracing::info!(%addr, path = %settings.path, "listening");
        listeners.push(Listening::Tcp(listener));
    }
    let unix_path = unix.as_ref().map(|(_, path)| path.clone());
    if let Some((listener, path)) = unix {
        writeln!(stdout, "listening on unix:{}", path.display())?;
        tracing::info!(socket = %path.display(), path = %settings.path, "listening");
        listeners.push(Listening::Unix(listener));
    }
    for listener in listeners {
        servers.spawn(listener.serve(site.clone(), stop_rx.clone()));
    }
    stdout.flush()?;

    let outcome = tokio::select! {
        signal = shutdown_signal() => {
            tracing::info!(signal, "shutting down");
            Ok(())
        }
        Some(ended) = servers.join_next() => {
            // A listener failed on its own: stop the others too.
            match ended {
                Ok(Ok(())) => Err("a listener stopped".into()),
                Ok(Err(err)) => Err(err),
                Err(err) => Err(BoxError::from(err)),
            }
        }
    };

    // Clients are told to come back (held connects answered, websockets closed), then the
    // listeners stop accepting and finish what they have in flight.
    stopping.store(true, Ordering::Relaxed);
    let graceful = async {
        bayeux.shutdown().await;
        let _ = stop_tx.send(true);
        while let Some(ended) = servers.join_next().await {
            if let Ok(Err(err)) = ended {
                tracing::warn!(%err, "a listener ended with an error");
            }
        }
    };
    if tokio::time::timeout(settings.shutdown_timeout, graceful)
        .await
        .is_err()
    {
        tracing::warn!(
            timeout = ?settings.shutdown_timeout,
            "graceful shutdown took too long; exiting anyway"
        );
    }
    if let Some(path) = unix_path {
        let _ = std::fs::remove_file(path);
    }
    outcome
}

/// What every connection serves: Bayeux in front of the site's routes, CORS around both when
/// origins are allowed.
type Site = Either<Cors<BayeuxService<Router>>, BayeuxService<Router>>;

/// A bound listener, TCP or unix.
enum Listening {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listening {
    async fn serve(self, site: Site, stop: watch::Receiver<bool>) -> Result<(), BoxError> {
        match self {
            Listening::Tcp(listener) => serve(listener, site, stop).await,
            Listening::Unix(listener) => serve(listener, site, stop).await,
        }
    }
}

/// Serves `service` on `listener` until `stop` turns true, then lets every connection finish
/// what it has in flight.
///
/// Each connection is hyper's HTTP/1 connection, as `axum::serve` would not make it: that one
/// first reads 24 bytes to tell HTTP/2 from HTTP/1, and handing hyper that short first read
/// makes it double its read buffer to 16 KB, for every connection's whole life. Here it stays
/// at 8 KB, half the memory of an idle long-polling client.
async fn serve<L: axum::serve::Listener>(
    mut listener: L,
    site: Site,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BoxError> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new());
    // Every connection holds a sender: once all are dropped, they all finished.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    loop {
        let (io, _) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopped(&mut stop) => break,
        };
        let connection = http
            .serve_connection(TokioIo::new(io), TowerToHyperService::new(site.clone()))
            .with_upgrades();
        let mut stop = stop.clone();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = stopped(&mut stop) => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(%err, "connection ended with an error");
            }
            drop(open);
        });
    }
    drop(listener);
    drop(open_tx);
    let _ = open_rx.recv().await;
    Ok(())
}

/// Returns once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|stop| *stop).await;
}

/// Binds the unix socket at `path`, replacing a stale socket file (one nothing answers on).
fn bind_unix(path: &Path, mode: Option<u32>) -> Result<UnixListener, BoxError> {
    use std::os::unix::fs::{FileTypeExt, PermissionsExt};

    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(format!(
                "--unix {}: the path exists and is not a socket; not replacing it",
                path.display()
            )
            .into());
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(format!(
                "--unix {}: another server is listening on that socket",
                path.display()
            )
            .into());
        }
        tracing::info!(socket = %path.display(), "replacing a stale socket file");
        std::fs::remove_file(path).map_err(|err| {
            format!(
                "--unix {}: cannot remove the stale socket: {err}",
                path.display()
            )
        })?;
    }
    let listener = UnixListener::bind(path)
        .map_err(|err| format!("cannot listen on unix:{}: {err}", path.display()))?;
    if let Some(mode) = mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(|err| {
            format!(
                "--unix-mode: cannot set {mode:o} on {}: {err}",
                path.display()
            )
        })?;
    }
    Ok(listener)
}

/// Waits for SIGTERM or SIGINT; returns its name.
async fn shutdown_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot listen for signals; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
