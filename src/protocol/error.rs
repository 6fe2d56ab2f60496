//! The error strings of Bayeux replies.

use std::fmt;

/// An error carried in the `error` field of a failed reply.
///
/// The strings follow the form `code:args:text` used by the CometD servers; clients key off the
/// numeric code and the advice, so the text is stable but informative.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// `400::channel_missing`: the message has no `channel`.
    ChannelMissing,
    /// `405::channel_invalid`: the channel name breaks the grammar, or a client published to a
    /// wildcard pattern.
    ChannelInvalid,
    /// `402::session_unknown`: no live session has this `clientId` (for this browser).
    SessionUnknown,
    /// `403::handshake_denied`: the security policy refused the handshake.
    HandshakeDenied,
    /// `403::handshake_failed`: the handshake could not be completed (no common transport).
    HandshakeFailed,
    /// `403::channel_denied`: the security policy refused to create the channel.
    ChannelDenied,
    /// `403::publish_denied`: the security policy refused the publish, or the channel is a
    /// meta channel clients may not publish to.
    PublishDenied,
    /// `403::subscription_missing`: `/meta/subscribe` or `/meta/unsubscribe` without
    /// `subscription`.
    SubscriptionMissing,
    /// `405::subscription_invalid`: a subscription is not a valid channel name.
    SubscriptionInvalid,
    /// `403::subscribe_denied`: the security policy refused the subscription, or the channel is
    /// a meta channel.
    SubscribeDenied,
    /// `404::message_deleted`: a listener or an extension dropped the message.
    MessageDeleted,
    /// `403::subscription_limit`: the session subscribes to as many channels as allowed.
    SubscriptionLimit,
    /// `403::too_many_sessions`: the server, or this browser, has as many sessions as allowed.
    TooManySessions,
    /// `503::shutting_down`: the server is shutting down and takes no new sessions.
    ShuttingDown,
    /// `409::multiple_clients`: another session of the same browser holds the long-poll and
    /// the server is configured not to let the others poll.
    MultipleClients,
    /// `400::history_since_invalid`: `ext.history.since` is not a non-negative integer (or its
    /// `epoch` not a string), or the subscribe names several channels.
    HistorySinceInvalid,
    /// `400::history_since_wildcard`: `ext.history.since` on a wildcard subscription (history
    /// positions belong to single channels).
    HistorySinceWildcard,
    /// `503::history_unavailable`: the message could not get its place in the channel's
    /// history (kept by a broker that cannot be reached now); it was not published.
    HistoryUnavailable,
}

impl ErrorCode {
    /// The wire string.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::ChannelMissing => "400::channel_missing",
            Self::ChannelInvalid => "405::channel_invalid",
            Self::SessionUnknown => "402::session_unknown",
            Self::HandshakeDenied => "403::handshake_denied",
            Self::HandshakeFailed => "403::handshake_failed",
            Self::ChannelDenied => "403::channel_denied",
            Self::PublishDenied => "403::publish_denied",
            Self::SubscriptionMissing => "403::subscription_missing",
            Self::SubscriptionInvalid => "405::subscription_invalid",
            Self::SubscribeDenied => "403::subscribe_denied",
            Self::MessageDeleted => "404::message_deleted",
            Self::MultipleClients => "409::multiple_clients",
            Self::SubscriptionLimit => "403::subscription_limit",
            Self::TooManySessions => "403::too_many_sessions",
            Self::ShuttingDown => "503::shutting_down",
            Self::HistorySinceInvalid => "400::history_since_invalid",
            Self::HistorySinceWildcard => "400::history_since_wildcard",
            Self::HistoryUnavailable => "503::history_unavailable",
        }
    }

    /// The numeric code (`402` for `402::session_unknown`).
    pub const fn code(self) -> u16 {
        match self {
            Self::ChannelMissing | Self::HistorySinceInvalid | Self::HistorySinceWildcard => 400,
            Self::SessionUnknown => 402,
            Self::ChannelInvalid | Self::SubscriptionInvalid => 405,
            Self::MessageDeleted => 404,
            Self::MultipleClients => 409,
            Self::ShuttingDown | Self::HistoryUnavailable => 503,
            _ => 403,
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<ErrorCode> for String {
    fn from(code: ErrorCode) -> Self {
        code.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorCode;

    #[test]
    fn strings_start_with_their_code() {
        for code in [
            ErrorCode::ChannelMissing,
            ErrorCode::ChannelInvalid,
            ErrorCode::SessionUnknown,
            ErrorCode::HandshakeDenied,
            ErrorCode::HandshakeFailed,
            ErrorCode::ChannelDenied,
            ErrorCode::PublishDenied,
            ErrorCode::SubscriptionMissing,
            ErrorCode::SubscriptionInvalid,
            ErrorCode::SubscribeDenied,
            ErrorCode::MessageDeleted,
            ErrorCode::MultipleClients,
            ErrorCode::SubscriptionLimit,
            ErrorCode::TooManySessions,
            ErrorCode::ShuttingDown,
            ErrorCode::HistorySinceInvalid,
            ErrorCode::HistorySinceWildcard,
            ErrorCode::HistoryUnavailable,
        ] {
            let s = code.as_str();
            assert!(s.starts_with(&format!("{}::", code.code())), "{s}");
        }
    }
}
