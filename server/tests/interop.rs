//! Interop suite of the standalone server: the official CometD JavaScript client (npm `cometd`,
//! run in Node through `cometd-nodejs-client`) against the real `tower-bayeux` binary.
//!
//! The scenarios live in `server/tests/interop/*.test.mjs` (Node's built-in test runner). They
//! reuse the library's interop helpers and npm packages (`tests/interop/helpers.mjs`,
//! `tests/interop/node_modules`, installed from `tests/interop/package-lock.json` when needed)
//! and the history extension (`clients/js/history-extension.js`). This test starts the binary
//! once per run (`--listen 127.0.0.1:0 --publish-secret <random> --history /history/**=100
//! --timeout 2s --max-interval 3s`, plus the run's flags), reads its `listening on` line, runs
//! the Node suite against it, and fails if any scenario fails.
//!
//! Requirements: `node` (>= 20.11) and `npm` on `PATH`. Without them this test FAILS (it does
//! not skip): CI has them.
//!
//! Environment:
//! - `SERVER_INTEROP_TRANSPORTS`: runs of the suite, comma or space separated; default all four:
//!   - `long-polling`: the client's websocket transport is unregistered;
//!   - `websocket`: the client negotiates websocket, and every test checks it is in use;
//!   - `websocket-fallback`: the server runs with `--no-websocket`; the client tries websocket,
//!     falls back, and every test checks long-polling is in use;
//!   - `callback-polling`: only the client's `callback-polling` (JSONP) transport is registered,
//!     its `<script>` loading emulated in Node (`server/tests/interop/client.mjs`).
//! - `COMETD_LOG_LEVEL`: passed to the Node suite (`debug` dumps the client's traffic).
//!
//! Run alone with `cargo test -p tower-bayeux-server --test interop -- --nocapture`.

#[path = "../../tests/node/mod.rs"]
mod node;

use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use node::{
    Server, check_node, check_npm, install_node_modules, node_test, random_secret, run_node_test,
    selected_runs, test_files,
};

/// Upper bound for one run of the Node suite (each Node test also has its own time limit).
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time limit of one Node test.
const NODE_TEST_TIMEOUT_MS: u32 = 60_000;
/// The server's flags common to every run.
const SERVER_ARGS: [&str; 8] = [
    "--listen",
    "127.0.0.1:0",
    "--history",
    "/history/**=100",
    "--timeout",
    "2s",
    "--max-interval",
    "3s",
];

/// A run of the suite.
struct Run {
    name: &'static str,
    /// The client's transport setting (`CLIENT_TRANSPORT` for the Node suite).
    client: &'static str,
    /// The server's extra flags.
    server_args: &'static [&'static str],
    /// The transport the client must end up using.
    expected: &'static str,
    /// What the server's handshake reply must list in `supportedConnectionTypes`.
    connection_types: &'static [&'static str],
}

const RUNS: [Run; 4] = [
    Run {
        name: "long-polling",
        client: "long-polling",
        server_args: &[],
        expected: "long-polling",
        connection_types: &["websocket", "long-polling", "callback-polling"],
    },
    Run {
        name: "websocket",
        client: "websocket",
        server_args: &[],
        expected: "websocket",
        connection_types: &["websocket", "long-polling", "callback-polling"],
    },
    Run {
        name: "websocket-fallback",
        client: "websocket",
        server_args: &["--no-websocket"],
        expected: "long-polling",
        connection_types: &["long-polling", "callback-polling"],
    },
    Run {
        name: "callback-polling",
        client: "callback-polling",
        server_args: &[],
        expected: "callback-polling",
        connection_types: &["websocket", "long-polling", "callback-polling"],
    },
];

#[test]
fn cometd_javascript_client_against_the_binary() {
    let root = workspace_root();
    let npm_dir = root.join("tests").join("interop");
    let suite_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop");
    check_node("--test-concurrency --test-timeout");
    let npm = check_npm();
    install_node_modules(&npm, &npm_dir);
    let bin = Path::new(env!("CARGO_BIN_EXE_tower-bayeux"));
    let files = test_files(&suite_dir);

    let mut failures = Vec::new();
    for run in selected_runs("SERVER_INTEROP_TRANSPORTS", &RUNS, |run| run.name) {
        let secret = random_secret();
        eprintln!(
            "\n=== server interop suite, run {}: client {}, server {:?}, expecting {} ===",
            run.name, run.client, run.server_args, run.expected
        );
        let mut command = Command::new(bin);
        command
            .args(SERVER_ARGS)
            .args(["--publish-secret", &secret])
            .args(run.server_args);
        // The flags' environment twins (and a config file) must not change what is tested.
        for (key, _) in env::vars_os() {
            if key.to_string_lossy().starts_with("TOWER_BAYEUX_") {
                command.env_remove(key);
            }
        }
        let server = Server::start_command(command);
        let url = format!("{}/cometd", server.origin);
        let outcome = run_node_suite(&suite_dir, &files, &url, &secret, run);
        drop(server);
        if let Err(failure) = outcome {
            failures.push(format!("{}: {failure}", run.name));
        }
    }
    assert!(
        failures.is_empty(),
        "server interop suite failed (see the Node test output above):\n  {}",
        failures.join("\n  ")
    );
}

/// The repository root (the library's package), where `tests/interop` and `clients/js` are.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("server/ has a parent")
        .to_path_buf()
}

fn run_node_suite(
    dir: &Path,
    files: &[String],
    url: &str,
    secret: &str,
    run: &Run,
) -> Result<(), String> {
    let mut command = node_test(dir, NODE_TEST_TIMEOUT_MS);
    // The library's helpers know long-polling and websocket; for the callback-polling run
    // they unregister websocket (long-polling) and `client.mjs` unregisters long-polling too.
    let helpers_transport = if run.client == "websocket" {
        "websocket"
    } else {
        "long-polling"
    };
    command
        .arg("--test-concurrency=1")
        .args(files)
        .env("COMETD_URL", url)
        .env("COMETD_TRANSPORT", helpers_transport)
        .env("CLIENT_TRANSPORT", run.client)
        .env("EXPECTED_TRANSPORT", run.expected)
        .env("SERVER_CONNECTION_TYPES", run.connection_types.join(","))
        .env("PUBLISH_SECRET", secret)
        // The helpers' private servers are the examples' business, not this suite's.
        .env_remove("CONFORMANCE_BIN")
        .env_remove("CONFORMANCE_ARGS");
    run_node_test(&mut command, SUITE_TIMEOUT)
}
