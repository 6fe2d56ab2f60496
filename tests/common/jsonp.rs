//! Callback-polling (JSONP) requests, built the way the CometD client builds its script URLs.

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::Full;
use serde_json::Value;

use super::Reply;

/// `value`, form-urlencoded.
pub fn encode(value: &str) -> String {
    form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

/// A `GET` of `path?query`, with the `Cookie` header if given.
pub fn get(path: &str, query: &str, cookie: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = Request::get(format!("{path}?{query}"));
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    request.body(Full::new(Bytes::new())).unwrap()
}

/// A script request to `path` calling `callback` with the answer to `messages` (a JSON array).
pub fn request(
    path: &str,
    callback: &str,
    messages: &str,
    cookie: Option<&str>,
) -> Request<Full<Bytes>> {
    let query = format!("jsonp={callback}&message={}", encode(messages));
    get(path, &query, cookie)
}

/// The array a script passes to its callback (asserting the status, type and shape).
pub fn script_arguments(reply: &Reply, callback: &str) -> Vec<Value> {
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.headers[header::CONTENT_TYPE],
        "text/javascript;charset=UTF-8"
    );
    let prefix = format!("/**/{callback}(");
    let inner = reply
        .body
        .strip_prefix(&prefix)
        .and_then(|rest| rest.strip_suffix(");"))
        .unwrap_or_else(|| panic!("not a call of {callback}: {}", reply.body));
    let messages = serde_json::from_str::<Value>(inner)
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert!(!messages.is_empty(), "a reply array is never empty");
    messages
}
