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

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

/// How long the server may take to print its `listening on` line.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for one run of the Node suite (each Node test also has its own time limit).
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);
/// Time limit of one Node test.
const NODE_TEST_TIMEOUT_MS: u32 = 60_000;
/// Oldest Node with `--test-concurrency` and `--test-timeout`.
const MIN_NODE: (u32, u32) = (20, 11);

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
    check_node();
    let npm = check_npm();
    install_node_modules(&npm, &dir);
    let server_bin = conformance_binary();
    let files = test_files(&dir);

    let mut failures = Vec::new();
    for run in runs() {
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

fn runs() -> Vec<&'static Run> {
    let value = env::var("INTEROP_TRANSPORTS").unwrap_or_default();
    let names: Vec<&str> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return RUNS.iter().collect();
    }
    names
        .iter()
        .map(|name| {
            RUNS.iter()
                .find(|run| run.name == *name)
                .unwrap_or_else(|| {
                    let known: Vec<&str> = RUNS.iter().map(|run| run.name).collect();
                    panic!("INTEROP_TRANSPORTS: unknown run {name:?} (known: {known:?})")
                })
        })
        .collect()
}

/// Runs `program --version`, panicking with an actionable message if it cannot be run.
fn version_of(program: &str) -> String {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the interop test needs `{program}` on PATH (Node.js >= {}.{} with npm), but running `{program} --version` failed: {e}",
                MIN_NODE.0, MIN_NODE.1
            )
        });
    assert!(
        output.status.success(),
        "`{program} --version` failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn check_node() {
    let version = version_of("node");
    let numbers: Vec<u32> = version
        .trim_start_matches('v')
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect();
    let found = (
        numbers.first().copied().unwrap_or(0),
        numbers.get(1).copied().unwrap_or(0),
    );
    assert!(
        found >= MIN_NODE,
        "the interop test needs Node.js >= {}.{} (for `node --test --test-concurrency --test-timeout`), found {version}",
        MIN_NODE.0,
        MIN_NODE.1
    );
}

fn check_npm() -> String {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    version_of(npm);
    npm.to_owned()
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `npm ci` when `node_modules` is missing or older than `package-lock.json`.
fn install_node_modules(npm: &str, dir: &Path) {
    let lock = dir.join("package-lock.json");
    let lock_time = modified(&lock).unwrap_or_else(|| {
        panic!(
            "{} is missing: it pins the interop suite's npm packages",
            lock.display()
        )
    });
    // npm writes node_modules/.package-lock.json on every install.
    let installed = modified(&dir.join("node_modules").join(".package-lock.json"));
    if installed.is_some_and(|t| t >= lock_time) {
        return;
    }
    eprintln!("=== npm ci in {} ===", dir.display());
    let status = Command::new(npm)
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("could not run `{npm} ci` in {}: {e}", dir.display()));
    assert!(
        status.success(),
        "`{npm} ci --no-audit --no-fund` in {} failed ({status})",
        dir.display()
    );
}

/// `<target>/<profile>/examples/conformance`, found from this test's own path
/// (`<target>/<profile>/deps/interop-<hash>`). `cargo test` builds examples, but
/// `cargo test --test interop` does not, so (re)build it here; that is a no-op when it is fresh.
fn conformance_binary() -> PathBuf {
    let exe = env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
        .to_path_buf();
    let bin = profile_dir
        .join("examples")
        .join(format!("conformance{}", env::consts::EXE_SUFFIX));

    build_conformance(&profile_dir);

    assert!(
        bin.is_file(),
        "conformance server binary not found at {}: build it with `cargo build --example conformance` \
         (a plain `cargo test` builds it too)",
        bin.display()
    );
    bin
}

fn build_conformance(profile_dir: &Path) {
    let Some(cargo) = env::var_os("CARGO") else {
        return; // not run by cargo: use whatever binary is there
    };
    let profile = profile_dir.file_name().and_then(OsStr::to_str);
    let Some(target_dir) = profile_dir.parent() else {
        return;
    };
    // Only for the plain host layout `<target-dir>/{debug,release}` (cargo tags the target
    // dir with CACHEDIR.TAG); with `--target <triple>` or custom profiles, use what is there.
    if !matches!(profile, Some("debug" | "release")) || !target_dir.join("CACHEDIR.TAG").is_file() {
        return;
    }
    let mut command = Command::new(cargo);
    command
        .args(["build", "--example", "conformance", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    if profile == Some("release") {
        command.arg("--release");
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run `cargo build --example conformance`: {e}"));
    assert!(
        output.status.success(),
        "`cargo build --example conformance` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

fn test_files(dir: &Path) -> Vec<String> {
    let mut files: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter(|name| name.ends_with(".test.mjs"))
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no *.test.mjs files in {}",
        dir.display()
    );
    files
}

/// A running conformance server, killed on drop.
struct Server {
    child: Child,
    origin: String,
}

impl Server {
    fn start(bin: &Path, args: &[&str]) -> Server {
        let mut child = Command::new(bin)
            .args(["--addr", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        // Guard first, so the process is killed even if we panic below.
        let mut server = Server {
            child,
            origin: String::new(),
        };

        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut announced = false;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if !announced && let Some(origin) = line.trim().strip_prefix("listening on ") {
                    announced = true;
                    let _ = tx.send(origin.trim().to_owned());
                    continue;
                }
                // Keep draining so the server never blocks on a full pipe.
                eprintln!("[conformance] {line}");
            }
        });

        match rx.recv_timeout(SERVER_START_TIMEOUT) {
            Ok(origin) => {
                assert!(
                    origin.starts_with("http://"),
                    "unexpected `listening on` line from {}: {origin:?}",
                    bin.display()
                );
                eprintln!("conformance server listening on {origin}");
                server.origin = origin.trim_end_matches('/').to_owned();
                server
            }
            Err(_) => {
                let status = server.child.try_wait().ok().flatten();
                panic!(
                    "{} did not print `listening on http://<ip>:<port>` within {:?} (exit status: {})",
                    bin.display(),
                    SERVER_START_TIMEOUT,
                    status.map_or_else(|| "still running".to_owned(), |s| s.to_string())
                );
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Kills the Node process on drop (e.g. when the suite time limit is exceeded).
struct NodeGuard(Child);

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn run_node_suite(
    dir: &Path,
    files: &[String],
    url: &str,
    server_bin: &Path,
    run: &Run,
) -> Result<(), String> {
    let child = Command::new("node")
        .args([
            "--test".to_owned(),
            "--test-concurrency=1".to_owned(),
            format!("--test-timeout={NODE_TEST_TIMEOUT_MS}"),
            "--test-reporter=spec".to_owned(),
        ])
        .args(files)
        .current_dir(dir)
        .env("COMETD_URL", url)
        .env("CONFORMANCE_BIN", server_bin)
        .env("COMETD_TRANSPORT", run.client)
        .env("EXPECTED_TRANSPORT", run.expected)
        .env("CONFORMANCE_ARGS", run.server_args.join(" "))
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run node: {e}"))?;
    let mut guard = NodeGuard(child);
    let deadline = Instant::now() + SUITE_TIMEOUT;
    loop {
        match guard.0.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("`node --test` exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                return Err(format!(
                    "`node --test` still running after {SUITE_TIMEOUT:?}, killed"
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for node failed: {e}")),
        }
    }
}
