//! Browser test: the chat example (`examples/chat`) in Debian's headless Chromium, driven by
//! Playwright (npm `playwright-core`), with the page's official CometD client forced onto each
//! transport in turn: `websocket`, `long-polling` and `callback-polling` (JSONP).
//!
//! The scenario lives in `tests/browser/chat.test.mjs` (Node's built-in test runner); this test
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
/// Upper bound for the Node run (each Node test also has its own time limit).
const SUITE_TIMEOUT: Duration = Duration::from_secs(300);
/// Time limit of one Node test (one transport).
const NODE_TEST_TIMEOUT_MS: u32 = 90_000;
/// Oldest Node with `--test-timeout`.
const MIN_NODE: (u32, u32) = (20, 11);
/// The server's session expiry: how long a closed browser's member lives on.
const MAX_INTERVAL_MS: u32 = 2000;
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

#[test]
fn chat_in_headless_chromium() {
    let started = Instant::now();
    let chromium = check_chromium();
    check_node();
    let npm = check_npm();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tests_dir = root.join("tests").join("browser");
    install_node_modules(&npm, &tests_dir);
    install_node_modules(&npm, &root.join("examples").join("chat"));
    let (server_bin, target_dir) = chat_binary();
    let artifacts = target_dir.join("browser-artifacts");

    let server = Server::start(&server_bin);
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

fn check_chromium() -> PathBuf {
    let chromium =
        env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
    assert!(
        chromium.is_file(),
        "the browser test needs Chromium at {}, which is missing: install with: apt-get install -y chromium",
        chromium.display()
    );
    let output = Command::new(&chromium)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run `{} --version`: {e}", chromium.display()));
    assert!(
        output.status.success(),
        "`{} --version` failed ({}): {}; reinstall with: apt-get install -y chromium",
        chromium.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!(
        "browser: {}",
        String::from_utf8_lossy(&output.stdout).trim()
    );
    chromium
}

/// Runs `program --version`, panicking with an actionable message if it cannot be run.
fn version_of(program: &str) -> String {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the browser test needs `{program}` on PATH (Node.js >= {}.{} with npm), but running `{program} --version` failed: {e}",
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
        "the browser test needs Node.js >= {}.{} (for `node --test --test-timeout`), found {version}",
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
            "{} is missing: it pins the npm packages of {}",
            lock.display(),
            dir.display()
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

/// `<target>/<profile>/examples/chat` and `<target>`, found from this test's own path
/// (`<target>/<profile>/deps/browser-<hash>`). `cargo test --test browser` does not build
/// examples, so (re)build it here; that is a no-op when it is fresh.
fn chat_binary() -> (PathBuf, PathBuf) {
    let exe = env::current_exe().expect("current_exe");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
        .to_path_buf();
    let target_dir = profile_dir
        .parent()
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
        .to_path_buf();
    let bin = profile_dir
        .join("examples")
        .join(format!("chat{}", env::consts::EXE_SUFFIX));

    build_chat(&profile_dir, &target_dir);

    assert!(
        bin.is_file(),
        "chat server binary not found at {}: build it with `cargo build --example chat`",
        bin.display()
    );
    (bin, target_dir)
}

fn build_chat(profile_dir: &Path, target_dir: &Path) {
    let Some(cargo) = env::var_os("CARGO") else {
        return; // not run by cargo: use whatever binary is there
    };
    let profile = profile_dir.file_name().and_then(OsStr::to_str);
    // Only for the plain host layout `<target-dir>/{debug,release}` (cargo tags the target
    // dir with CACHEDIR.TAG); with `--target <triple>` or custom profiles, use what is there.
    if !matches!(profile, Some("debug" | "release")) || !target_dir.join("CACHEDIR.TAG").is_file() {
        return;
    }
    let mut command = Command::new(cargo);
    command
        .args(["build", "--example", "chat", "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    if profile == Some("release") {
        command.arg("--release");
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run `cargo build --example chat`: {e}"));
    assert!(
        output.status.success(),
        "`cargo build --example chat` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A running chat server, killed on drop.
struct Server {
    child: Child,
    origin: String,
}

impl Server {
    fn start(bin: &Path) -> Server {
        let mut child = Command::new(bin)
            .args(["--addr", "127.0.0.1:0", "--max-interval-ms"])
            .arg(MAX_INTERVAL_MS.to_string())
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
                eprintln!("[chat] {line}");
            }
        });

        match rx.recv_timeout(SERVER_START_TIMEOUT) {
            Ok(origin) => {
                assert!(
                    origin.starts_with("http://"),
                    "unexpected `listening on` line from {}: {origin:?}",
                    bin.display()
                );
                eprintln!("chat server listening on {origin}");
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

/// Kills the Node process on drop (e.g. when the time limit is exceeded).
struct NodeGuard(Child);

impl Drop for NodeGuard {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn run_node(dir: &Path, origin: &str, chromium: &Path, artifacts: &Path) -> Result<(), String> {
    let mut command = Command::new("node");
    command
        .args([
            "--test".to_owned(),
            format!("--test-timeout={NODE_TEST_TIMEOUT_MS}"),
            "--test-reporter=spec".to_owned(),
            "chat.test.mjs".to_owned(),
        ])
        .current_dir(dir)
        .env("CHAT_URL", origin)
        .env("MAX_INTERVAL_MS", MAX_INTERVAL_MS.to_string())
        .env("CHROMIUM", chromium)
        .env("ARTIFACT_DIR", artifacts)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    if let Some(transports) = env::var_os("BROWSER_TRANSPORTS") {
        command.env("CHAT_TRANSPORTS", transports);
    }
    let child = command
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
