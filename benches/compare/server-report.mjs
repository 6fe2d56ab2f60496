// Helper of server.sh (the cost of the metrics), in two modes:
//
//   node server-report.mjs monitor PID OUT.jsonl
//       every second, one line: the box's busy cores and those of PID's process tree (both in
//       cores, 1 = one core busy), until PID is gone or the monitor is killed
//   set -a; . target/server-metrics/report.env; node server-report.mjs target/server-metrics > server.md
//       the report, from the runs server.sh gathered (runs/<run>/) and ab.sh's logs (ab/)
import fs from "node:fs";
import path from "node:path";

const TICK = 100; // USER_HZ: /proc's CPU times are in 1/100 s on Linux

// --- monitor -------------------------------------------------------------------------------------
if (process.argv[2] === "monitor") {
    const rootPid = Number(process.argv[3]);
    const outFile = process.argv[4];
    const machine = () => {
        let idle = 0, total = 0;
        for (const l of fs.readFileSync("/proc/stat", "utf8").split("\n")) {
            if (!/^cpu\d/.test(l)) continue;
            const n = l.trim().split(/\s+/).slice(1).map(Number);
            idle += n[3] + n[4];
            total += n.reduce((a, b) => a + b, 0);
        }
        return {idle, total};
    };
    // Every process: its parent and user + system ticks (the fields after the `(comm)`).
    const procs = () => {
        const m = new Map();
        for (const d of fs.readdirSync("/proc")) {
            if (!/^\d+$/.test(d)) continue;
            try {
                const s = fs.readFileSync(`/proc/${d}/stat`, "utf8");
                const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
                m.set(Number(d), {ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12])});
            } catch { /* gone meanwhile */ }
        }
        return m;
    };
    const tree = m => {
        const kids = new Map();
        for (const [pid, p] of m) {
            if (!kids.has(p.ppid)) kids.set(p.ppid, []);
            kids.get(p.ppid).push(pid);
        }
        const seen = new Set([rootPid]);
        const stack = [rootPid];
        while (stack.length) for (const k of kids.get(stack.pop()) ?? []) if (!seen.has(k)) { seen.add(k); stack.push(k); }
        return seen;
    };
    let prevM = machine(), prevP = procs(), prevT = Date.now();
    const cores = fs.readFileSync("/proc/stat", "utf8").split("\n").filter(l => /^cpu\d/.test(l)).length;
    const timer = setInterval(() => {
        const m = machine(), p = procs(), t = Date.now();
        if (!p.has(rootPid)) { clearInterval(timer); return; }
        const dt = m.total - prevM.total;
        const busy = dt > 0 ? cores * (1 - (m.idle - prevM.idle) / dt) : 0;
        // Ours: the tree's processes present at both ends (one that ended within the second loses
        // that second's last ticks).
        let ticks = 0;
        for (const pid of tree(p)) {
            const a = prevP.get(pid), b = p.get(pid);
            if (a && b && b.ticks >= a.ticks) ticks += b.ticks - a.ticks;
        }
        const ours = ticks / TICK / ((t - prevT) / 1000);
        fs.appendFileSync(outFile, JSON.stringify({t, busy: Number(busy.toFixed(3)), ours: Number(ours.toFixed(3))}) + "\n");
        prevM = m; prevP = p; prevT = t;
    }, 1000);
    process.on("SIGTERM", () => process.exit(0));
} else {
    report(process.argv[2]);
}

// --- report --------------------------------------------------------------------------------------
function report(logs) {
    const env = process.env;
    const read = (dir, file) => {
        try {
            return fs.readFileSync(path.join(dir, file), "utf8");
        } catch {
            return null;
        }
    };
    const resultOf = text => {
        const line = (text ?? "").split("\n").filter(l => l.startsWith("RESULT ")).pop();
        return line ? JSON.parse(line.slice(7)) : null;
    };
    const procstat = text => Object.fromEntries((text ?? "").split("\n").filter(l => /^cpu\d/.test(l)).map(l => {
        const [name, ...v] = l.trim().split(/\s+/);
        const n = v.map(Number);
        return [name, {idle: n[3] + n[4], total: n.reduce((a, b) => a + b, 0)}];
    }));

    // --- Formatting --------------------------------------------------------------------------------
    const ok = v => v !== null && v !== undefined && !Number.isNaN(v) && Number.isFinite(v);
    const num = (v, digits = 0) => !ok(v) ? "–"
        : Number(v).toLocaleString("en-US", {minimumFractionDigits: digits, maximumFractionDigits: digits});
    const msf = v => !ok(v) ? "–" : v < 10 ? `${num(v, 2)} ms` : `${num(v, 1)} ms`;
    const msd = v => num(v, v < 10 ? 2 : 1);
    const pctv = v => !ok(v) ? "–" : `${num(v)}%`;
    const signed = (v, digits = 0, unit = "") => {
        if (!ok(v)) return "–";
        const s = num(Math.abs(v), digits);
        return Number(s.replace(/,/g, "")) === 0 ? `±0${unit}` : `${v >= 0 ? "+" : "−"}${s}${unit}`;
    };
    const vals = xs => xs.filter(ok);
    const median = xs => {
        const v = vals(xs).sort((a, b) => a - b);
        if (!v.length) return null;
        return v.length % 2 ? v[(v.length - 1) / 2] : (v[v.length / 2 - 1] + v[v.length / 2]) / 2;
    };
    const quantile = (xs, q) => {
        const v = vals(xs).sort((a, b) => a - b);
        return v.length ? v[Math.min(v.length - 1, Math.floor(q * v.length))] : null;
    };
    const spread = xs => {
        const v = vals(xs);
        return v.length > 1 ? Math.max(...v) - Math.min(...v) : null;
    };
    const range = (xs, f) => {
        const v = vals(xs);
        return v.length > 1 ? ` (${f(Math.min(...v))}–${f(Math.max(...v))})` : "";
    };
    const sum = xs => xs.reduce((a, b) => a + (b ?? 0), 0);

    // The figures of one generator result.
    const metrics = {
        deliveries: {name: "deliveries/s", of: r => r.deliveries_per_s, diff: (x, a) => 100 * (x / a - 1), fmt: v => signed(v, Math.abs(v) < 1 ? 2 : 1, "%"), noiseFmt: (n, a) => `${num(100 * n / a, 100 * n / a < 1 ? 2 : 1)}%`, rel: true},
        p50: {name: "p50", of: r => r.p50_ms, diff: (x, a) => x - a, fmt: v => signed(v, 2, " ms"), noiseFmt: n => `${num(n, 2)} ms`},
        p99: {name: "p99", of: r => r.p99_ms, diff: (x, a) => x - a, fmt: v => signed(v, 1, " ms"), noiseFmt: n => `${num(n, 1)} ms`},
        cpu: {name: "server CPU", of: r => 100 * r.server_cpu_s / r.window_s, diff: (x, a) => x - a, fmt: v => signed(v, 1, " pt"), noiseFmt: n => `${num(n, 1)} pt`},
        perDelivery: {name: "CPU µs per delivery", of: r => r.deliveries_per_s ? 1e6 * r.server_cpu_s / (r.deliveries_per_s * r.window_s) : null,
            diff: (x, a) => 100 * (x / a - 1), fmt: v => signed(v, Math.abs(v) < 1 ? 2 : 1, "%"), noiseFmt: (n, a) => `${num(100 * n / a, 100 * n / a < 1 ? 2 : 1)}%`, rel: true},
    };
    const verdictKeys = ["deliveries", "p50", "p99", "cpu", "perDelivery"];

    // compare(xs, as): x's median against a's, a's spread (max − min over its runs) as the noise;
    // within noise when |median(x) − median(a)| ≤ that spread.
    const compareTo = (xRuns, aRuns) => {
        const out = {};
        for (const key of verdictKeys) {
            const m = metrics[key];
            const ax = aRuns.map(r => m.of(r)), xx = xRuns.map(r => m.of(r));
            const a = median(ax), x = median(xx), noise = spread(ax);
            const d = ok(a) && ok(x) ? m.diff(x, a) : null;
            const noiseD = ok(noise) ? (m.rel ? 100 * noise / a : noise) : null;
            out[key] = {a, x, d, noise, noiseD, within: ok(d) && ok(noiseD) ? Math.abs(d) <= noiseD + 1e-9 : null};
        }
        return out;
    };
    const verdict = cmp => {
        const keys = verdictKeys.filter(k => cmp[k].within !== null);
        if (!keys.length) return "no noise estimate (one run of (a))";
        // Beyond the noise, a difference is worse (a cost) or better: more deliveries/s are better,
        // higher latency or CPU worse.
        const worse = k => (k === "deliveries" ? -1 : 1) * cmp[k].d > 0;
        const text = k => `${metrics[k].name} ${metrics[k].fmt(cmp[k].d)} (noise ${metrics[k].noiseFmt(cmp[k].noise, cmp[k].a)})`;
        const bad = keys.filter(k => !cmp[k].within && worse(k)), good = keys.filter(k => !cmp[k].within && !worse(k));
        if (!bad.length && !good.length) return "within noise";
        return [bad.length ? `**not within noise, worse**: ${bad.map(text).join(", ")}` : "",
            good.length ? `not within noise, better: ${good.map(text).join(", ")}` : ""].filter(Boolean).join("; ");
    };

    const out = [];
    const p = s => out.push(s);

    // --- server.sh's runs --------------------------------------------------------------------------
    const runsDir = path.join(logs, "runs");
    const runs = [];
    for (const name of (fs.existsSync(runsDir) ? fs.readdirSync(runsDir) : []).sort()) {
        const dir = path.join(runsDir, name);
        const meta = JSON.parse(read(dir, "meta.json") ?? "null");
        if (!meta) continue;
        const r = resultOf(read(dir, "load.log"));
        const run = {meta, r, dir, name};
        const scraper = JSON.parse(read(dir, "scraper.json") ?? "null");
        run.scraperCpu = scraper && ok(scraper.cpu_ticks_window) && scraper.window_approx_s ? 100 * scraper.cpu_ticks_window / TICK / scraper.window_approx_s : null;
        run.scrapesWindow = scraper ? scraper.scrapes_window : null;
        run.scrapes = (read(dir, "scrapes.txt") ?? "").split("\n").filter(Boolean).map(l => {
            const [t, size, code] = l.split(" ");
            return {ms: 1000 * Number(t), size: Number(size), code: Number(code)};
        });
        const probe = (read(dir, "probe.txt") ?? "").trim().split(" ");
        run.probe = probe.length === 3 ? {ms: 1000 * Number(probe[0]), size: Number(probe[1]), code: Number(probe[2])} : null;
        const quiet = read(dir, "quiet.txt") ?? "";
        run.quietWait = Number((quiet.match(/after waiting (\d+) s/) ?? [])[1] ?? 0);
        run.neverQuiet = /never quiet/.test(quiet);
        run.quietBusy = (quiet.match(/run: ([\d ]+) \(%\)/) ?? [])[1] ?? "";
        const ws = procstat(read(dir, "window-start.procstat")), we = procstat(read(dir, "window-end.procstat"));
        if (r && Object.keys(ws).length && Object.keys(we).length) {
            let busyCores = 0;
            for (const core of Object.keys(we)) {
                const dt = we[core].total - ws[core].total;
                if (dt > 0) busyCores += 1 - (we[core].idle - ws[core].idle) / dt;
            }
            const scraperS = scraper && ok(scraper.cpu_ticks_window) ? scraper.cpu_ticks_window / TICK : 0;
            run.other = Math.max(0, 100 * busyCores - 100 * ((r.server_cpu_s ?? 0) + r.gen_cpu_s + scraperS) / r.window_s);
        }
        run.serverLog = (read(dir, "server.log") ?? "").split("\n").filter(l => /\b(WARN|ERROR)\b/.test(l));
        runs.push(run);
    }
    const OTHER_MAX = Number(env.OTHER_MAX ?? 25);
    const isClean = run => run.other === undefined || run.other <= OTHER_MAX;
    const configNames = {
        a: "(a) nobody scraping",
        b: `(b) scraped every ${env.SCRAPE_B === "1/s" ? "1 s" : env.SCRAPE_B}`,
        c: `(c) scraped every ${env.SCRAPE_C === "10/s" ? "100 ms" : env.SCRAPE_C} (stress: 150x Prometheus's default 15 s)`,
    };
    const workloadOrder = ["fixed-long-polling", "fixed-websocket", "saturated-long-polling", "saturated-websocket"];
    const workloadName = w => {
        const [kind, ...t] = w.split("-");
        return `${kind === "fixed" ? `${num(Number(env.RATE))} publishes/s` : "saturated"}, ${t.join("-")}`;
    };
    const groups = new Map();
    for (const run of runs) {
        const key = `${run.meta.workload}|${run.meta.config}`;
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(run);
    }
    // The runs a configuration's figures come from: the clean ones with a result (all with a result
    // when none is clean).
    const used = (workload, config) => {
        const rs = (groups.get(`${workload}|${config}`) ?? []).filter(run => run.r);
        const clean = rs.filter(isClean);
        return clean.length ? clean : rs;
    };
    const workloads = [...new Set(runs.map(run => run.meta.workload))]
        .sort((x, y) => workloadOrder.indexOf(x) - workloadOrder.indexOf(y));
    const configs = [...new Set(runs.map(run => run.meta.config))].sort();
    const rounds = Math.max(0, ...runs.map(run => run.meta.round));

    // --- ab.sh's runs --------------------------------------------------------------------------------
    const abDir = path.join(logs, "ab");
    const abRuns = [];
    if (env.AB === "1" && fs.existsSync(abDir)) {
        const stamped = (read(abDir, "ab.out") ?? "").split("\n").filter(Boolean).map(l => {
            const i = l.indexOf(" ");
            return {t: Number(l.slice(0, i)), text: l.slice(i + 1)};
        });
        const monitor = (read(abDir, "monitor.jsonl") ?? "").split("\n").filter(Boolean).map(l => JSON.parse(l));
        const marks = stamped.filter(x => x.text.startsWith("=== round") || x.text.startsWith("=== written"));
        for (const file of fs.readdirSync(abDir).sort()) {
            const m = file.match(/^(fanout-(?:lp|ws))-(before|after)-(\d+)\.log$/);
            if (!m) continue;
            const run = {workload: m[1], side: m[2], round: Number(m[3]), r: resultOf(read(abDir, file)), file};
            const i = marks.findIndex(x => x.text === `=== round ${run.round}: ${run.workload}, ${run.side}`);
            if (i >= 0 && i + 1 < marks.length) {
                const samples = monitor.filter(s => s.t > marks[i].t && s.t <= marks[i + 1].t);
                if (samples.length) run.other = Math.max(0, 100 * sum(samples.map(s => s.busy - s.ours)) / samples.length);
                run.otherMax = samples.length ? Math.max(...samples.map(s => 100 * (s.busy - s.ours))) : null;
            }
            abRuns.push(run);
        }
    }
    const abUsed = (workload, side) => {
        const rs = abRuns.filter(run => run.workload === workload && run.side === side && run.r);
        const clean = rs.filter(isClean);
        return clean.length >= 2 ? clean : rs;
    };
    const abQuiet = read(abDir, "quiet.txt") ?? "";

    // --- Header --------------------------------------------------------------------------------------
    p("# The cost of the metrics: the standalone server on the fan-out, scraped and not");
    p("");
    p(`Generated by \`benches/compare/server.sh\` (started ${env.STARTED} UTC, ${env.ELAPSED_MIN} min in all: ${env.RUNS_MIN} min of server runs${env.AB === "1" ? ", the rest ab.sh" : ""}). Reproduce with \`${env.COMMAND}\`; raw logs in \`target/server-metrics/\`.`);
    p("");
    p(`**A shared 2-core box**: ${env.CPU}, ${env.CORES} cores, Linux ${env.KERNEL}, shared with other agents' builds and tests: each run waited (up to ${num(Number(env.QUIET_WAIT))} s) for both cores to be under ${env.QUIET_BUSY}% busy over ${env.QUIET_SPAN} s, a run during whose measured window other work still took more than ${OTHER_MAX}% of a core was repeated (up to twice), and the tables give medians over the clean runs (ranges in parentheses). tower-bayeux ${env.COMMIT}, ${env.RUSTC}, release build of \`tower-bayeux\` (package tower-bayeux-server); ${env.CURL}.`);
    p("");
    p("## Method");
    p("");
    p(`- Server: \`tower-bayeux --timeout 20s --max-interval 10s --interval 0s --listen 127.0.0.1:<port>\`, \`RUST_LOG=warn\`, a fresh process for every run, pinned to core ${env.SERVER_CORES}.`);
    p(`- Configurations: ${configs.map(c => `**${configNames[c] ?? c}**`).join("; ")}. The scraper is one \`curl --rate\` process pinned to core ${env.GEN_CORES} with the generator, fetching \`GET /metrics\` at that rate over one kept-alive connection (as Prometheus does) from the server's start to the end of the run; each scrape runs \`Bayeux::stats()\` (a pass over all sessions and the channel table) and renders the text. In (b) and (c) one more scrape is timed once the ${num(Number(env.CLIENTS))} sessions are set up, before the publishers start.`);
    p(`- Workload (\`benches/load --mode fanout\`, pinned to core ${env.GEN_CORES}, as in run.sh): ${num(Number(env.CLIENTS))} subscribing sessions in ${env.ROOMS} rooms, ${env.PUBLISHERS} publishers, ${env.PAYLOAD}-byte payloads, batches of up to 10; ${num(Number(env.RATE))} publishes/s (${num(Number(env.RATE) * Number(env.CLIENTS) / Number(env.ROOMS))} deliveries/s) or saturated (\`--rate 0\`: the next batch on the reply); long-polling and websocket; ${env.DURATION} s measured after ${env.WARMUP} s of warm-up.`);
    p(`- ${rounds} round${rounds === 1 ? "" : "s"}: in each, every workload ran every configuration one after the other, their order rotated from round to round (a b c, b c a, c a b).`);
    p("- Figures: deliveries/s and latency (publish sent → subscriber read) are the generator's over the measured window; server CPU is the server's user + system time over the window (`/proc/<pid>/stat`; 100% = one core); *CPU µs per delivery* divides it by the deliveries made in the window.");
    p("- Noise and verdict: the noise of a figure is the run-to-run spread (max − min) of configuration (a) on that workload; a difference of medians (b) − (a) or (c) − (a) no larger than it is *within noise*; a larger one is *worse* (fewer deliveries/s, more latency or CPU) or *better*. The verdict covers deliveries/s, p50, p99, server CPU and CPU µs per delivery.");
    p("");

    // --- Summary -----------------------------------------------------------------------------------
    p("## Summary");
    p("");
    p("| Workload | Configuration | Runs used | Deliveries/s | p50 | p99 | Server CPU | Server CPU µs per delivery | Generator CPU | Scrapes in the window / scraper CPU |");
    p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for (const w of workloads) {
        for (const c of configs) {
            const rs = used(w, c);
            const all = groups.get(`${w}|${c}`) ?? [];
            if (!rs.length) {
                p(`| ${workloadName(w)} | ${configNames[c] ?? c} | 0 of ${all.length} | (no result) ||||||||`);
                continue;
            }
            const f = key => rs.map(run => metrics[key].of(run.r));
            const scrapeText = c === "a" ? "–" : `${num(median(rs.map(run => run.scrapesWindow)))} / ${num(median(rs.map(run => run.scraperCpu)), 1)}%`;
            p(`| ${workloadName(w)} | ${configNames[c] ?? c} | ${rs.length} of ${all.length} | ${num(median(f("deliveries")))}${range(f("deliveries"), num)} | ${msf(median(f("p50")))}${range(f("p50"), msd)} | ${msf(median(f("p99")))}${range(f("p99"), msd)} | ${pctv(median(f("cpu")))}${range(f("cpu"), num)} | ${num(median(f("perDelivery")), 3)}${range(f("perDelivery"), v => num(v, 3))} | ${pctv(median(rs.map(run => 100 * run.r.gen_cpu_s / run.r.window_s)))} | ${scrapeText} |`);
        }
    }
    p("");
    p("*Scrapes in the window*: scrapes answered during (about) the measured window; *scraper CPU*: the curl process's CPU over it, in % of a core (on the generator's core).");
    p("");

    p("## Differences against (a), and the verdicts");
    p("");
    p("| Workload | Comparison | Deliveries/s | p50 | p99 | Server CPU | CPU µs per delivery | CPU µs per delivery, per round (paired) | Verdict |");
    p("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |");
    for (const w of workloads) {
        const aRuns = used(w, "a").map(run => run.r);
        if (!aRuns.length) continue;
        for (const c of configs.filter(c => c !== "a")) {
            const xRuns = used(w, c).map(run => run.r);
            if (!xRuns.length) continue;
            const cmp = compareTo(xRuns, aRuns);
            const cell = k => `${metrics[k].fmt(cmp[k].d)}${ok(cmp[k].noise) ? ` (noise ${metrics[k].noiseFmt(cmp[k].noise, cmp[k].a)})` : ""}`;
            const paired = [];
            for (let round = 1; round <= rounds; round++) {
                const pick = cfg => (groups.get(`${w}|${cfg}`) ?? []).filter(run => run.r && run.meta.round === round && isClean(run))
                    .sort((x, y) => x.meta.attempt - y.meta.attempt).pop();
                const x = pick(c), a = pick("a");
                if (x && a) paired.push(100 * (metrics.perDelivery.of(x.r) / metrics.perDelivery.of(a.r) - 1));
            }
            const v = verdict(cmp);
            p(`| ${workloadName(w)} | (${c}) − (a) | ${cell("deliveries")} | ${cell("p50")} | ${cell("p99")} | ${cell("cpu")} | ${cell("perDelivery")} | ${paired.map(v => signed(v, 1, "%")).join(", ") || "–"} | ${v} |`);
        }
    }
    p("");
    p("Differences of the medians; *noise* is (a)'s spread (max − min of its runs) on the same workload, in the same unit (deliveries/s and CPU µs per delivery: relative to (a)'s median; server CPU: percentage points of a core). *Per round*: each round's (x) run against the same round's (a) run, both clean.");
    p("");

    // --- Scrapes ---------------------------------------------------------------------------------
    const scraped = configs.filter(c => c !== "a");
    if (scraped.length) {
        p("## The scrape itself");
        p("");
        p(`| Configuration | Workload | At ${num(Number(env.CLIENTS))} sessions, before publishing: response time (median, range) | size | During the runs: scrapes | response time median / p99 / max | size (median) | Non-200 |`);
        p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |");
        for (const c of scraped) {
            for (const w of workloads) {
                const rs = (groups.get(`${w}|${c}`) ?? []).filter(run => run.r);
                if (!rs.length) continue;
                const probes = rs.map(run => run.probe).filter(Boolean);
                const all = rs.flatMap(run => run.scrapes);
                const times = all.filter(s => s.code === 200).map(s => s.ms);
                p(`| ${configNames[c] ?? c} | ${workloadName(w)} | ${msf(median(probes.map(x => x.ms)))}${range(probes.map(x => x.ms), v => num(v, 2))} | ${num(median(probes.map(x => x.size)))} B | ${num(all.length)} | ${msf(median(times))} / ${msf(quantile(times, 0.99))} / ${msf(Math.max(...vals(times)))} | ${num(median(all.map(s => s.size)))} B | ${num(all.filter(s => s.code !== 200).length)} |`);
            }
        }
        p("");
        p("Response time as curl measures it (`time_total`, request sent → last byte, on the kept-alive connection; the single scrape at the set-up includes its connect), from the generator's core; during the runs it includes waiting for the server's core, which the fan-out keeps busy.");
        p("");
    }

    // --- The counters (ab.sh) --------------------------------------------------------------------
    if (env.AB === "1") {
        p("## The library's counters: ab.sh");
        p("");
        p(`\`BEFORE=${env.BEFORE} WORKLOADS="fanout-lp fanout-ws" ROUNDS=${env.AB_ROUNDS} bash benches/compare/ab.sh\`: the \`conformance\` example built at ${env.BEFORE} (the commit before the counters: one relaxed atomic add per broadcast for the messages published and delivered, per dropped message, per websocket opened and closed) against the working tree, the two taking turns, on the fan-out at 2,000 publishes/s (1,000 clients, 10 rooms; 15 s measured after 3 s; server on core 0, generator on core 1). Nobody reads the counters there: this is their cost on the hot path alone. ab.sh writes one block per run (\`target/compare-ab/results.md\`) and has no summary table; the table below is made from its logs (copied to \`target/server-metrics/ab/\`), the same way as the one above: noise = the spread of *before*. ab.sh does not wait for a quiet machine between its runs: server.sh waited once before it (${abQuiet.trim() || "–"}), and a monitor sampled the box every second meanwhile: *other work* is the box's busy time beyond ab.sh's processes (servers, generator, builds), averaged over each run.`);
        p("");
        p("| Workload | Build | Runs used | Deliveries/s | p50 | p99 | Server CPU | Server CPU µs per delivery | Generator CPU |");
        p("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
        const abWorkloads = [...new Set(abRuns.map(run => run.workload))].sort();
        for (const w of abWorkloads) {
            for (const side of ["before", "after"]) {
                const rs = abUsed(w, side);
                const all = abRuns.filter(run => run.workload === w && run.side === side);
                if (!rs.length) {
                    p(`| ${w} | ${side} | 0 of ${all.length} | (no result) ||||||`);
                    continue;
                }
                const f = key => rs.map(run => metrics[key].of(run.r));
                p(`| ${w} | ${side === "before" ? `before (${env.BEFORE})` : "after (working tree)"} | ${rs.length} of ${all.length} | ${num(median(f("deliveries")))}${range(f("deliveries"), num)} | ${msf(median(f("p50")))}${range(f("p50"), msd)} | ${msf(median(f("p99")))}${range(f("p99"), msd)} | ${pctv(median(f("cpu")))}${range(f("cpu"), num)} | ${num(median(f("perDelivery")), 3)}${range(f("perDelivery"), v => num(v, 3))} | ${pctv(median(rs.map(run => 100 * run.r.gen_cpu_s / run.r.window_s)))} |`);
            }
        }
        p("");
        p("| Workload | after − before: deliveries/s | p50 | p99 | Server CPU | CPU µs per delivery | Verdict |");
        p("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
        for (const w of abWorkloads) {
            const b = abUsed(w, "before").map(run => run.r), a = abUsed(w, "after").map(run => run.r);
            if (!b.length || !a.length) continue;
            const cmp = compareTo(a, b);
            const cell = k => `${metrics[k].fmt(cmp[k].d)}${ok(cmp[k].noise) ? ` (noise ${metrics[k].noiseFmt(cmp[k].noise, cmp[k].a)})` : ""}`;
            const v = verdict(cmp);
            p(`| ${w} | ${cell("deliveries")} | ${cell("p50")} | ${cell("p99")} | ${cell("cpu")} | ${cell("perDelivery")} | ${v} |`);
        }
        p("");
        p("| Run | Deliveries/s | p50 | p99 | Server CPU | CPU µs per delivery | Other work (mean / highest second) | Notes |");
        p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
        for (const run of abRuns.sort((x, y) => x.workload.localeCompare(y.workload) || x.round - y.round || (x.side === "before" ? -1 : 1))) {
            const r = run.r;
            const notes = [];
            if (!r) notes.push("no result");
            else {
                if (r.errors) notes.push(`${r.errors} errors`);
                if (r.expected !== r.delivered) notes.push(`expected − delivered = ${r.expected - r.delivered}`);
                if (r.lost_without_notice) notes.push(`${r.lost_without_notice} lost without notice`);
                if (r.dropped_notice) notes.push(`${r.dropped_notice} dropped with notice`);
            }
            if (!isClean(run)) notes.push(`disturbed (other work over ${OTHER_MAX}% of a core)`);
            p(`| ${run.workload} ${run.side}, round ${run.round} | ${r ? num(r.deliveries_per_s) : "–"} | ${r ? msf(r.p50_ms) : "–"} | ${r ? msf(r.p99_ms) : "–"} | ${r ? pctv(metrics.cpu.of(r)) : "–"} | ${r ? num(metrics.perDelivery.of(r), 3) : "–"} | ${run.other === undefined ? "–" : `${num(run.other)}% / ${num(run.otherMax)}%`} | ${notes.join("; ") || "–"} |`);
        }
        p("");
    }

    // --- Notes -------------------------------------------------------------------------------------
    p("## Notes");
    p("");
    const waits = runs.map(run => run.quietWait);
    const never = runs.filter(run => run.neverQuiet);
    p(`- Waiting for a quiet machine: ${num(sum(waits))} s in all before the ${runs.length} runs (median ${num(median(waits))} s, longest ${num(Math.max(0, ...waits))} s). ${never.length ? `**Never quiet** within ${env.QUIET_WAIT} s before ${never.length} runs: ${never.map(run => run.name).join(", ")}.` : "The machine got quiet before every run."}${/never quiet/.test(abQuiet) ? " **Not quiet before ab.sh** either." : ""}`);
    const disturbed = runs.filter(run => !isClean(run));
    p(disturbed.length
        ? `- ${disturbed.length} run${disturbed.length > 1 ? "s were" : " was"} disturbed (other work above ${OTHER_MAX}% of a core during the window) and repeated: ${disturbed.map(run => `${run.name} (${num(run.other)}%)`).join(", ")}.`
        : `- No run was disturbed (other work during every window under ${OTHER_MAX}% of a core).`);
    const bad = runs.filter(run => run.r && (run.r.errors || run.r.lost_without_notice || run.r.duplicates || run.r.sessions_ready !== run.r.clients));
    p(bad.length ? `- Errors, losses or missing sessions in ${bad.length} runs: see *Every run*.` : `- No generator error, loss without notice, duplicate or missing session in any run.`);
    const dropped = runs.filter(run => run.r && run.r.dropped_notice);
    if (dropped.length) {
        const inWindow = dropped.filter(run => run.r.expected !== run.r.delivered);
        p(`- Dropped with notice (a session's queue of 1,000 messages full, the oldest dropped and a \`/meta/overflow\` marker sent): ${dropped.map(run => `${run.name}: ${num(run.r.dropped_notice)}`).join(", ")}${inWindow.length ? "" : "; all outside the measured window (every delivery of the publishes sent in it arrived), i.e. in the warm-up or the drain"}.`);
    }
    const warned = runs.filter(run => run.serverLog.length);
    p(warned.length ? `- Server warnings or errors in ${warned.length} runs: see *Every run*.` : "- No warning or error in any server's log (`RUST_LOG=warn`).");
    p("- At the fixed rate the server's core is (nearly) busy with both transports: long-polling because every delivery ends a poll and the client polls again at once, websocket because the server writes each message as it comes (about one message per frame); a busier server packs more messages per response or frame instead. There a cost shows in the responses or frames per second and the latency more than in the CPU, and *CPU µs per delivery* is rather CPU per response or frame. The saturated long-polling runs are limited by the server's core; the saturated websocket runs partly by the generator's (about 85% busy, shared with the scraper) and the ten publishers' one batch in flight each.");
    p(`- Noise: with ${rounds} runs per configuration, (a)'s spread is a small sample and often narrow (CPU pinned at 100%, deliveries/s held at the fixed rate), so a difference just beyond it, in one figure and not growing from (b) to (c), is weak evidence of a cost.`);
    p("");

    // --- Every run -------------------------------------------------------------------------------
    p("## Every run");
    p("");
    p("| Run | Deliveries/s | Responses or frames/s | p50 | p99 | Server CPU | CPU µs per delivery | Generator CPU | Scraper CPU | Waited for quiet | Other work in the window | Notes |");
    p("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |");
    const sorted = [...runs].sort((x, y) => workloadOrder.indexOf(x.meta.workload) - workloadOrder.indexOf(y.meta.workload)
        || x.meta.config.localeCompare(y.meta.config) || x.meta.round - y.meta.round || x.meta.attempt - y.meta.attempt);
    for (const run of sorted) {
        const r = run.r;
        const notes = [];
        if (r) {
            if (r.errors) notes.push(`${r.errors} errors: ${JSON.stringify(r.error_kinds)}`);
            if (r.expected !== r.delivered) notes.push(`expected − delivered = ${r.expected - r.delivered}`);
            if (r.lost_without_notice) notes.push(`${r.lost_without_notice} lost without notice`);
            if (r.dropped_notice) notes.push(`${r.dropped_notice} dropped with notice`);
            if (r.duplicates) notes.push(`${r.duplicates} duplicates`);
            if (r.sessions_ready !== r.clients) notes.push(`${r.sessions_ready} of ${r.clients} sessions`);
        } else {
            notes.push("no result");
        }
        if (run.neverQuiet) notes.push(`never quiet (cores ${run.quietBusy}%)`);
        if (!isClean(run)) notes.push("disturbed: left out");
        const bad = run.scrapes.filter(s => s.code !== 200).length;
        if (bad) notes.push(`${bad} scrapes not 200`);
        if (run.serverLog.length) notes.push(`server logged ${run.serverLog.length} warnings/errors, e.g. \`${run.serverLog[0].replace(/\x1b\[[0-9;]*m/g, "").slice(0, 160)}\``);
        p(`| ${workloadName(run.meta.workload)}, (${run.meta.config}), round ${run.meta.round}${run.meta.attempt > 1 ? ` attempt ${run.meta.attempt}` : ""} | ${r ? num(r.deliveries_per_s) : "–"} | ${r ? num(r.frames_per_s) : "–"} | ${r ? msf(r.p50_ms) : "–"} | ${r ? msf(r.p99_ms) : "–"} | ${r ? pctv(metrics.cpu.of(r)) : "–"} | ${r ? num(metrics.perDelivery.of(r), 3) : "–"} | ${r ? pctv(100 * r.gen_cpu_s / r.window_s) : "–"} | ${run.meta.config === "a" ? "–" : `${num(run.scraperCpu, 1)}%`} | ${num(run.quietWait)} s | ${run.other === undefined ? "–" : `${num(run.other)}%`} | ${notes.join("; ") || "–"} |`);
    }
    p("");
    process.stdout.write(out.join("\n") + "\n");
}
