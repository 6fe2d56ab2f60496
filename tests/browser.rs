//! Browser test: the chat example (`examples/chat`) in Debian's headless Chromium, driven by
//! Playwright (npm `playwright-core`), with the page's official CometD client forced onto each
//! transport in turn: `websocket`, `long-polling` and `callback-polling` (JSONP).
//!
//! The scenarios live in `tests/browser/chat.test.mjs` (Node's built-in test runner): per
//! transport, the chat itself, and the room's history (the page's history extension from
//! `clients/js/`: a member joining sees the recent messages; a tab offline for longer than
//! `MAX_INTERVAL_MS` shows every message it missed once back, once each, in order). This test
//! installs the npm packages of `tests/browser` and `examples/chat` when needed, builds and
//! starts the chat server with a short `--max-interval-ms`, runs the Node file against it, and
//! fails if any scenario fails. Screenshots of the final state go to
//! `<target>/browser-artifacts/chat-<transport>.png`.
//!
//! Requirements, without which this test FAILS (it does not skip): `node` (>= 20.11) and `npm`
//! on `PATH`, and Chromium at `/usr/bin/chromium` (`apt-get install -y chromium`; Playwright's
//! own browser downloads are not used).
//!
//! Environment:
//! - `BROWSER_TRANSPORTS`: transports to run, comma separated (default: all three);
//! - `CHROMIUM`: another Chromium binary.
//!
//! Run alone with `cargo test --test browser -- --nocapture`.

mod node;

use std::env;
use std::path::Path;
use std::time::{Duration, Instant};

use node::{
    Server, check_chromium, check_node, check_npm, example_binary, install_node_modules, node_test,
    run_node_test, target_dir,
};

/// Upper bound for the Node run (each Node test also has its own time limit).
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time limit of one Node test (one transport).
const NODE_TEST_TIMEOUT_MS: u32 = 90_000;
/// The server's session expiry: how long a closed browser's member lives on.
const MAX_INTERVAL_MS: u32 = 2000;

#[test]
fn chat_in_headless_chromium() {
    let started = Instant::now();
    let chromium = check_chromium();
    check_node("--test-timeout");
    let npm = check_npm();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests_dir = root.join("tests").join("browser");
    install_node_modules(&npm, &tests_dir);
    install_node_modules(&npm, &root.join("examples").join("chat"));
    let server_bin = example_binary("chat");
    let artifacts = target_dir().join("browser-artifacts");

    let max_interval_ms = MAX_INTERVAL_MS.to_string();
    let server = Server::start(&server_bin, &["--max-interval-ms", &max_interval_ms]);
    let outcome = run_node(&tests_dir, &server.origin, &chromium, &artifacts);
    drop(server);
    eprintln!(
        "browser test finished in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
    if let Err(failure) = outcome {
        panic!("browser test failed (see the Node test output above): {failure}");
    }
}

fn run_node(dir: &Path, origin: &str, chromium: &Path, artifacts: &Path) -> Result<(), String> {
    let mut command = node_test(dir, NODE_TEST_TIMEOUT_MS);
    command
        .arg("chat.test.mjs")
        .env("CHAT_URL", origin)
        .env("MAX_INTERVAL_MS", MAX_INTERVAL_MS.to_string())
        .env("CHROMIUM", chromium)
        .env("ARTIFACT_DIR", artifacts);
    if let Some(transports) = env::var_os("BROWSER_TRANSPORTS") {
        command.env("CHAT_TRANSPORTS", transports);
    }
    run_node_test(&mut command, SUITE_TIMEOUT)
}
