// Turns the runs cluster.sh gathered (target/cluster/runs/<run>/) into benches/results/cluster.md.
//
//   node cluster-report.mjs target/cluster/runs > cluster.md
import fs from "node:fs";
import path from "node:path";

const runsDir = process.argv[2];
const env = process.env;
const read = (dir, file) => {
    try {
        return fs.readFileSync(path.join(dir, file), "utf8");
    } catch {
        return null;
    }
};

// --- Parsers -------------------------------------------------------------------------------------
const info = text => Object.fromEntries((text ?? "").split(/\r?\n/).filter(l => l.includes(":") && !l.startsWith("#"))
    .map(l => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]));
const publishCalls = text => Number((info(text)["cmdstat_publish"] ?? "calls=0").match(/calls=(\d+)/)[1]);
// CLIENT LIST: one client a line, `key=value` fields; keyed by the client's port.
const clients = text => {
    const byPort = {};
    for (const line of (text ?? "").split(/\r?\n/).filter(Boolean)) {
        const f = Object.fromEntries(line.split(" ").map(kv => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]));
        const port = Number((f.addr ?? "").split(":").pop());
        byPort[port] = f;
    }
    return byPort;
};
// `ss -tinpH`: per socket a line with the addresses and the process, then one with tcp_info.
const sockets = text => {
    const lines = (text ?? "").split(/\r?\n/);
    const out = {};
    for (let i = 0; i < lines.length; i++) {
        const m = lines[i].match(/^\S.*?:(\d+)\s+\S+:\d+\s+users:\(\("([^"]+)",pid=(\d+)/);
        if (!m) continue;
        const detail = lines[i + 1] ?? "";
        const num = key => Number((detail.match(new RegExp(`\\b${key}:(\\d+)`)) ?? [0, 0])[1]);
        out[Number(m[1])] = {port: Number(m[1]), name: m[2], pid: Number(m[3]),
            received: num("bytes_received"), sent: num("bytes_sent")};
    }
    return out;
};
const numsub = text => {
    const l = (text ?? "").split(/\r?\n/).filter(Boolean);
    const out = {};
    for (let i = 0; i + 1 < l.length; i += 2) out[l[i]] = Number(l[i + 1]);
    return out;
};
// Busy share of each core between two `/proc/stat` readings.
const procstat = text => Object.fromEntries((text ?? "").split("\n").filter(l => /^cpu\d/.test(l)).map(l => {
    const [name, ...v] = l.trim().split(/\s+/);
    const n = v.map(Number);
    const idle = n[3] + n[4];
    return [name, {idle, total: n.reduce((a, b) => a + b, 0)}];
}));
const busy = (a, b) => Object.keys(b).map(core => {
    const dt = b[core].total - (a[core]?.total ?? 0);
    return dt > 0 ? `${core.slice(3)}: ${Math.round(100 * (1 - (b[core].idle - a[core].idle) / dt))}%` : "";
}).filter(Boolean).join(", ");

// The length of a room's Redis channel name (`bayeux:/bench/room/<k>`; exact below 10 rooms).
const roomChannelLength = "bayeux:/bench/room/".length + String(Math.max(0, Number(env.ROOMS ?? 10) - 1)).length;

// --- Runs ----------------------------------------------------------------------------------------
const runs = [];
for (const name of fs.readdirSync(runsDir).sort()) {
    const dir = path.join(runsDir, name);
    const meta = JSON.parse(read(dir, "meta.json") ?? "null");
    if (!meta) continue;
    const log = read(dir, "load.log") ?? "";
    const resultLine = log.split("\n").filter(l => l.startsWith("RESULT ")).pop();
    const r = resultLine ? JSON.parse(resultLine.slice(7)) : null;
    const run = {meta, r, dir};
    // Other work on the box during the measured window: the cores' busy time less what the
    // servers and the generator used, in % of one core.
    const ws = procstat(read(dir, "window-start.procstat")), we = procstat(read(dir, "window-end.procstat"));
    if (r && Object.keys(ws).length && Object.keys(we).length) {
        let busyCores = 0;
        for (const core of Object.keys(we)) {
            const dt = we[core].total - ws[core].total;
            if (dt > 0) busyCores += 1 - (we[core].idle - ws[core].idle) / dt;
        }
        run.other = Math.max(0, 100 * busyCores - 100 * ((r.server_cpu_s ?? 0) + r.gen_cpu_s) / r.window_s);
    }
    // Node logs: warnings and errors (RUST_LOG=warn).
    run.nodeLog = {};
    for (const node of ["a", "b"]) {
        const text = read(dir, `node-${node}.log`);
        if (text === null) continue;
        const bad = text.split("\n").filter(l => /\b(WARN|ERROR)\b/.test(l));
        run.nodeLog[node] = bad;
    }
    if (meta.redis) {
        const before = {stats: info(read(dir, "before.stats")), publish: publishCalls(read(dir, "before.commandstats")),
            clients: clients(read(dir, "before.clients")), ss: sockets(read(dir, "before.ss"))};
        const after = {stats: info(read(dir, "after.stats")), publish: publishCalls(read(dir, "after.commandstats")),
            clients: clients(read(dir, "after.clients")), ss: sockets(read(dir, "after.ss")),
            numsub: numsub(read(dir, "after.numsub"))};
        // Subscriptions as they were while publishing: the "before" snapshot (at the end the
        // generator's sessions are gone and the nodes unsubscribed).
        const redis = {before, after, publishes: after.publish - before.publish, publishesBefore: before.publish,
            netOut: Number(after.stats.total_net_output_bytes ?? 0) - Number(before.stats.total_net_output_bytes ?? 0),
            netIn: Number(after.stats.total_net_input_bytes ?? 0) - Number(before.stats.total_net_input_bytes ?? 0),
            numsub: numsub(read(dir, "before.numsub")),
            // Redis channels with a subscriber, and those of them named after a wildcard pattern.
            channels: (read(dir, "before.channels") ?? "").split(/\r?\n/).filter(Boolean)};
        redis.wildChannels = redis.channels.filter(ch => ch.endsWith("*")).length;
        // Connections by owner: node A, node B, the observer; a node's subscribing connection is
        // the one with Redis subscriptions (`sub=` in CLIENT LIST).
        const owner = pid => pid === meta.node_a.pid ? "a" : pid === meta.node_b?.pid ? "b" : pid === meta.observer?.pid ? "observer" : null;
        redis.conns = {};
        redis.reconnected = [];
        for (const s of Object.values(after.ss)) {
            const who = owner(s.pid);
            if (!who) continue;
            const client = before.clients[s.port] ?? after.clients[s.port] ?? {};
            const role = who === "observer" ? "observer" : Number(client.sub ?? 0) > 0 ? "sub" : "pub";
            const prev = before.ss[s.port];
            if (!prev) redis.reconnected.push(`${who}/${role} (port ${s.port})`);
            // The confirmations of the unsubscriptions at the end (the sessions gone), which are
            // no messages: RESP3 pushes `>3 $11 unsubscribe $<len> <channel> :<remaining>`.
            const subsBefore = Number(before.clients[s.port]?.sub ?? 0);
            const subsAfter = Number(after.clients[s.port]?.sub ?? subsBefore);
            let unsubBytes = 0;
            for (let n = subsAfter; n < subsBefore; n++) {
                const len = roomChannelLength;
                unsubBytes += 4 + 5 + 13 + (3 + String(len).length) + len + 2 + (3 + String(n).length);
            }
            const received = s.received - (prev?.received ?? 0);
            redis.conns[`${who}.${role}`] = {
                raw: received, unsubBytes, received: received - unsubBytes, sent: s.sent - (prev?.sent ?? 0),
                subs: subsBefore, subsAfter, cmd: client.cmd,
            };
        }
        // Connections that were there before and are gone after.
        redis.lost = Object.values(before.ss).filter(s => owner(s.pid) && !after.ss[s.port]).map(s => `${owner(s.pid)} (port ${s.port})`);
        const obsText = read(dir, "observer.txt") ?? "";
        redis.observerMessages = obsText.split("\n").filter(l => l === "message").length;
        const obs = redis.conns["observer.observer"];
        redis.messageBytes = obs && redis.observerMessages > 0 ? obs.received / redis.observerMessages : null;
        for (const who of ["a", "b"]) {
            const c = redis.conns[`${who}.sub`];
            if (c && redis.messageBytes) c.messages = c.received / redis.messageBytes;
        }
        run.redis = redis;
    }
    runs.push(run);
}

// --- Formatting ----------------------------------------------------------------------------------
const num = (v, digits = 0) => v === null || v === undefined || Number.isNaN(v) ? "–"
    : Number(v).toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits});
const msf = v => v === null || v === undefined ? "–" : v < 10 ? `${num(v, 2)} ms` : `${num(v, 1)} ms`;
const pctv = v => v === null || v === undefined || Number.isNaN(v) ? "–" : `${num(v)}%`;
const median = xs => {
    const v = xs.filter(x => x !== null && x !== undefined && !Number.isNaN(x)).sort((a, b) => a - b);
    if (!v.length) return null;
    return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
};
const range = (xs, f) => {
    const v = xs.filter(x => x !== null && x !== undefined && !Number.isNaN(x));
    return v.length > 1 ? ` (${f(Math.min(...v))}–${f(Math.max(...v))})` : "";
};
const sum = xs => xs.reduce((a, b) => a + (b ?? 0), 0);
const setupNames = {
    "one": "one node",
    "one-redis": "one node + Redis",
    "two-split": "two nodes, subscribers split",
    "two-remote": "two nodes, all subscribers on B",
    "two-nointerest": "two nodes, B without interest",
};
const setupOrder = Object.keys(setupNames);
const kindName = m => m.kind === "fixed" ? `${num(m.rate)} publishes/s` : "saturated";
const order = (x, y) => (x.kind === y.kind ? 0 : x.kind === "fixed" ? -1 : 1)
    || x.transport.localeCompare(y.transport)
    || setupOrder.indexOf(x.setup) - setupOrder.indexOf(y.setup);
const label = m => `${kindName(m)}, ${m.transport}, ${setupNames[m.setup] ?? m.setup}`;
// CPU share (% of a core over the window) of node A, node B or Redis in one run: the generator
// lists node A, then node B, then Redis.
const cpuOf = (run, which) => {
    const r = run.r;
    if (!r) return null;
    const each = r.server_cpu_s_each ?? [r.server_cpu_s];
    const procs = ["a", ...(run.meta.node_b ? ["b"] : []), ...(run.meta.redis ? ["redis"] : [])];
    const i = procs.indexOf(which);
    return i < 0 || each[i] === null || each[i] === undefined ? null : 100 * each[i] / r.window_s;
};
const allCpu = run => run.r ? 100 * run.r.server_cpu_s / run.r.window_s : null;

// The configurations, each with its rounds.
const configs = [];
for (const run of runs) {
    let c = configs.find(c => c.meta.name === run.meta.name);
    if (!c) configs.push(c = {meta: run.meta, runs: []});
    c.runs.push(run);
}
configs.sort((x, y) => order(x.meta, y.meta));
const rounds = Math.max(...runs.map(run => run.meta.round ?? 1));

// Rounds during which other work took more than OTHER_MAX % of a core are left out of the medians
// when the configuration has a cleaner round.
const OTHER_MAX = Number(env.OTHER_MAX ?? 25);
const clean = c => {
    const rs = c.runs.filter(run => run.r);
    const ok = rs.filter(run => run.other === undefined || run.other <= OTHER_MAX);
    return ok.length ? ok : rs;
};
// A configuration's Redis figures, summed over its rounds.
const redisAgg = c => {
    const rs = c.runs.filter(run => run.redis && run.r);
    if (!rs.length) return null;
    const conn = key => {
        const cs = rs.map(run => run.redis.conns[key]).filter(Boolean);
        if (!cs.length) return null;
        const withMsgs = cs.every(x => x.messages !== undefined);
        return {received: sum(cs.map(x => x.received)), sent: sum(cs.map(x => x.sent)),
            messages: withMsgs ? sum(cs.map(x => x.messages)) : undefined, subs: [...new Set(cs.map(x => x.subs))].join("/")};
    };
    const obsMsgs = sum(rs.map(run => run.redis.observerMessages));
    const obsBytes = sum(rs.map(run => run.redis.conns["observer.observer"]?.received ?? 0));
    return {rs, accepted: sum(rs.map(run => run.r.accepted)), commands: sum(rs.map(run => run.redis.publishes)),
        a: conn("a.sub"), b: conn("b.sub"), apub: conn("a.pub"), messageBytes: obsMsgs ? obsBytes / obsMsgs : null};
};
const find = (setup, transport, kind) => configs.find(c => c.meta.setup === setup && c.meta.transport === transport && c.meta.kind === kind);

const out = [];
const p = s => out.push(s);
p("# Fan-out on two nodes over Redis vs one node");
p("");
p(`Generated by \`benches/compare/cluster.sh\` on ${env.GENERATED ?? new Date().toISOString().replace("T", " ").slice(0, 16)} UTC. Reproduce with \`${env.COMMAND}\`; raw logs in \`target/cluster/runs/<run>-r<round>/\`.`);
p("");
p(`**These figures come from a shared 2-core box**: ${env.CPU}, ${env.CORES} cores, Linux ${env.KERNEL}, with other work (builds and tests of the same checkout) running on it at times: each run waits (up to a minute) for both cores to be under ${env.QUIET_BUSY}% busy before it starts, a run during which other work still took more than ${OTHER_MAX}% of a core is repeated, every configuration ran in ${rounds} rounds, and the tables give medians over the clean runs (ranges in parentheses). Compare rows of this file with each other rather than with other files. tower-bayeux ${env.COMMIT}, ${env.RUSTC}, release build of the \`conformance\` example with \`--features redis\`; Redis ${env.REDIS_VERSION} started by the script (no persistence).`);
p("");
p("## Method");
p("");
p(`- Workload (the \`fanout\` mode of \`benches/load\`): ${num(Number(env.CLIENTS))} subscribing sessions in ${env.ROOMS} rooms \`/bench/room/<k>\`, ${env.PUBLISHERS} publishing sessions (not subscribed) with ${env.PAYLOAD}-byte payloads, ${env.DURATION} s measured after ${env.WARMUP} s of warm-up; either a fixed ${num(Number(env.RATE))} publishes/s in all (${num(Number(env.RATE) * Number(env.CLIENTS) / Number(env.ROOMS))} deliveries/s; in the *B without interest* set-up all of it goes to rooms 0-4, whose 500 subscribers are on node A: as many deliveries, all from A), or *saturated*: the publishers unthrottled (batches of 10, the next batch on the reply).`);
p("- Set-ups, each with fresh node processes: **one node** (no Redis: the baseline); **one node + Redis** (`--redis`: each broadcast goes to Redis and comes back to the same node, which discards its own copy); **two nodes, subscribers split**: publishers on node A, every room's subscribers split evenly over A and B (50 + 50 per room); **two nodes, all subscribers on B**: publishers on A, every subscriber on B; **two nodes, B without interest**: publishers on A publishing to rooms 0-4 only, rooms 0-4's subscribers on A and rooms 5-9's on B (`--spread rooms --publish-rooms 5`).");
p(`- Placement: the node(s) and Redis pinned together to core ${env.SERVER_CORES}, the generator (one thread) to core ${env.GEN_CORES}. One node and two nodes thus get the same CPU: the comparison shows what the second node and the Redis hop cost, not a scale-out (which needs a core per node this box does not have).`);
p("- Node settings: `conformance --no-timestamp --timeout-ms 20000 --max-interval-ms 10000`, plus `--redis redis://127.0.0.1:<port>` in the Redis set-ups; the broker's defaults (prefix `bayeux:`, inbound and outbound queues of 10,000 messages); `RUST_LOG=warn`.");
p("- Deliveries/s, publishes/s, latency (publish sent → subscriber read), CPU: the generator's figures over the measured window; CPU per process is user + system time from `/proc/<pid>/stat` (100% = one core). *Expected − delivered* counts deliveries of the window's publishes that never arrived; *lost* is the generator's per-stream sequence gaps not announced by a `/meta/overflow` marker (both summed over the runs used).");
p("- Redis figures, counted from when every session is set up (before the first publish) to after the generator's drain, so over the same publishes as *accepted* (warm-up, window and drain), summed over all runs of a configuration: PUBLISH commands from `INFO commandstats`; subscriptions from `CLIENT LIST` (`sub=`) and `PUBSUB NUMSUB` once the sessions are set up; what Redis sent each node from the kernel's byte counters of the node's subscribing connection (`ss -ti` on the node's socket: Redis 7.0's `CLIENT LIST` has no per-client byte count), turned into messages by dividing by the mean size of one message as measured on an observer (`redis-cli SUBSCRIBE bayeux:/bench/room/0`, on the generator's core, counting the messages it prints) that receives the same messages. A node's two connections are told apart by their owner process (`ss -p`) and by `sub=` (the library does not name its connections).");
p("");

p("## Summary");
p("");
{
    const line = c => {
        if (!c) return null;
        const rs = clean(c);
        const m = fn => median(rs.map(fn));
        const parts = [`${num(m(run => run.r.deliveries_per_s))} deliveries/s`, `p50 ${msf(m(run => run.r.p50_ms))}`, `p99 ${msf(m(run => run.r.p99_ms))}`];
        const cpu = ["a", "b", "redis"].map(w => [w, m(run => cpuOf(run, w))]).filter(([, v]) => v !== null);
        const names = {a: "node A", b: "node B", redis: "Redis"};
        parts.push(cpu.length > 1
            ? `CPU ${cpu.map(([w, v]) => `${names[w]} ${pctv(v)}`).join(" + ")} = ${pctv(m(allCpu))}`
            : `CPU ${pctv(m(allCpu))}`);
        return parts.join(", ");
    };
    for (const kind of ["fixed", "saturated"]) {
        for (const transport of ["long-polling", "websocket"]) {
            const one = find("one", transport, kind), two = find("two-split", transport, kind);
            if (!one && !two) continue;
            const meta = (one ?? two).meta;
            const extra = [["one-redis", "one node + Redis"], ["two-remote", "two nodes, all subscribers on B"]]
                .map(([s, n]) => [n, line(find(s, transport, kind))]).filter(([, l]) => l)
                .map(([n, l]) => `; ${n}: ${l}`).join("");
            p(`- ${kindName(meta)}, ${transport}: one node ${line(one) ?? "–"}; two nodes (subscribers split) ${line(two) ?? "–"}${extra}.`);
            if (one && two) {
                const m = (c, fn) => median(clean(c).map(fn));
                const d = fn => m(two, fn) - m(one, fn);
                const rel = fn => 100 * (m(two, fn) / m(one, fn) - 1);
                const sign = (v, digits = 0) => Number(num(Math.abs(v), digits).replace(/,/g, "")) === 0 ? "±0" : `${v >= 0 ? "+" : "−"}${num(Math.abs(v), digits)}`;
                p(`  - Two nodes against one: deliveries/s ${sign(rel(run => run.r.deliveries_per_s))}%, p50 ${sign(d(run => run.r.p50_ms), 1)} ms, p99 ${sign(d(run => run.r.p99_ms), 1)} ms, servers' CPU ${sign(d(allCpu))} points of a core${transport === "long-polling" ? " (long-polling takes the whole core either way: see below)" : ""}.`);
            }
        }
    }
    const agg = setup => configs.filter(c => c.meta.setup === setup).map(redisAgg).filter(Boolean);
    const ratio = (xs, key) => {
        const accepted = sum(xs.map(x => x.accepted));
        const msgs = xs.map(x => x[key]?.messages);
        return msgs.some(v => v === undefined) || !accepted ? null : sum(msgs) / accepted;
    };
    const split = agg("two-split"), remote = agg("two-remote"), none = agg("two-nointerest"), oneRedis = agg("one-redis");
    const all = configs.map(redisAgg).filter(Boolean);
    if (all.length) {
        const commands = sum(all.map(x => x.commands)) / sum(all.map(x => x.accepted));
        const wild = sum(configs.flatMap(c => c.runs.filter(run => run.redis).map(run => run.redis.wildChannels)));
        p(`- Redis, per published message (over all runs): node A sends ${num(commands, 2)} PUBLISH commands (the room's channel and its wildcard ancestors \`/bench/room/*\`, \`/bench/room/**\`, \`/bench/**\`, \`/**\`, ${wild ? `${wild} of which had a subscriber in some run` : "which no node subscribes to here: \`PUBSUB CHANNELS\` listed no wildcard channel in any run"}; ${num(sum(all.filter(x => x.apub).map(x => x.apub.sent)) / sum(all.filter(x => x.apub).map(x => x.accepted)))} bytes upstream for a message of ${num(all.find(x => x.messageBytes)?.messageBytes ?? 0)} bytes). Redis's own CPU stayed at ${pctv(Math.min(...configs.flatMap(c => clean(c).map(run => cpuOf(run, "redis"))).filter(v => v !== null)))}–${pctv(Math.max(...configs.flatMap(c => clean(c).map(run => cpuOf(run, "redis"))).filter(v => v !== null)))} of a core.`);
        if (split.length) p(`  - Subscribers split: Redis pushes ${num(ratio(split, "b"), 3)} message to node B and ${num(ratio(split, "a"), 3)} to node A (its own broadcast coming back, discarded) per publish, for 100 subscribers per room: one message per node with interest, not one per subscriber.`);
        if (remote.length) p(`  - All subscribers on B: ${num(ratio(remote, "b"), 3)} message to node B and ${num(ratio(remote, "a"), 3)} to node A per publish (A has no subscriber, so it is not subscribed to the room channels).`);
        if (oneRedis.length) p(`  - One node + Redis: its own broadcasts come back, ${num(ratio(oneRedis, "a"), 3)} per publish.`);
        if (none.length) {
            const bytes = none.flatMap(x => x.rs.map(run => run.redis.conns["b.sub"]?.received)).filter(v => v !== undefined);
            const raw = none.flatMap(x => x.rs.map(run => run.redis.conns["b.sub"]?.raw)).filter(v => v !== undefined);
            p(`  - B without interest: over ${num(sum(none.map(x => x.accepted)))} publishes (${none.reduce((n, x) => n + x.rs.length, 0)} runs), Redis sent node B's subscribing connection ${num(Math.max(...bytes))} bytes beyond (un)subscribe confirmations in the worst run (${num(Math.max(...raw))} bytes in all, confirmations included): zero messages; node A got ${num(ratio(none, "a"), 3)} per publish.`);
        }
    }
    const silent = runs.filter(run => run.r && (run.r.lost_without_notice || run.r.duplicates || run.r.errors
        || run.r.expected - run.r.delivered > run.r.dropped_notice));
    const noticed = runs.filter(run => run.r && run.r.dropped_notice);
    p(silent.length
        ? `- Losses without notice, duplicates or errors in ${silent.length} of ${runs.length} runs: ${silent.map(run => `${label(run.meta)}, round ${run.meta.round}`).join("; ")} (see *Every run*).`
        : `- Nothing lost without notice, duplicated or failed in any of the ${runs.length} runs (gaps not covered by a \`/meta/overflow\` marker, duplicates, generator errors: all 0).`);
    if (noticed.length) {
        p(`- Dropped with notice (a session's queue full: the oldest messages dropped and a \`/meta/overflow\` marker sent): ${noticed.map(run => `${num(run.r.dropped_notice)} in ${label(run.meta)}, round ${run.meta.round} (its expected − delivered: ${num(run.r.expected - run.r.delivered)})`).join("; ")}.`);
    }
    const warned = runs.filter(run => Object.values(run.nodeLog).some(l => l.length));
    p(warned.length ? `- Node warnings or errors in ${warned.length} runs: see *Every run*.` : "- No warning or error in any node's log (`RUST_LOG=warn`).");
}
p("");
p("Caveats: two nodes here share the one core one node has (and Redis shares it too), so the two-node rows show what the Redis hop and the split cost, not what a second machine would add. Long-polling keeps the servers' core busy at any rate (see below), so its cost shows in latency and in messages per response. In the saturated websocket rows the servers' core is not at 100%: the ten publishers, each with one batch awaiting its reply, and the generator's own core (near its limit) bound them. Single runs on this box vary by 10-20% (see *Every run*); differences smaller than that are noise.");
p("");

p("## Throughput, latency, CPU");
p("");
p("| Configuration | Runs used | Deliveries/s | Publishes/s accepted (target) | Responses or frames/s (messages each) | p50 | p99 | p99.9 | max | Expected − delivered / lost / dup | CPU node A | CPU node B | CPU Redis | CPU all servers | Generator CPU | Errors |");
p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const c of configs) {
    const rs = clean(c);
    if (!rs.length) {
        p(`| ${label(c.meta)} | (no result: see \`${c.runs[0].dir}/load.log\`) |||||||||||||`);
        continue;
    }
    const f = key => rs.map(run => run.r[key]);
    const cpu = which => rs.map(run => cpuOf(run, which));
    const rate = rs[0].r.rate;
    const dropped = sum(f("dropped_notice"));
    const frames = median(f("frames_per_s"));
    p(`| ${label(c.meta)} | ${rs.length} of ${c.runs.length} | ${num(median(f("deliveries_per_s")))}${range(f("deliveries_per_s"), num)} | ${num(median(f("publishes_per_s")))} (${rate > 0 ? num(rate) : "unthrottled"}) | ${num(frames)} (${num(median(f("deliveries_per_s")) / frames, 1)}) | ${msf(median(f("p50_ms")))}${range(f("p50_ms"), v => num(v, v < 10 ? 2 : 1))} | ${msf(median(f("p99_ms")))}${range(f("p99_ms"), v => num(v, v < 10 ? 2 : 1))} | ${msf(median(f("p999_ms")))} | ${msf(median(f("max_ms")))} | ${num(sum(rs.map(run => run.r.expected - run.r.delivered)))} / ${num(sum(f("lost_without_notice")))} / ${num(sum(f("duplicates")))}${dropped ? ` (${num(dropped)} dropped with notice)` : ""} | ${pctv(median(cpu("a")))} | ${pctv(median(cpu("b")))} | ${pctv(median(cpu("redis")))} | ${pctv(median(rs.map(allCpu)))}${range(rs.map(allCpu), num)} | ${pctv(median(rs.map(run => 100 * run.r.gen_cpu_s / run.r.window_s)))} | ${num(sum(f("errors")))} |`);
}
p("");
p(`*Runs used*: those the medians are taken over, of all the configuration's runs: a run during whose measured window other work on the box used more than ${OTHER_MAX}% of a core is repeated (up to twice) and left out when the configuration has cleaner runs (see *Every run*); losses, duplicates and errors are summed over the runs used, and listed for every run below. CPU: share of one core over the measured window; *all servers* is node A + node B + Redis, all on the same core, so 100% there means that core was the limit. Generator CPU near 100% means the generator was. Long-polling: with interval 0 every delivery ends a poll and the client polls again at once, so the servers spend whatever CPU they have on responses and carry more messages per response when they have less: its CPU is near 100% at any rate here, and its cost shows in the messages per response and the latency rather than in the CPU.`);
p("");

const redisConfigs = configs.filter(c => c.runs.some(run => run.redis && run.r));
if (redisConfigs.length) {
    p("## Redis traffic");
    p("");
    p("| Configuration | Publishes accepted | PUBLISH commands / publish | Redis bytes in / out per publish (all clients, the observer and the replies to PUBLISH included) | Redis channels subscribed: A / B | Room channels' subscribing nodes (`PUBSUB NUMSUB`) | Messages Redis → A: total, per publish | Messages Redis → B: total, per publish | Bytes Redis → A / B per publish | Bytes A → Redis per publish | Mean message size |");
    p("| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
    for (const c of redisConfigs) {
        const {rs, accepted, commands, a, b, apub, messageBytes} = redisAgg(c);
        // The observer is room 0's extra subscriber: not counted.
        const first = rs[0];
        const grouped = {};
        for (const [ch, n] of Object.entries(first.redis.numsub)) {
            (grouped[n - (ch === first.meta.observer?.channel ? 1 : 0)] ??= []).push(ch.split("/").pop());
        }
        const numsubText = Object.entries(grouped).map(([n, rooms]) => `rooms ${rooms.join(",")}: ${n}`).join("; ");
        const msgs = x => x?.messages === undefined ? "–" : `${num(x.messages)}, ${num(x.messages / accepted, 3)}`;
        const perPub = x => x ? num(x.received / accepted) : "–";
        p(`| ${label(c.meta)} | ${num(accepted)} | ${num(commands / accepted, 2)} | ${num(sum(rs.map(run => run.redis.netIn)) / accepted)} / ${num(sum(rs.map(run => run.redis.netOut)) / accepted)} | ${a ? a.subs : "–"} / ${b ? b.subs : "–"} | ${numsubText} | ${msgs(a)} | ${msgs(b)} | ${perPub(a)} / ${perPub(b)} | ${apub ? num(apub.sent / accepted) : "–"} | ${messageBytes ? `${num(messageBytes, 1)} B` : "–"} |`);
    }
    p("");
    p("*Redis channels subscribed* counts each node's own channel (`bayeux:node:<id>`, for deliveries to one session) besides the room channels. *Messages Redis → X* are what Redis pushed on node X's subscribing connection: a node subscribed to a room channel gets each message published there once, whatever its number of local subscribers; a node with local subscribers on a channel also gets its own broadcasts back (and discards them). *Bytes A → Redis* are node A's PUBLISH commands, one per Redis channel a broadcast is published on (the channel and its wildcard patterns: see the commands per publish).");
    p("");

    const none = redisConfigs.filter(c => c.meta.setup === "two-nointerest");
    if (none.length) {
        p("## A node without interest gets nothing");
        p("");
        p("| Configuration | Publishes accepted (rooms 0-4), per run | Node B's Redis subscriptions | Bytes Redis → B's subscribing connection, first publish to end, per run | of which (un)subscribe confirmations | Messages Redis → B, per run | Messages Redis → A, per run | CPU node B |");
        p("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
        for (const c of none) {
            const rs = c.runs.filter(run => run.redis && run.r);
            const per = f => rs.map(f).map(v => v === null || v === undefined ? "–" : num(v)).join(" / ");
            const bRooms = Object.entries(rs[0].redis.numsub).filter(([, n]) => n > 0).map(([ch]) => ch.split("/").pop());
            const bSubs = rs[0].redis.conns["b.sub"]?.subs;
            p(`| ${label(c.meta)} | ${per(run => run.r.accepted)} | ${bSubs ?? "–"} channels (its own + rooms ${bRooms.filter(r => Number(r) >= Number(env.ROOMS) / 2).join(",")}) | ${per(run => run.redis.conns["b.sub"]?.raw)} | ${per(run => run.redis.conns["b.sub"]?.unsubBytes)} | ${per(run => run.redis.conns["b.sub"]?.messages)} | ${per(run => run.redis.conns["a.sub"]?.messages)} | ${pctv(median(rs.map(run => cpuOf(run, "b"))))} |`);
        }
        p("");
    }
}

p("## Every run");
p("");
p("| Run | Round | Deliveries/s | p50 | p99 | CPU A / B / Redis | Other work during the window | Notes |");
p("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- |");
for (const c of configs) {
    for (const run of c.runs.sort((x, y) => x.meta.round - y.meta.round || (x.meta.attempt ?? 1) - (y.meta.attempt ?? 1))) {
        const r = run.r;
        const issues = [];
        if (r) {
            if (r.errors) issues.push(`${r.errors} generator errors: ${JSON.stringify(r.error_kinds)}`);
            if (r.expected !== r.delivered) issues.push(`expected − delivered = ${r.expected - r.delivered}`);
            if (r.lost_without_notice) issues.push(`${r.lost_without_notice} lost without notice`);
            if (r.dropped_notice) issues.push(`${r.dropped_notice} dropped with notice (session queue overflow)`);
            if (r.duplicates) issues.push(`${r.duplicates} duplicates`);
            if (r.sessions_ready !== r.clients) issues.push(`${r.sessions_ready} of ${r.clients} sessions set up`);
        } else {
            issues.push("no result");
        }
        if (run.redis) {
            if (run.redis.publishesBefore) issues.push(`${run.redis.publishesBefore} PUBLISH commands before the first snapshot`);
            if (run.redis.reconnected.length) issues.push(`Redis connections made during the run: ${run.redis.reconnected.join(", ")}`);
            if (run.redis.lost.length) issues.push(`Redis connections gone during the run: ${run.redis.lost.join(", ")}`);
            if (!run.redis.messageBytes) issues.push("no observer messages");
        }
        for (const [node, lines] of Object.entries(run.nodeLog)) {
            if (lines.length) issues.push(`node ${node.toUpperCase()} logged ${lines.length} warnings/errors, e.g. \`${lines[0].replace(/\x1b\[[0-9;]*m/g, "").slice(0, 160)}\``);
        }
        const cpus = ["a", "b", "redis"].map(w => pctv(cpuOf(run, w))).join(" / ");
        p(`| ${label(run.meta)} | ${run.meta.round}${(run.meta.attempt ?? 1) > 1 ? ` (attempt ${run.meta.attempt})` : ""} | ${r ? num(r.deliveries_per_s) : "–"} | ${r ? msf(r.p50_ms) : "–"} | ${r ? msf(r.p99_ms) : "–"} | ${cpus} | ${run.other === undefined ? "–" : `${num(run.other)}% of a core`} | ${issues.join("; ") || "–"} |`);
    }
}
p("");
process.stdout.write(out.join("\n") + "\n");
