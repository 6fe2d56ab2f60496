//! Transports: turn HTTP requests into message batches for the engine, and its outcome into
//! responses.

mod config;
mod http;
#[cfg(feature = "jsonp")]
mod jsonp;
mod long_polling;
#[cfg(feature = "websocket")]
mod origin;
#[cfg(feature = "websocket")]
pub(crate) mod websocket;

pub use config::SameSite;
pub(crate) use config::TransportConfig;

use std::future::Future;
use std::pin::Pin;

use ::http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use bytes::{BufMut, Bytes, BytesMut};
use http_body::Body;
use http_body_util::Full;

use crate::Bayeux;
use crate::BoxError;
use crate::engine::Delivery;
use crate::protocol::Message;

/// What serving a request gave: its response, or a held connect's future that will give it.
pub(crate) enum Served {
    Done(Response<Full<Bytes>>),
    /// Polled in place of the request's future, which is dropped: see [`http::respond`].
    Held(Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>),
}

impl From<Response<Full<Bytes>>> for Served {
    fn from(response: Response<Full<Bytes>>) -> Self {
        Self::Done(response)
    }
}

/// The future answering a request at the Bayeux path.
pub(crate) type ServeFuture = Pin<Box<dyn Future<Output = Served> + Send>>;

/// Serves a request at the Bayeux path with the transport it asks for: the transport is chosen
/// here, and only its own future is boxed (with no room kept for the others', nor for the
/// request it already took apart).
pub(crate) fn serve<B>(bayeux: Bayeux, request: Request<B>) -> ServeFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let config = &bayeux.transport;
    let answer: Served = match *request.method() {
        Method::POST => return long_polling::serve(bayeux, request),
        Method::GET if is_upgrade(&request) => {
            if !config.websocket_enabled() {
                error_response(
                    StatusCode::BAD_REQUEST,
                    "the websocket transport is disabled on this server",
                )
                .into()
            } else {
                #[cfg(feature = "websocket")]
                {
                    websocket::upgrade(bayeux, request).into()
                }
                #[cfg(not(feature = "websocket"))]
                unreachable!("websocket_enabled() is false without the feature")
            }
        }
        #[cfg(feature = "jsonp")]
        Method::GET if jsonp::is_jsonp(&request) => {
            if !config.callback_polling_enabled() {
                error_response(
                    StatusCode::BAD_REQUEST,
                    "the callback-polling (JSONP) transport is disabled on this server",
                )
                .into()
            } else {
                return Box::pin(jsonp::serve(bayeux, request));
            }
        }
        Method::OPTIONS => {
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response.headers_mut().insert(header::ALLOW, allow(&bayeux));
            response.into()
        }
        _ => {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "Bayeux takes POST requests carrying a JSON array of messages (long-polling), \
                 GET requests with jsonp and message parameters (callback-polling, when enabled) \
                 and websocket upgrades (when enabled)",
            );
            response.headers_mut().insert(header::ALLOW, allow(&bayeux));
            response.into()
        }
    };
    Box::pin(std::future::ready(answer))
}

/// `parts` with its URI and header values copied into one allocation of their own. hyper parses
/// them as slices of the connection's read buffer, so keeping them (a websocket's request
/// context for the connection's whole life, a held connect's for the hold) would keep that
/// buffer, 8-16 KB, allocated, and make hyper allocate another for its next read.
pub(crate) fn detach(mut parts: ::http::request::Parts) -> ::http::request::Parts {
    use std::fmt::Write as _;
    let values: usize = parts.headers.values().map(HeaderValue::len).sum();
    let mut copy = BytesMut::with_capacity(values + 64);
    let _ = write!(copy, "{}", parts.uri);
    let uri_len = copy.len();
    for value in parts.headers.values() {
        copy.put_slice(value.as_bytes());
    }
    let copy = copy.freeze();
    if let Ok(uri) = ::http::Uri::from_maybe_shared(copy.slice(..uri_len)) {
        parts.uri = uri;
    }
    let mut at = uri_len;
    for value in parts.headers.values_mut() {
        let end = at + value.len();
        if let Ok(mut detached) = HeaderValue::from_maybe_shared(copy.slice(at..end)) {
            detached.set_sensitive(value.is_sensitive());
            *value = detached;
        }
        at = end;
    }
    parts
}

/// Whether a request asks for a websocket upgrade.
fn is_upgrade<B>(request: &Request<B>) -> bool {
    has_token(request.headers(), header::UPGRADE, "websocket")
}

/// Whether a comma-separated header (`Upgrade`, `Connection`) lists `token`.
pub(crate) fn has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

fn allow(bayeux: &Bayeux) -> HeaderValue {
    let config = &bayeux.transport;
    if config.websocket_enabled() || config.callback_polling_enabled() {
        HeaderValue::from_static("GET, POST, OPTIONS")
    } else {
        HeaderValue::from_static("POST, OPTIONS")
    }
}

/// The response refusing a body that is not a batch of messages within the limits.
fn unparsable(error: &crate::protocol::ParseError) -> Response<Full<Bytes>> {
    use crate::protocol::ParseError;
    let status = match error {
        ParseError::TooManyMessages(_) | ParseError::MessageTooLarge(_) => {
            StatusCode::PAYLOAD_TOO_LARGE
        }
        _ => StatusCode::BAD_REQUEST,
    };
    error_response(status, &error.to_string())
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request larger than the {limit}-byte limit"),
    )
}

/// Writes a JSON array of pre-serialised deliveries and replies: the deliveries' shared bytes
/// are copied once into the output, the replies serialised straight into it.
pub(crate) struct ArrayWriter {
    out: bytes::buf::Writer<BytesMut>,
    empty: bool,
}

impl ArrayWriter {
    pub(crate) fn new(deliveries: &[Delivery], replies: usize) -> Self {
        let capacity: usize = deliveries.iter().map(|d| d.json().len() + 1).sum();
        let mut out = BytesMut::with_capacity(capacity + 128 * replies + 2);
        out.put_u8(b'[');
        Self {
            out: out.writer(),
            empty: true,
        }
    }

    fn separate(&mut self) {
        if !std::mem::take(&mut self.empty) {
            self.out.get_mut().put_u8(b',');
        }
    }

    pub(crate) fn deliveries(&mut self, deliveries: &[Delivery]) -> &mut Self {
        for delivery in deliveries {
            self.separate();
            self.out.get_mut().put_slice(delivery.json());
        }
        self
    }

    pub(crate) fn messages(&mut self, messages: &[Message]) -> &mut Self {
        for message in messages {
            self.separate();
            // Writing into memory cannot fail, and a Message always serialises.
            let _ = serde_json::to_writer(&mut self.out, message);
        }
        self
    }

    /// The array, unless it would be empty (never sent: clients count it as a failure).
    pub(crate) fn finish_non_empty(self) -> Option<Bytes> {
        (!self.empty).then(|| self.finish())
    }

    fn finish(self) -> Bytes {
        let mut buf = self.out.into_inner();
        buf.put_u8(b']');
        buf.freeze()
    }
}

/// A plain-text error response for transport-level failures (malformed requests).
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{message}\n"))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detached_parts_keep_everything_but_share_no_bytes_with_the_request() {
        // One buffer, as hyper parses a request head: the URI and values are slices of it.
        let head = Bytes::from_static(b"/cometd/connect?x=1 first second secret");
        let buffer = head.as_ptr_range();
        let mut secret = HeaderValue::from_maybe_shared(head.slice(33..)).unwrap();
        secret.set_sensitive(true);
        let (mut parts, ()) =
            Request::post(::http::Uri::from_maybe_shared(head.slice(..19)).unwrap())
                .header(
                    "x-a",
                    HeaderValue::from_maybe_shared(head.slice(20..25)).unwrap(),
                )
                .header(
                    "x-a",
                    HeaderValue::from_maybe_shared(head.slice(26..32)).unwrap(),
                )
                .header(header::AUTHORIZATION, secret)
                .body(())
                .unwrap()
                .into_parts();
        parts.extensions.insert(7_u8);

        let detached = detach(parts);
        assert_eq!(detached.method, Method::POST);
        assert_eq!(detached.uri, "/cometd/connect?x=1");
        let values: Vec<_> = detached.headers.get_all("x-a").iter().collect();
        assert_eq!(values, ["first", "second"]);
        assert!(detached.headers[header::AUTHORIZATION].is_sensitive());
        assert_eq!(detached.extensions.get::<u8>(), Some(&7));
        let outside = |bytes: &[u8]| !buffer.contains(&bytes.as_ptr());
        assert!(outside(detached.uri.path().as_bytes()));
        assert!(
            detached
                .headers
                .values()
                .all(|value| outside(value.as_bytes()))
        );
    }
}
