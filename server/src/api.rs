//! The HTTP API beside the Bayeux endpoint: publish and history for backends (behind the
//! publish secret), status, metrics and health for operators.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Deserialize;
use serde_json::{Value, json};
use subtle::ConstantTimeEq;
use tower_bayeux::{Bayeux, ChannelName, Error};

/// What the handlers share.
#[derive(Clone)]
pub struct Api {
    pub bayeux: Bayeux,
    pub secret: Option<Arc<str>>,
    pub metrics: PrometheusHandle,
    pub started: Instant,
    /// Set when a shutdown begins (before the engine's own shutdown completes).
    pub stopping: Arc<AtomicBool>,
}

/// The API's routes; `max_body` bounds `POST /api/publish`.
pub fn routes(api: Api, max_body: usize) -> Router {
    Router::new()
        .route(
            "/api/publish",
            post(publish).layer(DefaultBodyLimit::max(max_body)),
        )
        .route("/api/history", get(history))
        .route("/api/status", get(status))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(api)
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({"error": message.into()}))).into_response()
}

/// `None` when the request may go on; otherwise the answer (404 with no secret configured,
/// 401 without the right bearer token).
fn refuse(api: &Api, headers: &HeaderMap) -> Option<Response> {
    let Some(secret) = &api.secret else {
        return Some(error(
            StatusCode::NOT_FOUND,
            "the HTTP publish API is off: start the server with --publish-secret",
        ));
    };
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.as_bytes().strip_prefix(b"Bearer "))
        .unwrap_or_default();
    // Constant time over the secret's bytes (a different length fails at once).
    if bool::from(token.ct_eq(secret.as_bytes())) {
        return None;
    }
    let mut response = error(
        StatusCode::UNAUTHORIZED,
        "missing or wrong `Authorization: Bearer <secret>`",
    );
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Some(response)
}

/// A channel the API may publish to or read: valid, not a pattern, not `/meta/**` or
/// `/service/**`.
fn broadcast_channel(value: Option<&Value>) -> Result<ChannelName, String> {
    let name = value
        .and_then(Value::as_str)
        .ok_or("`channel` (a string) is missing")?;
    let channel = ChannelName::new(name).map_err(|err| format!("{name:?}: {err}"))?;
    if channel.is_wild() {
        return Err(format!("{name:?} is a pattern; publish to one channel"));
    }
    if !channel.is_broadcast() {
        return Err(format!(
            "{name:?} is a /meta or /service channel; only broadcast channels can be used"
        ));
    }
    Ok(channel)
}

/// `POST /api/publish`: `{"channel", "data"}` or an array of them, all checked before any is
/// published, then published in order.
async fn publish(State(api): State<Api>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(refused) = refuse(&api, &headers) {
        return refused;
    }
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(err) => return error(StatusCode::BAD_REQUEST, format!("not JSON: {err}")),
    };
    let items = match body {
        Value::Array(items) if items.is_empty() => {
            return error(StatusCode::BAD_REQUEST, "an empty array publishes nothing");
        }
        Value::Array(items) => items,
        item @ Value::Object(_) => vec![item],
        _ => {
            return error(
                StatusCode::BAD_REQUEST,
                "expected {\"channel\": …, \"data\": …} or an array of them",
            );
        }
    };
    let mut messages = Vec::with_capacity(items.len());
    for (index, mut item) in items.into_iter().enumerate() {
        let at = |err: String| error(StatusCode::BAD_REQUEST, format!("message {index}: {err}"));
        let Some(fields) = item.as_object_mut() else {
            return at("expected an object {\"channel\": …, \"data\": …}".into());
        };
        let channel = match broadcast_channel(fields.get("channel")) {
            Ok(channel) => channel,
            Err(err) => return at(err),
        };
        let Some(data) = fields.remove("data") else {
            return at("`data` is missing".into());
        };
        messages.push((channel, data));
    }

    let mut published = Vec::with_capacity(messages.len());
    for (channel, data) in messages {
        match api.bayeux.publish(channel.clone(), data).await {
            Ok(done) => {
                let mut entry = json!({"channel": channel.as_str()});
                if let Some(position) = done.position {
                    entry["offset"] = position.offset.into();
                    entry["epoch"] = position.epoch.into();
                }
                published.push(entry);
            }
            Err(err) => {
                let status = match err {
                    Error::MessageDeleted => StatusCode::UNPROCESSABLE_ENTITY,
                    _ => StatusCode::SERVICE_UNAVAILABLE,
                };
                tracing::warn!(%err, channel = %channel, "API publish failed");
                let body = json!({"error": err.to_string(), "published": published});
                return (status, axum::Json(body)).into_response();
            }
        }
    }
    axum::Json(json!({ "published": published })).into_response()
}

#[derive(Deserialize)]
struct HistoryQuery {
    channel: Option<String>,
    since: Option<String>,
    epoch: Option<String>,
}

/// `GET /api/history?channel=/x&since=N&epoch=E`.
async fn history(
    State(api): State<Api>,
    headers: HeaderMap,
    query: Result<Query<HistoryQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    if let Some(refused) = refuse(&api, &headers) {
        return refused;
    }
    let Ok(Query(query)) = query else {
        return error(StatusCode::BAD_REQUEST, "bad query string");
    };
    let channel = match broadcast_channel(query.channel.map(Value::String).as_ref()) {
        Ok(channel) => channel,
        Err(err) => return error(StatusCode::BAD_REQUEST, err),
    };
    let since = match query.since.as_deref().map(str::parse::<u64>).transpose() {
        Ok(since) => since,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "`since` must be an offset (a non-negative integer)",
            );
        }
    };
    match api
        .bayeux
        .history(channel.clone(), since, query.epoch.as_deref())
        .await
    {
        Ok(page) => axum::Json(json!({
            "channel": channel.as_str(),
            "epoch": page.epoch,
            "offset": page.offset,
            "recovered": page.recovered,
            "messages": page.messages,
        }))
        .into_response(),
        Err(err @ Error::NoHistory(_)) => error(StatusCode::NOT_FOUND, err.to_string()),
        Err(err @ Error::HistoryUnavailable(_)) => {
            error(StatusCode::SERVICE_UNAVAILABLE, err.to_string())
        }
        Err(err) => error(StatusCode::BAD_REQUEST, err.to_string()),
    }
}

/// `GET /api/status`.
async fn status(State(api): State<Api>) -> Response {
    let stats = api.bayeux.stats();
    let by_transport = stats.sessions_by_transport;
    let broker = stats.broker.map(|broker| {
        json!({
            "connected": broker.connected,
            "messages_out": broker.messages_out,
            "messages_in": broker.messages_in,
            "dropped_out": broker.dropped_out,
            "dropped_in": broker.dropped_in,
            "reconnects": broker.reconnects,
            "recovered": broker.recovered,
            "subscriptions": broker.subscriptions,
        })
    });
    axum::Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": api.started.elapsed().as_secs(),
        "sessions": stats.sessions,
        "sessions_by_transport": {
            "long-polling": by_transport.long_polling,
            "callback-polling": by_transport.callback_polling,
            "websocket": by_transport.websocket,
            "unconnected": by_transport.unconnected,
        },
        "channels": stats.channels,
        "subscriptions": stats.subscriptions,
        "browsers": stats.browsers,
        "held_connects": stats.held_connects,
        "queued_messages": stats.queued_messages,
        "websocket_connections": stats.websocket_connections,
        "messages_published": stats.messages_published,
        "messages_delivered": stats.messages_delivered,
        "messages_dropped": stats.messages_dropped,
        "history": {
            "channels": stats.history_channels,
            "messages": stats.history_messages,
            "bytes": stats.history_bytes,
        },
        "broker": broker,
        "shutting_down": api.stopping.load(Ordering::Relaxed),
    }))
    .into_response()
}

/// `GET /metrics`: the engine's stats, recorded now, in Prometheus's text format.
async fn metrics(State(api): State<Api>) -> Response {
    api.bayeux.record_metrics();
    metrics::gauge!("bayeux_uptime_seconds").set(api.started.elapsed().as_secs_f64());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        api.metrics.render(),
    )
        .into_response()
}

/// `GET /readyz`: not ready while shutting down, nor while the broker (Redis) is disconnected.
async fn readyz(State(api): State<Api>) -> Response {
    if api.stopping.load(Ordering::Relaxed) || api.bayeux.is_shut_down() {
        return (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response();
    }
    if let Some(broker) = api.bayeux.stats().broker
        && !broker.connected
    {
        return (StatusCode::SERVICE_UNAVAILABLE, "broker disconnected\n").into_response();
    }
    "ready\n".into_response()
}
