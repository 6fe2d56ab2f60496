#!/usr/bin/env bash
# Before/after comparison of tower-bayeux itself: the conformance server built at another git
# revision against the working tree, on the same workloads and settings as run.sh (server on
# core 0, the generator on core 1, 20 s timeout, 10 s max interval), the two builds taking turns
# so that drift in the machine's state hits both.
#
#   BEFORE=<rev> bash benches/compare/ab.sh       # writes target/compare-ab/results.md
#   BEFORE=<rev> ROUNDS=3 WORKLOADS="echo-lp fanout-lp" bash benches/compare/ab.sh
#
# Both servers are driven by the generator of the working tree. Workloads: fanout-lp, fanout-ws
# (1,000 clients, 10 rooms, 2,000 publishes/s), echo-lp, echo-ws (50 clients, one echo
# outstanding each: the server saturated), echo1-lp, echo1-ws (one client: the round trip of an
# idle server), idle-lp, idle-ws (10,000 sessions and no publisher: the server's RSS per
# session). Needs cargo, git and taskset.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

: "${BEFORE:?set BEFORE to the git revision to compare with}"
ROUNDS=${ROUNDS:-2}
DURATION=${DURATION:-15}
WARMUP=${WARMUP:-3}
WORKLOADS=${WORKLOADS:-"echo-lp echo-ws fanout-lp fanout-ws"}
out=$root/target/compare-ab
mkdir -p "$out"
port=18180

before_dir=$out/before-src
rev=$(git rev-parse --short "$BEFORE")
if [ ! -d "$before_dir" ]; then
    git worktree add --detach "$before_dir" "$BEFORE" >/dev/null
else
    git -C "$before_dir" checkout -q -f --detach "$BEFORE"
fi
# The checkout lies inside this workspace's directory: a revision that is not a workspace root
# of its own is made one, or cargo takes it for a stray member of this one.
grep -q '^\[workspace\]' "$before_dir/Cargo.toml" || printf '\n[workspace]\n' >>"$before_dir/Cargo.toml"
echo "=== building $rev and the working tree (release)"
cargo build --release --quiet --manifest-path "$before_dir/Cargo.toml" --example conformance \
    --target-dir "$out/before-target"
cargo build --release --quiet --example conformance
cargo build --release --quiet -p tower-bayeux-load
declare -A server=(
    [before]="$out/before-target/release/examples/conformance"
    [after]="$root/target/release/examples/conformance"
)
load=$root/target/release/load
# Each build without the timestamp extension when it has the flag (the conformance server runs
# it for the interop tests; the load comparisons measure without it).
declare -A extra=()
for side in before after; do
    extra[$side]=""
    if "${server[$side]}" --help 2>/dev/null | grep -q -- '--no-timestamp'; then
        extra[$side]="--no-timestamp"
    fi
done

args_for() {
    case $1 in
        fanout-lp) echo "--transport long-polling --mode fanout --clients 1000 --rooms 10 --publishers 10 --payload 100 --rate 2000 --batch 10" ;;
        fanout-ws) echo "--transport websocket --mode fanout --clients 1000 --rooms 10 --publishers 10 --payload 100 --rate 2000 --batch 10" ;;
        echo-lp) echo "--transport long-polling --mode echo --clients 50 --payload 100" ;;
        echo-ws) echo "--transport websocket --mode echo --clients 50 --payload 100" ;;
        idle-lp) echo "--transport long-polling --mode fanout --clients 10000 --rooms 10 --publishers 0 --ramp 500" ;;
        idle-ws) echo "--transport websocket --mode fanout --clients 10000 --rooms 10 --publishers 0 --ramp 500" ;;
        echo1-lp) echo "--transport long-polling --mode echo --clients 1 --payload 100" ;;
        echo1-ws) echo "--transport websocket --mode echo --clients 1 --payload 100" ;;
        *) echo "ab.sh: unknown workload $1" >&2; exit 1 ;;
    esac
}

results=$out/results.md
{
    echo "# tower-bayeux $rev (before) vs the working tree (after)"
    echo
    echo "$(date -u +%Y-%m-%dT%H:%MZ), $ROUNDS rounds of ${DURATION} s, server on core 0, generator on core 1."
    echo
} >"$results"
for round in $(seq 1 "$ROUNDS"); do
    for workload in $WORKLOADS; do
        for side in before after; do
            log=$out/$workload-$side-$round.log
            echo "=== round $round: $workload, $side"
            # shellcheck disable=SC2046
            taskset -c 1 "$load" --spawn "taskset -c 0 ${server[$side]} --addr 127.0.0.1:$port --timeout-ms 20000 --max-interval-ms 10000 ${extra[$side]}" \
                --url "http://127.0.0.1:$port/cometd" $(args_for "$workload") \
                --duration "$DURATION" --warmup "$WARMUP" --label "$side" >"$log" 2>&1 || true
            grep -E '^(deliveries|latency|echo|cpu|errors|memory|server RSS)' "$log" | sed "s/^/  /" || true
            {
                echo "## $workload, $side, round $round"
                echo
                echo '```'
                grep -E '^(publishes|deliveries|latency|echo|cpu|errors|memory|server RSS)' "$log" || echo "(no result; see $log)"
                echo '```'
                echo
            } >>"$results"
            sleep 1
        done
    done
done
echo "=== written: $results"
