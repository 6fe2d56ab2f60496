//! Transports: turn HTTP requests into message batches for the engine, and its outcome into
//! responses.

pub(crate) mod long_polling;

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::engine::Delivery;
use crate::protocol::Message;

/// Writes `[queued..., replies...]`: the deliveries' shared bytes are copied once into the
/// response, the replies serialised straight into it.
pub(crate) fn json_array(queued: &[Delivery], replies: &[Message]) -> Bytes {
    let queued_len: usize = queued.iter().map(|d| d.json().len() + 1).sum();
    let mut out = BytesMut::with_capacity(queued_len + 128 * replies.len() + 2).writer();
    let buf = out.get_mut();
    buf.put_u8(b'[');
    for (i, delivery) in queued.iter().enumerate() {
        if i > 0 {
            buf.put_u8(b',');
        }
        buf.put_slice(delivery.json());
    }
    for (i, reply) in replies.iter().enumerate() {
        if i > 0 || !queued.is_empty() {
            out.get_mut().put_u8(b',');
        }
        // Writing into memory cannot fail, and a Message always serialises.
        let _ = serde_json::to_writer(&mut out, reply);
    }
    let mut buf = out.into_inner();
    buf.put_u8(b']');
    buf.freeze()
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
