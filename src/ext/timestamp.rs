//! A timestamp on every message the server sends.

use std::time::SystemTime;

use crate::{Extension, Message, ServerSession};

/// Adds a top-level `timestamp` to every message the server sends, as an HTTP date in GMT
/// (`Sun, 22 Nov 2026 04:52:05 GMT`, the form the CometD JavaScript client's
/// `TimeStampExtension` writes with `Date.toUTCString()` and `new Date(..)` reads back).
///
/// A broadcast is stamped once, before it is serialised for all its recipients.
#[derive(Clone, Copy, Debug, Default)]
pub struct TimestampExtension {
    _private: (),
}

impl TimestampExtension {
    /// The extension.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Extension for TimestampExtension {
    async fn outgoing(
        &self,
        _session: Option<&ServerSession>,
        _request: Option<&Message>,
        message: &mut Message,
    ) -> bool {
        message.timestamp = Some(httpdate::fmt_http_date(SystemTime::now()));
        true
    }
}
