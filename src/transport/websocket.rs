//! The `websocket` transport: an upgrade at the Bayeux path, then text frames each carrying a
//! JSON array of messages.
//!
//! A connection task reads frames and hands each batch to the engine; a held `/meta/connect`
//! is answered on the socket when its timeout passes (or the session ends), while deliveries are
//! pushed as soon as they are queued, whatever is ready written as one frame.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::{CapacityError, Error as WsError};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Message as Frame, Utf8Bytes};

use crate::Bayeux;
use crate::context::RequestContext;
use crate::engine::{BatchError, BatchOutcome, Carrier, ConnectEnd, Link, ServerSession};
use crate::protocol::{ParseError, parse_messages_with};

use super::origin::{self, Refused};
use super::{ArrayWriter, error_response, has_token};

/// Validates an upgrade request, answers `101 Switching Protocols` and starts the connection
/// task once hyper hands over the connection.
pub(crate) fn upgrade<B>(bayeux: Bayeux, mut request: Request<B>) -> Response<Full<Bytes>> {
    let headers = request.headers();
    let settings = &bayeux.transport.websocket;
    if settings.check_origin
        && let Err(Refused(reason)) =
            origin::check(headers, request.uri(), &settings.allowed_origins)
    {
        tracing::debug!(%reason, "websocket upgrade refused");
        return error_response(StatusCode::FORBIDDEN, &reason);
    }
    if !has_token(headers, header::CONNECTION, "upgrade") {
        return error_response(
            StatusCode::BAD_REQUEST,
            "a websocket upgrade needs `Connection: upgrade`",
        );
    }
    if headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v != "13")
    {
        let mut response = error_response(
            StatusCode::UPGRADE_REQUIRED,
            "only websocket version 13 is supported",
        );
        response.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return response;
    }
    let Some(key) = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|key| key.len() == 24)
    else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "a websocket upgrade needs a valid `Sec-WebSocket-Key`",
        );
    };
    let accept = derive_accept_key(key.as_bytes());
    let Some(on_upgrade) = request
        .extensions_mut()
        .remove::<hyper::upgrade::OnUpgrade>()
    else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "this server cannot upgrade connections: serve them with upgrades enabled \
             (`axum::serve`, or hyper's `serve_connection(..).with_upgrades()`)",
        );
    };
    let (parts, _body) = request.into_parts();
    // The head's values are slices of hyper's read buffer (8-16 KB): copied out, that buffer is
    // freed with the connection instead of staying pinned for the websocket's whole life.
    let mut parts = super::detach(parts);
    if !settings.keep_extensions {
        parts.extensions.clear();
    }
    // A combinator rather than an async block, for the same reason as in `serve_websocket`.
    let engine = bayeux.engine.clone();
    engine.spawn_tracked(on_upgrade.then(move |upgraded| match upgraded {
        Ok(upgraded) => futures_util::future::Either::Left(serve_websocket(
            &bayeux,
            TokioIo::new(upgraded),
            parts,
        )),
        Err(err) => {
            tracing::debug!(%err, "websocket upgrade failed");
            futures_util::future::Either::Right(std::future::ready(()))
        }
    }));

    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(accept) = HeaderValue::try_from(accept) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

type HeldReply = Pin<Box<dyn Future<Output = ConnectEnd> + Send>>;
type Processing = Pin<Box<dyn Future<Output = Result<BatchOutcome, BatchError>> + Send>>;

/// What a turn of a connection's loop does once it knows what happened.
enum Turn {
    /// Write this frame, if any.
    Write(Option<Bytes>),
    /// Write what is queued for the session.
    Push,
    /// Poll the batch that just arrived.
    Poll,
}

/// Why a connection ends.
enum Close {
    /// The peer closed it, went away, or could not be written to: nothing more to say.
    Quietly,
    /// Close with this code and reason.
    With(CloseCode, &'static str),
}

struct WebSocketConnection<S> {
    bayeux: Bayeux,
    socket: WebSocketStream<S>,
    id: u64,
    context: RequestContext,
    link: Link,
    notify: Arc<Notify>,
    /// The session whose deliveries this connection pushes.
    session: Option<ServerSession>,
    held: Option<HeldReply>,
    /// The batch being processed. Meanwhile the connection keeps pushing deliveries and
    /// answering its held connect (a slow listener does not hold them back), but reads no
    /// further frame, so the client's messages are processed in the order it sent them.
    processing: Option<Processing>,
    /// Shutdown waits for the connection, however it was started.
    _tracked: tokio_util::task::task_tracker::TaskTrackerToken,
}

impl<S> Drop for WebSocketConnection<S> {
    fn drop(&mut self) {
        self.bayeux.engine.inner.counters.websocket_closed();
    }
}

/// Serves Bayeux over a websocket connection that already completed its HTTP upgrade: `stream`
/// is the raw upgraded connection, `request` the head of the upgrade request (listeners see it
/// through [`context::current()`](crate::context::current), with no response to edit). Returns
/// when the connection closes; [`Bayeux::shutdown`] waits for that.
///
/// [`BayeuxLayer`](crate::BayeuxLayer) calls this itself for upgrades at the Bayeux path (after
/// checking their `Origin`); call it to serve the transport from another server, or over any
/// `AsyncRead + AsyncWrite` stream in tests.
///
/// ```
/// # async fn example() {
/// let bayeux = tower_bayeux::Bayeux::builder().build();
/// let (_client, server) = tokio::io::duplex(4096);
/// let (request, ()) = http::Request::get("/cometd").body(()).unwrap().into_parts();
/// # let _ = async move {
/// tower_bayeux::serve_websocket(&bayeux, server, request).await;
/// # };
/// # }
/// ```
pub fn serve_websocket<S>(
    bayeux: &Bayeux,
    stream: S,
    request: Parts,
) -> impl Future<Output = ()> + Send + use<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let limit = bayeux.transport.max_body_size;
    // A 1 KB read buffer (it grows for larger frames): tungstenite zero-fills it up to its
    // capacity before each read, so its size is resident in every idle connection (4 KB cost
    // 1.3 KB more RSS per session at 10,000, and no CPU at 200k deliveries/s).
    let ws_config = WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit));
    static NEXT_CONNECTION: AtomicU64 = AtomicU64::new(1);
    let browser = bayeux
        .transport
        .cookie
        .find(&request.headers)
        .map(Arc::from);
    let (bayeux, context) = (bayeux.clone(), RequestContext::without_response(request));
    let tracked = bayeux.engine.track();
    // Chained rather than awaited in an async fn (the stream is ready at once: the HTTP upgrade
    // was the handshake), so that the connection's long-lived future is its loop alone, with no
    // room kept for this function's arguments.
    WebSocketStream::from_raw_socket(stream, Role::Server, Some(ws_config)).then(move |socket| {
        // Counted from here to the connection's drop.
        bayeux.engine.inner.counters.websocket_opened();
        WebSocketConnection {
            bayeux,
            socket,
            id: NEXT_CONNECTION.fetch_add(1, Ordering::Relaxed),
            context,
            link: Link {
                browser,
                carrier: Carrier::Stream,
            },
            notify: Arc::new(Notify::new()),
            session: None,
            held: None,
            processing: None,
            _tracked: tracked,
        }
        .run()
    })
}

impl<S> WebSocketConnection<S>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    async fn run(mut self) {
        let idle = self.bayeux.transport.websocket.idle_timeout;
        let mut deadline = Instant::now() + idle;
        // One timer for the connection's life, moved only when it fires before the deadline:
        // a new timer each turn would register and cancel a timer entry per frame.
        let mut idle_timer = std::pin::pin!(tokio::time::sleep_until(deadline));
        let shutdown = self.bayeux.engine.shutdown_signal().clone();
        // Made once: a cancellation future registers with the token when first polled.
        let mut cancelled = std::pin::pin!(shutdown.clone().cancelled_owned());
        // Each turn decides what to do, then does it: frames are built without an await, so
        // that no reply or outcome takes room in the connection's long-lived future.
        let close = loop {
            if shutdown.is_cancelled() {
                // Boxed, as the close below: once in a connection's life, they need not take
                // room in its long-lived future.
                Box::pin(self.drain_for_shutdown()).await;
                break Close::With(CloseCode::Away, "server shutting down");
            }
            let turn = tokio::select! {
                biased;
                end = async { self.held.as_mut().expect("guarded").await }, if self.held.is_some() => {
                    self.held = None;
                    Ok(Turn::Write(connect_frame(end)))
                }
                // A notification for deliveries that already went out with a batch's reply (a
                // client's own echo) is stale: nothing to do.
                () = self.notify.notified() => Ok(if self.session.as_ref().is_some_and(ServerSession::has_queued) {
                    Turn::Push
                } else {
                    Turn::Write(None)
                }),
                outcome = async { self.processing.as_mut().expect("guarded").await }, if self.processing.is_some() => {
                    self.processing = None;
                    deadline = Instant::now() + idle;
                    self.answer(outcome).map(Turn::Write)
                }
                incoming = self.socket.next(), if self.processing.is_none() => {
                    deadline = Instant::now() + idle;
                    self.receive(incoming).map(|()| Turn::Poll)
                }
                () = &mut idle_timer, if self.processing.is_none() => {
                    if Instant::now() < deadline {
                        idle_timer.as_mut().reset(deadline);
                        Ok(Turn::Write(None))
                    } else {
                        Err(Close::With(CloseCode::Away, "idle"))
                    }
                }
                () = &mut cancelled => Ok(Turn::Write(None)),
            };
            let written = match turn {
                Ok(Turn::Write(frame)) => self.send(frame).await,
                Ok(Turn::Push) => {
                    // One publish wakes every subscriber's connection at once. Yielding first
                    // lets them write in the order they were woken instead of last-woken-first
                    // (tokio's LIFO slot), and lets a burst gather into one frame.
                    tokio::task::yield_now().await;
                    let frame = self.pushed();
                    self.send(frame).await
                }
                // Most batches need no await: answer at once rather than in another turn.
                Ok(Turn::Poll) => match self.poll_processing() {
                    Ok(frame) => self.send(frame).await,
                    Err(close) => Err(close),
                },
                Err(close) => Err(close),
            };
            if let Err(close) = written {
                break close;
            }
        };
        if let Close::With(code, reason) = close {
            let frame = CloseFrame {
                code,
                reason: Utf8Bytes::from_static(reason),
            };
            let timeout = self.bayeux.transport.websocket.write_timeout;
            let _ = Box::pin(tokio::time::timeout(
                timeout,
                self.socket.close(Some(frame)),
            ))
            .await;
        }
        if let Some(session) = &self.session {
            session.detach_push(self.id);
        }
        // Dropping a held connect starts its session's expiry, as for a dropped long-poll.
    }

    /// On shutdown: answers the batch being processed, then the held connect (the shutdown
    /// answered it), then sends what is left queued.
    async fn drain_for_shutdown(&mut self) {
        let timeout = self.bayeux.transport.websocket.write_timeout;
        if let Some(processing) = self.processing.take()
            && let Ok(outcome) = tokio::time::timeout(timeout, processing).await
            && let Ok(frame) = self.answer(outcome)
        {
            let _ = self.send(frame).await;
        }
        if let Some(held) = self.held.take()
            && let Ok(end) = tokio::time::timeout(timeout, held).await
        {
            let _ = self.send(connect_frame(end)).await;
        }
        let frame = self.pushed();
        let _ = self.send(frame).await;
    }

    /// Handles what the socket yielded.
    fn receive(&mut self, incoming: Option<Result<Frame, WsError>>) -> Result<(), Close> {
        match incoming {
            None | Some(Ok(Frame::Close(_))) => Err(Close::Quietly),
            Some(Ok(Frame::Text(text))) => self.batch(text.as_bytes()),
            Some(Ok(Frame::Binary(_))) => Err(Close::With(
                CloseCode::Unsupported,
                "Bayeux messages travel in text frames",
            )),
            // tungstenite answers pings itself; any frame counts as activity.
            Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => Ok(()),
            Some(Err(WsError::Capacity(CapacityError::MessageTooLong { .. }))) => {
                Err(Close::With(CloseCode::Size, "message too big"))
            }
            Some(Err(err)) => {
                tracing::debug!(%err, "websocket read failed");
                Err(Close::Quietly)
            }
        }
    }

    /// Starts processing one frame's batch.
    fn batch(&mut self, text: &[u8]) -> Result<(), Close> {
        let messages = match parse_messages_with(text, &self.bayeux.transport.parse_limits) {
            Ok(messages) => messages,
            Err(ParseError::TooManyMessages(_) | ParseError::MessageTooLarge(_)) => {
                return Err(Close::With(CloseCode::Size, "batch over the limits"));
            }
            Err(_) => {
                return Err(Close::With(
                    CloseCode::Invalid,
                    "expected a JSON array of Bayeux messages",
                ));
            }
        };
        let (engine, link) = (self.bayeux.engine.clone(), self.link.clone());
        let context = self.context.clone();
        self.processing = Some(Box::pin(async move {
            context.scope(engine.process_batch(messages, &link)).await
        }));
        Ok(())
    }

    /// Polls the batch being processed once, with a no-op waker (the next turn of the loop
    /// polls it again with the task's own); the frame answering it if it is done.
    fn poll_processing(&mut self) -> Result<Option<Bytes>, Close> {
        match self.processing.as_mut().and_then(FutureExt::now_or_never) {
            Some(outcome) => {
                self.processing = None;
                self.answer(outcome)
            }
            None => Ok(None),
        }
    }

    /// The frame answering a processed batch (`None` if there is nothing to write).
    fn answer(
        &mut self,
        outcome: Result<BatchOutcome, BatchError>,
    ) -> Result<Option<Bytes>, Close> {
        let Ok(outcome) = outcome else {
            return Err(Close::With(
                CloseCode::Policy,
                "a /meta/handshake must be sent alone",
            ));
        };
        if let Some(session) = &outcome.session {
            self.bind(session);
        }
        let mut frame = ArrayWriter::new(&outcome.queued, outcome.replies.len() + 1);
        // A held connect this batch ended (a disconnect) is answered first, in the same frame:
        // the client closes the socket on a disconnect reply only once no connect is pending.
        if let Some(ended) = self.held.as_mut().and_then(|held| held.now_or_never()) {
            self.held = None;
            if let ConnectEnd::Reply { queued, reply } = ended {
                frame.deliveries(&queued).messages(reply.as_slice());
            }
        }
        if let Some(held) = outcome.held {
            // A connect replaced here was displaced by this one in the engine.
            self.held = Some(Box::pin(held.wait()));
        }
        frame.deliveries(&outcome.queued).messages(&outcome.replies);
        if !outcome.queued.is_empty() {
            // The deliveries this reply carries notified the connection when they were queued
            // (a client's own echo): take that notification now, so that it does not cost a
            // wake-up for nothing. Whatever is queued after the drain is pushed as usual.
            let _ = self.notify.notified().now_or_never();
            if self.session.as_ref().is_some_and(ServerSession::has_queued) {
                self.notify.notify_one();
            }
        }
        Ok(frame.finish_non_empty())
    }

    /// Makes this connection the one that pushes `session`'s deliveries (a client that
    /// reconnects on a new socket with its clientId moves its session here).
    fn bind(&mut self, session: &ServerSession) {
        if session.is_removed() || session.is_pushed_to(self.id) {
            return;
        }
        if let Some(previous) = self.session.replace(session.clone()) {
            previous.detach_push(self.id);
        }
        session.attach_push(self.id, self.notify.clone());
    }

    /// Every delivery queued for the bound session, as one frame.
    fn pushed(&mut self) -> Option<Bytes> {
        let queued = self.session.as_ref()?.drain();
        let mut frame = ArrayWriter::new(&queued, 0);
        frame.deliveries(&queued);
        frame.finish_non_empty()
    }

    /// Sends a frame, if there is one.
    async fn send(&mut self, frame: Option<Bytes>) -> Result<(), Close> {
        let Some(array) = frame else {
            return Ok(());
        };
        let text = Utf8Bytes::try_from(array).map_err(|_| Close::Quietly)?;
        let timeout = self.bayeux.transport.websocket.write_timeout;
        match tokio::time::timeout(timeout, self.socket.send(Frame::Text(text))).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => {
                tracing::debug!(%err, "websocket write failed");
                Err(Close::Quietly)
            }
            Err(_elapsed) => {
                tracing::debug!("websocket write timed out: the peer stopped reading");
                Err(Close::Quietly)
            }
        }
    }
}

/// The frame answering a held connect that ended (`None` when a newer connect displaced it:
/// that one will be answered).
fn connect_frame(end: ConnectEnd) -> Option<Bytes> {
    let ConnectEnd::Reply { queued, reply } = end else {
        return None;
    };
    let mut frame = ArrayWriter::new(&queued, 1);
    frame.deliveries(&queued).messages(reply.as_slice());
    frame.finish_non_empty()
}
