//! What the HTTP polling transports share: processing a batch, holding a connect, setting the
//! browser cookie and the headers listeners added.

use std::sync::Arc;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::Bayeux;
use crate::context::RequestContext;
use crate::engine::{Carrier, ConnectEnd, Link};
use crate::protocol::Message;

use super::{ArrayWriter, error_response};

/// How a transport writes the JSON array of a reply.
pub(crate) struct Encoding<F> {
    pub(crate) content_type: &'static str,
    pub(crate) encode: F,
}

/// Processes `messages` from the request `parts` and answers with the encoded reply array.
pub(crate) async fn respond<F>(
    bayeux: Bayeux,
    parts: Parts,
    messages: Vec<Message>,
    encoding: Encoding<F>,
) -> Response<Full<Bytes>>
where
    F: FnOnce(Bytes) -> Bytes,
{
    let transport = &bayeux.transport;
    let cookie = &transport.cookie;
    let link = Link {
        browser: cookie.find(&parts.headers).map(Arc::from),
        carrier: Carrier::Polling {
            trust_client_session: transport.trust_client_session,
        },
    };
    let context = RequestContext::new(parts);
    // Boxed: processing needs a large future, but only briefly; inline it would stay reserved in
    // every request's future for as long as its connect is held.
    let outcome = match context
        .clone()
        .scope(Box::pin(bayeux.engine.process_batch(messages, &link)))
        .await
    {
        Ok(outcome) => outcome,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err.to_string()),
    };

    let array = match outcome.held {
        // Boxed for the same reason, so a held connect keeps only what waiting needs.
        Some(held) => match Box::pin(held.wait()).await {
            ConnectEnd::Displaced => {
                return empty_response(transport.duplicate_meta_connect_status);
            }
            ConnectEnd::Reply { queued, reply } => {
                let mut array = ArrayWriter::new(&queued, 1);
                array.deliveries(&queued).messages(reply.as_slice());
                array
            }
        },
        None => {
            let mut array = ArrayWriter::new(&outcome.queued, outcome.replies.len());
            array.deliveries(&outcome.queued).messages(&outcome.replies);
            array
        }
    };
    let Some(array) = array.finish_non_empty() else {
        // Extensions dropped every reply and nothing else is due: the clients count an empty
        // array as a failure anyway, so say it plainly.
        return empty_response(StatusCode::NO_CONTENT);
    };

    let mut response = Response::new(Full::new((encoding.encode)(array)));
    let headers = response.headers_mut();
    headers.extend(context.take_response_headers());
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(encoding.content_type),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(browser) = outcome.new_browser
        && let Ok(value) = HeaderValue::try_from(cookie.set_cookie(&browser))
    {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

fn empty_response(status: StatusCode) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = status;
    response
}
