//! Browser test of the standalone server's demo page (`server/demo`): the page, its official
//! CometD client (npm `cometd`, served from `server/demo/node_modules`) and the history extension
//! of `clients/js/`, in Debian's headless Chromium driven by Playwright (npm `playwright-core`,
//! the library's `tests/browser` packages), against the real `tower-bayeux` binary; the page is
//! forced onto each transport in turn: `websocket`, `long-polling` and `callback-polling` (JSONP).
//!
//! The scenarios live in `server/tests/browser/demo.test.mjs` (Node's built-in test runner); per
//! transport: a message typed in one page appears once in two; messages published with
//! `POST /api/publish` appear in both; a page opened later shows the channel's history (the
//! page's remote call on `/service/history`) then live messages; a page offline for longer than
//! its session lives shows every message it missed once back (the history extension's replay,
//! in a new session), once each, in order, and the extension dropped no duplicate. Every page is
//! checked against the whole channel: texts and offsets, in order.
//!
//! This test installs the npm packages of `tests/browser` and `server/demo` when needed, starts
//! the binary once (`--listen 127.0.0.1:0 --static server/demo --history /demo/**=50
//! --publish-secret <random> --max-interval 2s --timeout 5s`, no `TOWER_BAYEUX_*` variable
//! inherited), runs the Node file against it, and fails if any scenario fails. Screenshots of
//! the page back from the network's loss go to `<target>/browser-artifacts/demo-<transport>.png`.
//!
//! Requirements, without which this test FAILS (it does not skip): `node` (>= 20.11) and `npm`
//! on `PATH`, and Chromium at `/usr/bin/chromium` (`apt-get install -y chromium`; Playwright's
//! own browser downloads are not used).
//!
//! Environment:
//! - `BROWSER_TRANSPORTS`: transports to run, comma separated (default: all three);
//! - `CHROMIUM`: another Chromium binary.
//!
//! Run alone with `cargo test -p tower-bayeux-server --test browser -- --nocapture`.

#[path = "../../tests/node/mod.rs"]
mod node;

use std::env;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use node::{
    Server, check_chromium, check_node, check_npm, install_node_modules, node_test, random_secret,
    run_node_test, target_dir,
};

/// Upper bound for the Node run.
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
/// `node --test-timeout`: with one file, the limit of the whole file (each Node test has a
/// shorter limit of its own).
const NODE_TEST_TIMEOUT_MS: u32 = 240_000;
/// The server's `--max-interval`: how long a session without a `/meta/connect` lives.
const MAX_INTERVAL: &str = "2s";
const MAX_INTERVAL_MS: u32 = 2000;
/// The server's `--timeout`: how long it holds a `/meta/connect`.
const CONNECT_TIMEOUT: &str = "5s";
/// How many messages the history keeps on the demo's channel.
const HISTORY_SIZE: u32 = 50;

#[test]
fn demo_page_in_headless_chromium() {
    let started = Instant::now();
    let chromium = check_chromium();
    check_node("--test-timeout");
    let npm = check_npm();
    let server_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = server_dir.parent().expect("server/ has a parent");
    let suite_dir = server_dir.join("tests").join("browser");
    let demo_dir = server_dir.join("demo");
    install_node_modules(&npm, &root.join("tests").join("browser"));
    install_node_modules(&npm, &demo_dir);
    let artifacts = target_dir().join("browser-artifacts");

    let secret = random_secret();
    let history = format!("/demo/**={HISTORY_SIZE}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_tower-bayeux"));
    command
        .args(["--listen", "127.0.0.1:0", "--static"])
        .arg(&demo_dir)
        .args(["--history", &history, "--publish-secret", &secret])
        .args(["--max-interval", MAX_INTERVAL, "--timeout", CONNECT_TIMEOUT]);
    // The flags' environment twins (and a config file) must not change what is tested.
    for (key, _) in env::vars_os() {
        if key.to_string_lossy().starts_with("TOWER_BAYEUX_") {
            command.env_remove(key);
        }
    }
    let server = Server::start_command(command);
    let outcome = run_node(&suite_dir, &server.origin, &secret, &chromium, &artifacts);
    drop(server);
    eprintln!(
        "demo browser test finished in {:.1} s; screenshots in {}",
        started.elapsed().as_secs_f64(),
        artifacts.display()
    );
    if let Err(failure) = outcome {
        panic!("demo browser test failed (see the Node test output above): {failure}");
    }
}

fn run_node(
    dir: &Path,
    origin: &str,
    secret: &str,
    chromium: &Path,
    artifacts: &Path,
) -> Result<(), String> {
    let mut command = node_test(dir, NODE_TEST_TIMEOUT_MS);
    command
        .arg("demo.test.mjs")
        .env("DEMO_URL", origin)
        .env("PUBLISH_SECRET", secret)
        .env("MAX_INTERVAL_MS", MAX_INTERVAL_MS.to_string())
        .env("HISTORY_SIZE", HISTORY_SIZE.to_string())
        .env("CHROMIUM", chromium)
        .env("ARTIFACT_DIR", artifacts)
        .env_remove("DEMO_TRANSPORTS");
    if let Some(transports) = env::var_os("BROWSER_TRANSPORTS") {
        command.env("DEMO_TRANSPORTS", transports);
    }
    run_node_test(&mut command, SUITE_TIMEOUT)
}
