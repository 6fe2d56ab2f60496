//! The `callback-polling` transport (JSONP): `GET <path>?jsonp=<callback>&message=<JSON>`,
//! answered with a script calling `<callback>([...])`.

use bytes::{BufMut, Bytes, BytesMut};
use http::{Request, Response, StatusCode};
use http_body_util::Full;

use crate::Bayeux;
use crate::protocol::{Message, ParseError, ParseLimits, parse_messages_with};

use super::error_response;
use super::http::{Encoding, respond};

const CALLBACK_PARAMETER: &str = "jsonp";
const MESSAGE_PARAMETER: &str = "message";
/// The longest callback name accepted.
pub(crate) const MAX_CALLBACK_LEN: usize = 64;

/// Whether a `GET` request is a callback-polling request.
pub(crate) fn is_jsonp<B>(request: &Request<B>) -> bool {
    request.uri().query().is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(name, _)| name == CALLBACK_PARAMETER)
    })
}

/// Whether `name` is a safe callback: dot-separated JavaScript identifiers (ASCII letters,
/// digits, `_` and `$`, not starting with a digit), at most [`MAX_CALLBACK_LEN`] bytes. The
/// name is written into a script, so anything else could inject code.
pub(crate) fn valid_callback(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_CALLBACK_LEN
        && name.split('.').all(|part| {
            let mut chars = part.bytes();
            chars
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b'$')
                && chars.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'$')
        })
}

/// Why a callback-polling request is refused.
#[derive(Debug)]
enum QueryError {
    TooLarge,
    Bad(String),
    Unparsable(ParseError),
}

impl QueryError {
    fn response(self, limit: usize) -> Response<Full<Bytes>> {
        match self {
            Self::TooLarge => super::too_large(limit),
            Self::Bad(message) => error_response(StatusCode::BAD_REQUEST, &message),
            Self::Unparsable(error) => super::unparsable(&error),
        }
    }
}

fn bad_request(message: &str) -> QueryError {
    QueryError::Bad(message.to_owned())
}

/// The callback and the messages of a request.
fn parse_query(
    query: &str,
    limit: usize,
    limits: &ParseLimits,
) -> Result<(String, Vec<Message>), QueryError> {
    let mut callback = None;
    let mut messages = Vec::new();
    let mut size = 0;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == CALLBACK_PARAMETER {
            if callback.replace(value).is_some() {
                return Err(bad_request("more than one jsonp parameter"));
            }
        } else if name == MESSAGE_PARAMETER {
            size += value.len();
            if size > limit {
                return Err(QueryError::TooLarge);
            }
            match parse_messages_with(value.as_bytes(), limits) {
                Ok(parsed) => messages.extend(parsed),
                Err(err) => return Err(QueryError::Unparsable(err)),
            }
            if messages.len() > limits.max_messages {
                return Err(QueryError::Unparsable(ParseError::TooManyMessages(
                    limits.max_messages,
                )));
            }
        }
    }
    let callback = callback.ok_or_else(|| bad_request("missing jsonp parameter"))?;
    if !valid_callback(&callback) {
        return Err(bad_request(
            "invalid jsonp callback: dot-separated JavaScript identifiers, at most 64 characters",
        ));
    }
    if messages.is_empty() {
        return Err(bad_request("missing message parameter"));
    }
    Ok((callback.into_owned(), messages))
}

/// Writes `/**/callback([...]);`. U+2028 and U+2029 are valid in JSON strings but end a line
/// in older JavaScript, so they are escaped (they can only occur inside strings).
fn script(callback: &str, array: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(array.len() + callback.len() + 8);
    out.put_slice(b"/**/");
    out.put_slice(callback.as_bytes());
    out.put_u8(b'(');
    let mut rest = array;
    while let Some(at) = rest
        .windows(3)
        .position(|w| w == "\u{2028}".as_bytes() || w == "\u{2029}".as_bytes())
    {
        out.put_slice(&rest[..at]);
        out.put_slice(if rest[at + 2] == 0xA8 {
            b"\\u2028"
        } else {
            b"\\u2029"
        });
        rest = &rest[at + 3..];
    }
    out.put_slice(rest);
    out.put_slice(b");");
    out.freeze()
}

/// Serves a callback-polling `GET`.
pub(crate) async fn serve<B>(bayeux: Bayeux, request: Request<B>) -> super::Served {
    let query = request.uri().query().unwrap_or_default();
    let limit = bayeux.transport.max_body_size;
    let (callback, messages) = match parse_query(query, limit, &bayeux.transport.parse_limits) {
        Ok(parsed) => parsed,
        Err(error) => return error.response(limit).into(),
    };
    let (parts, _body) = request.into_parts();
    let encoding = Encoding {
        content_type: "text/javascript;charset=UTF-8",
        encode: move |array: Bytes| script(&callback, &array),
    };
    respond(bayeux, parts, messages, encoding).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_are_identifiers_and_dots() {
        for ok in [
            "_cometd_jsonp_0",
            "cb",
            "a.b.c",
            "$",
            "jQuery123_456",
            "x$1",
        ] {
            assert!(valid_callback(ok), "{ok}");
        }
        for bad in [
            "",
            "alert(1)",
            "a b",
            "a;b",
            "a..b",
            ".a",
            "a.",
            "1a",
            "a.1b",
            "a-b",
            "a/*",
            "<script>",
            "a\u{2028}",
            "é",
            &"a".repeat(65),
        ] {
            assert!(!valid_callback(bad), "{bad:?}");
        }
        assert!(valid_callback(&"a".repeat(64)));
    }

    #[test]
    fn scripts_escape_line_separators() {
        let array = "[{\"data\":\"a\u{2028}b\u{2029}c\"}]".as_bytes();
        let out = script("cb", array);
        assert_eq!(&out[..], br#"/**/cb([{"data":"a\u2028b\u2029c"}]);"#);
    }

    #[test]
    fn queries_need_one_callback_and_messages() {
        let ok = parse_query(
            "jsonp=cb&message=%5B%7B%22channel%22%3A%22%2Fa%22%7D%5D",
            1024,
            &ParseLimits::UNLIMITED,
        );
        let (callback, messages) = ok.unwrap();
        assert_eq!(callback, "cb");
        assert_eq!(messages[0].channel, "/a");
        let two = parse_query(
            "jsonp=cb&message=%7B%22channel%22%3A%22%2Fa%22%7D&message=%5B%7B%22channel%22%3A%22%2Fb%22%7D%5D",
            1024,
            &ParseLimits::UNLIMITED,
        )
        .unwrap();
        assert_eq!(
            two.1.len(),
            2,
            "several message parameters are concatenated"
        );
        for (query, status) in [
            ("jsonp=cb", StatusCode::BAD_REQUEST),
            ("jsonp=cb&jsonp=cc&message=%7B%7D", StatusCode::BAD_REQUEST),
            ("jsonp=alert(1)&message=%7B%7D", StatusCode::BAD_REQUEST),
            ("jsonp=cb&message=nope", StatusCode::BAD_REQUEST),
            ("message=%7B%7D", StatusCode::BAD_REQUEST),
            (
                "jsonp=cb&message=%5B%7B%22channel%22%3A%22%2Faaaaaaaaaaaa%22%7D%5D",
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ] {
            let response = parse_query(query, 20, &ParseLimits::UNLIMITED)
                .unwrap_err()
                .response(20);
            assert_eq!(response.status(), status, "{query}");
        }
    }
}
