//! The batch parser: a request body (a JSON array of messages, or one message) into
//! messages, within limits checked as it parses.
//!
//! Public for the benchmarks, the fuzz targets and the property tests only (hidden from the
//! documentation): applications get messages from the engine, parsed.

use std::fmt;

use serde::Deserializer;
use serde::de::{self, Visitor};

use super::message::Message;

/// Why a request body is not a batch of Bayeux messages.
#[doc(hidden)]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ParseError {
    /// The body is not JSON, or a message has a field of the wrong type.
    #[error("malformed Bayeux message: {0}")]
    Json(#[from] serde_json::Error),
    /// The body is `[]`.
    #[error("empty message array")]
    Empty,
    /// The body is JSON but neither an object nor an array of objects.
    #[error("expected a JSON array of Bayeux messages")]
    NotMessages,
    /// The batch holds more messages than allowed.
    #[error("more than {0} messages in one request")]
    TooManyMessages(usize),
    /// One message is larger than allowed.
    #[error("a message larger than {0} bytes")]
    MessageTooLarge(usize),
}

/// Bounds on a batch of messages, checked while it is parsed.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ParseLimits {
    /// The most messages in one batch.
    pub max_messages: usize,
    /// The largest message, in bytes of JSON.
    pub max_message_size: usize,
}

impl ParseLimits {
    /// No bounds beyond the body's own size.
    pub const UNLIMITED: Self = Self {
        max_messages: usize::MAX,
        max_message_size: usize::MAX,
    };
}

/// Parses a request body: a JSON array of messages, or a single message object.
#[doc(hidden)]
pub fn parse_messages(body: &[u8]) -> Result<Vec<Message>, ParseError> {
    parse_messages_with(body, &ParseLimits::UNLIMITED)
}

/// Parses a request body within `limits`: messages are counted and measured one at a time, so
/// an oversized batch is refused before it is all parsed.
#[doc(hidden)]
pub fn parse_messages_with(body: &[u8], limits: &ParseLimits) -> Result<Vec<Message>, ParseError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    let messages = match first {
        Some(b'[') => {
            let exceeded = std::cell::Cell::new(None);
            let seed = Batch {
                limits,
                exceeded: &exceeded,
            };
            let mut deserializer = serde_json::Deserializer::from_slice(body);
            let parsed = de::DeserializeSeed::deserialize(seed, &mut deserializer)
                .and_then(|messages| deserializer.end().map(|()| messages));
            match (parsed, exceeded.take()) {
                (_, Some(limit)) => return Err(limit),
                (parsed, None) => parsed?,
            }
        }
        Some(b'{') => {
            if body.len() > limits.max_message_size {
                return Err(ParseError::MessageTooLarge(limits.max_message_size));
            }
            vec![serde_json::from_slice::<Message>(body)?]
        }
        Some(_) => {
            // Surface the JSON error for non-JSON bodies; otherwise it is valid JSON of the
            // wrong shape.
            serde_json::from_slice::<serde::de::IgnoredAny>(body)?;
            return Err(ParseError::NotMessages);
        }
        None => return Err(ParseError::Json(de::Error::custom("empty body"))),
    };
    if messages.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(messages)
}

/// Parses an array of messages one raw element at a time, within the limits; a limit that is
/// exceeded is reported through `exceeded` (the JSON error only stops the parse).
struct Batch<'a> {
    limits: &'a ParseLimits,
    exceeded: &'a std::cell::Cell<Option<ParseError>>,
}

impl<'de> de::DeserializeSeed<'de> for Batch<'_> {
    type Value = Vec<Message>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for Batch<'_> {
    type Value = Vec<Message>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of Bayeux messages")
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Message>, A::Error> {
        // Most batches hold one message: room for one (424 bytes) rather than the four (1.7 KB) a
        // first push would make room for.
        let mut messages = Vec::with_capacity(1);
        while let Some(raw) = seq.next_element::<&'de serde_json::value::RawValue>()? {
            let limit = if messages.len() >= self.limits.max_messages {
                Some(ParseError::TooManyMessages(self.limits.max_messages))
            } else if raw.get().len() > self.limits.max_message_size {
                Some(ParseError::MessageTooLarge(self.limits.max_message_size))
            } else {
                None
            };
            if let Some(limit) = limit {
                self.exceeded.set(Some(limit));
                return Err(de::Error::custom("limit exceeded"));
            }
            messages.push(serde_json::from_str::<Message>(raw.get()).map_err(de::Error::custom)?);
        }
        Ok(messages)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MessageId;

    #[test]
    fn accepts_numeric_ids_and_a_single_object() {
        let messages = parse_messages(br#"{"id":5,"channel":"/a"}"#).unwrap();
        assert_eq!(messages[0].id, Some(MessageId::Num(5.into())));
        assert_eq!(
            serde_json::to_string(&messages[0]).unwrap(),
            r#"{"id":5,"channel":"/a"}"#
        );
    }

    #[test]
    fn rejects_wrong_types_and_bad_bodies() {
        for bad in [
            &br#"[{"id":{"x":1},"channel":"/a"}]"#[..],
            br#"[{"channel":5}]"#,
            br#"[{"channel":"/a","subscription":5}]"#,
            br#"[{"channel":"/a","advice":"retry"}]"#,
            br#"[{"channel":"/a","ext":[1]}]"#,
            br#"[{"channel":"/a","successful":"yes"}]"#,
            br#"[{"channel":"/a","channel":"/b"}]"#,
            br#"[{"channel":"/a","x":1,"x":2}]"#,
            br#"[1]"#,
            br#"[{"channel":"/a"}"#,
            b"not json",
            b"",
            b"   ",
            b"42",
            b"\"s\"",
            b"[]",
        ] {
            assert!(
                parse_messages(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn limits_are_checked_per_message() {
        let limits = ParseLimits {
            max_messages: 2,
            max_message_size: 40,
        };
        let ok = br#"[{"channel":"/a"},{"channel":"/b"}]"#;
        assert_eq!(parse_messages_with(ok, &limits).unwrap().len(), 2);
        let three = br#"[{"channel":"/a"},{"channel":"/b"},{"channel":"/c"}]"#;
        assert!(matches!(
            parse_messages_with(three, &limits),
            Err(ParseError::TooManyMessages(2))
        ));
        let big = br#"[{"channel":"/a","data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}]"#;
        assert!(matches!(
            parse_messages_with(big, &limits),
            Err(ParseError::MessageTooLarge(40))
        ));
        let single = br#"{"channel":"/a","data":"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"}"#;
        assert!(matches!(
            parse_messages_with(single, &limits),
            Err(ParseError::MessageTooLarge(40))
        ));
        // Wrong types are still JSON errors, and trailing garbage is refused.
        assert!(matches!(
            parse_messages_with(br#"[{"channel":5}]"#, &limits),
            Err(ParseError::Json(_))
        ));
        assert!(parse_messages_with(br#"[{"channel":"/a"}] x"#, &limits).is_err());
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let mut body = String::from(r#"[{"channel":"/a","data":"#);
        body.push_str(&"[".repeat(100_000));
        body.push_str(&"]".repeat(100_000));
        body.push_str("}]");
        assert!(parse_messages(body.as_bytes()).is_err());
    }
}
