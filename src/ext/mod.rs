//! Built-in extensions, speaking the wire formats of the CometD clients' extensions.
//!
//! ```
//! use tower_bayeux::Bayeux;
//! use tower_bayeux::ext::{AckExtension, TimestampExtension, TimesyncExtension};
//!
//! let bayeux = Bayeux::builder()
//!     .extension(AckExtension::new())
//!     .extension(TimesyncExtension::new())
//!     .extension(TimestampExtension::new())
//!     .build();
//! # let _ = bayeux;
//! ```

mod ack;
mod timestamp;
mod timesync;

pub use ack::AckExtension;
pub use timestamp::TimestampExtension;
pub use timesync::TimesyncExtension;

use serde_json::Value;

use crate::Message;

/// The value of `ext.<name>` in `message`.
fn ext<'m>(message: &'m Message, name: &str) -> Option<&'m Value> {
    message.ext.as_ref()?.get(name)
}
