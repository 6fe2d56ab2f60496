//! The response body of [`BayeuxService`](super::BayeuxService).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use pin_project::pin_project;

/// The response body: either the inner service's body, untouched, or a Bayeux reply.
///
/// `Default` is an empty body, so middleware that answers on its own (CORS preflights,
/// timeouts) can wrap the service.
#[pin_project]
#[derive(Debug)]
pub struct BayeuxBody<B> {
    #[pin]
    kind: Kind<B>,
}

#[pin_project(project = KindProj)]
#[derive(Debug)]
enum Kind<B> {
    Inner(#[pin] B),
    Bayeux(#[pin] Full<Bytes>),
}

impl<B> BayeuxBody<B> {
    pub(crate) fn inner(body: B) -> Self {
        Self {
            kind: Kind::Inner(body),
        }
    }

    pub(crate) fn bayeux(body: Full<Bytes>) -> Self {
        Self {
            kind: Kind::Bayeux(body),
        }
    }
}

impl<B> Default for BayeuxBody<B> {
    fn default() -> Self {
        Self::bayeux(Full::default())
    }
}

impl<B> Body for BayeuxBody<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Inner(body) => body.poll_frame(cx),
            KindProj::Bayeux(body) => body.poll_frame(cx).map_err(|never| match never {}),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Inner(body) => body.is_end_stream(),
            Kind::Bayeux(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Inner(body) => body.size_hint(),
            Kind::Bayeux(body) => body.size_hint(),
        }
    }
}
