// Turns the runs history.sh gathered (target/history/runs/<run>/) into benches/results/history.md.
//
//   set -a; . target/history/report.env; node history-report.mjs target/history/runs > history.md
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
const calls = (text, cmd) => Number((info(text)[`cmdstat_${cmd}`] ?? "calls=0").match(/calls=(\d+)/)[1]);
const usec = (text, cmd) => Number((info(text)[`cmdstat_${cmd}`] ?? "usec=0").match(/usec=(\d+)/)[1]);
const rooms = text => (text ?? "").split(/\r?\n/).filter(Boolean).map(l => {
    const [k, offset, xlen] = l.split(" ");
    return {room: Number(k), offset: offset === "" || offset === undefined ? 0 : Number(offset), xlen: Number(xlen ?? 0)};
});
const procstat = text => Object.fromEntries((text ?? "").split("\n").filter(l => /^cpu\d/.test(l)).map(l => {
    const [name, ...v] = l.trim().split(/\s+/);
    const n = v.map(Number);
    return [name, {idle: n[3] + n[4], total: n.reduce((a, b) => a + b, 0)}];
}));

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
    const ws = procstat(read(dir, "window-start.procstat")), we = procstat(read(dir, "window-end.procstat"));
    if (r && Object.keys(ws).length && Object.keys(we).length) {
        let busyCores = 0;
        for (const core of Object.keys(we)) {
            const dt = we[core].total - ws[core].total;
            if (dt > 0) busyCores += 1 - (we[core].idle - ws[core].idle) / dt;
        }
        run.other = Math.max(0, 100 * busyCores - 100 * ((r.server_cpu_s ?? 0) + r.gen_cpu_s) / r.window_s);
    }
    run.nodeLog = {};
    for (const node of ["a", "b"]) {
        const text = read(dir, `node-${node}.log`);
        if (text === null) continue;
        run.nodeLog[node] = text.split("\n").filter(l => /\b(WARN|ERROR)\b/.test(l));
    }
    // The probe's publish reply: `ext.history` with history on, none without.
    const probeText = read(dir, "probe.json") ?? "";
    try {
        const reply = JSON.parse(probeText).find(m => m.channel === "/bench/room/0");
        run.probe = {ok: reply?.successful === true, history: reply?.ext?.history ?? null, raw: probeText};
    } catch {
        run.probe = {ok: false, history: null, raw: probeText};
    }
    if (meta.redis) {
        const b = {cs: read(dir, "before.commandstats"), stats: info(read(dir, "before.stats")), mem: info(read(dir, "before.memory"))};
        const a = {cs: read(dir, "after.commandstats"), stats: info(read(dir, "after.stats")), mem: info(read(dir, "after.memory")),
            rooms: rooms(read(dir, "after.rooms"))};
        const d = cmd => calls(a.cs, cmd) - calls(b.cs, cmd);
        run.redis = {
            eval: d("eval"), evalsha: d("evalsha"), publish: d("publish"), xadd: d("xadd"),
            evalUsec: usec(a.cs, "eval") - usec(b.cs, "eval") + usec(a.cs, "evalsha") - usec(b.cs, "evalsha"),
            publishUsec: usec(a.cs, "publish") - usec(b.cs, "publish"),
            netIn: Number(a.stats.total_net_input_bytes ?? 0) - Number(b.stats.total_net_input_bytes ?? 0),
            netOut: Number(a.stats.total_net_output_bytes ?? 0) - Number(b.stats.total_net_output_bytes ?? 0),
            memAfter: Number(a.mem.used_memory ?? 0), memBefore: Number(b.mem.used_memory ?? 0),
            rooms: a.rooms,
            offsets: a.rooms.reduce((s, x) => s + x.offset, 0),
            // Before the first publish: PUBLISH should be 0; the scripts are the position reads
            // of the subscribes (one per subscribing session on a channel with history).
            publishedBefore: calls(b.cs, "publish"),
            readsBefore: calls(b.cs, "eval") + calls(b.cs, "evalsha"),
        };
    }
    runs.push(run);
}

// --- Formatting ----------------------------------------------------------------------------------
const num = (v, digits = 0) => v === null || v === undefined || Number.isNaN(v) || !Number.isFinite(v) ? "–"
    : Number(v).toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits});
const msf = v => v === null || v === undefined ? "–" : v < 10 ? `${num(v, 2)} ms` : `${num(v, 1)} ms`;
const pctv = v => v === null || v === undefined || Number.isNaN(v) ? "–" : `${num(v)}%`;
const signed = (v, digits = 0, unit = "") => {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    const s = num(Math.abs(v), digits);
    return Number(s.replace(/,/g, "")) === 0 ? `±0${unit}` : `${v >= 0 ? "+" : "−"}${s}${unit}`;
};
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
    "one": "one node, no history",
    "one-mem": "one node, history in memory",
    "one-redis": "one node + Redis, no history",
    "one-redis-hist": "one node + Redis, history in Redis",
    "two-split": "two nodes + Redis, no history",
    "two-split-hist": "two nodes + Redis, history in Redis",
};
const setupOrder = Object.keys(setupNames);
const kindName = m => m.kind === "fixed" ? `${num(m.rate)} publishes/s` : "saturated";
const order = (x, y) => (x.kind === y.kind ? 0 : x.kind === "fixed" ? -1 : 1)
    || x.transport.localeCompare(y.transport)
    || setupOrder.indexOf(x.setup) - setupOrder.indexOf(y.setup);
const label = m => `${kindName(m)}, ${m.transport}, ${setupNames[m.setup] ?? m.setup}`;
// The processes the generator measured: node A, node B, Redis, in this order.
const cpuOf = (run, which) => {
    const r = run.r;
    if (!r) return null;
    const each = r.server_cpu_s_each ?? [r.server_cpu_s];
    const procs = ["a", ...(run.meta.node_b ? ["b"] : []), ...(run.meta.redis ? ["redis"] : [])];
    const i = procs.indexOf(which);
    return i < 0 || each[i] === null || each[i] === undefined ? null : 100 * each[i] / r.window_s;
};
const allCpu = run => run.r ? 100 * run.r.server_cpu_s / run.r.window_s : null;
// The servers' (nodes' and Redis's) CPU per publish and per delivery in the window, in µs.
const usPerPublish = run => run.r && run.r.publishes_per_s ? 1e6 * run.r.server_cpu_s / (run.r.publishes_per_s * run.r.window_s) : null;
const usPerDelivery = run => run.r && run.r.deliveries_per_s ? 1e6 * run.r.server_cpu_s / (run.r.deliveries_per_s * run.r.window_s) : null;

const BATCH = Number(env.BATCH ?? 10);
// Saturated runs: the time a publisher's batch takes from request to reply, on average.
const batchMs = run => run.r && run.r.publishes_per_s ? 1000 * run.r.publishers * BATCH / run.r.publishes_per_s : null;

const configs = [];
for (const run of runs) {
    let c = configs.find(c => c.meta.name === run.meta.name);
    if (!c) configs.push(c = {meta: run.meta, runs: []});
    c.runs.push(run);
}
configs.sort((x, y) => order(x.meta, y.meta));
const rounds = Math.max(...runs.map(run => run.meta.round ?? 1));
const OTHER_MAX = Number(env.OTHER_MAX ?? 25);
const isClean = run => run.other === undefined || run.other <= OTHER_MAX;
const clean = c => {
    const rs = c.runs.filter(run => run.r);
    const ok = rs.filter(isClean);
    return ok.length ? ok : rs;
};
// A configuration's run of one round: its last clean attempt (or its last attempt).
const ofRound = (c, round) => {
    const rs = c.runs.filter(run => run.r && run.meta.round === round).sort((x, y) => (x.meta.attempt ?? 1) - (y.meta.attempt ?? 1));
    return rs.filter(isClean).pop() ?? null;
};
const find = (setup, transport, kind) => configs.find(c => c.meta.setup === setup && c.meta.transport === transport && c.meta.kind === kind);
const med = (c, fn) => median(clean(c).map(fn));
const deliveries = run => run.r.deliveries_per_s;

// History against the matching set-up without it: the medians' difference, and the per-round
// paired ratios (both configurations ran one after the other in each round).
const comparisons = [
    ["one-mem", "one", "memory history vs none (one node)"],
    ["one-redis-hist", "one-redis", "Redis history vs Redis without history (one node)"],
    ["one-redis-hist", "one", "Redis history vs one node alone"],
    ["two-split-hist", "two-split", "Redis history vs none (two nodes)"],
    ["two-split-hist", "one-redis-hist", "two nodes vs one, both with Redis history"],
];
const compare = (withSetup, withoutSetup, transport, kind) => {
    const w = find(withSetup, transport, kind), wo = find(withoutSetup, transport, kind);
    if (!w || !wo) return null;
    const paired = [];
    for (let round = 1; round <= rounds; round++) {
        const x = ofRound(w, round), y = ofRound(wo, round);
        if (x && y) paired.push(100 * (deliveries(x) / deliveries(y) - 1));
    }
    return {
        w, wo,
        deliveries: 100 * (med(w, deliveries) / med(wo, deliveries) - 1),
        paired,
        p50: med(w, run => run.r.p50_ms) - med(wo, run => run.r.p50_ms),
        p99: med(w, run => run.r.p99_ms) - med(wo, run => run.r.p99_ms),
        cpu: med(w, allCpu) - med(wo, allCpu),
        perPublish: med(w, usPerPublish) - med(wo, usPerPublish),
        perDelivery: med(w, usPerDelivery) - med(wo, usPerDelivery),
        perDeliveryRel: 100 * (med(w, usPerDelivery) / med(wo, usPerDelivery) - 1),
    };
};

const out = [];
const p = s => out.push(s);
const transports = [...new Set(configs.map(c => c.meta.transport))].sort();
const kinds = ["fixed", "saturated"].filter(k => configs.some(c => c.meta.kind === k));

p("# Publish with channel history on vs off");
p("");
p(`Generated by \`benches/compare/history.sh\` on ${env.GENERATED ?? new Date().toISOString().replace("T", " ").slice(0, 16)} UTC. Reproduce with \`${env.COMMAND}\`; raw logs in \`target/history/runs/<run>-r<round>/\`.`);
p("");
p(`**These figures come from a shared 2-core box**: ${env.CPU}, ${env.CORES} cores, Linux ${env.KERNEL}, with other work (builds and tests of the same checkout) running on it at times: each run waits (up to ${env.QUIET_WAIT ?? 60} s) for both cores to be under ${env.QUIET_BUSY}% busy before it starts, a run during which other work still took more than ${OTHER_MAX}% of a core is repeated (up to twice), every configuration ran in ${rounds} round${rounds > 1 ? "s" : ""}, and the tables give medians over the clean runs (ranges in parentheses). Compare rows of this file with each other rather than with other files. tower-bayeux ${env.COMMIT}, ${env.RUSTC}, release build of the \`conformance\` example with \`--features redis\`; Redis ${env.REDIS_VERSION} started by the script (no persistence).`);
p("");
p("## Method");
p("");
p(`- Workload (the \`fanout\` mode of \`benches/load\`, as in the comparison and the cluster benchmark): ${num(Number(env.CLIENTS))} subscribing sessions in ${env.ROOMS} rooms \`/bench/room/<k>\`, ${env.PUBLISHERS} publishing sessions with ${env.PAYLOAD}-byte payloads, ${env.DURATION} s measured after ${env.WARMUP} s of warm-up; either a fixed ${num(Number(env.RATE))} publishes/s in all (${num(Number(env.RATE) * Number(env.CLIENTS) / Number(env.ROOMS))} deliveries/s), or *saturated*: the publishers unthrottled (batches of 10, the next batch on the reply).`);
p(`- Set-ups, each with fresh processes: **one node, no history** (the baseline: the conformance server keeps history on \`/history/**\` always, which the bench rooms do not match); **history in memory** (\`--history '${env.HISTORY}'\`: every room keeps its last messages in the node); **one node + Redis, no history** (\`--redis\`: each broadcast is PUBLISHed to Redis and comes back, the node fanning out at once and discarding its own copy); **history in Redis** (\`--redis --history '${env.HISTORY}'\`: each publish is one Lua script in Redis that gives the message its offset, XADDs it to the room's stream with MAXLEN and PUBLISHes it, and the node fans the message out only when it comes back from Redis); **two nodes + Redis, history in Redis**: both nodes with \`--history\`, publishers on node A, every room's subscribers split evenly over A and B. Redis is flushed before each run.`);
p(`- Placement: the node(s) and Redis pinned together to core ${env.SERVER_CORES}, the generator (one thread) to core ${env.GEN_CORES}.`);
p("- Node settings: `conformance --no-timestamp --timeout-ms 20000 --max-interval-ms 10000` (+ the flags above); `RUST_LOG=warn`.");
p("- Figures: deliveries/s, publishes/s, latency (publish sent → subscriber read) and CPU (user + system from `/proc/<pid>/stat`; 100% = one core) are the generator's over the measured window. *CPU µs per publish* and *per delivery* divide the servers' CPU (nodes + Redis) in the window by the publishes accepted and the deliveries made in it. The cost of history is given against the matching set-up without it, as the difference of the medians and as the per-round paired ratios of deliveries/s (both ran one after the other in each round).");
p("- Checks: after every run a probe session publishes one message to `/bench/room/0` on node A: with history on, the reply's `ext.history.offset` must be one more than the messages room 0 received (with history off, there must be no `ext.history`); with Redis, every room's offset (`HGET bayeux:history/bench/room/<k> offset`) and stream length (`XLEN`) are read after the run, and the script calls, PUBLISH and XADD commands counted (`INFO commandstats`).");
p("");

// --- Summary -------------------------------------------------------------------------------------
p("## Summary");
p("");
const line = c => {
    if (!c) return null;
    const cpu = ["a", "b", "redis"].map(w => [w, med(c, run => cpuOf(run, w))]).filter(([, v]) => v !== null);
    const cpuText = cpu.length > 1 ? `CPU ${cpu.map(([w, v]) => `${w === "redis" ? "Redis" : `node ${w.toUpperCase()}`} ${pctv(v)}`).join(" + ")}` : `CPU ${pctv(med(c, allCpu))}`;
    // Saturated, each publisher has one batch in flight: a batch takes publishers / publishes/s × batch.
    const batchText = c.meta.kind === "saturated"
        ? `, ${num(med(c, run => run.r.publishes_per_s))} publishes/s: a batch of ${BATCH} answered in ${msf(med(c, batchMs))}`
        : med(c, run => run.r.publishes_per_s) < 0.97 * c.meta.rate
            ? ` (**the publishers fell behind the fixed rate**: ${num(med(c, run => run.r.publishes_per_s))} of ${num(c.meta.rate)} publishes/s accepted, a batch of ${BATCH} taking longer than its ${num(1000 * BATCH * (c.runs[0].r?.publishers ?? 10) / c.meta.rate)} ms slot)`
            : "";
    return `${num(med(c, deliveries))} deliveries/s, p50 ${msf(med(c, run => run.r.p50_ms))}, p99 ${msf(med(c, run => run.r.p99_ms))}, ${cpuText}, ${num(med(c, usPerDelivery), 2)} µs of servers' CPU per delivery${batchText}`;
};
const memTarget = [];
for (const kind of kinds) {
    for (const transport of transports) {
        const cs = setupOrder.map(s => find(s, transport, kind)).filter(Boolean);
        if (!cs.length) continue;
        p(`- ${kindName(cs[0].meta)}, ${transport}:`);
        for (const c of cs) p(`  - ${setupNames[c.meta.setup]}: ${line(c)}.`);
        for (const [w, wo, what] of comparisons) {
            const x = compare(w, wo, transport, kind);
            if (!x) continue;
            p(`  - *${what}*: deliveries/s ${signed(x.deliveries, 1, "%")} (per round: ${x.paired.map(v => signed(v, 1, "%")).join(", ") || "–"}), p50 ${signed(x.p50, 2, " ms")}, p99 ${signed(x.p99, 1, " ms")}, servers' CPU ${signed(x.cpu, 0, " points")}, CPU per publish ${signed(x.perPublish, 1, " µs")}, per delivery ${signed(x.perDelivery, 3, " µs")} (${signed(x.perDeliveryRel, 0, "%")}).`);
            if (w === "one-mem" && kind === "saturated") memTarget.push({transport, ...x});
        }
    }
}
if (memTarget.length) {
    // Met when both the medians' ratio and the median of the per-round paired ratios stay within
    // 10%, not met when both fall below, otherwise within this box's noise.
    const verdict = x => {
        const paired = median(x.paired);
        if (x.deliveries > -10 && (paired === null || paired > -10)) return "met";
        if (x.deliveries <= -10 && (paired === null || paired <= -10)) return "not met";
        return "inconclusive (the two estimates straddle −10%)";
    };
    p(`- **Target (memory history costs less than 10% of deliveries/s)**, saturated: ${memTarget.map(x => `${x.transport} ${signed(x.deliveries, 1, "%")} on the medians, ${signed(median(x.paired), 1, "%")} as the median of the per-round paired ratios (${x.paired.map(v => signed(v, 1, "%")).join(", ")}), ${signed(x.perDeliveryRel, 0, "%")} servers' CPU per delivery: **${verdict(x)}**`).join("; ")}.`);
}
const redisRuns = runs.filter(run => run.redis && run.r);
const histRedis = redisRuns.filter(run => run.meta.history);
if (histRedis.length) {
    const pubs = sum(histRedis.map(run => run.r.accepted));
    p(`- Redis with history, over ${histRedis.length} runs and ${num(pubs)} publishes: ${num(sum(histRedis.map(run => run.redis.eval + run.redis.evalsha)) / pubs, 3)} script calls (${sum(histRedis.map(run => run.redis.evalsha)) ? "EVALSHA" : "EVAL, the script's text sent each time"}), ${num(sum(histRedis.map(run => run.redis.xadd)) / pubs, 3)} XADD and ${num(sum(histRedis.map(run => run.redis.publish)) / pubs, 2)} PUBLISH per publish; ${num(sum(histRedis.map(run => run.redis.netIn)) / pubs)} bytes into Redis per publish (${num(sum(redisRuns.filter(run => !run.meta.history).map(run => run.redis.netIn)) / sum(redisRuns.filter(run => !run.meta.history).map(run => run.r.accepted)))} without history); Redis spent ${num(sum(histRedis.map(run => run.redis.evalUsec)) / sum(histRedis.map(run => run.redis.eval + run.redis.evalsha)), 1)} µs per script call by its own count (\`INFO commandstats\`), ${num(sum(redisRuns.filter(run => !run.meta.history).map(run => run.redis.publishUsec)) / sum(redisRuns.filter(run => !run.meta.history).map(run => run.redis.publish)), 2)} µs per PUBLISH without history.`);
}
const satHist = configs.filter(c => c.meta.kind === "saturated" && c.meta.history && c.meta.redis);
if (satHist.length) {
    const scriptUs = sum(histRedis.map(run => run.redis.evalUsec)) / sum(histRedis.map(run => run.redis.eval + run.redis.evalsha));
    const plain = configs.filter(c => c.meta.kind === "saturated" && !c.meta.history).map(c => med(c, batchMs)).filter(v => v !== null);
    p(`- Publish latency with history in Redis: saturated, a batch of ${BATCH} was answered in ${satHist.map(c => `${msf(med(c, batchMs))} (${c.meta.transport}, ${setupNames[c.meta.setup]})`).join(", ")}, against ${plain.length ? `${msf(Math.min(...plain))}–${msf(Math.max(...plain))}` : "–"} for a whole batch without history (Redis or not) and ${num(scriptUs, 0)} µs of Redis's own time per script call. Before caf04d3 a request's publishes waited for their scripts' answers one after the other; since caf04d3 they are sent to Redis together and their replies completed afterwards.`);
}
// Checks.
const probeBad = runs.filter(run => {
    if (!run.probe.ok) return true;
    if (!run.meta.history) return run.probe.history !== null;
    return !run.probe.history || !Number.isFinite(run.probe.history.offset);
});
p(probeBad.length
    ? `- Probe publishes that failed or did not match the set-up in ${probeBad.length} runs: ${probeBad.map(run => `${label(run.meta)}, round ${run.meta.round}: \`${run.probe.raw.slice(0, 200)}\``).join("; ")}.`
    : `- Probe after every run: history on in every run with \`--history\` (the reply's \`ext.history\` present) and off in every run without (no \`ext.history\`).`);
const offsetCheck = runs.filter(run => run.meta.history && run.redis && run.r).map(run => ({
    run, offsets: run.redis.offsets, accepted: run.r.accepted,
    full: run.redis.rooms.every(x => x.xlen === Math.min(x.offset, Number((env.HISTORY ?? "=100").split("=").pop()))),
}));
if (offsetCheck.length) {
    const bad = offsetCheck.filter(x => x.offsets !== x.accepted || !x.full);
    p(bad.length
        ? `- Redis offsets against the generator's accepted publishes: ${bad.map(x => `${label(x.run.meta)}, round ${x.run.meta.round}: offsets ${num(x.offsets)}, accepted ${num(x.accepted)}${x.full ? "" : ", some stream not at min(offset, retention)"}`).join("; ")}.`
        : `- In every run with history in Redis the rooms' offsets add up to the publishes the generator had accepted (${num(sum(offsetCheck.map(x => x.accepted)))} in all) and every stream held min(offset, ${(env.HISTORY ?? "=100").split("=").pop()}) entries.`);
}
const memCheck = runs.filter(run => run.meta.history && !run.meta.redis && run.r && run.probe.history);
if (memCheck.length) {
    // Room 0's publishes are its publisher's (10 publishers, 10 rooms: one room each), which the
    // generator does not print: the probe's offset is set against accepted / rooms.
    const ratios = memCheck.map(run => (run.probe.history.offset - 1) / (run.r.accepted / Number(env.ROOMS)));
    p(`- In the memory runs the probe's offset − 1 (the messages room 0 got an offset for) was ${num(Math.min(...ratios), 2)}–${num(Math.max(...ratios), 2)} × the accepted publishes / ${env.ROOMS} (room 0 has one publisher of its own, which gets more or less than a tenth of the publishes when saturated): the bench rooms' publishes went through the history.`);
}
const reads = runs.filter(run => run.meta.history && run.redis);
if (reads.length) {
    p(`- With history in Redis every subscribe reads its channel's position from Redis (one script call): ${[...new Set(reads.map(run => run.redis.readsBefore))].join(", ")} script calls during the set-up of ${env.CLIENTS} subscribing sessions, before the first publish.`);
}
const silent = runs.filter(run => run.r && (run.r.lost_without_notice || run.r.duplicates || run.r.errors
    || run.r.expected - run.r.delivered > run.r.dropped_notice));
const noticed = runs.filter(run => run.r && run.r.dropped_notice);
const noResult = runs.filter(run => !run.r);
p(silent.length
    ? `- Losses without notice, duplicates or errors in ${silent.length} of ${runs.length} runs: ${silent.map(run => `${label(run.meta)}, round ${run.meta.round}`).join("; ")} (see *Every run*).`
    : `- Nothing lost without notice, duplicated or failed in any of the ${runs.length} runs (gaps not covered by a \`/meta/overflow\` marker, duplicates, generator errors: all 0).`);
if (noticed.length) {
    p(`- Dropped with notice (a session's queue full: the oldest messages dropped and a \`/meta/overflow\` marker sent): ${noticed.map(run => `${num(run.r.dropped_notice)} in ${label(run.meta)}, round ${run.meta.round} (expected − delivered over the measured window: ${num(run.r.expected - run.r.delivered)})`).join("; ")}.`);
}
if (noResult.length) p(`- No result in ${noResult.length} runs: ${noResult.map(run => run.dir).join(", ")}.`);
const warned = runs.filter(run => Object.values(run.nodeLog).some(l => l.length));
p(warned.length ? `- Node warnings or errors in ${warned.length} runs: see *Every run*.` : "- No warning or error in any node's log (`RUST_LOG=warn`).");
p("");
p("Caveats: long-polling keeps the servers' core busy at any rate (every delivery ends a poll and the client polls again at once), so at the fixed rate its cost shows in the messages per response and the latency, not in the CPU, and its CPU per publish there is not a cost. In the saturated websocket runs the servers' core is not the only limit (the ten publishers with one batch each in flight, and the generator's core): there the CPU per delivery tells the cost better than deliveries/s. Single runs on this box vary by 10-20% (see *Every run*); differences smaller than that are noise.");
p("");

// --- Tables --------------------------------------------------------------------------------------
p("## Throughput, latency, CPU");
p("");
p("| Configuration | Runs used | Deliveries/s | Publishes/s accepted (target) | Responses or frames/s (messages each) | p50 | p99 | p99.9 | CPU node A | CPU node B | CPU Redis | CPU all servers | Servers' CPU per publish | per delivery | Generator CPU | Expected − delivered / lost / dup | Errors |");
p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
for (const c of configs) {
    const rs = clean(c);
    if (!rs.length) {
        p(`| ${label(c.meta)} | (no result: see \`${c.runs[0].dir}/load.log\`) ||||||||||||||||`);
        continue;
    }
    const f = key => rs.map(run => run.r[key]);
    const cpu = which => rs.map(run => cpuOf(run, which));
    const rate = rs[0].r.rate;
    const dropped = sum(f("dropped_notice"));
    const frames = median(f("frames_per_s"));
    p(`| ${label(c.meta)} | ${rs.length} of ${c.runs.length} | ${num(median(f("deliveries_per_s")))}${range(f("deliveries_per_s"), num)} | ${num(median(f("publishes_per_s")))} (${rate > 0 ? num(rate) : "unthrottled"}) | ${num(frames)} (${num(median(f("deliveries_per_s")) / frames, 1)}) | ${msf(median(f("p50_ms")))}${range(f("p50_ms"), v => num(v, v < 10 ? 2 : 1))} | ${msf(median(f("p99_ms")))}${range(f("p99_ms"), v => num(v, v < 10 ? 2 : 1))} | ${msf(median(f("p999_ms")))} | ${pctv(median(cpu("a")))} | ${pctv(median(cpu("b")))} | ${pctv(median(cpu("redis")))} | ${pctv(median(rs.map(allCpu)))}${range(rs.map(allCpu), num)} | ${num(median(rs.map(usPerPublish)), 1)} µs | ${num(median(rs.map(usPerDelivery)), 3)} µs${range(rs.map(usPerDelivery), v => num(v, 3))} | ${pctv(median(rs.map(run => 100 * run.r.gen_cpu_s / run.r.window_s)))} | ${num(sum(rs.map(run => run.r.expected - run.r.delivered)))} / ${num(sum(f("lost_without_notice")))} / ${num(sum(f("duplicates")))}${dropped ? ` (${num(dropped)} dropped with notice)` : ""} | ${num(sum(f("errors")))} |`);
}
p("");
p(`*Runs used*: those the medians are taken over (a run during whose measured window other work used more than ${OTHER_MAX}% of a core is repeated and left out when the configuration has cleaner runs). CPU: share of one core over the window; *all servers* is node A + node B + Redis, all on the same core, so 100% there means that core was the limit. *Servers' CPU per publish / per delivery*: all servers' CPU in the window over the publishes accepted / deliveries made in it. Generator CPU near 100% means the generator was the limit.`);
p("");

p("## Cost of history");
p("");
p("| Transport, rate | Comparison | Deliveries/s | per round (paired) | p50 | p99 | Servers' CPU (points of a core) | CPU per publish | CPU per delivery |");
p("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |");
for (const kind of kinds) {
    for (const transport of transports) {
        for (const [w, wo, what] of comparisons) {
            const x = compare(w, wo, transport, kind);
            if (!x) continue;
            p(`| ${transport}, ${kindName(x.w.meta)} | ${what} | ${signed(x.deliveries, 1, "%")} | ${x.paired.map(v => signed(v, 1, "%")).join(", ") || "–"} | ${signed(x.p50, 2, " ms")} | ${signed(x.p99, 1, " ms")} | ${signed(x.cpu, 0)} | ${signed(x.perPublish, 1, " µs")} | ${signed(x.perDelivery, 3, " µs")} (${signed(x.perDeliveryRel, 0, "%")}) |`);
        }
    }
}
p("");
p("Differences of the medians of the two configurations (CPU per publish and per delivery: of all servers, nodes and Redis). At the fixed rate with long-polling the servers' core is busy either way, so the CPU columns there say nothing about the cost.");
p("");

if (redisRuns.length) {
    p("## Redis");
    p("");
    p("| Configuration | Publishes accepted (all runs) | Script calls / publish | XADD / publish | PUBLISH / publish | Bytes into Redis / publish | Bytes out of Redis / publish | Redis µs per script call / per PUBLISH (its own count) | Redis memory after the run | Rooms' offsets − accepted | Stream lengths |");
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    for (const c of configs) {
        const rs = c.runs.filter(run => run.redis && run.r);
        if (!rs.length) continue;
        const accepted = sum(rs.map(run => run.r.accepted));
        const scripts = sum(rs.map(run => run.redis.eval + run.redis.evalsha));
        const pubs = sum(rs.map(run => run.redis.publish));
        const lens = [...new Set(rs.flatMap(run => run.redis.rooms.map(x => x.xlen)))].sort((a, b) => a - b);
        p(`| ${label(c.meta)} | ${num(accepted)} | ${num(scripts / accepted, 3)} | ${num(sum(rs.map(run => run.redis.xadd)) / accepted, 3)} | ${num(pubs / accepted, 2)} | ${num(sum(rs.map(run => run.redis.netIn)) / accepted)} | ${num(sum(rs.map(run => run.redis.netOut)) / accepted)} | ${scripts ? num(sum(rs.map(run => run.redis.evalUsec)) / scripts, 1) : "–"} / ${pubs ? num(sum(rs.map(run => run.redis.publishUsec)) / pubs, 2) : "–"} | ${num(median(rs.map(run => run.redis.memAfter)) / 1048576, 1)} MiB | ${c.meta.history ? rs.map(run => num(run.redis.offsets - run.r.accepted)).join(" / ") : "–"} | ${c.meta.history ? lens.join(", ") : "–"} |`);
    }
    p("");
    p("Counted from when every session is set up (before the first publish) to after the generator's drain, so over the same publishes as *accepted* (warm-up, window and drain included). Within a script Redis counts the commands the script calls (XADD, PUBLISH) as well; its µs are its own command timing (`INFO commandstats`), not its CPU. *Bytes into Redis* include the script's text when it is sent with EVAL.");
    p("");
}

p("## Every run");
p("");
p("| Run | Round | Deliveries/s | p50 | p99 | CPU A / B / Redis | Other work during the window | Probe `ext.history` | Notes |");
p("| --- | ---: | ---: | ---: | ---: | --- | ---: | --- | --- |");
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
        if (run.redis && run.redis.publishedBefore) issues.push(`${run.redis.publishedBefore} PUBLISH before the first publish`);
        if (!isClean(run)) issues.push("disturbed: left out");
        for (const [node, lines] of Object.entries(run.nodeLog)) {
            if (lines.length) issues.push(`node ${node.toUpperCase()} logged ${lines.length} warnings/errors, e.g. \`${lines[0].replace(/\x1b\[[0-9;]*m/g, "").slice(0, 160)}\``);
        }
        const cpus = ["a", "b", "redis"].map(w => pctv(cpuOf(run, w))).join(" / ");
        const h = run.probe.history;
        const probeText = !run.probe.ok ? "probe failed" : h ? `offset ${num(h.offset)}` : "none";
        p(`| ${label(run.meta)} | ${run.meta.round}${(run.meta.attempt ?? 1) > 1 ? ` (attempt ${run.meta.attempt})` : ""} | ${r ? num(r.deliveries_per_s) : "–"} | ${r ? msf(r.p50_ms) : "–"} | ${r ? msf(r.p99_ms) : "–"} | ${cpus} | ${run.other === undefined ? "–" : `${num(run.other)}% of a core`} | ${probeText} | ${issues.join("; ") || "–"} |`);
    }
}
p("");
process.stdout.write(out.join("\n") + "\n");
