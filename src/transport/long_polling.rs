//! The `long-polling` transport: `POST` of a JSON array of messages, `application/json` reply.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use crate::BoxError;
use crate::context::RequestContext;
use crate::engine::Bayeux;
use crate::engine::process::{ConnectEnd, Connection};
use crate::protocol::parse_messages;

use super::{error_response, json_array};

const ALLOW: &str = "POST, OPTIONS";

/// Serves one request at the Bayeux path.
pub(crate) async fn serve<B>(bayeux: Bayeux, request: Request<B>) -> Response<Full<Bytes>>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    match *request.method() {
        Method::POST => {}
        Method::OPTIONS => {
            let mut response = Response::new(Full::default());
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return response;
        }
        _ => {
            let mut response = error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "Bayeux long-polling takes POST requests carrying a JSON array of messages",
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(ALLOW));
            return response;
        }
    }

    let limit = bayeux.max_body_size();
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return too_large(limit);
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(err) if err.is::<LengthLimitError>() => return too_large(limit),
        Err(err) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                &format!("failed to read the request body: {err}"),
            );
        }
    };
    let messages = match parse_messages(&body) {
        Ok(messages) => messages,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err.to_string()),
    };

    let cookie = &bayeux.inner.config.cookie;
    let connection = Connection {
        browser: cookie.find(&parts.headers).map(str::to_owned),
    };
    let context = RequestContext::new(parts);
    let outcome = match context
        .clone()
        .scope(bayeux.process_batch(messages, &connection))
        .await
    {
        Ok(outcome) => outcome,
        Err(err) => return error_response(StatusCode::BAD_REQUEST, &err.to_string()),
    };

    let body = match outcome.held {
        Some(held) => match held.wait().await {
            ConnectEnd::Displaced(status) => {
                let mut response = Response::new(Full::default());
                *response.status_mut() = status;
                return response;
            }
            ConnectEnd::Reply { queued, reply } => json_array(&queued, &[reply]),
        },
        None => json_array(&outcome.queued, &outcome.replies),
    };

    let mut response = Response::new(Full::new(body));
    let headers = response.headers_mut();
    // A HeaderMap yields a name only with the first of its values.
    let mut last = None;
    for (name, value) in context.take_response_headers() {
        if name.is_some() {
            last = name;
        }
        if let Some(name) = &last {
            headers.append(name, value);
        }
    }
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json;charset=UTF-8"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Some(browser) = outcome.new_browser
        && let Ok(value) = HeaderValue::try_from(cookie.set_cookie(&browser))
    {
        headers.append(header::SET_COOKIE, value);
    }
    response
}

fn too_large(limit: usize) -> Response<Full<Bytes>> {
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        &format!("request body larger than the {limit}-byte limit"),
    )
}
