//! Cluster interop suite: the real CometD JavaScript client (npm `cometd`, run in Node through
//! `cometd-nodejs-client`) against two `conformance` servers joined into one Bayeux space by a
//! Redis (feature `redis`).
//!
//! This test starts a `redis-server` of its own (a free port, no persistence), builds
//! `examples/conformance.rs` with the `redis` feature, and for each run starts two nodes with
//! `--redis redis://127.0.0.1:<port>` and runs the Node scenarios of
//! `tests/interop/cluster/*.test.mjs` against them (the single-node suite, `tests/interop.rs`,
//! only takes the files directly in `tests/interop`). Scenarios that kill a node start their own
//! nodes from `CONFORMANCE_BIN` with `CONFORMANCE_ARGS` (which carry `--redis URL`).
//!
//! Requirements: `node` (>= 20.11), `npm` and `redis-server` on `PATH` (`.ci/setup` installs
//! redis-server). Without them this test FAILS (it does not skip): CI has them.
//!
//! Environment passed to the Node scenarios:
//! - `CLUSTER_URL_A`, `CLUSTER_URL_B`: the Bayeux endpoints of the two nodes (`COMETD_URL`, which
//!   the shared helpers want, is node A's);
//! - `REDIS_URL`, `CONFORMANCE_BIN`, `CONFORMANCE_ARGS`: to start more nodes of the same space;
//! - `COMETD_TRANSPORT`, `EXPECTED_TRANSPORT`: as in the single-node suite.
//!
//! `INTEROP_TRANSPORTS` (`long-polling`, `websocket`; comma or space separated, default both)
//! chooses the runs, `COMETD_LOG_LEVEL` is passed on.
//!
//! Run alone with `cargo test --all-features --test interop_cluster -- --nocapture`.
#![cfg(feature = "redis")]

mod node;

use std::env;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use node::{
    Server, check_node, check_npm, example_binary_with_features, install_node_modules, node_test,
    run_node_test, selected_runs, test_files,
};

/// Upper bound for one run of the Node scenarios (each Node test also has its own time limit).
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);
/// Time limit of one Node test.
const NODE_TEST_TIMEOUT_MS: u32 = 120_000;
/// How long redis-server may take to answer `PING`.
const REDIS_START_TIMEOUT: Duration = Duration::from_secs(10);

/// A run: its name, the client's transport setting, and the transport it must end up using.
struct Run {
    name: &'static str,
    client: &'static str,
    expected: &'static str,
}

const RUNS: [Run; 2] = [
    Run {
        name: "long-polling",
        client: "long-polling",
        expected: "long-polling",
    },
    Run {
        name: "websocket",
        client: "websocket",
        expected: "websocket",
    },
];

#[test]
fn cometd_javascript_client_cluster_interop() {
    let dir = interop_dir();
    check_node("--test-concurrency --test-timeout");
    let npm = check_npm();
    install_node_modules(&npm, &dir);
    let server_bin = example_binary_with_features("conformance", &["redis"]);
    // Relative to `dir`, where Node runs.
    let files: Vec<String> = test_files(&dir.join("cluster"))
        .into_iter()
        .map(|name| format!("cluster/{name}"))
        .collect();
    let redis = RedisServer::start();
    let redis_url = redis.url();
    eprintln!("redis-server listening on {redis_url}");

    let mut failures = Vec::new();
    for run in selected_runs("INTEROP_TRANSPORTS", &RUNS, |run| run.name) {
        eprintln!(
            "\n=== cluster interop suite, run {}: client {}, expecting {}, two nodes on {redis_url} ===",
            run.name, run.client, run.expected
        );
        let node_args = ["--redis", redis_url.as_str()];
        let a = Server::start(&server_bin, &node_args);
        let b = Server::start(&server_bin, &node_args);
        let urls = [
            format!("{}/cometd", a.origin),
            format!("{}/cometd", b.origin),
        ];
        let outcome = run_node_suite(&dir, &files, &urls, &redis_url, &server_bin, run);
        drop((a, b));
        if let Err(failure) = outcome {
            failures.push(format!("{}: {failure}", run.name));
        }
    }
    drop(redis);
    assert!(
        failures.is_empty(),
        "cluster interop suite failed (see the Node test output above):\n  {}",
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
    [url_a, url_b]: &[String; 2],
    redis_url: &str,
    server_bin: &Path,
    run: &Run,
) -> Result<(), String> {
    let mut command = node_test(dir, NODE_TEST_TIMEOUT_MS);
    command
        .arg("--test-concurrency=1")
        .args(files)
        .env("COMETD_URL", url_a)
        .env("CLUSTER_URL_A", url_a)
        .env("CLUSTER_URL_B", url_b)
        .env("REDIS_URL", redis_url)
        .env("CONFORMANCE_BIN", server_bin)
        .env("CONFORMANCE_ARGS", format!("--redis {redis_url}"))
        .env("COMETD_TRANSPORT", run.client)
        .env("EXPECTED_TRANSPORT", run.expected);
    run_node_test(&mut command, SUITE_TIMEOUT)
}

/// A `redis-server` of the test's own on a free port, without persistence, killed on drop.
/// A missing `redis-server` FAILS the test (CI has it: `.ci/setup` installs it).
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--protected-mode",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "the interop_cluster test needs `redis-server` on PATH (Debian: apt-get \
                     install redis-server; `.ci/setup` installs it): {e}"
                )
            });
        // Guard first, so the process is killed even if we panic below.
        let mut server = Self { child, port };
        let deadline = Instant::now() + REDIS_START_TIMEOUT;
        while !server.answers() {
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("redis-server on port {port} exited before answering ({status})");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server on port {port} did not answer PING within {REDIS_START_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        server
    }

    /// Whether it answers `PING` with `+PONG`.
    fn answers(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
        let mut reply = [0; 7];
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut reply).is_ok()
            && &reply == b"+PONG\r\n"
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
