//! What the HTTP polling transports share: processing a batch, holding a connect, setting the
//! browser cookie and the headers listeners added.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::FutureExt;
use http::request::Parts;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;

use crate::Bayeux;
use crate::context::RequestContext;
use crate::engine::{BatchOutcome, Carrier, ConnectEnd, Link};
use crate::protocol::Message;

use super::{ArrayWriter, Served, error_response};

/// How a transport writes the JSON array of a reply.
pub(crate) struct Encoding<F> {
    pub(crate) content_type: &'static str,
    pub(crate) encode: F,
}

/// Processes `messages` from the request `parts`: the encoded reply array at once, or, for a
/// connect the engine holds, the future that answers it.
///
/// The held connect's future is made here, apart: it keeps only what waiting and answering need
/// (the connect, the context, the encoding), not this request's parsing and processing, so that
/// an idle long-polling client costs little memory.
pub(crate) async fn respond<F>(
    bayeux: Bayeux,
    parts: Parts,
    messages: Vec<Message>,
    encoding: Encoding<F>,
) -> Served
where
    F: FnOnce(Bytes) -> Bytes + Send + 'static,
{
    let transport = &bayeux.transport;
    let link = Link {
        browser: transport.cookie.find(&parts.headers).map(Arc::from),
        carrier: Carrier::Polling {
            trust_client_session: transport.trust_client_session,
        },
    };
    // A lone `/meta/connect` is usually held, and its context with it: copied out of hyper's
    // read buffer, the head does not keep that buffer (and a second one) for the hold.
    let parts = match messages.as_slice() {
        [only] if only.channel == crate::protocol::meta::CONNECT => super::detach(parts),
        _ => parts,
    };
    let context = RequestContext::new(parts);
    // Boxed: processing needs a large future, but only briefly.
    let outcome = match context
        .clone()
        .scope(Box::pin(bayeux.engine.process_batch(messages, &link)))
        .await
    {
        Ok(outcome) => outcome,
        Err(err) => {
            return Served::Done(error_response(StatusCode::BAD_REQUEST, &err.to_string()));
        }
    };
    let BatchOutcome {
        queued,
        replies,
        held,
        new_browser,
        ..
    } = outcome;
    if let Some(held) = held {
        // A combinator rather than an async fn: an async fn would keep its arguments and the
        // wait's future each in its own room, the held connect twice over.
        let answer = held.wait().map(move |end| match end {
            ConnectEnd::Displaced => empty_response(bayeux.transport.duplicate_meta_connect_status),
            ConnectEnd::Reply { queued, reply } => {
                let mut array = ArrayWriter::new(&queued, 1);
                array.deliveries(&queued).messages(reply.as_slice());
                response(&bayeux, &context, array, new_browser, encoding)
            }
        });
        return Served::Held(Box::pin(answer));
    }
    let mut array = ArrayWriter::new(&queued, replies.len());
    array.deliveries(&queued).messages(&replies);
    Served::Done(response(&bayeux, &context, array, new_browser, encoding))
}

/// The HTTP response carrying `array`, with the headers listeners added and the browser cookie.
fn response<F>(
    bayeux: &Bayeux,
    context: &RequestContext,
    array: ArrayWriter,
    new_browser: Option<Arc<str>>,
    encoding: Encoding<F>,
) -> Response<Full<Bytes>>
where
    F: FnOnce(Bytes) -> Bytes,
{
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
    if let Some(browser) = new_browser
        && let Ok(value) = HeaderValue::try_from(bayeux.transport.cookie.set_cookie(&browser))
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
