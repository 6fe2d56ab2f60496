#!/usr/bin/env bash
# Publish with channel history on against off: the fan-out of the comparison on one node without
# history (the baseline), with history in the node's memory, with `--redis` and no history, with
# `--redis` and history kept in Redis, and on two nodes over Redis with history; deliveries/s,
# latency, CPU per node and for Redis, the servers' CPU per publish and per delivery, and what
# history costs against the matching set-up without it.
#
#   bash benches/compare/history.sh                        # writes benches/results/history.md
#   DURATION=4 WARMUP=1 ROUNDS=1 bash benches/compare/history.sh     # a short run
#   SETUPS="one one-mem" TRANSPORTS=websocket RATES=saturated bash benches/compare/history.sh
#   REV=HEAD bash benches/compare/history.sh      # the nodes built at a revision (a worktree under
#                                                 # target/history/src), not the working tree
#
# Set-ups (SETUPS; SAT_SETUPS for the saturated runs), each with fresh processes per run, the
# `conformance` example (release, `--features redis`, `--no-timestamp --timeout-ms 20000
# --max-interval-ms 10000`):
#   one             one node, no history on the bench rooms (the baseline; the conformance
#                   server keeps history on `/history/**` always, which `/bench/room/<k>` does
#                   not match)
#   one-mem         one node, `--history "$HISTORY"` (default `/bench/**=100`): every room keeps
#                   its last 100 messages in the node's memory
#   one-redis       one node with `--redis`, no history: each broadcast goes to Redis and back
#                   (its own copy discarded; the node fans out at once)
#   one-redis-hist  one node with `--redis` and `--history`: each publish is one script in Redis
#                   (offset, XADD to the room's stream, PUBLISH), and the node fans the message
#                   out when it comes back from Redis
#   two-split-hist  nodes A and B over Redis, both with `--history`; publishers on A, every
#                   room's subscribers split evenly over A and B
#   two-split       the same without history (not run by default)
# Redis is flushed before every run with Redis, so that each starts with no history.
#
# Workload, placement, rounds and the discarding of disturbed runs as in cluster.sh: CLIENTS
# (1,000) subscribers in ROOMS (10) rooms `/bench/room/<k>`, PUBLISHERS (10) publishers, 100-byte
# payloads, over each of TRANSPORTS, at each of RATES (`fixed`: RATE publishes/s in all;
# `saturated`: publishers unthrottled, batches of 10, next batch on reply); the node(s) and Redis
# pinned to SERVER_CORES, the generator to GEN_CORES; every configuration once per round, ROUNDS
# rounds; a run during whose measured window other work took more than OTHER_MAX % of a core is
# done again (up to RETRIES times), every attempt kept, the report taking medians over the clean
# ones.
#
# After each run a probe publishes one message to /bench/room/0 on node A and keeps the reply:
# with history on, its `ext.history.offset` is one more than the messages room 0 kept; without,
# there is no `ext.history`. With Redis, the script's call counts (INFO commandstats), Redis's
# bytes in and out, its memory and every room's offset and stream length are read too.
#
# The report is written by history-report.mjs (again from the kept runs:
#   set -a; . target/history/report.env; node benches/compare/history-report.mjs target/history/runs);
# the checked-in benches/results/history.md ends with notes written by hand after its run, which a
# new run does not reproduce.
#
# Needs: cargo, taskset, redis-server and redis-cli (7.x), ss (iproute2), curl, node.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CLIENTS=${CLIENTS:-1000}
ROOMS=${ROOMS:-10}
PUBLISHERS=${PUBLISHERS:-10}
PAYLOAD=${PAYLOAD:-100}
RATE=${RATE:-1000}
HISTORY=${HISTORY:-/bench/**=100}
SETUPS=${SETUPS:-"one one-mem one-redis one-redis-hist two-split-hist"}
SAT_SETUPS=${SAT_SETUPS:-$SETUPS}
TRANSPORTS=${TRANSPORTS:-"long-polling websocket"}
RATES=${RATES:-"fixed saturated"}
ROUNDS=${ROUNDS:-3}
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_BUSY=${QUIET_BUSY:-20}
OTHER_MAX=${OTHER_MAX:-25}
RETRIES=${RETRIES:-2}
SERVER_CORES=${SERVER_CORES:-0}
GEN_CORES=${GEN_CORES:-1}
OUT=${OUT:-$root/benches/results/history.md}
logs=${LOGS:-$root/target/history}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
REDIS_CLI=${REDIS_CLI:-$(command -v redis-cli || echo /usr/bin/redis-cli)}

say() { printf '\n=== %s\n' "$*"; }

for tool in cargo taskset ss curl node "$REDIS_SERVER" "$REDIS_CLI"; do
    command -v "$tool" >/dev/null || { echo "history.sh: $tool is needed" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "history.sh: needs 2 cores (servers on core $SERVER_CORES, generator on core $GEN_CORES)" >&2
    exit 1
fi
rm -rf "$logs/runs"
mkdir -p "$logs/runs" "$logs/bin" "$(dirname "$OUT")"

# --- Builds (as in cluster.sh) -------------------------------------------------------------------
cargo build --release -p tower-bayeux-load
cp target/release/load "$logs/bin/load"
if [ -n "${REV:-}" ]; then
    src=$logs/src
    commit=$(git rev-parse --short "$REV")
    if [ ! -d "$src" ]; then
        git worktree add --detach "$src" "$REV" >/dev/null
    else
        git -C "$src" checkout -q -f --detach "$REV"
    fi
    grep -q '^\[workspace\]' "$src/Cargo.toml" || printf '\n[workspace]\n' >>"$src/Cargo.toml"
    say "cargo build --release --features redis --example conformance at $commit"
    cargo build --release --manifest-path "$src/Cargo.toml" --features redis --example conformance \
        --target-dir "$logs/src-target"
    cp "$logs/src-target/release/examples/conformance" "$logs/bin/conformance"
else
    say "cargo build --release --features redis --example conformance (working tree)"
    cargo build --release --features redis --example conformance
    cp target/release/examples/conformance "$logs/bin/conformance"
    commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
    if git status --porcelain --untracked-files=no -- src examples Cargo.toml 2>/dev/null | grep -q .; then
        commit="$commit with uncommitted changes in src/"
    fi
fi
NODE_BIN=$logs/bin/conformance
LOAD=$logs/bin/load
"$NODE_BIN" --help | grep -q -- '--history' \
    || { echo "history.sh: this conformance build has no --history" >&2; exit 1; }

# --- Ports, processes ----------------------------------------------------------------------------
port_busy() { [ -n "$(ss -Htan "( sport = :$1 )" 2>/dev/null)" ]; }
free_port() {
    local p=$1
    while port_busy "$p"; do p=$((p + 1)); done
    echo "$p"
}
wait_port() {
    for _ in $(seq 1 200); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}
stop() {
    local pid
    for pid in "$@"; do
        [ -n "$pid" ] || continue
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
}

REDIS_PORT=$(free_port 16479)
say "redis-server on 127.0.0.1:$REDIS_PORT (no persistence, core $SERVER_CORES)"
taskset -c "$SERVER_CORES" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize no --logfile "$logs/redis.log" &
REDIS_PID=$!
NODES=()
GEN=""
cleanup() {
    stop "$GEN" "${NODES[@]}"
    "$REDIS_CLI" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    stop "$REDIS_PID"
}
trap cleanup EXIT
wait_port "$REDIS_PORT" || { echo "redis-server did not start" >&2; exit 1; }
rcli() { "$REDIS_CLI" -p "$REDIS_PORT" "$@"; }
REDIS_VERSION=$(rcli INFO server | sed -n 's/^redis_version:\([^[:space:]]*\).*/\1/p')

# start_node LOG REDIS(yes|no) HISTORY(yes|no): sets NODE_PID and NODE_PORT, adds the pid to NODES.
start_node() {
    local log=$1 with_redis=$2 with_history=$3
    NODE_PORT=$(free_port 18500)
    local extra=()
    if [ "$with_redis" = yes ]; then
        extra+=(--redis "redis://127.0.0.1:$REDIS_PORT")
    fi
    if [ "$with_history" = yes ]; then
        extra+=(--history "$HISTORY")
    fi
    RUST_LOG=${NODE_LOG:-warn} taskset -c "$SERVER_CORES" "$NODE_BIN" --addr "127.0.0.1:$NODE_PORT" \
        --no-timestamp --timeout-ms 20000 --max-interval-ms 10000 "${extra[@]}" \
        >"$log" 2>&1 &
    NODE_PID=$!
    NODES+=("$NODE_PID")
    wait_port "$NODE_PORT" || { echo "node did not start (see $log)" >&2; return 1; }
}

# redis_snapshot DIR TAG: Redis's command counts, traffic and memory; every room's history
# position and stream length.
redis_snapshot() {
    local dir=$1 tag=$2 k
    rcli INFO commandstats >"$dir/$tag.commandstats"
    rcli INFO stats >"$dir/$tag.stats"
    rcli INFO memory >"$dir/$tag.memory"
    for k in $(seq 0 $((ROOMS - 1))); do
        printf '%s %s %s\n' "$k" "$(rcli HGET "bayeux:history/bench/room/$k" offset)" \
            "$(rcli XLEN "bayeux:stream/bench/room/$k")"
    done >"$dir/$tag.rooms"
}

# probe PORT FILE: one publish to /bench/room/0 by a session of its own; its reply (with history,
# `ext.history` gives the message's offset).
probe() {
    local port=$1 file=$2 jar reply id
    jar=$(mktemp)
    reply=$(curl -s -c "$jar" -b "$jar" -H 'Content-Type: application/json' \
        -d '[{"id":"1","channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]' \
        "http://127.0.0.1:$port/cometd/handshake" || true)
    id=$(printf '%s' "$reply" | sed -n 's/.*"clientId":"\([^"]*\)".*/\1/p')
    curl -s -c "$jar" -b "$jar" -H 'Content-Type: application/json' \
        -d "[{\"id\":\"2\",\"channel\":\"/bench/room/0\",\"clientId\":\"$id\",\"data\":{\"probe\":1}}]" \
        "http://127.0.0.1:$port/cometd" >"$file" 2>&1 || true
    curl -s -c "$jar" -b "$jar" -H 'Content-Type: application/json' \
        -d "[{\"id\":\"3\",\"channel\":\"/meta/disconnect\",\"clientId\":\"$id\"}]" \
        "http://127.0.0.1:$port/cometd/disconnect" >/dev/null 2>&1 || true
    rm -f "$jar"
}

# wait_quiet: returns once both cores were under QUIET_BUSY % busy over one second, or after
# QUIET_WAIT seconds; prints what it saw.
wait_quiet() {
    local start=$SECONDS busy
    while :; do
        local a b
        a=$(grep '^cpu[0-9]' /proc/stat)
        sleep 1
        b=$(grep '^cpu[0-9]' /proc/stat)
        busy=$(paste <(echo "$a") <(echo "$b") | awk '{
            n = (NF - 2) / 2; ta = 0; tb = 0
            for (i = 2; i <= n + 1; i++) { ta += $i; tb += $(i + n + 1) }
            ia = $5 + $6; ib = $(5 + n + 1) + $(6 + n + 1)
            d = tb - ta; if (d <= 0) d = 1
            printf "%s%d", (NR > 1 ? " " : ""), 100 * (1 - (ib - ia) / d)
        }')
        local max=0 v
        for v in $busy; do [ "$v" -gt "$max" ] && max=$v; done
        if [ "$max" -lt "$QUIET_BUSY" ] || [ $((SECONDS - start)) -ge "$QUIET_WAIT" ]; then
            echo "cores busy before the run: $busy (%) after waiting $((SECONDS - start)) s"
            return
        fi
    done
}

# Clients of a previous run gone, no history left, counters zeroed.
redis_reset() {
    for _ in $(seq 1 100); do
        [ "$(rcli CLIENT LIST | grep -vc 'cmd=client|list')" = 0 ] && break
        sleep 0.1
    done
    rcli FLUSHALL >/dev/null
    rcli CONFIG RESETSTAT >/dev/null
}

# other_work DIR: what the box's cores did during the measured window beyond the servers and the
# generator, in % of one core.
other_work() {
    node -e '
        const fs = require("fs");
        const dir = process.argv[1];
        const stat = f => Object.fromEntries(fs.readFileSync(`${dir}/${f}`, "utf8").split("\n")
            .filter(l => /^cpu\d/.test(l)).map(l => { const [c, ...v] = l.trim().split(/\s+/); const n = v.map(Number);
                return [c, {idle: n[3] + n[4], total: n.reduce((a, b) => a + b, 0)}]; }));
        try {
            const a = stat("window-start.procstat"), b = stat("window-end.procstat");
            const line = fs.readFileSync(`${dir}/load.log`, "utf8").split("\n").filter(l => l.startsWith("RESULT ")).pop();
            const r = JSON.parse(line.slice(7));
            let busy = 0;
            for (const c of Object.keys(b)) { const dt = b[c].total - a[c].total; if (dt > 0) busy += 1 - (b[c].idle - a[c].idle) / dt; }
            console.log(Math.max(0, Math.round(100 * busy - 100 * ((r.server_cpu_s ?? 0) + r.gen_cpu_s) / r.window_s)));
        } catch { console.log(0); }
    ' "$1"
}

# run SETUP TRANSPORT RATE_KIND ROUND: one round of a configuration, done again (up to RETRIES
# times) while other work took more than OTHER_MAX % of a core during the window.
run() {
    local name="$1-$2-$3" attempt dir other
    for attempt in $(seq 1 $((RETRIES + 1))); do
        dir="$logs/runs/$name-r$4"
        if [ "$attempt" -gt 1 ]; then
            dir="$dir-a$attempt"
        fi
        run_once "$@" "$attempt" "$dir"
        other=$(other_work "$dir")
        echo "other work during the window: $other% of a core"
        if [ "$other" -le "$OTHER_MAX" ]; then
            break
        fi
    done
    return 0
}

# run_once SETUP TRANSPORT RATE_KIND ROUND ATTEMPT DIR
run_once() {
    local setup=$1 transport=$2 kind=$3 round=$4 attempt=$5 dir=$6
    local name="$setup-$transport-$kind"
    mkdir -p "$dir"
    if [ "$attempt" -gt 1 ]; then
        say "$name, round $round, attempt $attempt"
    else
        say "$name, round $round"
    fi
    wait_quiet | tee "$dir/quiet.txt"
    local rate_args=(--rate "$RATE" --batch 10)
    [ "$kind" = saturated ] && rate_args=(--rate 0 --batch 10)
    local with_redis=no with_history=no
    case $setup in
        one) ;;
        one-mem) with_history=yes ;;
        one-redis | two-split) with_redis=yes ;;
        one-redis-hist | two-split-hist) with_redis=yes with_history=yes ;;
        *) echo "history.sh: unknown set-up $setup" >&2; exit 1 ;;
    esac
    if [ "$with_redis" = yes ]; then
        redis_reset
    fi
    local a_pid a_port b_pid="" b_port=""
    NODES=()
    start_node "$dir/node-a.log" "$with_redis" "$with_history" || { stop "${NODES[@]}"; NODES=(); return 0; }
    a_pid=$NODE_PID
    a_port=$NODE_PORT
    case $setup in
        two-*)
            start_node "$dir/node-b.log" yes "$with_history" || { stop "${NODES[@]}"; NODES=(); return 0; }
            b_pid=$NODE_PID
            b_port=$NODE_PORT
            ;;
    esac
    local urls=(--url "http://127.0.0.1:$a_port/cometd")
    if [ -n "$b_port" ]; then
        urls+=(--url "http://127.0.0.1:$b_port/cometd" --spread sessions)
    fi
    local pids=(--server-pid "$a_pid")
    if [ -n "$b_pid" ]; then
        pids+=(--server-pid "$b_pid")
    fi
    if [ "$with_redis" = yes ]; then
        pids+=(--server-pid "$REDIS_PID")
    fi
    head -3 /proc/stat >"$dir/start.procstat"
    taskset -c "$GEN_CORES" "$LOAD" "${urls[@]}" "${pids[@]}" --transport "$transport" --mode fanout \
        --clients "$CLIENTS" --rooms "$ROOMS" --publishers "$PUBLISHERS" --payload "$PAYLOAD" \
        "${rate_args[@]}" --duration "$DURATION" --warmup "$WARMUP" --label "$name" \
        >"$dir/load.log" 2>&1 &
    GEN=$!
    # Every session set up: the generator waits 2 s before it starts the publishers.
    for _ in $(seq 1 4000); do
        grep -qE '^setup: [0-9]+ sessions ready in' "$dir/load.log" 2>/dev/null && break
        kill -0 "$GEN" 2>/dev/null || break
        sleep 0.05
    done
    if [ "$with_redis" = yes ]; then
        redis_snapshot "$dir" before
    fi
    # The box's CPU over (about) the measured window, to tell how much other work ran meanwhile.
    if kill -0 "$GEN" 2>/dev/null; then
        sleep "$(awk -v w="$WARMUP" 'BEGIN { print w + 2.3 }')"
        head -3 /proc/stat >"$dir/window-start.procstat"
        sleep "$(awk -v d="$DURATION" 'BEGIN { print (d > 1 ? d - 0.6 : d / 2) }')"
        head -3 /proc/stat >"$dir/window-end.procstat"
    fi
    wait "$GEN" || true
    GEN=""
    head -3 /proc/stat >"$dir/end.procstat"
    if [ "$with_redis" = yes ]; then
        sleep 0.3
        redis_snapshot "$dir" after
    fi
    probe "$a_port" "$dir/probe.json"
    grep -E '^(publishes|deliveries|accounting|latency|cpu|errors)' "$dir/load.log" || true
    echo "probe: $(cat "$dir/probe.json")"
    local b_json=null
    if [ -n "$b_pid" ]; then
        b_json="{\"pid\":$b_pid,\"port\":$b_port}"
    fi
    printf '{"name":"%s","round":%s,"attempt":%s,"setup":"%s","transport":"%s","kind":"%s","rate":%s,"redis":%s,"history":%s,"node_a":{"pid":%s,"port":%s},"node_b":%s}\n' \
        "$name" "$round" "$attempt" "$setup" "$transport" "$kind" "$RATE" \
        "$([ "$with_redis" = yes ] && echo true || echo false)" \
        "$([ "$with_history" = yes ] && echo true || echo false)" "$a_pid" "$a_port" "$b_json" \
        >"$dir/meta.json"
    stop "${NODES[@]}"
    NODES=()
    sleep 1
}

# Rounds: every configuration once per round, the set-ups of a transport and rate one after the
# other, so that drift in the box's state hits them all.
for round in $(seq 1 "$ROUNDS"); do
    for kind in $RATES; do
        setups=$SETUPS
        [ "$kind" = saturated ] && setups=$SAT_SETUPS
        for transport in $TRANSPORTS; do
            for setup in $setups; do
                run "$setup" "$transport" "$kind" "$round"
            done
        done
    done
done

# --- Report --------------------------------------------------------------------------------------
say "writing $OUT"
# Kept so that the report can be written again from the runs:
#   set -a; . target/history/report.env; node benches/compare/history-report.mjs target/history/runs
{
    printf '%s=%q\n' COMMIT "$commit" RUSTC "$(rustc --version)" REDIS_VERSION "$REDIS_VERSION" \
        CPU "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
        CORES "$(nproc)" KERNEL "$(uname -r)" DURATION "$DURATION" WARMUP "$WARMUP" \
        CLIENTS "$CLIENTS" ROOMS "$ROOMS" PUBLISHERS "$PUBLISHERS" PAYLOAD "$PAYLOAD" RATE "$RATE" \
        HISTORY "$HISTORY" SERVER_CORES "$SERVER_CORES" GEN_CORES "$GEN_CORES" \
        QUIET_BUSY "$QUIET_BUSY" QUIET_WAIT "$QUIET_WAIT" OTHER_MAX "$OTHER_MAX" GENERATED "$(date -u '+%Y-%m-%d %H:%M')" \
        COMMAND "${HISTORY_COMMAND:-bash benches/compare/history.sh}"
} >"$logs/report.env"
(set -a; . "$logs/report.env"; node "$here/history-report.mjs" "$logs/runs") >"$OUT"
cat "$OUT"
