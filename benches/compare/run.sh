#!/usr/bin/env bash
# Side-by-side load comparison on this machine, in one run: tower-bayeux (the `conformance`
# example, release build), cometd-nodejs-server and Faye (from npm, pinned in package-lock.json),
# driven by the same generator (`benches/load`), one server at a time.
#
#   bash benches/compare/run.sh            # writes benches/results/comparison.md
#   DURATION=30 bash benches/compare/run.sh
#
# Placement: each server is pinned to core 0 (`taskset -c 0`), the generator (a current-thread
# runtime) to core 1 (except fanout-ws-500k, where both share both cores); a fresh server
# process per workload, so its peak RSS (VmHWM) is that workload's. Server CPU seconds are those
# of the measured window (after the warm-up).
#
# Equivalent settings for the three servers:
#   - long-poll timeout 20 s, max interval 10 s, interval 0;
#   - any number of sessions per browser (each simulated client has its own cookie jar anyway);
#   - Faye: `timeout: 20` (it forgets a client 2 x timeout after its last connect; it has no
#     separate max interval), mount `/bayeux`; cometd-nodejs-server: `timeout: 20000,
#     maxInterval: 10000, maxSessionsPerBrowser: -1`, mount `/cometd`;
#   - tower-bayeux: the conformance server with `--timeout-ms 20000 --max-interval-ms 10000`
#     (an older build without those flags runs with its built-in 2 s / 3 s, noted in the
#     results). Its session queues are bounded (1000 messages / 1 MiB, drop-oldest with a
#     /meta/overflow marker); the peers' are unbounded.
#   - `/service/echo` sends the data back to the sender on every server.
#
# tower-bayeux runs twice: the conformance example (axum::serve, the Bayeux layer inside the
# router with Router::layer: the library as an axum application serves it) and the standalone
# binary `tower-bayeux` (hyper's HTTP/1 connections, Bayeux in front of its router; `--timeout
# 20s --max-interval 10s --max-sessions-per-browser unlimited`), also on one thread (`--threads 1`).
#
# Workloads (issue 5), 100-byte payloads:
#   fanout-lp   1,000 clients, 10 rooms, 10 publishers, 2,000 publishes/s, long-polling (a
#               publisher behind schedule catches up with batches of up to 10 per request, as
#               the CometD benchmark batches; more than a second behind, it skips ahead; each
#               publisher has one request or frame awaiting replies at a time)
#   fanout-ws   the same over websocket (tower-bayeux and Faye; cometd-nodejs-server has none)
#               (both fan-out rows also for tower-bayeux on a current-thread runtime)
#   ceiling-*   the same with the publishers unthrottled (batches of 10, next batch on reply)
#   fanout-ws-500k  tower-bayeux only: 5,000 publishes/s (500k deliveries/s) over websocket, the
#               server and the generator sharing both cores
#   idle-*-N    N (IDLE_SESSIONS: 10,000 and 15,000) live sessions in 10 rooms, kept live by a
#               trickle (one publisher, 10 publishes/s: each session gets a message a second):
#               server RSS per session once set up, and at the end of the trickle
#   echo-*      50 clients, one `/service/echo` round trip outstanding each
#   wrk         HTTP responses/s: a bare hyper hello-world, the conformance server's non-Bayeux
#               route, and a long-polling publish (one Bayeux message per POST) on each server.
#
# Needs: cargo, node >= 20 and npm, taskset; wrk (installed with apt-get when missing and root).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
IDLE_SESSIONS=${IDLE_SESSIONS:-"10000 15000"}
OUT=${OUT:-$root/benches/results/comparison.md}
logs=${LOGS:-$root/target/compare}
mkdir -p "$logs" "$(dirname "$OUT")"
results="$logs/results.jsonl"
: >"$results"

PORT_OURS=18080
PORT_COMETD=18081
PORT_FAYE=18082
PORT_BIN=18083
PORT_HELLO=18090

say() { printf '\n=== %s\n' "$*"; }

# --- Tools -------------------------------------------------------------------------------------
for tool in cargo node npm taskset curl; do
    command -v "$tool" >/dev/null || { echo "run.sh: $tool is needed" >&2; exit 1; }
done
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        say "installing wrk"
        apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
    else
        echo "run.sh: wrk missing (apt-get install wrk); the HTTP baseline is skipped" >&2
    fi
fi
if [ "$(nproc)" -lt 2 ]; then
    echo "run.sh: needs 2 cores (server on core 0, generator on core 1)" >&2
    exit 1
fi

# --- Builds ------------------------------------------------------------------------------------
say "npm ci (peers)"
(cd "$here" && npm ci --no-audit --no-fund --loglevel=error)
say "cargo build --release (conformance, load, tower-bayeux-server)"
cargo build --release --example conformance
cargo build --release -p tower-bayeux-load -p tower-bayeux-server
LOAD="$root/target/release/load"
OURS="$root/target/release/examples/conformance"
BIN="$root/target/release/tower-bayeux"

# The HTTP baseline: a bare hyper 1 hello-world, built from the project's own lock file.
hello_dir="$root/target/compare/hello-baseline"
HELLO=""
mkdir -p "$hello_dir/src"
cat >"$hello_dir/Cargo.toml" <<'EOF'
[package]
name = "hello-baseline"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
bytes = "1"
http-body-util = "0.1"
hyper = { version = "1", features = ["http1", "server"] }
hyper-util = { version = "0.1", features = ["tokio"] }
tokio = { version = "1", features = ["full"] }

[workspace]

[profile.release]
codegen-units = 1
EOF
cat >"$hello_dir/src/main.rs" <<'EOF'
//! A bare hyper 1 hello-world: the HTTP ceiling the comparison measures Bayeux against.
use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, body::Incoming};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:18090".into());
    let listener = tokio::net::TcpListener::bind(&addr).await.expect("bind");
    println!("listening on http://{}", listener.local_addr().expect("addr"));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = service_fn(|_: Request<Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"Hello, World!"))))
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
EOF
cp "$root/Cargo.lock" "$hello_dir/Cargo.lock"
say "cargo build --release (hello-baseline)"
if (cd "$hello_dir" && { cargo build --release --offline -q 2>/dev/null || cargo build --release -q; }); then
    HELLO="$hello_dir/target/release/hello-baseline"
else
    echo "run.sh: the hello-world baseline did not build; skipped" >&2
fi

# The conformance server with the comparison's timeouts, when it takes them.
ours_cmd="$OURS --addr 127.0.0.1:$PORT_OURS"
OURS_SETTINGS="timeout 20 s, max interval 10 s"
# Without the timestamp extension, which the conformance server otherwise runs for the interop
# tests: the peers stamp nothing.
if "$OURS" --help 2>/dev/null | grep -q -- '--no-timestamp'; then
    ours_cmd="$ours_cmd --no-timestamp"
fi
if "$OURS" --help 2>/dev/null | grep -q -- '--timeout-ms'; then
    ours_cmd="$ours_cmd --timeout-ms 20000 --max-interval-ms 10000"
else
    OURS_SETTINGS="timeout 2 s, max interval 3 s (the conformance example's built-in values: it has no flags for them yet)"
fi
bin_cmd="$BIN --listen 127.0.0.1:$PORT_BIN --timeout 20s --max-interval 10s --max-sessions-per-browser unlimited"
cometd_cmd="node $here/cometd-nodejs-server.mjs --port $PORT_COMETD"
faye_cmd="node $here/faye.mjs --port $PORT_FAYE"
url_ours="http://127.0.0.1:$PORT_OURS/cometd"
url_cometd="http://127.0.0.1:$PORT_COMETD/cometd"
url_faye="http://127.0.0.1:$PORT_FAYE/bayeux"
url_bin="http://127.0.0.1:$PORT_BIN/cometd"
bin_ct_cmd="$bin_cmd --threads 1"
url_bin_ct=$url_bin

# --- Generator runs ------------------------------------------------------------------------------
# load SERVER WORKLOAD TRANSPORT SERVER_CMD URL ARGS...
load() {
    local server=$1 workload=$2 transport=$3 cmd=$4 url=$5
    shift 5
    local log="$logs/$workload-$server.log"
    say "$workload: $server ($transport)"
    taskset -c "$GEN_CORES" "$LOAD" --spawn "taskset -c $SERVER_CORES $cmd" --url "$url" --transport "$transport" \
        --label "$server" "$@" >"$log" 2>&1 || true
    grep -E '^(setup|memory|publishes|deliveries|accounting|latency|echo|cpu|server RSS|errors)' "$log" || true
    local line
    line=$(grep '^RESULT ' "$log" | tail -1 | cut -d' ' -f2-)
    if [ -n "$line" ]; then
        printf '{"server":"%s","workload":"%s","result":%s}\n' "$server" "$workload" "$line" >>"$results"
    else
        printf '{"server":"%s","workload":"%s","result":null}\n' "$server" "$workload" >>"$results"
        echo "(no result; see $log)"
    fi
    sleep 1
}

# Where the server and the generator run: one core each, except for the 500k rows.
SERVER_CORES=0
GEN_CORES=1

fanout=(--mode fanout --clients 1000 --rooms 10 --publishers 10 --payload 100
    --duration "$DURATION" --warmup "$WARMUP")
for s in ours bin bin_ct cometd faye; do
    cmd_var="${s}_cmd"; url_var="url_$s"
    load "${s/_/-}" fanout-lp long-polling "${!cmd_var}" "${!url_var}" "${fanout[@]}" --rate 2000 --batch 10
done
# The same server on a current-thread runtime: the scheduler decides the latency tail at saturation.
load ours-ct fanout-lp long-polling "$ours_cmd --current-thread" "$url_ours" "${fanout[@]}" --rate 2000 --batch 10
for s in ours bin bin_ct faye; do
    cmd_var="${s}_cmd"; url_var="url_$s"
    load "${s/_/-}" fanout-ws websocket "${!cmd_var}" "${!url_var}" "${fanout[@]}" --rate 2000 --batch 10
done
load ours-ct fanout-ws websocket "$ours_cmd --current-thread" "$url_ours" "${fanout[@]}" --rate 2000 --batch 10
for s in ours bin cometd faye; do
    cmd_var="${s}_cmd"; url_var="url_$s"
    load "$s" ceiling-lp long-polling "${!cmd_var}" "${!url_var}" "${fanout[@]}" --rate 0 --batch 10
done
for s in ours bin faye; do
    cmd_var="${s}_cmd"; url_var="url_$s"
    load "$s" ceiling-ws websocket "${!cmd_var}" "${!url_var}" "${fanout[@]}" --rate 0 --batch 10
done
# 500,000 deliveries/s over websocket "on 2 cores" (issue 5): the server and the generator share
# both cores, as the peers' figures were taken.
SERVER_CORES=0,1
GEN_CORES=0,1
load ours fanout-ws-500k websocket "$ours_cmd" "$url_ours" "${fanout[@]}" --rate 5000 --batch 10
load ours-ct fanout-ws-500k websocket "$ours_cmd --current-thread" "$url_ours" "${fanout[@]}" --rate 5000 --batch 10
SERVER_CORES=0
GEN_CORES=1

for n in $IDLE_SESSIONS; do
    idle=(--mode fanout --clients "$n" --rooms 10 --publishers 1 --rate 10 --payload 100
        --duration 5 --warmup 0 --ramp 500)
    for s in ours bin cometd faye; do
        cmd_var="${s}_cmd"; url_var="url_$s"
        load "$s" "idle-lp-$n" long-polling "${!cmd_var}" "${!url_var}" "${idle[@]}"
    done
    for s in ours bin faye; do
        cmd_var="${s}_cmd"; url_var="url_$s"
        load "$s" "idle-ws-$n" websocket "${!cmd_var}" "${!url_var}" "${idle[@]}"
    done
done
echo_args=(--mode echo --clients 50 --payload 100 --duration 10 --warmup 2)
for s in ours cometd faye; do
    cmd_var="${s}_cmd"; url_var="url_$s"
    load "$s" echo-lp long-polling "${!cmd_var}" "${!url_var}" "${echo_args[@]}"
done
for s in ours faye; do
    cmd_var="${s}_cmd"; url_var="url_$s"
    load "$s" echo-ws websocket "${!cmd_var}" "${!url_var}" "${echo_args[@]}"
done

# --- HTTP baseline (wrk) -------------------------------------------------------------------------
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# wrk_run NAME URL [LUA]: the better of two 10 s runs; appends {"target","rps","p50_ms","p99_ms","non2xx"} to the results.
wrk_run() {
    local name=$1 url=$2 lua=${3:-}
    local log="$logs/wrk-$name.log"
    say "wrk: $name"
    if [ -n "$lua" ]; then
        taskset -c 1 wrk -t1 -c64 -d10s --latency -s "$lua" "$url" >"$log" 2>&1 || true
    else
        taskset -c 1 wrk -t1 -c64 -d10s --latency "$url" >"$log" 2>&1 || true
    fi
    # Best of two runs: a single 10 s run on this machine varies by up to ~30%.
    if [ -n "$lua" ]; then
        taskset -c 1 wrk -t1 -c64 -d10s --latency -s "$lua" "$url" >"$log.2" 2>&1 || true
    else
        taskset -c 1 wrk -t1 -c64 -d10s --latency "$url" >"$log.2" 2>&1 || true
    fi
    rps() { sed -n 's/^Requests\/sec: *\([0-9.]*\).*/\1/p' "$1"; }
    if awk -v a="$(rps "$log.2")" -v b="$(rps "$log")" 'BEGIN { exit !(a + 0 > b + 0) }'; then
        mv "$log.2" "$log"
    else
        rm -f "$log.2"
    fi
    grep -E 'Requests/sec|Non-2xx| 50%| 99%' "$log" || true
    node -e '
        const fs = require("fs");
        const text = fs.readFileSync(process.argv[1], "utf8");
        const ms = (s) => { if (!s) return null; const m = s.match(/([\d.]+)(us|ms|s)/); if (!m) return null;
            return Number(m[1]) * ({us: 0.001, ms: 1, s: 1000})[m[2]]; };
        const rps = (text.match(/Requests\/sec:\s+([\d.]+)/) || [])[1];
        const p50 = (text.match(/^\s+50%\s+(\S+)/m) || [])[1];
        const p99 = (text.match(/^\s+99%\s+(\S+)/m) || [])[1];
        const non2xx = (text.match(/Non-2xx or 3xx responses:\s+(\d+)/) || [])[1];
        console.log(JSON.stringify({wrk: process.argv[2], rps: rps ? Number(rps) : null,
            p50_ms: ms(p50), p99_ms: ms(p99), non2xx: non2xx ? Number(non2xx) : 0}));
    ' "$log" "$name" >>"$results"
}

# A publish to a channel nobody subscribed to, by a session that is handshaken first and kept
# alive by a connect (advice timeout 0) every second while wrk runs.
wrk_publish() {
    local name=$1 url=$2
    local jar="$logs/wrk-$name.cookies"
    rm -f "$jar"
    local hs client
    hs=$(curl -s -c "$jar" -b "$jar" -H 'Content-Type: application/json' \
        -d '[{"id":"1","channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]' \
        "$url/handshake")
    client=$(printf '%s' "$hs" | sed -n 's/.*"clientId" *: *"\([^"]*\)".*/\1/p')
    if [ -z "$client" ]; then
        echo "wrk $name: handshake failed: $hs" >&2
        return
    fi
    local connect="[{\"id\":\"2\",\"channel\":\"/meta/connect\",\"connectionType\":\"long-polling\",\"advice\":{\"timeout\":0},\"clientId\":\"$client\"}]"
    curl -s -o /dev/null -c "$jar" -b "$jar" -H 'Content-Type: application/json' -d "$connect" "$url/connect"
    (for _ in $(seq 1 20); do
        curl -s -o /dev/null -b "$jar" -H 'Content-Type: application/json' -d "$connect" "$url/connect"
        sleep 1
    done) &
    local keeper=$!
    local cookie
    cookie=$(awk '!/^#/ && NF >= 7 { printf "%s%s=%s", (n++ ? "; " : ""), $6, $7 }' "$jar")
    local lua="$logs/wrk-$name.lua"
    cat >"$lua" <<EOF
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Cookie"] = "$cookie"
wrk.body = '[{"id":"3","channel":"/bench/nobody","data":{"t":0,"p":0,"s":0,"x":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"clientId":"$client"}]'
EOF
    wrk_run "$name" "$url/" "$lua"
    kill "$keeper" 2>/dev/null || true
    wait "$keeper" 2>/dev/null || true
}

# with_server CMD PORT FUNCTION ARGS...: runs FUNCTION against a fresh server pinned to core 0.
with_server() {
    local cmd=$1 port=$2
    shift 2
    taskset -c 0 $cmd >/dev/null 2>&1 &
    local pid=$!
    if wait_port "$port"; then
        "$@"
    else
        echo "server $cmd did not start" >&2
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sleep 1
}

if command -v wrk >/dev/null; then
    if [ -n "$HELLO" ]; then
        with_server "$HELLO 127.0.0.1:$PORT_HELLO" "$PORT_HELLO" wrk_run hello-hyper "http://127.0.0.1:$PORT_HELLO/"
    fi
    with_server "$ours_cmd" "$PORT_OURS" wrk_run ours-static "http://127.0.0.1:$PORT_OURS/"
    with_server "$ours_cmd" "$PORT_OURS" wrk_publish ours-publish "$url_ours"
    with_server "$bin_cmd" "$PORT_BIN" wrk_publish bin-publish "$url_bin"
    with_server "$cometd_cmd" "$PORT_COMETD" wrk_publish cometd-publish "$url_cometd"
    with_server "$faye_cmd" "$PORT_FAYE" wrk_publish faye-publish "$url_faye"
fi

# --- Report --------------------------------------------------------------------------------------
say "writing $OUT"
commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)
# Uncommitted changes to what the binaries are built from (documentation does not count).
dirty=$(git -C "$root" status --porcelain --untracked-files=no -- src server examples benches/load benches/compare Cargo.toml Cargo.lock 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
RUSTC="$(rustc --version)" NODE="$(node --version)" COMMIT="$commit$dirty" \
    CPU="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
    CORES="$(nproc)" MEM="$(free -g | awk '/Mem:/ {print $2}') GiB" KERNEL="$(uname -r)" \
    OURS_SETTINGS="$OURS_SETTINGS" DURATION="$DURATION" WARMUP="$WARMUP" \
    node "$here/report.mjs" "$results" "$here/package-lock.json" >"$OUT"
cat "$OUT"
