//! The `long-polling` transport: `POST` of a JSON array of messages, `application/json` reply.

use std::future::ready;

use http::{Request, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::protocol::parse_messages_with;
use crate::{Bayeux, BoxError};

use super::http::{Encoding, respond};
use super::{ServeFuture, error_response};

/// Serves a `POST` at the Bayeux path. Only the body and the request head go into the future,
/// which is boxed for every request (952 bytes with a `Full` body).
pub(crate) fn serve<B>(bayeux: Bayeux, request: Request<B>) -> ServeFuture
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    let limit = bayeux.transport.max_body_size;
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Box::pin(ready(super::too_large(limit).into()));
    }
    let (parts, body) = request.into_parts();
    Box::pin(async move {
        let body = match Limited::new(body, limit).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(err) if err.is::<LengthLimitError>() => return super::too_large(limit).into(),
            Err(err) => {
                return error_response(
                    StatusCode::BAD_REQUEST,
                    &format!("failed to read the request body: {err}"),
                )
                .into();
            }
        };
        let messages = match parse_messages_with(&body, &bayeux.transport.parse_limits) {
            Ok(messages) => messages,
            Err(err) => return super::unparsable(&err).into(),
        };
        drop(body);
        let encoding = Encoding {
            content_type: "application/json;charset=UTF-8",
            encode: |array| array,
        };
        respond(bayeux, parts, messages, encoding).await
    })
}
