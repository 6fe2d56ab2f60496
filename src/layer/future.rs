//! The response future of [`BayeuxService`](super::BayeuxService).

use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::Response;
use http_body_util::Full;
use pin_project::pin_project;

use super::BayeuxBody;

use crate::transport::Served;

/// The processing of a Bayeux request.
type EngineFuture = Pin<Box<dyn Future<Output = Served> + Send>>;
/// A held connect's wait and answer, which replaces the request's processing.
type HeldFuture = Pin<Box<dyn Future<Output = Response<Full<Bytes>>> + Send>>;

/// The response future: the inner service's, or the engine's handling of a Bayeux request.
#[pin_project]
pub struct ResponseFuture<F, B> {
    #[pin]
    kind: Kind<F>,
    _body: PhantomData<fn() -> B>,
}

#[pin_project(project = KindProj)]
enum Kind<F> {
    Inner(#[pin] F),
    Bayeux(EngineFuture),
    /// The request's own future is gone (dropped with what parsing and processing needed).
    Held(HeldFuture),
}

impl<F, B> ResponseFuture<F, B> {
    pub(crate) fn inner(future: F) -> Self {
        Self {
            kind: Kind::Inner(future),
            _body: PhantomData,
        }
    }

    pub(crate) fn bayeux(future: EngineFuture) -> Self {
        Self {
            kind: Kind::Bayeux(future),
            _body: PhantomData,
        }
    }
}

impl<F, B> fmt::Debug for ResponseFuture<F, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            Kind::Inner(_) => "Inner",
            Kind::Bayeux(_) => "Bayeux",
            Kind::Held(_) => "Held",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish()
    }
}

impl<F, B, E> Future for ResponseFuture<F, B>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<BayeuxBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut kind = self.project().kind;
        loop {
            let held = match kind.as_mut().project() {
                KindProj::Inner(future) => {
                    let response = ready!(future.poll(cx))?;
                    return Poll::Ready(Ok(response.map(BayeuxBody::inner)));
                }
                KindProj::Bayeux(future) => match ready!(future.as_mut().poll(cx)) {
                    Served::Done(response) => {
                        return Poll::Ready(Ok(response.map(BayeuxBody::bayeux)));
                    }
                    Served::Held(held) => held,
                },
                KindProj::Held(future) => {
                    let response = ready!(future.as_mut().poll(cx));
                    return Poll::Ready(Ok(response.map(BayeuxBody::bayeux)));
                }
            };
            // The request's future is dropped here; the held connect's is polled at once.
            kind.set(Kind::Held(held));
        }
    }
}
