//! Plumbing shared by the test runners that drive Node test suites against an example server
//! (`tests/interop.rs`, `tests/interop_cluster.rs`, `tests/browser.rs`, and the standalone
//! server's `server/tests/interop.rs`): checking for `node`
//! and `npm`, installing npm packages, building and starting the server, and running
//! `node --test` under a time limit.
//!
//! A missing or too old `node`/`npm` FAILS the test rather than skipping it: CI has them, so a
//! skip would only hide a broken setup.

// Each runner compiles its own copy of this module and uses only part of it (the target dir
// is wanted by the browser runner alone).
#![allow(dead_code)]

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
/// Oldest Node with `--test-concurrency` and `--test-timeout`.
const MIN_NODE: (u32, u32) = (20, 11);
/// The test crate this copy is compiled into (`interop`, `browser`), so that a failure says
/// which test lacks what.
const RUNNER: &str = env!("CARGO_CRATE_NAME");

/// Runs `program --version`, panicking with an actionable message if it cannot be run.
fn version_of(program: &str) -> String {
    let output = Command::new(program)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "the {RUNNER} test needs `{program}` on PATH (Node.js >= {}.{} with npm), but running `{program} --version` failed: {e}",
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

/// Fails unless `node` is at least [`MIN_NODE`]; `flags` are the `node --test` options the
/// runner relies on, named in the message so that the version floor makes sense.
pub fn check_node(flags: &str) {
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
        "the {RUNNER} test needs Node.js >= {}.{} (for `node --test {flags}`), found {version}",
        MIN_NODE.0,
        MIN_NODE.1
    );
}

/// The `npm` command to run, after checking that it runs.
pub fn check_npm() -> String {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    version_of(npm);
    npm.to_owned()
}

fn modified(path: &Path) -> Option<SystemTime> {
    fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// `npm ci` when `node_modules` is missing or older than `package-lock.json`.
pub fn install_node_modules(npm: &str, dir: &Path) {
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

/// `<target>/<profile>`, found from the test's own path (`<target>/<profile>/deps/<test>-<hash>`).
fn profile_dir() -> PathBuf {
    let exe = env::current_exe().expect("current_exe");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test binary location {}", exe.display()))
        .to_path_buf()
}

/// `<target>`, the cargo target dir the test runs from.
pub fn target_dir() -> PathBuf {
    let profile_dir = profile_dir();
    profile_dir
        .parent()
        .unwrap_or_else(|| panic!("unexpected profile dir {}", profile_dir.display()))
        .to_path_buf()
}

/// `<target>/<profile>/examples/<name>`. `cargo test` builds examples, but
/// `cargo test --test <test>` does not, so (re)build it here; that is a no-op when it is fresh.
pub fn example_binary(name: &str) -> PathBuf {
    let profile_dir = profile_dir();
    let bin = profile_dir
        .join("examples")
        .join(format!("{name}{}", env::consts::EXE_SUFFIX));

    build_example(name, &profile_dir, &[]);

    assert!(
        bin.is_file(),
        "{name} server binary not found at {}: build it with `cargo build --example {name}` \
         (a plain `cargo test` builds it too)",
        bin.display()
    );
    bin
}

/// Like [`example_binary`], with the package's `features` on top of the default ones (e.g.
/// `redis`), then copied to `<target>/<profile>/examples/<name>-<features>`: the runners build
/// `<name>` with different features, each build replacing `<target>/<profile>/examples/<name>`,
/// and the copy keeps another runner's build from swapping the binary under this one's servers.
///
/// When the build is skipped (not run by cargo, or an unusual target layout) the plain
/// `<name>` binary is used as it is.
pub fn example_binary_with_features(name: &str, features: &[&str]) -> PathBuf {
    let profile_dir = profile_dir();
    let examples = profile_dir.join("examples");
    let bin = examples.join(format!("{name}{}", env::consts::EXE_SUFFIX));
    let features_flag = features.join(",");

    let built = build_example(name, &profile_dir, features);

    assert!(
        bin.is_file(),
        "{name} server binary not found at {}: build it with \
         `cargo build --example {name} --features {features_flag}`",
        bin.display()
    );
    if !built {
        return bin;
    }
    let copy = examples.join(format!(
        "{name}-{}{}",
        features.join("-"),
        env::consts::EXE_SUFFIX
    ));
    // Through a temporary file and a rename: the copy of a previous run may still be running
    // (writing into a running executable fails).
    let partial = examples.join(format!(".{name}-{}.partial", std::process::id()));
    fs::copy(&bin, &partial)
        .and_then(|_| fs::rename(&partial, &copy))
        .unwrap_or_else(|e| {
            let _ = fs::remove_file(&partial);
            panic!("cannot copy {} to {}: {e}", bin.display(), copy.display())
        });
    copy
}

/// `cargo build --example <name> [--features <features>]`; whether it built (it does not
/// when not run by cargo or with an unusual target layout).
fn build_example(name: &str, profile_dir: &Path, features: &[&str]) -> bool {
    let Some(cargo) = env::var_os("CARGO") else {
        return false; // not run by cargo: use whatever binary is there
    };
    let profile = profile_dir.file_name().and_then(OsStr::to_str);
    let Some(target_dir) = profile_dir.parent() else {
        return false;
    };
    // Only for the plain host layout `<target-dir>/{debug,release}` (cargo tags the target
    // dir with CACHEDIR.TAG); with `--target <triple>` or custom profiles, use what is there.
    if !matches!(profile, Some("debug" | "release")) || !target_dir.join("CACHEDIR.TAG").is_file() {
        return false;
    }
    let mut command = Command::new(cargo);
    command
        .args(["build", "--example", name, "--target-dir"])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdin(Stdio::null());
    if profile == Some("release") {
        command.arg("--release");
    }
    let mut shown = format!("cargo build --example {name}");
    if !features.is_empty() {
        let list = features.join(",");
        shown.push_str(&format!(" --features {list}"));
        command.args(["--features", &list]);
    }
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("could not run `{shown}`: {e}"));
    assert!(
        output.status.success(),
        "`{shown}` failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    true
}

/// A running example server, killed on drop.
pub struct Server {
    child: Child,
    /// `http://<ip>:<port>`, without a trailing slash.
    pub origin: String,
}

impl Server {
    /// Starts `bin --addr 127.0.0.1:0 <args>` and waits for its `listening on` line.
    pub fn start(bin: &Path, args: &[&str]) -> Server {
        let mut command = Command::new(bin);
        command.args(["--addr", "127.0.0.1:0"]).args(args);
        Server::start_command(command)
    }

    /// Starts `command` as it is (program, arguments, environment: e.g. a binary that takes
    /// other flags than the examples' `--addr`) and waits for its first
    /// `listening on http://<ip>:<port>` line on stdout; stdin is null, stderr inherited.
    pub fn start_command(mut command: Command) -> Server {
        let bin = PathBuf::from(command.get_program());
        let name = bin
            .file_stem()
            .map_or_else(|| bin.display().to_string(), |s| s.to_string_lossy().into());
        let mut child = command
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
        let prefix = format!("[{name}]");
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
                eprintln!("{prefix} {line}");
            }
        });

        match rx.recv_timeout(SERVER_START_TIMEOUT) {
            Ok(origin) => {
                assert!(
                    origin.starts_with("http://"),
                    "unexpected `listening on` line from {}: {origin:?}",
                    bin.display()
                );
                eprintln!("{name} server listening on {origin}");
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

/// `node --test` in `dir` with the spec reporter and a time limit per Node test, its output
/// passed through; the runner adds its own flags, files and environment.
pub fn node_test(dir: &Path, test_timeout_ms: u32) -> Command {
    let mut command = Command::new("node");
    command
        .args([
            "--test".to_owned(),
            format!("--test-timeout={test_timeout_ms}"),
            "--test-reporter=spec".to_owned(),
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    command
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

/// Runs `command` (from [`node_test`]) to the end; an error if it fails or is still running
/// after `limit` (then it is killed).
pub fn run_node_test(command: &mut Command, limit: Duration) -> Result<(), String> {
    let child = command
        .spawn()
        .map_err(|e| format!("cannot run node: {e}"))?;
    let mut guard = NodeGuard(child);
    let deadline = Instant::now() + limit;
    loop {
        match guard.0.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("`node --test` exited with {status}")),
            Ok(None) if Instant::now() >= deadline => {
                return Err(format!(
                    "`node --test` still running after {limit:?}, killed"
                ));
            }
            Ok(None) => thread::sleep(Duration::from_millis(100)),
            Err(e) => return Err(format!("waiting for node failed: {e}")),
        }
    }
}

/// Where Chromium is unless `CHROMIUM` says otherwise (Debian's package).
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";

/// The Chromium binary (`CHROMIUM`, or Debian's), checked by running `--version`: a missing or
/// broken browser FAILS the test.
pub fn check_chromium() -> PathBuf {
    let chromium =
        env::var_os("CHROMIUM").map_or_else(|| PathBuf::from(DEFAULT_CHROMIUM), PathBuf::from);
    assert!(
        chromium.is_file(),
        "the {RUNNER} test needs Chromium at {}, which is missing: install with: apt-get install -y chromium",
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

/// The runs named in the environment variable `variable` (comma or space separated), or all of
/// them when it is unset or empty; an unknown name FAILS the test.
pub fn selected_runs<T>(
    variable: &str,
    all: &'static [T],
    name: fn(&T) -> &str,
) -> Vec<&'static T> {
    let value = env::var(variable).unwrap_or_default();
    let names: Vec<&str> = value
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return all.iter().collect();
    }
    names
        .iter()
        .map(|wanted| {
            all.iter()
                .find(|run| name(run) == *wanted)
                .unwrap_or_else(|| {
                    let known: Vec<&str> = all.iter().map(name).collect();
                    panic!("{variable}: unknown run {wanted:?} (known: {known:?})")
                })
        })
        .collect()
}

/// The `*.test.mjs` files of `dir`, sorted; none FAILS the test.
pub fn test_files(dir: &Path) -> Vec<String> {
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

/// 32 hex digits, different for every run (no `rand` dependency: std's randomly seeded hasher).
pub fn random_secret() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut secret = String::new();
    for salt in 0..2u64 {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u32(std::process::id());
        hasher.write_u128(
            SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        secret.push_str(&format!("{:016x}", hasher.finish()));
    }
    secret
}
