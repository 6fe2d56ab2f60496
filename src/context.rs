//! The HTTP request behind the messages being processed, reachable from listeners, the
//! security policy and extensions through a tokio task-local.
//!
//! While a transport processes the messages of one HTTP request it scopes a [`RequestContext`]
//! around that work; [`current()`] returns it, and returns `None` outside (in a task spawned
//! with plain `tokio::spawn`, in the session sweeper, in server-side publishes made from
//! elsewhere). Use [`spawn`] to carry the context into a spawned task.
//!
//! ```
//! use tower_bayeux::context;
//!
//! # async fn listener() {
//! if let Some(ctx) = context::current() {
//!     let agent = ctx.headers().get(http::header::USER_AGENT);
//!     // An identity inserted by an outer auth layer:
//!     let user = ctx.extension::<String>();
//!     let _ = ctx.insert_response_header(
//!         http::HeaderName::from_static("x-served-by"),
//!         http::HeaderValue::from_static("tower-bayeux"),
//!     );
//! #   let _ = (agent, user);
//! }
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, Version};
use parking_lot::Mutex;

tokio::task_local! {
    /// `None` inside a scope entered without a context: code that is sometimes run for a
    /// request and sometimes not scopes itself the same way either way.
    static CURRENT: Option<RequestContext>;
}

/// The request that carried the messages being processed, plus the headers to add to its
/// response. Cheap to clone.
#[derive(Clone, Debug)]
pub struct RequestContext {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    parts: Parts,
    /// `None` when there is no HTTP response to edit (a websocket connection).
    response_headers: Option<Mutex<HeaderMap>>,
}

/// Returned when a response header is added but the transport has no HTTP response to carry
/// it (websocket messages travel on an upgraded connection).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "no HTTP response to edit: the message did not arrive in an HTTP request/response exchange"
)]
pub struct NoResponse;

impl RequestContext {
    /// A context for an HTTP exchange whose response can carry extra headers.
    pub fn new(parts: Parts) -> Self {
        Self {
            inner: Arc::new(Inner {
                parts,
                response_headers: Some(Mutex::new(HeaderMap::new())),
            }),
        }
    }

    /// A context for a request with no response to edit (such as a websocket upgrade request).
    pub fn without_response(parts: Parts) -> Self {
        Self {
            inner: Arc::new(Inner {
                parts,
                response_headers: None,
            }),
        }
    }

    /// The context of the request being processed by this task, if any.
    pub fn current() -> Option<Self> {
        CURRENT.try_with(Clone::clone).ok().flatten()
    }

    /// Runs `future` with this context as the current one.
    pub async fn scope<F: Future>(self, future: F) -> F::Output {
        CURRENT.scope(Some(self), future).await
    }

    /// Runs `future` with `context` as the current one, or with none.
    pub(crate) fn scope_optional<F: Future>(
        context: Option<Self>,
        future: F,
    ) -> impl Future<Output = F::Output> {
        CURRENT.scope(context, future)
    }

    /// The request method.
    pub fn method(&self) -> &Method {
        &self.inner.parts.method
    }

    /// The request URI, as the Bayeux service saw it.
    pub fn uri(&self) -> &Uri {
        &self.inner.parts.uri
    }

    /// The HTTP version.
    pub fn version(&self) -> Version {
        self.inner.parts.version
    }

    /// The request headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.inner.parts.headers
    }

    /// The request extensions, where outer middleware (an auth layer, `ConnectInfo`) put what
    /// it knows.
    pub fn extensions(&self) -> &http::Extensions {
        &self.inner.parts.extensions
    }

    /// One request extension by type.
    pub fn extension<T: Send + Sync + 'static>(&self) -> Option<&T> {
        self.inner.parts.extensions.get::<T>()
    }

    /// The request head (method, URI, version, headers, extensions).
    pub fn parts(&self) -> &Parts {
        &self.inner.parts
    }

    /// Whether an HTTP response will carry headers added with
    /// [`insert_response_header`](Self::insert_response_header).
    pub fn has_response(&self) -> bool {
        self.inner.response_headers.is_some()
    }

    /// Sets a header on the HTTP response, replacing any value this context set before.
    pub fn insert_response_header(
        &self,
        name: HeaderName,
        value: HeaderValue,
    ) -> Result<(), NoResponse> {
        let headers = self.inner.response_headers.as_ref().ok_or(NoResponse)?;
        headers.lock().insert(name, value);
        Ok(())
    }

    /// Adds a header to the HTTP response, keeping earlier values of the same name (use it for
    /// `Set-Cookie`).
    pub fn append_response_header(
        &self,
        name: HeaderName,
        value: HeaderValue,
    ) -> Result<(), NoResponse> {
        let headers = self.inner.response_headers.as_ref().ok_or(NoResponse)?;
        headers.lock().append(name, value);
        Ok(())
    }

    /// Takes the headers added so far (the transport merges them into the response).
    pub(crate) fn take_response_headers(&self) -> HeaderMap {
        self.inner
            .response_headers
            .as_ref()
            .map(|headers| std::mem::take(&mut *headers.lock()))
            .unwrap_or_default()
    }
}

/// The context of the request being processed by this task, if any.
pub fn current() -> Option<RequestContext> {
    RequestContext::current()
}

/// Spawns `future` on the tokio runtime with the current context (if any) in scope, so
/// listeners can hand work to a task without losing the request.
///
/// Headers added to the response after the response was sent are ignored.
pub fn spawn<F>(future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    match current() {
        Some(ctx) => tokio::spawn(CURRENT.scope(Some(ctx), future)),
        None => tokio::spawn(future),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> Parts {
        let (parts, ()) = http::Request::builder()
            .uri("/cometd")
            .header("x-test", "1")
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    #[tokio::test]
    async fn current_is_none_outside_a_scope() {
        assert!(current().is_none());
    }

    #[tokio::test]
    async fn scope_and_spawn_carry_the_context() {
        let ctx = RequestContext::new(parts());
        ctx.clone()
            .scope(async {
                assert_eq!(current().unwrap().headers()["x-test"], "1");
                let seen = spawn(async { current().map(|c| c.uri().clone()) })
                    .await
                    .unwrap();
                assert_eq!(seen.unwrap(), "/cometd");
                let plain = tokio::spawn(async { current().is_none() }).await.unwrap();
                assert!(plain, "a plain spawn does not see the task-local");
                current()
                    .unwrap()
                    .append_response_header(
                        HeaderName::from_static("x-a"),
                        HeaderValue::from_static("b"),
                    )
                    .unwrap();
            })
            .await;
        assert_eq!(ctx.take_response_headers()["x-a"], "b");
    }

    #[test]
    fn websocket_contexts_have_no_response() {
        let ctx = RequestContext::without_response(parts());
        assert!(!ctx.has_response());
        assert_eq!(
            ctx.insert_response_header(HeaderName::from_static("x"), HeaderValue::from_static("y")),
            Err(NoResponse)
        );
    }
}
