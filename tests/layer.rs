//! How `BayeuxLayer` and `BayeuxService` compose: pass-through of foreign requests, mount paths,
//! axum (`Router::layer`, `nest_service`), tower-http CORS, an outer auth layer whose identity
//! reaches the engine through the request context, body genericity and the trait bounds the
//! stacks need. Every service is driven in memory with `tower::ServiceExt::oneshot`, through
//! `common::call`.

mod common;

use std::convert::Infallible;
use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use axum::Router;
use axum::extract::OriginalUri;
use axum::middleware::{self, Next};
use axum::routing::{get, post};
use bytes::Bytes;
use common::{Reply, Session, call, full, handshake, handshake_body, handshake_request, post_json};
use http::{
    HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header,
};
use http_body::Body;
use http_body_util::{BodyExt, Empty, Full};
use serde_json::{Value, json};
use tower::{Layer, Service, ServiceBuilder};
use tower_bayeux::{
    Bayeux, BayeuxBody, BayeuxLayer, BayeuxService, ChannelName, Message, NotFound, SecurityPolicy,
    ServerEvent, ServerSession, context,
};
use tower_http::cors::CorsLayer;

// ---------------------------------------------------------------------------------------------
// Helpers (requests, replies and sessions come from `tests/common`)
// ---------------------------------------------------------------------------------------------

/// What an inner service saw of a request.
#[derive(Clone, Debug)]
struct Seen {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

/// An inner service that records every request and answers `418` with a header and a body.
#[derive(Clone, Default)]
struct Recorder {
    seen: Arc<parking_lot::Mutex<Vec<Seen>>>,
}

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().clone()
    }
}

impl<B> Service<Request<B>> for Recorder
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Debug,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let seen = self.seen.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let body = body.collect().await.unwrap().to_bytes();
            seen.lock().push(Seen {
                method: parts.method,
                uri: parts.uri,
                headers: parts.headers,
                body,
            });
            Ok(Response::builder()
                .status(StatusCode::IM_A_TEAPOT)
                .header("x-inner", "teapot")
                .header(header::SET_COOKIE, "inner=1")
                .body(Full::new(Bytes::from_static(b"inner body")))
                .unwrap())
        })
    }
}

/// Asserts `reply` is the [`Recorder`]'s response, untouched.
fn assert_inner_reply(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::IM_A_TEAPOT);
    assert_eq!(reply.header("x-inner"), Some("teapot"));
    assert_eq!(
        reply.headers.get_all(header::SET_COOKIE).iter().count(),
        1,
        "no Bayeux cookie on a foreign response"
    );
    assert_eq!(reply.header("set-cookie"), Some("inner=1"));
    assert_eq!(reply.text(), "inner body");
}

/// An engine with `/service/echo`, which sends the data back to the sender.
fn echo_engine() -> Bayeux {
    let bayeux = Bayeux::builder().build();
    bayeux
        .channel("/service/echo")
        .add_listener(|event| async move {
            let data = event.data().clone();
            event
                .session()
                .deliver("/service/echo", data)
                .await
                .unwrap();
            event.proceed()
        });
    bayeux
}

/// Sends `request` (a publish of `session`) through `service` and checks it succeeded, then
/// collects what the session was sent with a connect to `uri` that returns at once (messages
/// travel on connect replies). Returns the publish reply and those deliveries.
async fn then_poll<S, RB>(
    service: S,
    uri: &str,
    session: &Session,
    request: Request<Full<Bytes>>,
) -> (Reply, Vec<(String, Value)>)
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone,
    S::Error: Debug,
    RB: Body,
    RB::Error: Debug,
{
    let reply = call(service.clone(), request).await;
    assert_eq!(reply.last()["successful"], true, "{}", reply.text());
    assert_eq!(reply.deliveries(), [], "messages ride on connect replies");
    let connect = call(service, session.connect_request(uri)).await;
    assert_eq!(connect.last()["successful"], true, "{}", connect.text());
    (reply, connect.deliveries())
}

/// Publishes to `/service/echo` through `service` and checks the echo comes back.
async fn assert_echo<S, RB>(service: S, uri: &str, session: &Session)
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone,
    S::Error: Debug,
    RB: Body,
    RB::Error: Debug,
{
    let publish = session.publish_request(uri, "/service/echo", json!({"n": 1}));
    let (_, echoed) = then_poll(service, uri, session, publish).await;
    assert_eq!(echoed, [("/service/echo".to_owned(), json!({"n": 1}))]);
}

// ---------------------------------------------------------------------------------------------
// Paths and pass-through
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn requests_outside_the_path_reach_the_inner_service_untouched() {
    let inner = Recorder::default();
    let service = BayeuxLayer::new(Bayeux::default()).layer(inner.clone());
    let uris = [
        "/",
        "/other",
        "/cometdx",
        "/cometdx/handshake",
        "/app/cometd",
        "/com",
        "/other?channel=/cometd",
    ];
    for uri in uris {
        for method in [Method::GET, Method::POST, Method::OPTIONS] {
            let request = Request::builder()
                .method(method.clone())
                .uri(uri)
                .header("x-custom", "kept")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(handshake_body())))
                .unwrap();
            let reply = call(service.clone(), request).await;
            assert_inner_reply(&reply);
            let seen = inner
                .seen
                .lock()
                .pop()
                .expect("the inner service was called");
            assert_eq!(seen.method, method, "{uri}");
            assert_eq!(seen.uri, uri);
            assert_eq!(seen.headers["x-custom"], "kept");
            assert_eq!(seen.headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(seen.headers.len(), 2, "no header added: {:?}", seen.headers);
            assert_eq!(seen.body, handshake_body());
        }
    }
    assert!(inner.seen().is_empty());
}

#[tokio::test]
async fn the_path_and_every_path_below_it_are_intercepted() {
    let inner = Recorder::default();
    let bayeux = echo_engine();
    let service = BayeuxLayer::new(bayeux.clone()).layer(inner.clone());
    for uri in [
        "/cometd",
        "/cometd/",
        "/cometd/handshake",
        "/cometd/handshake?x=1",
    ] {
        handshake(service.clone(), uri).await;
    }
    let session = handshake(service.clone(), "/cometd/handshake").await;
    for uri in ["/cometd", "/cometd/", "/cometd/publish"] {
        assert_echo(service.clone(), uri, &session).await;
    }
    assert!(inner.seen().is_empty(), "{:?}", inner.seen());
    assert_eq!(bayeux.session_count(), 5);
}

#[tokio::test]
async fn a_layer_at_a_sub_path_leaves_the_default_path_to_the_inner_service() {
    let inner = Recorder::default();
    let bayeux = echo_engine();
    let service = BayeuxLayer::new(bayeux)
        .path("/app/cometd/")
        .layer(inner.clone());
    let session = handshake(service.clone(), "/app/cometd/handshake").await;
    assert_echo(service.clone(), "/app/cometd", &session).await;
    assert!(inner.seen().is_empty());

    for uri in ["/cometd", "/cometd/handshake", "/app", "/app/cometdx"] {
        assert_inner_reply(&call(service.clone(), handshake_request(uri)).await);
        assert_eq!(inner.seen.lock().pop().unwrap().uri, uri);
    }
}

#[tokio::test]
async fn a_standalone_service_takes_every_path_unless_given_one() {
    let bayeux = echo_engine();
    let everything = BayeuxService::new(bayeux.clone());
    for uri in ["/", "/handshake", "/cometd/handshake", "/any/where/at/all"] {
        handshake(everything.clone(), uri).await;
    }

    let scoped = BayeuxService::new(bayeux).path("/cometd");
    let session = handshake(scoped.clone(), "/cometd/handshake").await;
    assert_echo(scoped.clone(), "/cometd", &session).await;
    for uri in ["/", "/handshake", "/cometdx", "/other/cometd"] {
        let reply = call(scoped.clone(), handshake_request(uri)).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND, "{uri}");
        assert!(reply.body.is_empty());
        assert!(reply.headers.get(header::SET_COOKIE).is_none());
    }
}

#[tokio::test]
async fn non_post_requests_at_the_path_get_405_or_204() {
    let bayeux = Bayeux::default();
    let layered = BayeuxLayer::new(bayeux.clone()).layer(Recorder::default());
    let routed = Router::new()
        .route("/", get(|| async { "home" }))
        .layer(BayeuxLayer::new(bayeux.clone()));
    let empty = |method: Method, uri: &str| {
        Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::<Bytes>::default())
            .unwrap()
    };
    for uri in ["/cometd", "/cometd/handshake"] {
        for method in [Method::GET, Method::PUT, Method::DELETE] {
            for reply in [
                call(layered.clone(), empty(method.clone(), uri)).await,
                call(routed.clone(), empty(method.clone(), uri)).await,
            ] {
                assert_eq!(
                    reply.status,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {uri}"
                );
                let allow = reply.header("allow").expect("an Allow header");
                assert!(allow.contains("POST"), "{allow}");
            }
        }
        // Without a CORS layer, OPTIONS is answered by the engine itself.
        for reply in [
            call(layered.clone(), empty(Method::OPTIONS, uri)).await,
            call(routed.clone(), empty(Method::OPTIONS, uri)).await,
        ] {
            assert_eq!(reply.status, StatusCode::NO_CONTENT);
            assert!(reply.header("allow").unwrap().contains("POST"));
            assert!(reply.body.is_empty());
        }
    }
    assert_eq!(bayeux.session_count(), 0);
}

// ---------------------------------------------------------------------------------------------
// axum
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn router_layer_serves_the_routes_the_fallback_and_bayeux() {
    let bayeux = echo_engine();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .route("/api/echo", post(|body: String| async move { body }))
        .fallback(|| async { (StatusCode::NOT_FOUND, "fallback") })
        .layer(BayeuxLayer::new(bayeux.clone()));

    let home = call(
        app.clone(),
        Request::get("/").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!((home.status, home.text()), (StatusCode::OK, "home"));
    let echoed = call(app.clone(), full(post_json("/api/echo"), "ping")).await;
    assert_eq!((echoed.status, echoed.text()), (StatusCode::OK, "ping"));
    for uri in ["/nowhere", "/cometdx"] {
        let reply = call(
            app.clone(),
            Request::get(uri).body(Full::default()).unwrap(),
        )
        .await;
        assert_eq!(
            (reply.status, reply.text()),
            (StatusCode::NOT_FOUND, "fallback")
        );
    }

    let session = handshake(app.clone(), "/cometd/handshake").await;
    assert_echo(app.clone(), "/cometd/", &session).await;
    assert!(bayeux.session(&session.client_id).is_some());
}

#[tokio::test]
async fn one_engine_serves_every_route_the_layer_wraps() {
    // axum applies the layer once per route and to the fallback: requests to Bayeux paths go
    // through different `BayeuxService`s, which must all share the engine.
    let handlers = Arc::new(AtomicUsize::new(0));
    let count = |handlers: &Arc<AtomicUsize>| {
        let handlers = handlers.clone();
        post(move || async move {
            handlers.fetch_add(1, Ordering::SeqCst);
            "route handler"
        })
    };
    let bayeux = echo_engine();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .route("/cometd/handshake", count(&handlers))
        .route("/cometd", count(&handlers))
        .layer(BayeuxLayer::new(bayeux.clone()));

    // The handshake goes through the `/cometd/handshake` route...
    let session = handshake(app.clone(), "/cometd/handshake").await;
    // ...the connect through the fallback...
    let connect = call(app.clone(), session.connect_request("/cometd/connect")).await;
    let reply = connect.last();
    assert_eq!(reply["channel"], "/meta/connect");
    assert_eq!(reply["successful"], true, "{reply}");
    // ...and a publish through the `/cometd` route.
    assert_echo(app.clone(), "/cometd", &session).await;

    assert_eq!(handlers.load(Ordering::SeqCst), 0, "Bayeux answers first");
    assert_eq!(bayeux.session_count(), 1);
    assert!(bayeux.session(&session.client_id).is_some());
}

/// An engine whose `/service/uri` answers with the URI the Bayeux service saw and the
/// original one axum recorded.
fn uri_engine() -> Bayeux {
    let bayeux = Bayeux::default();
    bayeux
        .channel("/service/uri")
        .add_listener(|event| async move {
            let ctx = context::current().expect("inside a request");
            let original = ctx.extension::<OriginalUri>().map(|uri| uri.0.to_string());
            let data = json!({"uri": ctx.uri().to_string(), "original": original});
            event.session().deliver("/service/uri", data).await.unwrap();
            event.proceed()
        });
    bayeux
}

#[tokio::test]
async fn nest_service_strips_the_prefix() {
    let bayeux = uri_engine();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .nest_service("/cometd", BayeuxService::new(bayeux.clone()));

    let session = handshake(app.clone(), "/cometd/handshake").await;
    handshake(app.clone(), "/cometd").await;
    let publish = session.publish_request("/cometd/", "/service/uri", json!({}));
    let (_, answer) = then_poll(app.clone(), "/cometd/connect", &session, publish).await;
    assert_eq!(
        answer,
        [(
            "/service/uri".to_owned(),
            json!({"uri": "/", "original": "/cometd/"})
        )]
    );

    let home = call(
        app.clone(),
        Request::get("/").body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(home.text(), "home");
    let outside = call(app.clone(), handshake_request("/cometdx")).await;
    assert_eq!(outside.status, StatusCode::NOT_FOUND);
    assert_eq!(bayeux.session_count(), 2);
}

#[tokio::test]
async fn nest_service_works_below_a_sub_path_and_in_a_nested_router() {
    let bayeux = uri_engine();
    let deep = Router::new().nest_service("/app/cometd", BayeuxService::new(bayeux.clone()));
    let nested = Router::new().nest(
        "/app",
        Router::new().nest_service("/cometd", BayeuxService::new(bayeux.clone())),
    );
    for app in [deep, nested] {
        let session = handshake(app.clone(), "/app/cometd/handshake").await;
        let uri = "/app/cometd/service";
        let publish = session.publish_request(uri, "/service/uri", json!({}));
        let (_, answer) = then_poll(app.clone(), uri, &session, publish).await;
        assert_eq!(
            answer,
            [(
                "/service/uri".to_owned(),
                json!({"uri": "/service", "original": uri})
            )]
        );
        let reply = call(app.clone(), handshake_request("/cometd/handshake")).await;
        assert_eq!(reply.status, StatusCode::NOT_FOUND);
    }
    assert_eq!(bayeux.session_count(), 2);
}

// ---------------------------------------------------------------------------------------------
// CORS
// ---------------------------------------------------------------------------------------------

const ORIGIN: &str = "http://front.example";

fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(HeaderValue::from_static(ORIGIN))
        .allow_methods([Method::POST])
        .allow_headers([header::CONTENT_TYPE])
        .allow_credentials(true)
}

/// Checks preflights and simple requests through `service`, which has CORS outside Bayeux.
async fn assert_cors<S, RB>(service: S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone,
    S::Error: Debug,
    RB: Body,
    RB::Error: Debug,
{
    let preflight = Request::builder()
        .method(Method::OPTIONS)
        .uri("/cometd/handshake")
        .header(header::ORIGIN, ORIGIN)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "content-type")
        .body(Full::default())
        .unwrap();
    let reply = call(service.clone(), preflight).await;
    assert!(reply.status.is_success(), "{:?}", reply.status);
    assert_eq!(reply.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
    assert!(
        reply
            .header("access-control-allow-methods")
            .unwrap()
            .contains("POST")
    );
    assert!(
        reply
            .header("access-control-allow-headers")
            .unwrap()
            .contains("content-type")
    );
    assert!(
        reply.header("allow").is_none(),
        "answered by CORS, not by Bayeux"
    );

    let request = full(
        post_json("/cometd/handshake").header(header::ORIGIN, ORIGIN),
        handshake_body(),
    );
    let reply = call(service, request).await;
    Session::from_handshake(&reply);
    assert_eq!(reply.header("access-control-allow-origin"), Some(ORIGIN));
    assert_eq!(
        reply.header("access-control-allow-credentials"),
        Some("true")
    );
}

#[tokio::test]
async fn cors_outside_answers_preflights_and_decorates_bayeux_replies() {
    let bayeux = Bayeux::default();
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .layer(BayeuxLayer::new(bayeux.clone()))
        .layer(cors());
    assert_cors(app).await;

    let tower_stack = ServiceBuilder::new()
        .layer(cors())
        .layer(BayeuxLayer::new(bayeux.clone()))
        .service(Recorder::default());
    assert_cors(tower_stack).await;

    let nested = Router::new().nest_service(
        "/cometd",
        ServiceBuilder::new()
            .layer(cors())
            .service(BayeuxService::new(bayeux.clone())),
    );
    assert_cors(nested).await;
    assert_eq!(bayeux.session_count(), 3);
}

// ---------------------------------------------------------------------------------------------
// An outer auth layer, read through the request context
// ---------------------------------------------------------------------------------------------

/// The identity an auth layer found.
#[derive(Clone, Debug)]
struct User(String);

fn user_of(headers: &HeaderMap) -> Option<User> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value
        .strip_prefix("Bearer ")
        .map(|name| User(name.to_owned()))
}

async fn axum_auth(mut request: axum::extract::Request, next: Next) -> axum::response::Response {
    if let Some(user) = user_of(request.headers()) {
        request.extensions_mut().insert(user);
    }
    next.run(request).await
}

fn current_user() -> Option<String> {
    context::current()?.extension::<User>().map(|u| u.0.clone())
}

/// Identified users only may publish under `/chat`; `mallory` may not even handshake.
struct AuthPolicy;

impl SecurityPolicy for AuthPolicy {
    async fn can_handshake(&self, _: &ServerSession, _: &Message) -> bool {
        current_user().as_deref() != Some("mallory")
    }

    async fn can_publish(&self, _: &ServerSession, _: &Message, channel: &ChannelName) -> bool {
        !channel.as_str().starts_with("/chat/") || current_user().is_some()
    }
}

/// `/service/whoami` answers with the user and names it in an `x-user` response header.
fn auth_engine() -> Bayeux {
    let bayeux = Bayeux::builder().security_policy(AuthPolicy).build();
    bayeux
        .channel("/service/whoami")
        .add_listener(|event| async move {
            let user = current_user();
            if let Some(user) = &user {
                let ctx = context::current().unwrap();
                ctx.insert_response_header(
                    HeaderName::from_static("x-user"),
                    HeaderValue::from_str(user).unwrap(),
                )
                .unwrap();
            }
            let answer = json!({ "user": user });
            event
                .session()
                .deliver("/service/whoami", answer)
                .await
                .unwrap();
            event.proceed()
        });
    bayeux
}

fn as_user(mut request: Request<Full<Bytes>>, user: &str) -> Request<Full<Bytes>> {
    let value = HeaderValue::from_str(&format!("Bearer {user}")).unwrap();
    request.headers_mut().insert(header::AUTHORIZATION, value);
    request
}

async fn assert_identity_reaches_the_engine<S, RB>(service: S)
where
    S: Service<Request<Full<Bytes>>, Response = Response<RB>> + Clone,
    S::Error: Debug,
    RB: Body,
    RB::Error: Debug,
{
    let denied = call(
        service.clone(),
        as_user(handshake_request("/cometd/handshake"), "mallory"),
    )
    .await
    .last();
    assert_eq!(denied["successful"], false);
    assert_eq!(denied["error"], "403::handshake_denied");

    let session = handshake(service.clone(), "/cometd/handshake").await;
    let whoami = |user: Option<&str>| {
        let request = session.publish_request("/cometd", "/service/whoami", json!({}));
        match user {
            Some(user) => as_user(request, user),
            None => request,
        }
    };

    let (reply, answer) =
        then_poll(service.clone(), "/cometd", &session, whoami(Some("ada"))).await;
    assert_eq!(
        answer,
        [("/service/whoami".to_owned(), json!({"user": "ada"}))]
    );
    assert_eq!(reply.header("x-user"), Some("ada"), "set by the listener");

    let (reply, answer) = then_poll(service.clone(), "/cometd", &session, whoami(None)).await;
    assert_eq!(
        answer,
        [("/service/whoami".to_owned(), json!({"user": null}))]
    );
    assert_eq!(reply.header("x-user"), None);

    let chat = || session.publish_request("/cometd", "/chat/room", json!({"text": "hi"}));
    let anonymous = call(service.clone(), chat()).await.last();
    assert_eq!(anonymous["successful"], false);
    assert_eq!(anonymous["error"], "403::publish_denied");
    let identified = call(service, as_user(chat(), "ada")).await.last();
    assert_eq!(identified["successful"], true, "{identified}");
}

#[tokio::test]
async fn an_outer_auth_layer_reaches_the_policy_and_listeners_through_the_context() {
    // axum middleware around a router.
    let app = Router::new()
        .route("/", get(|| async { "home" }))
        .layer(BayeuxLayer::new(auth_engine()))
        .layer(middleware::from_fn(axum_auth));
    assert_identity_reaches_the_engine(app).await;

    // A plain tower layer around the service.
    let stack = ServiceBuilder::new()
        .map_request(|mut request: Request<Full<Bytes>>| {
            if let Some(user) = user_of(request.headers()) {
                request.extensions_mut().insert(user);
            }
            request
        })
        .layer(BayeuxLayer::new(auth_engine()))
        .service(Recorder::default());
    assert_identity_reaches_the_engine(stack).await;
}

#[tokio::test]
async fn headers_added_by_listeners_appear_on_the_http_response() {
    let bayeux = Bayeux::default();
    let name = HeaderName::from_static("x-from-listener");
    bayeux.channel("/meta/handshake").add_listener({
        let name = name.clone();
        move |event| {
            let name = name.clone();
            async move {
                let ctx = context::current().unwrap();
                ctx.insert_response_header(name, HeaderValue::from_static("handshake"))
                    .unwrap();
                event.proceed()
            }
        }
    });
    bayeux
        .channel("/service/header")
        .add_listener(move |event| {
            let name = name.clone();
            async move {
                // The context is also on the event, for code that does not run in the task.
                let ctx = event.context().unwrap().clone();
                ctx.insert_response_header(name, HeaderValue::from_static("publish"))
                    .unwrap();
                event.proceed()
            }
        });
    let app = Router::new().layer(BayeuxLayer::new(bayeux));

    let reply = call(app.clone(), handshake_request("/cometd/handshake")).await;
    let session = Session::from_handshake(&reply);
    assert_eq!(reply.header("x-from-listener"), Some("handshake"));
    assert_eq!(
        reply.header("content-type"),
        Some("application/json;charset=UTF-8")
    );

    let reply = call(
        app,
        session.publish_request("/cometd", "/service/header", json!(1)),
    )
    .await;
    assert_eq!(reply.last()["successful"], true);
    assert_eq!(reply.header("x-from-listener"), Some("publish"));
}

/// Every value of a header a listener appends more than once (two `Set-Cookie`s) reaches the
/// response.
#[tokio::test]
async fn appended_response_headers_keep_every_value() {
    let bayeux = Bayeux::default();
    bayeux
        .channel("/service/cookies")
        .add_listener(|event| async move {
            let ctx = context::current().unwrap();
            for cookie in ["a=1", "b=2"] {
                ctx.append_response_header(header::SET_COOKIE, HeaderValue::from_static(cookie))
                    .unwrap();
            }
            event.proceed()
        });
    let service = BayeuxService::new(bayeux);
    let session = handshake(service.clone(), "/handshake").await;
    let reply = call(
        service,
        session.publish_request("/", "/service/cookies", json!(1)),
    )
    .await;
    let cookies: Vec<_> = reply.headers.get_all(header::SET_COOKIE).iter().collect();
    assert_eq!(cookies, ["a=1", "b=2"]);
}

// ---------------------------------------------------------------------------------------------
// The context inside and outside requests
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn the_context_is_there_in_listeners_and_spawned_tasks_and_absent_elsewhere() {
    let bayeux = Bayeux::default();
    let probe = |ctx: Option<context::RequestContext>| {
        ctx.map(|ctx| ctx.headers()["x-probe"].to_str().unwrap().to_owned())
    };

    // Engine events are told whether they happened inside a request.
    let events = Arc::new(parking_lot::Mutex::new(Vec::new()));
    bayeux.on_event({
        let events = events.clone();
        move |event| {
            let kind = match event {
                ServerEvent::SessionAdded { .. } => "added",
                ServerEvent::SessionRemoved { .. } => "removed",
                _ => return,
            };
            events.lock().push((kind, probe(context::current())));
        }
    });

    let (detached_tx, mut detached_rx) = tokio::sync::mpsc::unbounded_channel();
    bayeux.channel("/service/probe").add_listener(move |event| {
        let detached_tx = detached_tx.clone();
        async move {
            let here = probe(context::current());
            let on_event = probe(event.context().cloned());
            let carried = context::spawn(async move { probe(context::current()) })
                .await
                .unwrap();
            let plain = tokio::spawn(async move { probe(context::current()) })
                .await
                .unwrap();
            // A task that outlives the listener keeps the context too.
            context::spawn(async move {
                tokio::task::yield_now().await;
                detached_tx.send(probe(context::current())).unwrap();
            });
            let data = json!({
                "here": here, "event": on_event, "spawned": carried, "plain": plain
            });
            event
                .session()
                .deliver("/service/probe", data)
                .await
                .unwrap();
            event.proceed()
        }
    });

    let service = BayeuxService::new(bayeux.clone()).path("/cometd");
    let mut request = handshake_request("/cometd/handshake");
    request
        .headers_mut()
        .insert("x-probe", HeaderValue::from_static("handshake"));
    let session = Session::from_handshake(&call(service.clone(), request).await);
    let subscribed = call(
        service.clone(),
        session.subscribe_request("/cometd", "/news"),
    )
    .await;
    assert_eq!(subscribed.last()["successful"], true);

    let mut request = session.publish_request("/cometd", "/service/probe", json!({}));
    request
        .headers_mut()
        .insert("x-probe", HeaderValue::from_static("publish"));
    let (_, answer) = then_poll(service.clone(), "/cometd", &session, request).await;
    assert_eq!(
        answer,
        [(
            "/service/probe".to_owned(),
            json!({"here": "publish", "event": "publish", "spawned": "publish", "plain": null})
        )]
    );
    assert_eq!(
        detached_rx.recv().await.unwrap().as_deref(),
        Some("publish")
    );

    // Outside any request: the test itself, and a server-side publisher task.
    assert!(context::current().is_none());
    let publisher = bayeux.clone();
    let outside = tokio::spawn(async move {
        let seen = probe(context::current());
        publisher.publish("/news", json!("extra")).await.unwrap();
        seen
    });
    assert_eq!(outside.await.unwrap(), None);
    let connect = call(service.clone(), session.connect_request("/cometd/connect")).await;
    assert_eq!(connect.deliveries(), [("/news".to_owned(), json!("extra"))]);

    // A server-side disconnect happens outside any request too.
    assert!(
        bayeux
            .session(&session.client_id)
            .unwrap()
            .disconnect()
            .await
    );
    assert_eq!(
        *events.lock(),
        [("added", Some("handshake".to_owned())), ("removed", None)]
    );
}

// ---------------------------------------------------------------------------------------------
// Bodies and bounds
// ---------------------------------------------------------------------------------------------

/// An inner service answering `200` with the body type `B` made by `make`.
fn inner_with<B: Send + 'static>(
    make: fn() -> B,
) -> impl Service<Request<axum::body::Body>, Response = Response<B>, Error = Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    tower::service_fn(move |_request: Request<axum::body::Body>| async move {
        Ok::<_, Infallible>(Response::new(make()))
    })
}

fn axum_post(uri: &str, body: &str) -> Request<axum::body::Body> {
    Request::post(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn request_and_response_bodies_are_generic() {
    let bayeux = echo_engine();

    // Request bodies: `Full<Bytes>` and `axum::body::Body`, standalone.
    let standalone = BayeuxService::new(bayeux.clone());
    let session = handshake(standalone.clone(), "/handshake").await;
    let reply = call(
        standalone.clone(),
        axum_post("/handshake", &handshake_body()),
    )
    .await;
    Session::from_handshake(&reply);
    let body = session.body(vec![json!({"channel": "/service/echo", "data": "axum"})]);
    let request = Request::post("/")
        .header(header::COOKIE, &session.cookie)
        .body(axum::body::Body::from(body))
        .unwrap();
    let reply = call(standalone.clone(), request).await;
    assert_eq!(reply.last()["successful"], true);
    let connect = call(standalone.clone(), session.connect_request("/")).await;
    assert_eq!(
        connect.deliveries(),
        [("/service/echo".to_owned(), json!("axum"))]
    );

    // Inner response bodies: `Empty<Bytes>` and `axum::body::Body`.
    let empty = BayeuxLayer::new(bayeux.clone()).layer(inner_with(Empty::<Bytes>::new));
    let boxed =
        BayeuxLayer::new(bayeux.clone()).layer(inner_with(|| axum::body::Body::from("inner")));
    let reply = call(empty.clone(), axum_post("/other", "")).await;
    assert_eq!((reply.status, reply.body.len()), (StatusCode::OK, 0));
    let reply = call(boxed.clone(), axum_post("/other", "")).await;
    assert_eq!((reply.status, reply.text()), (StatusCode::OK, "inner"));
    Session::from_handshake(&call(empty, axum_post("/cometd/handshake", &handshake_body())).await);
    Session::from_handshake(&call(boxed, axum_post("/cometd/handshake", &handshake_body())).await);

    // `BayeuxBody::default()` is empty, for middleware that answers on its own.
    let default = BayeuxBody::<axum::body::Body>::default();
    assert!(default.is_end_stream());
    assert!(default.collect().await.unwrap().to_bytes().is_empty());
}

fn shareable<T: Clone + Send + Sync + 'static>() {}

fn future_is_send<S, B>()
where
    S: Service<Request<B>>,
    S::Future: Send + 'static,
{
}

fn body_fits_axum<B>()
where
    B: Body<Data = Bytes> + Default + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
}

/// Every stack the docs recommend, with the URI of its handshake: if this compiles, the bounds
/// hold.
fn stacks(bayeux: &Bayeux) -> Vec<(Router, &'static str)> {
    let layer = || BayeuxLayer::new(bayeux.clone());
    let service = || BayeuxService::new(bayeux.clone());
    let home = || Router::new().route("/", get(|| async { "home" }));
    vec![
        (home().layer(layer()), "/cometd/handshake"),
        (
            home().nest_service("/cometd", service()),
            "/cometd/handshake",
        ),
        (
            home().nest_service("/cometd", service().path("/sub")),
            "/cometd/sub/handshake",
        ),
        (
            home()
                .layer(layer().path("/app/cometd"))
                .layer(middleware::from_fn(axum_auth))
                .layer(CorsLayer::permissive()),
            "/app/cometd/handshake",
        ),
        (
            home().layer(
                ServiceBuilder::new()
                    .layer(CorsLayer::very_permissive())
                    .layer(layer()),
            ),
            "/cometd/handshake",
        ),
        (
            home().nest_service(
                "/cometd",
                ServiceBuilder::new().layer(cors()).service(service()),
            ),
            "/cometd/handshake",
        ),
        (
            home().route_service("/cometd/{*rest}", layer().layer(Recorder::default())),
            "/cometd/handshake",
        ),
        (
            home().fallback_service(layer().layer(Recorder::default())),
            "/cometd/handshake",
        ),
    ]
}

/// Wrapping a whole router (the layer runs before routing) and serving it with `axum::serve`,
/// which wants `axum::body::Body` responses: the Bayeux body is boxed into one.
fn serve_whole_app(
    listener: tokio::net::TcpListener,
    bayeux: &Bayeux,
) -> impl std::future::IntoFuture<Output = std::io::Result<()>> {
    let app = Router::new().route("/", get(|| async { "home" }));
    let service = ServiceBuilder::new()
        .map_response(|response: Response<BayeuxBody<axum::body::Body>>| {
            response.map(axum::body::Body::new)
        })
        .layer(BayeuxLayer::new(bayeux.clone()))
        .service(app);
    axum::serve(
        listener,
        axum::ServiceExt::<axum::extract::Request>::into_make_service(service),
    )
}

#[tokio::test]
async fn the_layer_and_service_meet_the_bounds_of_axum_hyper_and_tower_http() {
    shareable::<Bayeux>();
    shareable::<BayeuxLayer>();
    shareable::<BayeuxService>();
    shareable::<BayeuxService<Router>>();
    shareable::<BayeuxService<Recorder>>();

    future_is_send::<BayeuxService, Full<Bytes>>();
    future_is_send::<BayeuxService, axum::body::Body>();
    future_is_send::<BayeuxService, hyper::body::Incoming>();
    future_is_send::<BayeuxService<Router>, axum::body::Body>();
    future_is_send::<BayeuxService<Recorder>, Full<Bytes>>();
    future_is_send::<BayeuxService<NotFound>, Empty<Bytes>>();

    body_fits_axum::<BayeuxBody<axum::body::Body>>();
    body_fits_axum::<BayeuxBody<Empty<Bytes>>>();
    body_fits_axum::<BayeuxBody<Full<Bytes>>>();

    let bayeux = Bayeux::default();
    let apps = stacks(&bayeux);
    let count = apps.len();
    for (app, uri) in apps {
        handshake(app.clone(), uri).await;
        let home = call(app, Request::get("/").body(Full::default()).unwrap()).await;
        assert_eq!(home.text(), "home");
    }
    // Around the whole router, before routing.
    let whole = BayeuxLayer::new(bayeux.clone()).layer(Router::new());
    handshake(whole, "/cometd/handshake").await;
    assert_eq!(
        bayeux.session_count(),
        count + 1,
        "one engine behind every stack"
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    drop(serve_whole_app(listener, &bayeux));
}
