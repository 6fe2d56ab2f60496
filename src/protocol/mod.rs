//! The Bayeux wire protocol: messages, advice, channel names and error strings.
//!
//! Nothing here knows about sessions or HTTP; the engine and the transports build on it.

mod channel;
mod error;
mod message;
mod parse;

pub(crate) use channel::meta;
pub use channel::{ChannelKind, ChannelName, InvalidChannel, Wildcard};
pub use error::ErrorCode;
pub use message::{Advice, Message, MessageId, Reconnect, Subscription};
pub use parse::{ParseError, ParseLimits, parse_messages, parse_messages_with};

/// The Bayeux protocol version this crate speaks.
pub const BAYEUX_VERSION: &str = "1.0";
