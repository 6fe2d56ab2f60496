//! Settings: command-line flags (each with a `TOWER_BAYEUX_…` environment twin), an optional
//! TOML file with the same keys, and the defaults, in that order of precedence.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::Deserialize;
use tower_bayeux::ChannelName;

/// The defaults, also printed by `--help`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_PATH: &str = "/cometd";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
pub const DEFAULT_INTERVAL: Duration = Duration::ZERO;
pub const DEFAULT_MAX_INTERVAL: Duration = Duration::from_secs(10);
pub const DEFAULT_API_MAX_BODY: usize = 1024 * 1024;
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// A standalone Bayeux 1.0 / CometD server: browsers and other clients connect with the
/// official CometD clients (long-polling, callback-polling, websocket) at the Bayeux path;
/// backends publish over HTTP (`POST /api/publish`). Also serves `/api/history`,
/// `/api/status`, `/metrics` (Prometheus), `/healthz` and `/readyz`.
///
/// Every flag can also be set by its environment variable, or in the TOML file given with
/// `--config` (keys are the flag names with `_` for `-`); a flag wins over its variable, which
/// wins over the file.
#[derive(Debug, Parser)]
#[command(
    name = "tower-bayeux",
    version,
    about,
    long_about,
    max_term_width = 100
)]
pub struct Cli {
    /// TOML file with settings (keys as the flags: `listen = ["0.0.0.0:8080"]`,
    /// `timeout = "30s"`, `history = ["/chat/**=100"]`, …).
    #[arg(long, env = "TOWER_BAYEUX_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to listen on for HTTP (repeatable; the variable takes a comma-separated list;
    /// port 0 picks a free port). Default: 127.0.0.1:8080 when no --unix is given either.
    #[arg(
        long,
        env = "TOWER_BAYEUX_LISTEN",
        value_name = "ADDR",
        value_delimiter = ','
    )]
    pub listen: Vec<SocketAddr>,
    /// Unix socket to listen on for HTTP (e.g. behind nginx). A stale socket file left there
    /// is replaced; a socket something still answers on is an error.
    #[arg(long, env = "TOWER_BAYEUX_UNIX", value_name = "PATH")]
    pub unix: Option<PathBuf>,
    /// Permissions of the unix socket file, in octal (e.g. 660). Default: as the umask gives.
    #[arg(long, env = "TOWER_BAYEUX_UNIX_MODE", value_name = "MODE", value_parser = parse_mode)]
    pub unix_mode: Option<u32>,
    /// The Bayeux endpoint's path. [default: /cometd]
    #[arg(long, env = "TOWER_BAYEUX_PATH", value_name = "PATH", value_parser = parse_path)]
    pub path: Option<String>,
    /// How long a `/meta/connect` is held waiting for messages (e.g. 30s, 500ms). [default: 30s]
    #[arg(long, env = "TOWER_BAYEUX_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub timeout: Option<Duration>,
    /// How long clients wait between a connect reply and their next connect. [default: 0s]
    #[arg(long, env = "TOWER_BAYEUX_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub interval: Option<Duration>,
    /// How long a session lives without a connect before it is removed. [default: 10s]
    #[arg(long, env = "TOWER_BAYEUX_MAX_INTERVAL", value_name = "DURATION", value_parser = parse_duration)]
    pub max_interval: Option<Duration>,
    /// Secret of the HTTP publish API: `Authorization: Bearer SECRET` on `POST /api/publish`
    /// and `GET /api/history`. Without it those endpoints are off (404).
    #[arg(
        long,
        env = "TOWER_BAYEUX_PUBLISH_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    pub publish_secret: Option<String>,
    /// An origin (e.g. https://app.example.com) whose pages may connect besides the server's
    /// own: websocket upgrades and cross-origin long-polling (CORS with credentials).
    /// Repeatable; the variable takes a comma-separated list.
    #[arg(
        long,
        env = "TOWER_BAYEUX_ALLOWED_ORIGIN",
        value_name = "ORIGIN",
        value_delimiter = ','
    )]
    pub allowed_origin: Vec<String>,
    /// Keep the last COUNT messages of the channels matching PATTERN, for clients resuming
    /// with the history extension and for `GET /api/history` (e.g. `/chat/**=100`).
    /// Repeatable; the variable takes a comma-separated list.
    #[arg(
        long,
        env = "TOWER_BAYEUX_HISTORY",
        value_name = "PATTERN=COUNT",
        value_delimiter = ',',
        value_parser = parse_history
    )]
    pub history: Vec<History>,
    /// Join the other servers started with the same Redis (redis://host:port/) into one
    /// Bayeux space; channel history is then kept in Redis.
    #[arg(long, env = "TOWER_BAYEUX_REDIS", value_name = "URL")]
    pub redis: Option<String>,
    /// Serve the files of this directory at `/` (index.html for directories).
    #[arg(long = "static", env = "TOWER_BAYEUX_STATIC", value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Format of the log lines on stderr (filter them with RUST_LOG, default `info`).
    /// [default: text]
    #[arg(long, env = "TOWER_BAYEUX_LOG_FORMAT", value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Largest body accepted by `POST /api/publish`, in bytes (larger: 413). [default: 1048576]
    #[arg(long, env = "TOWER_BAYEUX_API_MAX_BODY", value_name = "BYTES")]
    pub api_max_body: Option<usize>,
    /// How many sessions of one browser (one browser cookie: its tabs) may hold a long-poll
    /// at once; the others poll every 2 s, so that tabs do not use up the browser's
    /// connections to the server. A number or `unlimited`. [default: 1]
    #[arg(long, env = "TOWER_BAYEUX_MAX_SESSIONS_PER_BROWSER", value_name = "COUNT", value_parser = parse_limit)]
    pub max_sessions_per_browser: Option<Limit>,
    /// How many sessions the server holds at most; handshakes beyond are refused. A number or
    /// `unlimited`. [default: unlimited]
    #[arg(long, env = "TOWER_BAYEUX_MAX_SESSIONS", value_name = "COUNT", value_parser = parse_limit)]
    pub max_sessions: Option<Limit>,
    /// Refuse websocket upgrades (clients use long-polling).
    #[arg(long, env = "TOWER_BAYEUX_NO_WEBSOCKET")]
    pub no_websocket: bool,
    /// Refuse the callback-polling (JSONP) transport.
    #[arg(long, env = "TOWER_BAYEUX_NO_CALLBACK_POLLING")]
    pub no_callback_polling: bool,
    /// Clients may subscribe but not publish (`403::publish_denied`): only the HTTP API
    /// publishes. Remote calls to `/service/history` still work.
    #[arg(long, env = "TOWER_BAYEUX_NO_CLIENT_PUBLISH")]
    pub no_client_publish: bool,
    /// Threads serving clients. 1 runs everything on one thread (tokio's current-thread
    /// runtime: on one core it spends less CPU per long-poll response than a multi-thread
    /// runtime with one worker, and has a shorter latency tail when saturated). [default: one
    /// per core]
    #[arg(long, env = "TOWER_BAYEUX_THREADS", value_name = "COUNT", value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// How long a graceful shutdown (SIGTERM, SIGINT) may take before the server exits
    /// anyway. [default: 10s]
    #[arg(long, env = "TOWER_BAYEUX_SHUTDOWN_TIMEOUT", value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_timeout: Option<Duration>,
}

/// The log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// A count or `unlimited`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit(pub Option<usize>);

/// `--history PATTERN=COUNT`.
#[derive(Clone, Debug)]
pub struct History {
    pub pattern: ChannelName,
    pub count: usize,
}

/// The same settings in a TOML file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    listen: Option<Vec<SocketAddr>>,
    unix: Option<PathBuf>,
    unix_mode: Option<String>,
    path: Option<String>,
    timeout: Option<String>,
    interval: Option<String>,
    max_interval: Option<String>,
    publish_secret: Option<String>,
    allowed_origin: Option<Vec<String>>,
    history: Option<Vec<String>>,
    redis: Option<String>,
    #[serde(rename = "static")]
    static_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    api_max_body: Option<usize>,
    max_sessions_per_browser: Option<String>,
    max_sessions: Option<String>,
    no_websocket: Option<bool>,
    no_callback_polling: Option<bool>,
    no_client_publish: Option<bool>,
    threads: Option<usize>,
    shutdown_timeout: Option<String>,
}

/// The settings the server runs with.
#[derive(Debug)]
pub struct Settings {
    pub listen: Vec<SocketAddr>,
    pub unix: Option<PathBuf>,
    pub unix_mode: Option<u32>,
    pub path: String,
    pub timeout: Duration,
    pub interval: Duration,
    pub max_interval: Duration,
    pub publish_secret: Option<String>,
    pub allowed_origins: Vec<String>,
    pub history: Vec<History>,
    pub redis: Option<String>,
    pub static_dir: Option<PathBuf>,
    pub log_format: LogFormat,
    pub api_max_body: usize,
    pub max_sessions_per_browser: Option<usize>,
    pub max_sessions: Option<usize>,
    pub websocket: bool,
    pub callback_polling: bool,
    pub client_publish: bool,
    /// `None`: one per core.
    pub threads: Option<usize>,
    pub shutdown_timeout: Duration,
}

impl Settings {
    /// The flags and variables over the file's settings over the defaults.
    pub fn resolve(cli: Cli) -> Result<Self, String> {
        let file = match &cli.config {
            Some(path) => read_file(path)?,
            None => File::default(),
        };
        let in_file = |what: &str, err: String| format!("config file: {what}: {err}");
        let file_duration = |value: &Option<String>, what: &str| {
            value
                .as_deref()
                .map(|v| parse_duration(v).map_err(|e| in_file(what, e)))
                .transpose()
        };
        let file_history = file
            .history
            .unwrap_or_default()
            .iter()
            .map(|h| parse_history(h).map_err(|e| in_file("history", e)))
            .collect::<Result<Vec<_>, _>>()?;
        let file_mode = file
            .unix_mode
            .as_deref()
            .map(|m| parse_mode(m).map_err(|e| in_file("unix_mode", e)))
            .transpose()?;
        let file_path = file
            .path
            .as_deref()
            .map(|p| parse_path(p).map_err(|e| in_file("path", e)))
            .transpose()?;

        let file_limit = |value: &Option<String>, what: &str| {
            value
                .as_deref()
                .map(|v| parse_limit(v).map_err(|e| in_file(what, e)))
                .transpose()
        };
        let max_sessions_per_browser = cli
            .max_sessions_per_browser
            .or(file_limit(
                &file.max_sessions_per_browser,
                "max_sessions_per_browser",
            )?)
            .unwrap_or(Limit(Some(1)))
            .0;
        let max_sessions = cli
            .max_sessions
            .or(file_limit(&file.max_sessions, "max_sessions")?)
            .unwrap_or(Limit(None))
            .0;
        let unix = cli.unix.or(file.unix);
        let mut listen = if cli.listen.is_empty() {
            file.listen.unwrap_or_default()
        } else {
            cli.listen
        };
        if listen.is_empty() && unix.is_none() {
            listen.push(DEFAULT_LISTEN.parse().expect("a valid default address"));
        }
        Ok(Self {
            listen,
            unix,
            unix_mode: cli.unix_mode.or(file_mode),
            path: cli
                .path
                .or(file_path)
                .unwrap_or_else(|| DEFAULT_PATH.to_owned()),
            timeout: cli
                .timeout
                .or(file_duration(&file.timeout, "timeout")?)
                .unwrap_or(DEFAULT_TIMEOUT),
            interval: cli
                .interval
                .or(file_duration(&file.interval, "interval")?)
                .unwrap_or(DEFAULT_INTERVAL),
            max_interval: cli
                .max_interval
                .or(file_duration(&file.max_interval, "max_interval")?)
                .unwrap_or(DEFAULT_MAX_INTERVAL),
            publish_secret: cli
                .publish_secret
                .or(file.publish_secret)
                .filter(|s| !s.is_empty()),
            allowed_origins: if cli.allowed_origin.is_empty() {
                file.allowed_origin.unwrap_or_default()
            } else {
                cli.allowed_origin
            },
            history: if cli.history.is_empty() {
                file_history
            } else {
                cli.history
            },
            redis: cli.redis.or(file.redis),
            static_dir: cli.static_dir.or(file.static_dir),
            log_format: cli.log_format.or(file.log_format).unwrap_or_default(),
            api_max_body: cli
                .api_max_body
                .or(file.api_max_body)
                .unwrap_or(DEFAULT_API_MAX_BODY),
            max_sessions_per_browser,
            max_sessions,
            websocket: !(cli.no_websocket || file.no_websocket == Some(true)),
            callback_polling: !(cli.no_callback_polling || file.no_callback_polling == Some(true)),
            client_publish: !(cli.no_client_publish || file.no_client_publish == Some(true)),
            threads: match cli.threads.or(file.threads) {
                Some(0) => return Err(in_file("threads", "at least 1 thread is needed".into())),
                threads => threads,
            },
            shutdown_timeout: cli
                .shutdown_timeout
                .or(file_duration(&file.shutdown_timeout, "shutdown_timeout")?)
                .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT),
        })
    }
}

fn read_file(path: &Path) -> Result<File, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| format!("cannot read the config file {}: {err}", path.display()))?;
    toml::from_str(&text).map_err(|err| format!("config file {}: {err}", path.display()))
}

fn parse_duration(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value.trim())
        .map_err(|err| format!("not a duration ({err}): {value:?}; write e.g. 30s, 500ms, 2m"))
}

fn parse_threads(value: &str) -> Result<usize, String> {
    match value.trim().parse() {
        Ok(0) => Err("at least 1 thread is needed".into()),
        Ok(count) => Ok(count),
        Err(_) => Err(format!("not a count: {value:?}")),
    }
}

fn parse_limit(value: &str) -> Result<Limit, String> {
    match value.trim() {
        "unlimited" => Ok(Limit(None)),
        count => count
            .parse()
            .map(|count| Limit(Some(count)))
            .map_err(|_| format!("not a count: {value:?}; write a number or `unlimited`")),
    }
}

fn parse_mode(value: &str) -> Result<u32, String> {
    u32::from_str_radix(value.trim().trim_start_matches("0o"), 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("not an octal file mode: {value:?}; write e.g. 660"))
}

fn parse_path(value: &str) -> Result<String, String> {
    if !value.starts_with('/') || value.contains(['?', '#']) {
        return Err(format!("not a path: {value:?}; write e.g. /cometd"));
    }
    Ok(value.trim_end_matches('/').to_owned()).map(|p| if p.is_empty() { "/".into() } else { p })
}

fn parse_history(value: &str) -> Result<History, String> {
    let (pattern, count) = value
        .split_once('=')
        .ok_or_else(|| format!("expected PATTERN=COUNT, e.g. /chat/**=100, not {value:?}"))?;
    let pattern = ChannelName::new(pattern.trim()).map_err(|err| format!("{value:?}: {err}"))?;
    let count = count
        .trim()
        .parse()
        .ok()
        .filter(|count| *count > 0)
        .ok_or_else(|| format!("{value:?}: the count must be a positive number"))?;
    Ok(History { pattern, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration("xyz").is_err());
        assert_eq!(parse_limit("3"), Ok(Limit(Some(3))));
        assert_eq!(parse_limit("unlimited"), Ok(Limit(None)));
        assert!(parse_limit("many").is_err());
        assert_eq!(parse_mode("660"), Ok(0o660));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("999").is_err());
        assert_eq!(parse_path("/bayeux/"), Ok("/bayeux".to_owned()));
        assert!(parse_path("cometd").is_err());
        let history = parse_history("/chat/**=100").unwrap();
        assert_eq!((history.pattern.as_str(), history.count), ("/chat/**", 100));
        assert!(parse_history("/chat/**").is_err());
        assert!(parse_history("/chat/**=0").is_err());
        assert!(parse_history("chat=1").is_err());
    }

    #[test]
    fn precedence() {
        let dir = std::env::temp_dir().join(format!("tower-bayeux-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("server.toml");
        std::fs::write(
            &file,
            "timeout = \"5s\"\ninterval = \"1s\"\nhistory = [\"/a/**=3\"]\nno_websocket = true\n",
        )
        .unwrap();
        let cli = Cli::try_parse_from([
            "tower-bayeux",
            "--config",
            file.to_str().unwrap(),
            "--timeout",
            "7s",
        ])
        .unwrap();
        let settings = Settings::resolve(cli).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(settings.timeout, Duration::from_secs(7));
        assert_eq!(settings.interval, Duration::from_secs(1));
        assert_eq!(settings.max_interval, DEFAULT_MAX_INTERVAL);
        assert_eq!(settings.history[0].pattern.as_str(), "/a/**");
        assert!(!settings.websocket);
        assert!(settings.callback_polling);
        assert_eq!(settings.listen, vec![DEFAULT_LISTEN.parse().unwrap()]);
    }
}
