#!/usr/bin/env bash
# The cost of the metrics: the standalone binary (`tower-bayeux`, package tower-bayeux-server) on
# the fan-out of the comparison, nobody scraping it against a Prometheus-style scraper reading
# `GET /metrics` every second and every 100 ms; and, separately, the cost of the library's running
# counters (ab.sh: the conformance example before the commit that added them against the working
# tree).
#
#   bash benches/compare/server.sh                     # writes benches/results/server.md
#   DURATION=4 WARMUP=1 ROUNDS=1 AB=0 bash benches/compare/server.sh          # a short run
#   CONFIGS="a b" TRANSPORTS=websocket RATES=saturated bash benches/compare/server.sh
#   set -a; . target/server-metrics/report.env; \
#       node benches/compare/server-report.mjs target/server-metrics  # the report again, from the runs
#
# Configurations (CONFIGS), each a fresh server process with the same settings (`--timeout 20s
# --max-interval 10s --interval 0s --listen 127.0.0.1:<port>`, RUST_LOG=warn, release build):
#   a   the binary, nobody scraping
#   b   the binary, `/metrics` scraped every second (SCRAPE_B, curl's `--rate`)
#   c   the binary, `/metrics` scraped every 100 ms (SCRAPE_C): a stress case, 150x Prometheus's
#       default 15 s scrape interval
# The scraper is one curl process on the generator's core(s), fetching `/metrics` at that rate
# over one kept-alive connection (as Prometheus does), from the server's start to the end of the
# run; it writes every scrape's time and size (scrapes.txt). In b and c one more scrape is taken
# once the 1,000 sessions are set up and before the publishers start (probe.txt).
#
# Workloads (`benches/load --mode fanout`, as run.sh): CLIENTS (1,000) subscribing sessions in
# ROOMS (10) rooms, PUBLISHERS (10) publishers, 100-byte payloads, batches of up to 10, over each
# of TRANSPORTS (long-polling, websocket), at each of RATES (`fixed`: RATE = 2,000 publishes/s,
# i.e. 200,000 deliveries/s; `saturated`: `--rate 0`); DURATION (10) s measured after WARMUP (3)
# s. Placement: the server pinned to SERVER_CORES (0), the generator and the scraper to GEN_CORES
# (1). ROUNDS (3) rounds; in each round every workload runs every configuration, one after the
# other, the order of the configurations rotated from round to round (a b c, b c a, c a b).
#
# A quiet machine: before each run the script waits up to QUIET_WAIT (600) s for both cores to be
# under QUIET_BUSY (20) % busy over QUIET_SPAN (2) s; a run during whose measured window other work
# (the box's busy time beyond the server, the generator and the scraper) took more than OTHER_MAX
# (25) % of a core is done again, up to RETRIES (2) times; every attempt is kept and the report
# takes medians over the clean ones.
#
# The counters (AB=1): `BEFORE=$BEFORE (217019e) WORKLOADS="fanout-lp fanout-ws" ROUNDS=$AB_ROUNDS
# (3) bash benches/compare/ab.sh`, after a wait for a quiet machine (ab.sh does not wait between
# its runs: a monitor samples the box's CPU every second meanwhile, and the report flags the runs
# other work disturbed); its logs are copied to target/server-metrics/ab/.
#
# Everything lands in LOGS (target/server-metrics): bin/ (the binaries, copied so that other
# builds cannot swap them mid-run), runs/<workload>-<config>-r<round>[-a<attempt>]/, ab/,
# report.env. The report is written by server-report.mjs.
#
# Needs: cargo, git, taskset, curl (>= 7.84, for --rate), ss (iproute2), node.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

DURATION=${DURATION:-10}
WARMUP=${WARMUP:-3}
CLIENTS=${CLIENTS:-1000}
ROOMS=${ROOMS:-10}
PUBLISHERS=${PUBLISHERS:-10}
PAYLOAD=${PAYLOAD:-100}
RATE=${RATE:-2000}
CONFIGS=${CONFIGS:-"a b c"}
TRANSPORTS=${TRANSPORTS:-"long-polling websocket"}
RATES=${RATES:-"fixed saturated"}
ROUNDS=${ROUNDS:-3}
SCRAPE_B=${SCRAPE_B:-1/s}
SCRAPE_C=${SCRAPE_C:-10/s}
QUIET_WAIT=${QUIET_WAIT:-600}
QUIET_BUSY=${QUIET_BUSY:-20}
QUIET_SPAN=${QUIET_SPAN:-2}
OTHER_MAX=${OTHER_MAX:-25}
RETRIES=${RETRIES:-2}
SERVER_CORES=${SERVER_CORES:-0}
GEN_CORES=${GEN_CORES:-1}
AB=${AB:-1}
BEFORE=${BEFORE:-217019e}
AB_ROUNDS=${AB_ROUNDS:-3}
OUT=${OUT:-$root/benches/results/server.md}
logs=${LOGS:-$root/target/server-metrics}
started=$SECONDS
started_at=$(date -u '+%Y-%m-%d %H:%M')

say() { printf '\n=== %s\n' "$*"; }

for tool in cargo git taskset curl ss node; do
    command -v "$tool" >/dev/null || { echo "server.sh: $tool is needed" >&2; exit 1; }
done
curl --help all 2>/dev/null | grep -q -- '--rate' \
    || { echo "server.sh: this curl has no --rate (7.84 or later is needed)" >&2; exit 1; }
if [ "$(nproc)" -lt 2 ]; then
    echo "server.sh: needs 2 cores (server on core $SERVER_CORES, generator on core $GEN_CORES)" >&2
    exit 1
fi
rm -rf "$logs/runs" "$logs/ab"
mkdir -p "$logs/runs" "$logs/ab" "$logs/bin" "$(dirname "$OUT")"

# --- Builds ------------------------------------------------------------------------------------
say "cargo build --release (tower-bayeux-server, tower-bayeux-load)"
cargo build --release -p tower-bayeux-server -p tower-bayeux-load
cp target/release/tower-bayeux "$logs/bin/tower-bayeux"
cp target/release/load "$logs/bin/load"
BIN=$logs/bin/tower-bayeux
LOAD=$logs/bin/load
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
if git status --porcelain --untracked-files=no -- src server Cargo.toml 2>/dev/null | grep -q .; then
    commit="$commit with uncommitted changes in src/ or server/"
fi

# --- Ports, processes, the machine -----------------------------------------------------------------
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
SERVER=""
SCRAPER=""
GEN=""
MONITOR=""
cleanup() { stop "$GEN" "$SCRAPER" "$SERVER" "$MONITOR"; }
trap cleanup EXIT

# wait_quiet: returns once both cores were under QUIET_BUSY % busy over QUIET_SPAN seconds, or
# after QUIET_WAIT seconds (then says so); prints what it saw (as history.sh and cluster.sh).
wait_quiet() {
    local start=$SECONDS busy
    while :; do
        local a b
        a=$(grep '^cpu[0-9]' /proc/stat)
        sleep "$QUIET_SPAN"
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
        if [ "$max" -lt "$QUIET_BUSY" ]; then
            echo "cores busy before the run: $busy (%) after waiting $((SECONDS - start)) s"
            return
        fi
        if [ $((SECONDS - start)) -ge "$QUIET_WAIT" ]; then
            echo "cores busy before the run: $busy (%) after waiting $((SECONDS - start)) s: never quiet"
            return
        fi
    done
}

# cpu_ticks PID: the process's user + system CPU so far, in clock ticks (empty when it is gone).
cpu_ticks() {
    [ -n "$1" ] && [ -r "/proc/$1/stat" ] || return 0
    sed 's/^.*) //' "/proc/$1/stat" | awk '{ print $12 + $13 }'
}

# other_work DIR: what the box's cores did during the measured window beyond the server, the
# generator and the scraper, in % of one core.
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
            const s = JSON.parse(fs.readFileSync(`${dir}/scraper.json`, "utf8"));
            const scraper = s.cpu_ticks_window === null ? 0 : s.cpu_ticks_window / 100;
            let busy = 0;
            for (const c of Object.keys(b)) { const dt = b[c].total - a[c].total; if (dt > 0) busy += 1 - (b[c].idle - a[c].idle) / dt; }
            console.log(Math.max(0, Math.round(100 * busy - 100 * ((r.server_cpu_s ?? 0) + r.gen_cpu_s + scraper) / r.window_s)));
        } catch { console.log(0); }
    ' "$1"
}

# --- Runs --------------------------------------------------------------------------------------
# run WORKLOAD CONFIG ROUND: one round of a configuration, done again (up to RETRIES times) while
# other work took more than OTHER_MAX % of a core during the window.
run() {
    local attempt dir other
    for attempt in $(seq 1 $((RETRIES + 1))); do
        dir="$logs/runs/$1-$2-r$3"
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

# run_once WORKLOAD CONFIG ROUND ATTEMPT DIR (WORKLOAD: <fixed|saturated>-<transport>)
run_once() {
    local workload=$1 config=$2 round=$3 attempt=$4 dir=$5
    local kind=${workload%%-*} transport=${workload#*-}
    mkdir -p "$dir"
    say "$workload, config $config, round $round$([ "$attempt" -gt 1 ] && echo ", attempt $attempt")"
    wait_quiet | tee "$dir/quiet.txt"
    local rate_args=(--rate "$RATE" --batch 10)
    [ "$kind" = saturated ] && rate_args=(--rate 0 --batch 10)
    local scrape=""
    case $config in
        a) ;;
        b) scrape=$SCRAPE_B ;;
        c) scrape=$SCRAPE_C ;;
        *) echo "server.sh: unknown configuration $config" >&2; exit 1 ;;
    esac

    local port
    port=$(free_port 18600)
    RUST_LOG=warn taskset -c "$SERVER_CORES" "$BIN" --timeout 20s --max-interval 10s --interval 0s \
        --listen "127.0.0.1:$port" >"$dir/server.log" 2>&1 &
    SERVER=$!
    if ! wait_port "$port"; then
        echo "server did not start (see $dir/server.log)" >&2
        stop "$SERVER"
        SERVER=""
        return 0
    fi
    local metrics_url="http://127.0.0.1:$port/metrics"
    : >"$dir/scrapes.txt"
    if [ -n "$scrape" ]; then
        # One process, one kept-alive connection, a scrape every 1/rate s; every scrape's time
        # (s), size (bytes) and status to scrapes.txt, the bodies discarded.
        taskset -c "$GEN_CORES" curl -s --rate "$scrape" \
            -w '%{stderr}%{time_total} %{size_download} %{http_code}\n' \
            "$metrics_url?n=[1-1000000]" >/dev/null 2>"$dir/scrapes.txt" &
        SCRAPER=$!
        # Its connection made before the generator's 1,000 connect at once (a SYN dropped from a
        # full accept queue costs a second).
        for _ in $(seq 1 40); do
            [ -s "$dir/scrapes.txt" ] && break
            sleep 0.05
        done
    fi
    taskset -c "$GEN_CORES" "$LOAD" --url "http://127.0.0.1:$port/cometd" --server-pid "$SERVER" \
        --transport "$transport" --mode fanout --clients "$CLIENTS" --rooms "$ROOMS" \
        --publishers "$PUBLISHERS" --payload "$PAYLOAD" "${rate_args[@]}" \
        --duration "$DURATION" --warmup "$WARMUP" --label "$workload-$config" >"$dir/load.log" 2>&1 &
    GEN=$!
    # Every session set up: the generator waits 2 s before it starts the publishers.
    for _ in $(seq 1 4000); do
        grep -qE '^setup: [0-9]+ sessions ready in' "$dir/load.log" 2>/dev/null && break
        kill -0 "$GEN" 2>/dev/null || break
        sleep 0.05
    done
    if [ -n "$scrape" ]; then
        # The scrape at 1,000 sessions, before the publishers start.
        taskset -c "$GEN_CORES" curl -s -o "$dir/probe-metrics.txt" \
            -w '%{time_total} %{size_download} %{http_code}\n' "$metrics_url" >"$dir/probe.txt" 2>&1 || true
    fi
    # The box's CPU and the scraper's over (about) the measured window, to tell how much other
    # work ran meanwhile and what the scraper cost.
    local s0="" s1="" n0=0 n1=0
    if kill -0 "$GEN" 2>/dev/null; then
        sleep "$(awk -v w="$WARMUP" 'BEGIN { print w + 2.3 }')"
        head -3 /proc/stat >"$dir/window-start.procstat"
        s0=$(cpu_ticks "$SCRAPER")
        n0=$(wc -l <"$dir/scrapes.txt")
        sleep "$(awk -v d="$DURATION" 'BEGIN { print (d > 1 ? d - 0.6 : d / 2) }')"
        head -3 /proc/stat >"$dir/window-end.procstat"
        s1=$(cpu_ticks "$SCRAPER")
        n1=$(wc -l <"$dir/scrapes.txt")
    fi
    wait "$GEN" || true
    GEN=""
    stop "$SCRAPER"
    SCRAPER=""
    local ticks=null
    if [ -n "$s0" ] && [ -n "$s1" ]; then
        ticks=$((s1 - s0))
    fi
    printf '{"rate":"%s","cpu_ticks_window":%s,"scrapes_window":%s,"window_approx_s":%s}\n' \
        "$scrape" "$ticks" "$((n1 - n0))" "$(awk -v d="$DURATION" 'BEGIN { print (d > 1 ? d - 0.6 : d / 2) }')" \
        >"$dir/scraper.json"
    grep -E '^(publishes|deliveries|latency|cpu|errors)' "$dir/load.log" || true
    if [ -n "$scrape" ]; then
        echo "scrapes: $(wc -l <"$dir/scrapes.txt") in all, $((n1 - n0)) in the window, scraper CPU $ticks ticks in the window; at $CLIENTS sessions: $(cat "$dir/probe.txt")"
    fi
    printf '{"workload":"%s","kind":"%s","transport":"%s","config":"%s","round":%s,"attempt":%s,"rate":%s,"port":%s}\n' \
        "$workload" "$kind" "$transport" "$config" "$round" "$attempt" "$RATE" "$port" >"$dir/meta.json"
    stop "$SERVER"
    SERVER=""
    sleep 1
}

# Rounds: every workload runs every configuration, one after the other, their order rotated from
# round to round so that neither drift nor the position in the sequence favours one.
read -r -a configs <<<"$CONFIGS"
for round in $(seq 1 "$ROUNDS"); do
    n=${#configs[@]}
    shift_by=$(((round - 1) % n))
    order=("${configs[@]:shift_by}" "${configs[@]:0:shift_by}")
    for kind in $RATES; do
        for transport in $TRANSPORTS; do
            for config in "${order[@]}"; do
                run "$kind-$transport" "$config" "$round"
            done
        done
    done
done
runs_done=$SECONDS

# --- The library's counters: ab.sh ---------------------------------------------------------------
if [ "$AB" = 1 ]; then
    say "the counters: BEFORE=$BEFORE WORKLOADS=\"fanout-lp fanout-ws\" ROUNDS=$AB_ROUNDS bash benches/compare/ab.sh"
    # A worktree left by an older run may be at another revision or state: start from a fresh one.
    if [ -d target/compare-ab/before-src ]; then
        git worktree remove --force target/compare-ab/before-src
    fi
    wait_quiet | tee "$logs/ab/quiet.txt"
    touch "$logs/ab/start-marker"
    # The box's CPU and that of this script's processes every second, to tell which of ab.sh's
    # runs other work disturbed; ab.sh's lines stamped with the time they came.
    node "$here/server-report.mjs" monitor "$$" "$logs/ab/monitor.jsonl" &
    MONITOR=$!
    BEFORE=$BEFORE WORKLOADS="fanout-lp fanout-ws" ROUNDS=$AB_ROUNDS bash "$here/ab.sh" \
        | while IFS= read -r line; do
            printf '%s %s\n' "$(date +%s%3N)" "$line" >>"$logs/ab/ab.out"
            printf '%s\n' "$line"
        done || echo "server.sh: ab.sh failed (see above)" >&2
    stop "$MONITOR"
    MONITOR=""
    # This run's logs (ab.sh's directory also holds older runs' logs of other workloads).
    find target/compare-ab -maxdepth 1 -name 'fanout-*.log' -newer "$logs/ab/start-marker" \
        -exec cp {} "$logs/ab/" \;
    cp target/compare-ab/results.md "$logs/ab/results.md" 2>/dev/null || true
fi

# --- Report --------------------------------------------------------------------------------------
say "writing $OUT"
# Kept so that the report can be written again from the runs:
#   set -a; . target/server-metrics/report.env; node benches/compare/server-report.mjs target/server-metrics
{
    printf '%s=%q\n' COMMIT "$commit" RUSTC "$(rustc --version)" \
        CPU "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" \
        CORES "$(nproc)" KERNEL "$(uname -r)" CURL "$(curl --version | head -1 | cut -d' ' -f1-2)" \
        DURATION "$DURATION" WARMUP "$WARMUP" CLIENTS "$CLIENTS" ROOMS "$ROOMS" \
        PUBLISHERS "$PUBLISHERS" PAYLOAD "$PAYLOAD" RATE "$RATE" SCRAPE_B "$SCRAPE_B" SCRAPE_C "$SCRAPE_C" \
        SERVER_CORES "$SERVER_CORES" GEN_CORES "$GEN_CORES" QUIET_BUSY "$QUIET_BUSY" \
        QUIET_SPAN "$QUIET_SPAN" QUIET_WAIT "$QUIET_WAIT" OTHER_MAX "$OTHER_MAX" AB "$AB" \
        BEFORE "$(git rev-parse --short "$BEFORE")" AB_ROUNDS "$AB_ROUNDS" \
        STARTED "$started_at" RUNS_MIN "$(((runs_done - started + 30) / 60))" \
        ELAPSED_MIN "$(((SECONDS - started + 30) / 60))" \
        COMMAND "${SERVER_COMMAND:-bash benches/compare/server.sh}"
} >"$logs/report.env"
(set -a; . "$logs/report.env"; node "$here/server-report.mjs" "$logs") >"$OUT"
cat "$OUT"
