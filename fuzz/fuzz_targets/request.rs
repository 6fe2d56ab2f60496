//! The long-polling request pipeline on arbitrary bodies, from a live session: `$ID` in the
//! input stands for that session's clientId, so batches reach subscribe, publish, connect and
//! disconnect, not only the unknown-session path. Every answer is a 4xx, or a 200 carrying a
//! non-empty JSON array with one reply per request message, each echoing its `id`.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tower::ServiceExt;
use tower_bayeux::{Bayeux, BayeuxService};

#[path = "../../tests/common/answer.rs"]
mod answer;

/// Paused time: a connect the engine holds is answered at its timeout without waiting for it.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .expect("a runtime")
    })
}

async fn post(
    bayeux: &Bayeux,
    cookie: Option<&str>,
    body: Vec<u8>,
) -> (StatusCode, Option<String>, Bytes) {
    let mut request = Request::post("/cometd/").header(header::CONTENT_TYPE, "application/json");
    if let Some(cookie) = cookie {
        request = request.header(header::COOKIE, cookie);
    }
    let response = BayeuxService::new(bayeux.clone())
        .oneshot(
            request
                .body(Full::new(Bytes::from(body)))
                .expect("a request"),
        )
        .await
        .expect("infallible");
    let status = response.status();
    let cookie = response
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned);
    let body = response
        .into_body()
        .collect()
        .await
        .expect("a body")
        .to_bytes();
    (status, cookie, body)
}

/// A fresh engine with one handshaken, connected session: its cookie and clientId.
async fn session() -> (Bayeux, String, String) {
    let bayeux = Bayeux::builder().build();
    let handshake = br#"[{"id":"h","channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]"#;
    let (status, cookie, body) = post(&bayeux, None, handshake.to_vec()).await;
    assert_eq!(status, StatusCode::OK);
    let reply: Value = serde_json::from_slice(&body).expect("JSON");
    let id = reply[0]["clientId"]
        .as_str()
        .expect("a clientId")
        .to_owned();
    let cookie = cookie.expect("a browser cookie");
    let connect = format!(
        r#"[{{"id":"c","channel":"/meta/connect","connectionType":"long-polling","clientId":"{id}","advice":{{"timeout":0}}}}]"#
    );
    post(&bayeux, Some(&cookie), connect.into_bytes()).await;
    (bayeux, cookie, id)
}

fn replace(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut rest = data;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}

fuzz_target!(|data: &[u8]| {
    runtime().block_on(async {
        let (bayeux, cookie, id) = session().await;
        let body = replace(data, b"$ID", id.as_bytes());
        let (status, _, answer) = post(&bayeux, Some(&cookie), body.clone()).await;
        answer::check_answer(status, &answer, &body);
        // Let the dropped engine's sweeper task see it gone and end (time is paused, so this
        // costs nothing); otherwise every run would leave one behind in the runtime.
        drop(bayeux);
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    });
});
