//! [`BayeuxLayer`], [`BayeuxService`] and the [`NotFound`] fallback.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Empty;
use tower_layer::Layer;
use tower_service::Service;

use crate::Bayeux;
use crate::BoxError;
use crate::transport;

use super::{BayeuxBody, ResponseFuture};

/// Normalises a mount path: a leading `/`, no trailing `/`; the root means "every path".
fn normalise(path: &str) -> Option<Arc<str>> {
    let trimmed = path.trim_end_matches('/');
    if trimmed.is_empty() {
        return None;
    }
    Some(if trimmed.starts_with('/') {
        Arc::from(trimmed)
    } else {
        Arc::from(format!("/{trimmed}"))
    })
}

/// Whether `path` is `prefix` or below it, on a segment boundary (`/cometd` takes `/cometd`,
/// `/cometd/` and `/cometd/connect`, not `/cometdx`).
fn is_under(path: &str, prefix: &str) -> bool {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A [`Layer`] that serves Bayeux at a path (default `/cometd`, and every path below it) and
/// passes every other request to the service it wraps.
///
/// The layer holds the engine handle; [`Layer::layer`] only clones it, so one engine serves
/// every route the layer is applied to (axum applies a layer once per route).
///
/// ```
/// use axum::{Router, routing::get};
/// use tower_bayeux::{Bayeux, BayeuxLayer};
///
/// let bayeux = Bayeux::builder().build();
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(BayeuxLayer::new(bayeux.clone()).path("/cometd"));
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct BayeuxLayer {
    bayeux: Bayeux,
    path: Option<Arc<str>>,
}

impl BayeuxLayer {
    /// A layer serving `bayeux` at `/cometd`.
    pub fn new(bayeux: Bayeux) -> Self {
        Self {
            bayeux,
            path: normalise("/cometd"),
        }
    }

    /// The path Bayeux is served at; requests to it and below it (`<path>/handshake`,
    /// `<path>/connect`, ...) are Bayeux requests. `/` takes every request.
    ///
    /// Default: `/cometd`.
    pub fn path(mut self, path: &str) -> Self {
        self.path = normalise(path);
        self
    }
}

impl<S> Layer<S> for BayeuxLayer {
    type Service = BayeuxService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BayeuxService {
            inner,
            bayeux: self.bayeux.clone(),
            path: self.path.clone(),
        }
    }
}

/// The Bayeux service: answers Bayeux requests with the engine and passes the rest to `S`.
///
/// Made by [`BayeuxLayer`], or standalone with [`BayeuxService::new`], which takes every
/// request (use it with axum's `Router::nest_service`, which strips the mount prefix) and
/// answers 404 outside its [`path`](Self::path) if one is set.
///
/// ```
/// use axum::Router;
/// use tower_bayeux::{Bayeux, BayeuxService};
///
/// let bayeux = Bayeux::builder().build();
/// let app: Router = Router::new().nest_service("/cometd", BayeuxService::new(bayeux));
/// # let _ = app;
/// ```
#[derive(Clone, Debug)]
pub struct BayeuxService<S = NotFound> {
    inner: S,
    bayeux: Bayeux,
    path: Option<Arc<str>>,
}

impl BayeuxService<NotFound> {
    /// A standalone service handling every request as a Bayeux request.
    pub fn new(bayeux: Bayeux) -> Self {
        Self {
            inner: NotFound,
            bayeux,
            path: None,
        }
    }
}

impl<S> BayeuxService<S> {
    /// Restricts Bayeux to `path` and below; other requests go to the inner service.
    ///
    /// Default: every path for [`BayeuxService::new`], the layer's path otherwise.
    pub fn path(mut self, path: &str) -> Self {
        self.path = normalise(path);
        self
    }

    /// The engine.
    pub fn bayeux(&self) -> &Bayeux {
        &self.bayeux
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Returns the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }

    fn is_bayeux_path(&self, path: &str) -> bool {
        self.path
            .as_deref()
            .is_none_or(|prefix| is_under(path, prefix))
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BayeuxService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ReqBody: Body + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<BoxError>,
    ResBody: Body<Data = Bytes>,
{
    type Response = Response<BayeuxBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        if self.is_bayeux_path(request.uri().path()) {
            let bayeux = self.bayeux.clone();
            ResponseFuture::bayeux(transport::serve(bayeux, request))
        } else {
            ResponseFuture::inner(self.inner.call(request))
        }
    }
}

/// A service answering `404 Not Found` to everything: the inner service of a standalone
/// [`BayeuxService`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NotFound;

impl<B> Service<Request<B>> for NotFound {
    type Response = Response<Empty<Bytes>>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _request: Request<B>) -> Self::Future {
        let mut response = Response::new(Empty::new());
        *response.status_mut() = StatusCode::NOT_FOUND;
        ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_match_on_segment_boundaries() {
        assert!(is_under("/cometd", "/cometd"));
        assert!(is_under("/cometd/", "/cometd"));
        assert!(is_under("/cometd/connect", "/cometd"));
        assert!(!is_under("/cometdx", "/cometd"));
        assert!(!is_under("/", "/cometd"));
        assert!(!is_under("/other/cometd", "/cometd"));
    }

    #[test]
    fn mount_paths_are_normalised() {
        assert_eq!(normalise("/cometd/").as_deref(), Some("/cometd"));
        assert_eq!(normalise("cometd").as_deref(), Some("/cometd"));
        assert_eq!(normalise("/app/cometd").as_deref(), Some("/app/cometd"));
        assert_eq!(normalise("/"), None);
        assert_eq!(normalise(""), None);
    }
}
