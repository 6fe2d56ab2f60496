#!/usr/bin/env bash
# Fan-out on two tower-bayeux nodes joined over Redis against the same on one node: deliveries/s,
# latency, CPU per node and per Redis, and the Redis traffic per published message and per node,
# taken from Redis (INFO, CLIENT LIST, PUBSUB NUMSUB) and from the kernel's per-socket byte
# counters of the nodes' Redis connections (`ss -ti`: Redis 7.0 keeps no per-client byte count).
#
#   bash benches/compare/cluster.sh                          # writes benches/results/cluster.md
#   DURATION=5 WARMUP=1 bash benches/compare/cluster.sh      # a short run
#   SETUPS="one two-split" TRANSPORTS=websocket RATES=fixed bash benches/compare/cluster.sh
#   REV=HEAD bash benches/compare/cluster.sh      # the nodes built at a revision (a worktree under
#                                                 # target/cluster/src), not the working tree
#
# Set-ups (SETUPS), each with a fresh node process per run, the `conformance` example (release,
# `--features redis`, `--no-timestamp --timeout-ms 20000 --max-interval-ms 10000`):
#   one             one node, no Redis (the baseline)
#   one-redis       one node with `--redis`: every broadcast goes to Redis and back (its own copy,
#                   discarded): the broker's cost without a second node
#   two-split       node A and node B over Redis; publishers on A; every room's subscribers split
#                   evenly over A and B (50 + 50 per room)
#   two-remote      publishers on A, every subscriber on B
#   two-nointerest  publishers on A publish to rooms 0-4 only; rooms 0-4's subscribers on A,
#                   rooms 5-9's on B: B has no interest in anything published and should get no
#                   Redis traffic at all
# Workload: CLIENTS (1,000) subscribers in ROOMS (10) rooms, PUBLISHERS (10) publishers, 100-byte
# payloads, over each of TRANSPORTS (long-polling websocket), at each of RATES: `fixed` (RATE
# publishes/s in all, which every set-up keeps up with) and `saturated` (publishers unthrottled,
# batches of 10, next batch on reply; only for SAT_SETUPS). Every configuration runs ROUNDS times,
# in rounds; a run during whose measured window other work on the box took more than OTHER_MAX %
# of a core (the cores' busy time from /proc/stat less the servers' and the generator's) is
# repeated up to RETRIES times, all attempts kept, and the report takes medians over the clean
# ones.
#
# Placement: the nodes and Redis share SERVER_CORES (0), the generator runs on GEN_CORES (1): one
# node and two nodes get the same CPU, so the comparison shows what the second node and Redis
# cost, not a scale-out (this box has 2 cores; a scale-out needs a core per node).
#
# Redis figures are counted from when every session is set up to after the generator's drain
# (so they cover the warm-up, the measured window and the drain, as the generator's `accepted`
# publishes do). Messages Redis sent a node = bytes Redis sent on that node's subscribing
# connection / the mean size of one message, measured on an observer (`redis-cli SUBSCRIBE` to
# room 0's Redis channel, on the generator's core) that receives the same messages.
#
# Needs: cargo, taskset, redis-server and redis-cli (7.x), ss (iproute2), stdbuf, curl, node.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
CLIENTS=${CLIENTS:-1000}
ROOMS=${ROOMS:-10}
PUBLISHERS=${PUBLISHERS:-10}
PAYLOAD=${PAYLOAD:-100}
RATE=${RATE:-1000}
SETUPS=${SETUPS:-"one one-redis two-split two-remote two-nointerest"}
SAT_SETUPS=${SAT_SETUPS:-"one one-redis two-split"}
TRANSPORTS=${TRANSPORTS:-"long-polling websocket"}
RATES=${RATES:-"fixed saturated"}
ROUNDS=${ROUNDS:-3}
# Before each run, wait up to QUIET_WAIT seconds for the box to be quiet (both cores under
# QUIET_BUSY % busy over a second): other work shares it.
QUIET_WAIT=${QUIET_WAIT:-60}
QUIET_BUSY=${QUIET_BUSY:-20}
# A run during whose measured window other work took more than OTHER_MAX % of a core is done
# again, up to RETRIES times.
OTHER_MAX=${OTHER_MAX:-25}
RETRIES=${RETRIES:-2}
SERVER_CORES=${SERVER_CORES:-0}
GEN_CORES=${GEN_CORES:-1}
OUT=${OUT:-$root/benches/results/cluster.md}
logs=${LOGS:-$root/target/cluster}
REDIS_SERVER=${REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}
REDIS_CLI=${REDIS_CLI:-$(command -v redis-cli || echo /usr/bin/redis-cli)}

say() { printf '\n=== %s\n' "$*"; }

for tool in cargo taskset ss stdbuf curl node "$REDIS_SERVER" "$REDIS_CLI"; do
    command -v "$tool" >/dev/null || { echo "cluster.sh: $tool is needed" >&2; exit 1; }
done
if [ "$(nproc)" -lt 2 ]; then
    echo "cluster.sh: needs 2 cores (servers on core $SERVER_CORES, generator on core $GEN_CORES)" >&2
    exit 1
fi
rm -rf "$logs/runs"
mkdir -p "$logs/runs" "$logs/bin" "$(dirname "$OUT")"

# --- Builds ------------------------------------------------------------------------------------
# Copied out of target/: other builds (run.sh builds the example without the feature) must not
# swap the binaries during the runs.
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
    # Under this workspace's directory: a revision that is not a workspace root of its own is
    # made one (as in ab.sh).
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

# --- Ports, processes --------------------------------------------------------------------------
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

REDIS_PORT=$(free_port 16379)
say "redis-server on 127.0.0.1:$REDIS_PORT (no persistence, core $SERVER_CORES)"
taskset -c "$SERVER_CORES" "$REDIS_SERVER" --port "$REDIS_PORT" --bind 127.0.0.1 --save '' \
    --appendonly no --daemonize no --logfile "$logs/redis.log" &
REDIS_PID=$!
NODES=()
OBSERVER=""
GEN=""
cleanup() {
    stop "$GEN" "$OBSERVER" "${NODES[@]}"
    "$REDIS_CLI" -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
    stop "$REDIS_PID"
}
trap cleanup EXIT
wait_port "$REDIS_PORT" || { echo "redis-server did not start" >&2; exit 1; }
rcli() { "$REDIS_CLI" -p "$REDIS_PORT" "$@"; }
REDIS_VERSION=$(rcli INFO server | sed -n 's/^redis_version:\([^[:space:]]*\).*/\1/p')

# start_node LOG REDIS(yes|no): sets NODE_PID and NODE_PORT, adds the pid to NODES.
start_node() {
    local log=$1 with_redis=$2
    NODE_PORT=$(free_port 18400)
    local redis_args=()
    if [ "$with_redis" = yes ]; then
        redis_args=(--redis "redis://127.0.0.1:$REDIS_PORT")
    fi
    RUST_LOG=${NODE_LOG:-warn} taskset -c "$SERVER_CORES" "$NODE_BIN" --addr "127.0.0.1:$NODE_PORT" \
        --no-timestamp --timeout-ms 20000 --max-interval-ms 10000 "${redis_args[@]}" \
        >"$log" 2>&1 &
    NODE_PID=$!
    NODES+=("$NODE_PID")
    wait_port "$NODE_PORT" || { echo "node did not start (see $log)" >&2; return 1; }
}

# snapshot DIR TAG: Redis's counters, clients and subscriptions, the sockets to Redis, CPU ticks.
snapshot() {
    local dir=$1 tag=$2 k channels=()
    for k in $(seq 0 $((ROOMS - 1))); do channels+=("bayeux:/bench/room/$k"); done
    rcli INFO stats >"$dir/$tag.stats"
    rcli INFO commandstats >"$dir/$tag.commandstats"
    rcli CLIENT LIST >"$dir/$tag.clients"
    rcli PUBSUB NUMSUB "${channels[@]}" >"$dir/$tag.numsub"
    rcli PUBSUB CHANNELS '*' >"$dir/$tag.channels"
    ss -tinpH state established "( dport = :$REDIS_PORT )" >"$dir/$tag.ss"
    head -3 /proc/stat >"$dir/$tag.procstat"
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

# Clients of a previous run gone, counters zeroed.
redis_reset() {
    for _ in $(seq 1 100); do
        [ "$(rcli CLIENT LIST | grep -vc 'cmd=client|list')" = 0 ] && break
        sleep 0.1
    done
    rcli CONFIG RESETSTAT >/dev/null
}

# --- Runs --------------------------------------------------------------------------------------
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

# run SETUP TRANSPORT RATE_KIND ROUND: one round of a configuration, run again (up to RETRIES
# times) while other work on the box took more than OTHER_MAX % of a core during the window; every
# attempt is kept, and the report leaves the busy ones out when there are others.
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
    local with_redis=yes
    [ "$setup" = one ] && with_redis=no
    if [ "$with_redis" = yes ]; then
        redis_reset
    fi
    local a_pid a_port b_pid="" b_port=""
    NODES=()
    start_node "$dir/node-a.log" "$with_redis" || { stop "${NODES[@]}"; NODES=(); return 0; }
    a_pid=$NODE_PID
    a_port=$NODE_PORT
    case $setup in
        two-*)
            start_node "$dir/node-b.log" yes || { stop "${NODES[@]}"; NODES=(); return 0; }
            b_pid=$NODE_PID
            b_port=$NODE_PORT
            ;;
    esac
    local url_a="http://127.0.0.1:$a_port/cometd" url_b="http://127.0.0.1:$b_port/cometd"
    local urls=(--url "$url_a")
    case $setup in
        two-split) urls=(--url "$url_a" --url "$url_b" --spread sessions) ;;
        two-remote) urls=(--url "$url_b" --publish-url "$url_a") ;;
        two-nointerest) urls=(--url "$url_a" --url "$url_b" --publish-url "$url_a" --spread rooms
            --publish-rooms $((ROOMS / 2))) ;;
    esac
    local pids=(--server-pid "$a_pid")
    if [ -n "$b_pid" ]; then
        pids+=(--server-pid "$b_pid")
    fi
    if [ "$with_redis" = yes ]; then
        pids+=(--server-pid "$REDIS_PID")
    fi
    OBSERVER=""
    if [ "$with_redis" = yes ]; then
        # A handshake on each node makes its broker connect to Redis now (it connects on the
        # node's first handshake), so that both nodes' connections are there when Redis is read
        # before the first publish (in two-remote, node A's first sessions are the publishers).
        local port
        for port in "$a_port" $b_port; do
            curl -s -o /dev/null -H 'Content-Type: application/json' \
                -d '[{"id":"1","channel":"/meta/handshake","version":"1.0","supportedConnectionTypes":["long-polling"]}]' \
                "http://127.0.0.1:$port/cometd/handshake" || true
        done
        taskset -c "$GEN_CORES" stdbuf -oL "$REDIS_CLI" -p "$REDIS_PORT" SUBSCRIBE "bayeux:/bench/room/0" \
            >"$dir/observer.txt" 2>&1 &
        OBSERVER=$!
    fi
    head -3 /proc/stat >"$dir/start.procstat"
    taskset -c "$GEN_CORES" "$LOAD" "${urls[@]}" "${pids[@]}" --transport "$transport" --mode fanout \
        --clients "$CLIENTS" --rooms "$ROOMS" --publishers "$PUBLISHERS" --payload "$PAYLOAD" \
        "${rate_args[@]}" --duration "$DURATION" --warmup "$WARMUP" --label "$name" \
        >"$dir/load.log" 2>&1 &
    GEN=$!
    # Every session set up: the generator waits 2 s (its memory reading) before it starts the
    # publishers, time enough to read Redis before anything is published.
    for _ in $(seq 1 4000); do
        grep -qE '^setup: [0-9]+ sessions ready in' "$dir/load.log" 2>/dev/null && break
        kill -0 "$GEN" 2>/dev/null || break
        sleep 0.05
    done
    if [ "$with_redis" = yes ]; then
        snapshot "$dir" before
    fi
    # The box's CPU over (about) the measured window, to tell how much other work ran meanwhile:
    # the publishers start 2 s after the set-up line, the window after the warm-up.
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
        sleep 0.5
        snapshot "$dir" after
    fi
    grep -E '^(cluster|publishes|deliveries|accounting|latency|cpu|errors)' "$dir/load.log" || true
    local b_json=null redis_json=null observer_json=null
    if [ -n "$b_pid" ]; then
        b_json="{\"pid\":$b_pid,\"port\":$b_port}"
    fi
    if [ "$with_redis" = yes ]; then
        redis_json="{\"pid\":$REDIS_PID,\"port\":$REDIS_PORT}"
    fi
    if [ -n "$OBSERVER" ]; then
        observer_json="{\"pid\":$OBSERVER,\"channel\":\"bayeux:/bench/room/0\"}"
    fi
    printf '{"name":"%s","round":%s,"attempt":%s,"setup":"%s","transport":"%s","kind":"%s","rate":%s,"node_a":{"pid":%s,"port":%s},"node_b":%s,"redis":%s,"observer":%s}\n' \
        "$name" "$round" "$attempt" "$setup" "$transport" "$kind" "$RATE" "$a_pid" "$a_port" "$b_json" \
        "$redis_json" "$observer_json" >"$dir/meta.json"
    stop "$OBSERVER"
    OBSERVER=""
    stop "${NODES[@]}"
    NODES=()
    sleep 1
}

# Rounds: every configuration once per round, so that drift in the box's state hits them all.
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
# What the report needs besides the runs, kept so that it can be written again from them:
#   set -a; . target/cluster/report.env; node benches/compare/cluster-report.mjs target/cluster/runs
{
    printf '%s=%q\n' COMMIT "$commit" RUSTC "$(rustc --version)" REDIS_VERSION "$REDIS_VERSION" \
        CPU "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
        CORES "$(nproc)" KERNEL "$(uname -r)" DURATION "$DURATION" WARMUP "$WARMUP" \
        CLIENTS "$CLIENTS" ROOMS "$ROOMS" PUBLISHERS "$PUBLISHERS" PAYLOAD "$PAYLOAD" RATE "$RATE" \
        SERVER_CORES "$SERVER_CORES" GEN_CORES "$GEN_CORES" QUIET_BUSY "$QUIET_BUSY" \
        OTHER_MAX "$OTHER_MAX" GENERATED "$(date -u '+%Y-%m-%d %H:%M')" \
        COMMAND "${CLUSTER_COMMAND:-bash benches/compare/cluster.sh}"
} >"$logs/report.env"
(set -a; . "$logs/report.env"; node "$here/cluster-report.mjs" "$logs/runs") >"$OUT"
cat "$OUT"
