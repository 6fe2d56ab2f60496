//! Interop suite: the real CometD JavaScript client (npm `cometd`, run in Node through
//! `cometd-nodejs-client`) against the `conformance` example server.
//!
//! The scenarios live in `tests/interop/*.test.mjs` (Node's built-in test runner); this test
//! installs their npm dependencies when needed, builds and starts `examples/conformance.rs`,
//! runs the Node suite against it once per transport, and fails if any scenario fails.
//!
//! Requirements: `node` (>= 20.11) and `npm` on `PATH`. Without them this test FAILS (it does
//! not skip): CI has them.
//!
//! Environment:
//! - `INTEROP_TRANSPORTS`: runs of the suite, comma or space separated; default all three:
//!   - `long-polling`: the client's websocket transport is unregistered;
//!   - `websocket`: the client negotiates websocket, and every test checks it is in use;
//!   - `websocket-fallback`: the server refuses websocket (`--no-websocket`); the client tries
//!     it, falls back, and every test checks long-polling is in use.
//! - `COMETD_LOG_LEVEL`: passed to the Node suite (`debug` dumps the client's traffic).
//!
//! Run alone with `cargo test --test interop -- --nocapture`.

mod node;

use std::env;
use std::path::{Path, PathBuf};
use std::time::Duration;

use node::{
    Server, check_node, check_npm, example_binary, install_node_modules, node_test, run_node_test,
    selected_runs, test_files,
};

/// Upper bound for one run of the Node suite (each Node test also has its own time limit).
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);
/// Time limit of one Node test.
const NODE_TEST_TIMEOUT_MS: u32 = 60_000;

/// A run of the suite: its name, the client's transport setting, the server's extra
/// arguments, and the transport the client must end up using.
struct Run {
    name: &'static str,
    client: &'static str,
    server_args: &'static [&'static str],
    expected: &'static str,
}

const RUNS: [Run; 3] = [
    Run {
        name: "long-polling",
        client: "long-polling",
        server_args: &[],
        expected: "long-polling",
    },
    Run {
        name: "websocket",
        client: "websocket",
        server_args: &[],
        expected: "websocket",
    },
    Run {
        name: "websocket-fallback",
        client: "websocket",
        server_args: &["--no-websocket"],
        expected: "long-polling",
    },
];

#[test]
fn cometd_javascript_client_interop() {
    let dir = interop_dir();
    check_node("--test-concurrency --test-timeout");
    let npm = check_npm();
    install_node_modules(&npm, &dir);
    let server_bin = example_binary("conformance");
    let files = test_files(&dir);

    let mut failures = Vec::new();
    for run in selected_runs("INTEROP_TRANSPORTS", &RUNS, |run| run.name) {
        eprintln!(
            "\n=== interop suite, run {}: client {}, server {:?}, expecting {} ===",
            run.name, run.client, run.server_args, run.expected
        );
        let server = Server::start(&server_bin, run.server_args);
        let url = format!("{}/cometd", server.origin);
        let outcome = run_node_suite(&dir, &files, &url, &server_bin, run);
        drop(server);
        if let Err(failure) = outcome {
            failures.push(format!("{}: {failure}", run.name));
        }
    }
    assert!(
        failures.is_empty(),
        "interop suite failed (see the Node test output above):\n  {}",
        failures.join("\n  ")
    );
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("interop")
}

fn run_node_suite(
    dir: &Path,
    files: &[String],
    url: &str,
    server_bin: &Path,
    run: &Run,
) -> Result<(), String> {
    let mut command = node_test(dir, NODE_TEST_TIMEOUT_MS);
    command
        .arg("--test-concurrency=1")
        .args(files)
        .env("COMETD_URL", url)
        .env("CONFORMANCE_BIN", server_bin)
        .env("COMETD_TRANSPORT", run.client)
        .env("EXPECTED_TRANSPORT", run.expected)
        .env("CONFORMANCE_ARGS", run.server_args.join(" "));
    run_node_test(&mut command, SUITE_TIMEOUT)
}
