//! The Bayeux wire protocol: messages, advice, channel names and error strings.
//!
//! Nothing here knows about sessions or HTTP; the engine and the transports build on it.

mod channel;
mod error;
mod message;

pub(crate) use channel::meta;
pub use channel::{ChannelKind, ChannelName, InvalidChannel, Wildcard};
pub use error::ErrorCode;
pub use message::{
    Advice, Message, MessageId, ParseError, ParseLimits, Reconnect, Subscription, parse_messages,
    parse_messages_with,
};

/// The Bayeux protocol version this crate speaks.
pub const BAYEUX_VERSION: &str = "1.0";
