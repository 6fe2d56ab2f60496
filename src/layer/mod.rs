//! The tower layer and service that put the Bayeux endpoint in front of any service.

mod body;
mod future;
mod service;

pub use body::BayeuxBody;
pub use future::ResponseFuture;
pub use service::{BayeuxLayer, BayeuxService, NotFound};
