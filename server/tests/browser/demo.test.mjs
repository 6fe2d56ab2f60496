// The standalone server's demo page (server/demo: the official CometD client, the history
// extension of clients/js/, one channel `/demo/board` with history) in Debian's headless
// Chromium, driven with Playwright, against the real `tower-bayeux` binary; once per transport
// the page can be forced to use (`?transport=`):
//   1. two pages: a message typed in one appears once in both;
//   2. a message published by a backend (`POST /api/publish`) appears in both;
//   3. a page opened after messages were published shows them (the page's remote call on
//      `/service/history`) followed by live ones, once each, in order;
//   4. a page that loses the network for longer than its session lives, while messages are
//      published, shows every missed message once back (the history extension's replay, in a
//      new session), once each, in order, then live ones; the extension dropped no duplicate.
//
// Every page is checked against the channel's whole board as the server keeps it: the texts
// and the `#<offset>` of every message, in order, nothing else.
//
// Run through `cargo test -p tower-bayeux-server --test browser`, which starts the binary.
// By hand (the npm packages of tests/browser and server/demo installed):
//   cargo run -p tower-bayeux-server -- --listen 127.0.0.1:8080 --static server/demo \
//       --history '/demo/**=50' --publish-secret s3cret --max-interval 2s --timeout 5s
//   DEMO_URL=http://127.0.0.1:8080 PUBLISH_SECRET=s3cret node --test server/tests/browser/demo.test.mjs
//
// Environment:
//   DEMO_URL          the server's origin (required)
//   PUBLISH_SECRET    its --publish-secret (required)
//   MAX_INTERVAL_MS   its --max-interval (default 2000): how long a silent session lives
//   HISTORY_SIZE      how many messages its history keeps on /demo/board (default 50)
//   DEMO_TRANSPORTS   comma-separated transports to run (default: all three)
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   ARTIFACT_DIR      where screenshots go (default: the system's temporary directory)

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {after, before, test} from "node:test";
// Playwright from the library's browser tests (tests/browser/package-lock.json pins it).
import {chromium} from "../../../tests/browser/node_modules/playwright-core/index.mjs";

const DEMO_URL = process.env.DEMO_URL;
const PUBLISH_SECRET = process.env.PUBLISH_SECRET;
if (!DEMO_URL || !PUBLISH_SECRET) {
    throw new Error("DEMO_URL and PUBLISH_SECRET must be set; run through "
        + "`cargo test -p tower-bayeux-server --test browser`");
}
const MAX_INTERVAL_MS = Number(process.env.MAX_INTERVAL_MS || 2000);
const HISTORY_SIZE = Number(process.env.HISTORY_SIZE || 50);
const TRANSPORTS = (process.env.DEMO_TRANSPORTS || "websocket,long-polling,callback-polling")
    .split(",").map((s) => s.trim()).filter(Boolean);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACT_DIR = process.env.ARTIFACT_DIR || path.join(os.tmpdir(), "tower-bayeux-browser-artifacts");

const CHANNEL = "/demo/board";
/** Part of every message text: a second run against the same server has other texts. */
const RUN = Date.now().toString(36).slice(-5);
/** How long a page may take to show what a step caused. */
const STEP_TIMEOUT = 10_000;
/** Time limit of one test (`node --test --test-timeout` limits the whole file). */
const TEST_TIMEOUT = 90_000;

let browser;
/**
 * The channel's messages as the server keeps them, oldest first, `{offset, text}` with `text`
 * as the page renders `data`; this suite is the only publisher, one message at a time.
 */
let board = [];
let epoch;

before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
        throw new Error(`${CHROMIUM} not found: install with: apt-get install -y chromium`);
    }
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        args: [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ],
    });
    fs.mkdirSync(ARTIFACT_DIR, {recursive: true});
    // What the server has already (a run by hand against a server that served others).
    const response = await api("GET", `/api/history?channel=${encodeURIComponent(CHANNEL)}`);
    assert.equal(response.status, 200, `GET /api/history: ${JSON.stringify(response.body)}`);
    epoch = response.body.epoch;
    board = response.body.messages.map((message) => ({
        offset: message.ext.history.offset,
        text: render(message.data),
    }));
    assert.equal(board.length === 0 ? 0 : board.at(-1).offset, response.body.offset);
});

after(async () => {
    await browser?.close();
});

for (const transport of TRANSPORTS) {
    test(`typed messages over ${transport}`, {timeout: TEST_TIMEOUT}, async () => {
        const alice = await openPage(transport, "alice");
        const bob = await openPage(transport, "bob");
        try {
            await type(alice, `hello from alice over ${transport} ${RUN}`);
            await type(bob, `hi alice, bob over ${transport} ${RUN}`);
            await type(alice, `and again over ${transport} ${RUN}`);
            await checkPages([alice, bob]);
        } finally {
            await closePages([alice, bob]);
        }
    });

    test(`API publishes over ${transport}`, {timeout: TEST_TIMEOUT}, async () => {
        const alice = await openPage(transport, "alice");
        const bob = await openPage(transport, "bob");
        try {
            await publish(`from a backend over ${transport} ${RUN}`);
            await publish({note: "not a text", transport});
            await type(bob, `bob after the backend over ${transport} ${RUN}`);
            await publish(`the backend again over ${transport} ${RUN}`);
            // A batch: two messages in one request, in order.
            await publishBatch([`batch one over ${transport} ${RUN}`, `batch two over ${transport} ${RUN}`]);
            await checkPages([alice, bob]);
        } finally {
            await closePages([alice, bob]);
        }
    });

    test(`a late page sees the history over ${transport}`, {timeout: TEST_TIMEOUT}, async () => {
        const alice = await openPage(transport, "alice");
        let carol;
        try {
            for (const n of [1, 2, 3]) {
                await publish(`earlier ${n} over ${transport} ${RUN}`);
            }
            await waitForBoard(alice);
            // Carol's page: the three (and what came before), from the remote call, then live.
            carol = await openPage(transport, "carol");
            await publish(`live after carol came over ${transport} ${RUN}`);
            await type(carol, `carol was here over ${transport} ${RUN}`);
            await type(alice, `welcome carol over ${transport} ${RUN}`);
            await checkPages([alice, carol]);
        } finally {
            await closePages([alice, carol]);
        }
    });

    test(`a page back from the network's loss catches up over ${transport}`, {timeout: TEST_TIMEOUT}, async () => {
        const alice = await openPage(transport, "alice");
        const dave = await openPage(transport, "dave", {intercept: true});
        const network = dave.network;
        try {
            await publish(`before the loss over ${transport} ${RUN}`);
            await type(dave, `dave before the loss over ${transport} ${RUN}`);
            await checkPages([alice, dave]);
            const shown = dave.expected();
            const session = await clientIdOf(dave);
            const sessions = (await status()).sessions;

            // Dave's tab goes offline. The message published right away is lost on its way to
            // it (over HTTP it ends the /meta/connect the server held, whose reply is then lost;
            // over websocket the socket is closed): only the history has it afterwards.
            await network.goOffline();
            const offline = Date.now();
            await publish(`missed 1 over ${transport} ${RUN}`);
            await waitForText(dave.page, "#status", "connection lost, reconnecting…");
            // The server lets dave's session expire (max-interval without a /meta/connect).
            await waitFor(async () => (await status()).sessions === sessions - 1,
                `the server dropping dave's session (${sessions} sessions before)`, MAX_INTERVAL_MS + 15_000);
            const expired = Date.now() - offline;
            assert.ok(expired >= MAX_INTERVAL_MS - 100,
                `dave's session expired ${expired} ms after the page went offline, before max-interval`);
            await publish(`missed 2 over ${transport} ${RUN}`);
            await publish(`missed 3 over ${transport} ${RUN}`);
            await waitForBoard(alice);
            assert.deepEqual(await texts(dave.page, "#messages li"), shown, "dave's page while offline");
            // Offline a little longer, then back.
            await sleep(Math.max(0, MAX_INTERVAL_MS + 1000 - (Date.now() - offline)));
            network.goOnline();
            const back = Date.now();

            // The client learns its session is gone, handshakes again, and the page subscribes
            // again, from the last message it showed: the missed ones come first, once each.
            await waitForBoard(dave, 30_000);
            await waitForText(dave.page, "#status", `connected (${transport})`);
            console.log(`# ${transport}: dave was offline ${back - offline} ms (session gone after `
                + `${expired} ms), caught up ${Date.now() - back} ms after`);
            const newSession = await clientIdOf(dave);
            assert.notEqual(newSession, session, "dave's page is in a new session once back");

            // Live again, both ways.
            await publish(`after the loss over ${transport} ${RUN}`);
            await type(dave, `dave is back over ${transport} ${RUN}`);
            await type(alice, `welcome back dave over ${transport} ${RUN}`);
            await checkPages([alice, dave]);
            assert.equal(await clientIdOf(dave), newSession, "dave's page stayed in its new session");

            const screenshot = path.join(ARTIFACT_DIR, `demo-${transport}.png`);
            await dave.page.screenshot({path: screenshot, fullPage: true});
            console.log(`# screenshot: ${screenshot}`);
        } finally {
            await closePages([alice, dave]);
        }
    });
}

/**
 * A page of the demo in a browser context of its own, forced onto `transport`, connected and
 * showing the channel's history; `from` is where its view of `board` starts (what the history
 * kept when it opened). With `intercept`, `network` can take it off the network and back.
 */
async function openPage(transport, name, {intercept = false} = {}) {
    const context = await browser.newContext({viewport: {width: 900, height: 900}});
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error));
    page.on("console", (message) => {
        // Failed requests are logged below, with their URL.
        if ((message.type() === "error" || message.type() === "warning")
            && !message.text().startsWith("Failed to load resource")) {
            console.log(`# [${name}'s console, ${message.type()}] ${message.text()}`);
        }
    });
    page.on("requestfailed", (request) => {
        console.log(`# [${name}'s page] ${request.method()} ${request.url()} failed: ${request.failure()?.errorText}`);
    });
    page.on("response", (response) => {
        if (response.status() >= 400 && new URL(response.url()).pathname !== "/favicon.ico") {
            console.log(`# [${name}'s page] ${response.request().method()} ${response.url()}: ${response.status()}`);
        }
    });
    const member = {
        name,
        transport,
        context,
        page,
        errors,
        from: Math.max(0, board.length - HISTORY_SIZE),
        expected() {
            return board.slice(this.from).map(expectedText);
        },
        network: intercept ? await interceptNetwork(page, transport) : null,
    };
    // Until `load`: the page must finish loading (with callback-polling too, whose requests
    // are <script> elements).
    await page.goto(`${DEMO_URL}/?transport=${transport}`, {waitUntil: "load", timeout: STEP_TIMEOUT});
    await waitForText(page, "#status", `connected (${transport})`);
    const used = await page.evaluate(() => window.cometd.getTransport().type);
    assert.equal(used, transport, `${name}'s page uses ${used}, not ${transport}`);
    await waitForBoard(member);
    return member;
}

/** Checks that each page shows the whole board, and nothing went wrong on it. */
async function checkPages(members) {
    for (const member of members) {
        await waitForBoard(member);
        const duplicates = await member.page.evaluate(() => window.boardHistory.duplicates);
        assert.equal(duplicates, 0, `the history extension in ${member.name}'s page dropped duplicates`);
        const sendError = await member.page.$eval("#send-error", (e) => (e.hidden ? "" : e.textContent));
        assert.equal(sendError, "", `${member.name}'s page could not send`);
        assert.deepEqual(member.errors.map(String), [], `uncaught errors in ${member.name}'s page`);
    }
}

/** Leaves cleanly (a /meta/disconnect: the session is gone at once), then closes the context. */
async function closePages(members) {
    for (const member of members) {
        if (!member) {
            continue;
        }
        await member.page.evaluate(() => new Promise((resolve) => {
            window.cometd.disconnect(() => resolve());
            setTimeout(resolve, 3000);
        })).catch(() => {});
        await member.context.close().catch(() => {});
    }
}

/** Types `text` in the page's form and sends it (a client publish). */
async function type(member, text) {
    await member.page.fill("#text", text);
    await member.page.click("#send button");
    // The page clears the input once it sent the message.
    await member.page.waitForFunction(() => document.getElementById("text").value === "", null,
        {timeout: STEP_TIMEOUT});
    const offset = next();
    board.push({offset, text});
    // One at a time: the sender's page has it (its position) before the next publish.
    await waitForElement(member.page, "#messages li", `#${offset}${text}`, STEP_TIMEOUT);
}

/** `POST /api/publish` of one message (`data` a text: `{text}`, or any JSON). */
async function publish(data) {
    const body = typeof data === "string" ? {text: data} : data;
    const response = await api("POST", "/api/publish", {channel: CHANNEL, data: body});
    assert.equal(response.status, 200, `POST /api/publish: ${JSON.stringify(response.body)}`);
    const offset = next();
    assert.deepEqual(response.body, {published: [{channel: CHANNEL, epoch, offset}]});
    board.push({offset, text: render(body)});
}

/** `POST /api/publish` of several messages in one request. */
async function publishBatch(textList) {
    const response = await api("POST", "/api/publish",
        textList.map((text) => ({channel: CHANNEL, data: {text}})));
    assert.equal(response.status, 200, `POST /api/publish: ${JSON.stringify(response.body)}`);
    const first = next();
    const entries = textList.map((text, i) => ({offset: first + i, text}));
    assert.deepEqual(response.body,
        {published: entries.map(({offset}) => ({channel: CHANNEL, epoch, offset}))});
    board.push(...entries);
}

/** The offset of the next message on the channel. */
function next() {
    return (board.at(-1)?.offset ?? 0) + 1;
}

async function api(method, url, json) {
    const response = await fetch(`${DEMO_URL}${url}`, {
        method,
        headers: {
            authorization: `Bearer ${PUBLISH_SECRET}`,
            ...(json === undefined ? {} : {"content-type": "application/json"}),
        },
        body: json === undefined ? undefined : JSON.stringify(json),
    });
    const text = await response.text();
    let body;
    try {
        body = JSON.parse(text);
    } catch {
        body = text;
    }
    return {status: response.status, body};
}

async function status() {
    const response = await fetch(`${DEMO_URL}/api/status`);
    assert.equal(response.status, 200);
    return response.json();
}

async function clientIdOf(member) {
    return member.page.evaluate(() => window.cometd.getClientId());
}

/** What the page renders for a message's `data` (board.js `show`). */
function render(data) {
    return String(data?.text ?? JSON.stringify(data));
}

function expectedText({offset, text}) {
    return `#${offset}${text}`;
}

/**
 * Takes `page` off the network and back (`goOffline()`, `goOnline()`): while offline every
 * Bayeux request fails, the open websockets are closed and new ones close at once, and a
 * /meta/connect reply that comes back meanwhile is lost. (Playwright's `context.setOffline`
 * leaves open websockets alone.)
 */
async function interceptNetwork(page, transport) {
    const sockets = new Set();
    const state = {
        offline: false,
        async goOffline() {
            state.offline = true;
            for (const pair of sockets) {
                await pair.ws.close({code: 1006, reason: "offline"}).catch(() => {});
                await pair.server.close().catch(() => {});
            }
            sockets.clear();
        },
        goOnline() {
            state.offline = false;
        },
    };
    if (transport === "websocket") {
        await page.routeWebSocket(/\/cometd/, async (ws) => {
            if (state.offline) {
                await ws.close({code: 1006, reason: "offline"}).catch(() => {});
                return;
            }
            const server = ws.connectToServer();
            sockets.add({ws, server});
        });
    } else {
        await page.route((url) => url.pathname.startsWith("/cometd"), async (route) => {
            if (state.offline) {
                await route.abort("internetdisconnected");
                return;
            }
            if (!new URL(route.request().url()).pathname.startsWith("/cometd/connect")) {
                await route.continue();
                return;
            }
            let response;
            try {
                response = await route.fetch({timeout: 60_000});
            } catch {
                await route.abort().catch(() => {});
                return;
            }
            const body = await response.text();
            if (state.offline) {
                await route.abort("internetdisconnected");
                return;
            }
            await route.fulfill({response, body});
        });
    }
    return state;
}

async function texts(page, selector) {
    return page.$$eval(selector, (elements) => elements.map((e) => e.textContent));
}

/** Waits until the page shows exactly its part of the board, in order. */
async function waitForBoard(member, timeout = STEP_TIMEOUT) {
    await waitForTexts(member.page, "#messages li", member.expected(), `${member.name}'s board`, timeout);
}

async function waitForText(page, selector, text) {
    await waitForElement(page, selector, text, STEP_TIMEOUT);
}

/** Waits until an element matching `selector` has exactly `text`. */
async function waitForElement(page, selector, text, timeout) {
    try {
        await page.waitForFunction(([selector, text]) => [...document.querySelectorAll(selector)]
            .some((e) => e.textContent === text), [selector, text], {timeout});
    } catch {
        const seen = await texts(page, selector).catch(() => []);
        assert.fail(`timed out after ${timeout} ms waiting for ${JSON.stringify(text)} in ${selector} `
            + `on ${page.url()}; it shows ${JSON.stringify(seen)}`);
    }
}

/** Waits until the elements matching `selector` have exactly `expected` texts, in order. */
async function waitForTexts(page, selector, expected, what, timeout = STEP_TIMEOUT) {
    try {
        await page.waitForFunction(([selector, expected]) => JSON.stringify(
            [...document.querySelectorAll(selector)].map((e) => e.textContent)) === expected,
        [selector, JSON.stringify(expected)], {timeout});
    } catch {
        assert.deepEqual(await texts(page, selector), expected, `${what} (after ${timeout} ms)`);
        throw new Error(`${what}: waiting failed`);
    }
}

/** Polls `condition` every 100 ms until it holds. */
async function waitFor(condition, what, timeout) {
    const deadline = Date.now() + timeout;
    while (!(await condition())) {
        if (Date.now() > deadline) {
            assert.fail(`timed out after ${timeout} ms waiting for ${what}`);
        }
        await sleep(100);
    }
}

function sleep(ms) {
    return new Promise((resolve) => setTimeout(resolve, ms));
}
