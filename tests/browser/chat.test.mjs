// The chat example (examples/chat) in Debian's headless Chromium, driven with Playwright: three
// members in three browser contexts (separate browsers: separate cookies), once per transport
// the page can be forced to use; then the room's history (the page's history extension, from
// clients/js/): a member joining sees the recent messages, and a tab taken off the network for
// longer than its session lives shows every message it missed once back, once each, in order.
//
// Run through `cargo test --test browser`, which builds and starts the server. By hand:
//   cargo run --example chat -- --addr 127.0.0.1:8080 --max-interval-ms 2000
//   npm ci --prefix tests/browser
//   CHAT_URL=http://127.0.0.1:8080 node --test tests/browser/chat.test.mjs
//
// Environment:
//   CHAT_URL          the chat server's origin (required)
//   MAX_INTERVAL_MS   the server's --max-interval-ms (default 2000): how long a closed tab's
//                     member lives on
//   CHAT_TRANSPORTS   comma-separated transports to run (default: all three)
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   ARTIFACT_DIR      where screenshots go (default: the system's temporary directory)

import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import {after, before, test} from "node:test";
import {chromium} from "playwright-core";

const CHAT_URL = process.env.CHAT_URL;
if (!CHAT_URL) {
    throw new Error("CHAT_URL is not set (e.g. http://127.0.0.1:8080); run through `cargo test --test browser`");
}
const MAX_INTERVAL_MS = Number(process.env.MAX_INTERVAL_MS || 2000);
const TRANSPORTS = (process.env.CHAT_TRANSPORTS || "websocket,long-polling,callback-polling")
    .split(",").map((s) => s.trim()).filter(Boolean);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const ARTIFACT_DIR = process.env.ARTIFACT_DIR || path.join(os.tmpdir(), "tower-bayeux-browser-artifacts");

/**
 * Part of every room's name: rooms keep their history on the server, so that a second run
 * against the same server starts in empty rooms.
 */
const RUN = Date.now().toString(36).slice(-5);

/** How long the page may take to show what a step caused. */
const STEP_TIMEOUT = 10_000;

const FIREFOX_UA = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
const EDGE_UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    + "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0";

let browser;

before(async () => {
    if (!fs.existsSync(CHROMIUM)) {
        throw new Error(`${CHROMIUM} not found: install with: apt-get install -y chromium`);
    }
    browser = await chromium.launch({
        executablePath: CHROMIUM,
        headless: true,
        // Playwright gives the browser a fresh temporary --user-data-dir.
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
});

after(async () => {
    await browser?.close();
});

for (const transport of TRANSPORTS) {
    test(`chat over ${transport}`, async () => {
        await scenario(transport);
    });
    test(`room history over ${transport}`, async () => {
        await historyScenario(transport);
    });
}

async function scenario(transport) {
    const room = `${transport}-${RUN}`;
    const url = `${CHAT_URL}/?transport=${transport}&room=${room}`;
    const marker = `lost in transit over ${transport}`;

    // Three browsers. Bob's drops the first reply that carries `marker`, as a network that
    // breaks at the wrong moment would: acknowledged delivery must send it again.
    const alice = await openMember("alice", {userAgent: FIREFOX_UA});
    const bob = await openMember("bob", {});
    const dropper = await interceptNetwork(bob.page, transport, marker);
    const carol = await openMember("carol", {userAgent: EDGE_UA});
    const everyone = [alice, bob, carol];

    try {
        // Join, one after the other (so the member list has a known order).
        for (const member of everyone) {
            await member.page.goto(url);
            await member.page.fill("#name", member.name);
            await member.page.click("#join button");
            await member.page.locator("#room").waitFor({state: "visible", timeout: STEP_TIMEOUT});
        }

        // The forced transport is the one in use, and the server agreed to acknowledge.
        for (const member of everyone) {
            const used = await member.page.evaluate(() => window.cometd.getTransport().type);
            assert.equal(used, transport, `${member.name}'s page uses ${used}, not ${transport}`);
            await waitForText(member.page, "#status",
                `connected as ${member.name} over ${transport}, acknowledged delivery`);
        }

        // Everyone sees everyone, with the browser the server read from the User-Agent header.
        const bobsBrowser = await bob.page.evaluate(() => navigator.userAgent.includes("HeadlessChrome/")
            ? "Headless Chrome" : "Chrome");
        const list = ["alice (Firefox)", `bob (${bobsBrowser})`, "carol (Edge)"];
        for (const member of everyone) {
            await waitForTexts(member.page, "#members li",
                list.map((entry) => (entry.startsWith(member.name) ? `${entry} you` : entry)),
                `${member.name}'s member list`);
        }
        await waitForTexts(alice.page, "#messages li", [
            "alice (Firefox) joined.",
            `bob (${bobsBrowser}) joined.`,
            "carol (Edge) joined.",
        ], "alice's join notices");

        // Room messages, both ways.
        await say(alice, "hello from alice");
        for (const member of everyone) {
            await waitForMessage(member.page, "alice hello from alice");
        }
        await say(bob, "hi alice, bob here");
        for (const member of everyone) {
            await waitForMessage(member.page, "bob hi alice, bob here");
        }

        // A reply dropped on its way to bob is sent again: bob sees the message once, in order.
        dropper.armed = true;
        await say(alice, marker);
        await say(alice, "after the drop");
        await waitForMessage(bob.page, "alice after the drop");
        assert.equal(dropper.dropped, 1, `the interceptor on bob's page dropped ${dropper.dropped} replies`);
        const bobsView = await texts(bob.page, "#messages li");
        assert.deepEqual(bobsView.filter((t) => t.includes(marker) || t.includes("after the drop")),
            [`alice ${marker}`, "alice after the drop"], "bob sees the dropped message once, before the next");

        // A private message from alice to bob: only bob gets it.
        await alice.page.selectOption("#to", {label: "Only bob"});
        await say(alice, "psst, only for bob");
        await waitForMessage(bob.page, "alice → you psst, only for bob");
        await waitForMessage(alice.page, "you → bob psst, only for bob");
        await alice.page.selectOption("#to", {label: "Everyone"});
        // Carol's deliveries are in order: once she has bob's next message, a misdelivered private
        // one would be there before it.
        await say(bob, "bob saw the secret");
        await waitForMessage(carol.page, "bob bob saw the secret");
        const carolsView = await texts(carol.page, "#messages li");
        assert.ok(!carolsView.some((t) => t.includes("psst")),
            `carol must not see the private message: ${JSON.stringify(carolsView)}`);

        // The server only takes room messages through its services, and validates them.
        const refusals = await carol.page.evaluate(async (room) => {
            const publish = (channel, data) => new Promise((resolve) => {
                window.cometd.publish(channel, data, (reply) => resolve(reply.successful ? "ok" : reply.error));
            });
            return [
                await publish(`/chat/${room}`, {type: "message", id: 1, name: "alice", text: "forged"}),
                await publish(`/members/${room}`, {members: []}),
                await publish("/service/chat", {text: "   "}),
                await publish("/service/chat", {text: "x".repeat(501)}),
                await publish("/service/private", {to: 999, text: "anyone?"}),
            ];
        }, room);
        assert.deepEqual(refusals, [
            "403::publish_denied",
            "403::publish_denied",
            "400::empty message",
            "400::message longer than 500 characters",
            "404::no member 999",
        ]);

        // Carol leaves with the button: a disconnect.
        await carol.page.click("#leave");
        await carol.page.locator("#join").waitFor({state: "visible", timeout: STEP_TIMEOUT});
        for (const member of [alice, bob]) {
            await waitForNotice(member.page, "carol left (disconnect).");
            await waitForTexts(member.page, "#members li",
                list.slice(0, 2).map((entry) => (entry.startsWith(member.name) ? `${entry} you` : entry)),
                `${member.name}'s member list after carol left`);
        }
        // The handshake needs a name: the policy refuses a blank one.
        const denied = await carol.page.evaluate(() => new Promise((resolve) => {
            window.cometd.handshake({ext: {chat: {name: "  "}}}, (reply) => resolve(reply));
        }));
        assert.equal(denied.successful, false);
        assert.equal(denied.error, "403::handshake_denied");

        // Bob's view, with the private message, before he goes.
        const bobsScreenshot = path.join(ARTIFACT_DIR, `chat-${transport}-bob.png`);
        await bob.page.screenshot({path: bobsScreenshot, fullPage: true});
        console.log(`# screenshot: ${bobsScreenshot}`);

        // Bob closes his browser: his session times out after max-interval.
        const closed = Date.now();
        await bob.context.close();
        await waitForNotice(alice.page, "bob left (connection timed out).", MAX_INTERVAL_MS + STEP_TIMEOUT);
        const elapsed = Date.now() - closed;
        assert.ok(elapsed >= MAX_INTERVAL_MS - 100,
            `bob timed out after ${elapsed} ms, before max-interval (${MAX_INTERVAL_MS} ms)`);
        await waitForTexts(alice.page, "#members li", ["alice (Firefox) you"], "alice's member list at the end");
        console.log(`# ${transport}: bob's leave notice came ${elapsed} ms after his browser closed`);

        const screenshot = path.join(ARTIFACT_DIR, `chat-${transport}.png`);
        await alice.page.screenshot({path: screenshot, fullPage: true});
        console.log(`# screenshot: ${screenshot}`);

        for (const member of everyone) {
            assert.deepEqual(member.errors.map(String), [], `uncaught errors in ${member.name}'s page`);
        }
    } finally {
        for (const member of everyone) {
            await member.context.close().catch(() => {});
        }
    }
}

/**
 * Room history: dave joins after alice spoke and sees her messages; his tab then loses the
 * network for longer than the server's max-interval, so his session expires and the messages
 * alice sends meanwhile never reach it; back online, the page handshakes again and its history
 * extension resubscribes from the last message it showed: every missed message appears once,
 * in order, after what it had, then live ones. A member joining at the end sees it all.
 */
async function historyScenario(transport) {
    const room = `${transport}-history-${RUN}`;
    const url = `${CHAT_URL}/?transport=${transport}&room=${room}`;
    const alice = await openMember("alice", {userAgent: FIREFOX_UA});
    const dave = await openMember("dave", {});
    const erin = await openMember("erin", {userAgent: EDGE_UA});
    const everyone = [alice, dave, erin];
    const network = await interceptNetwork(dave.page, transport);
    const join = async (member) => {
        await member.page.goto(url);
        await member.page.fill("#name", member.name);
        await member.page.click("#join button");
        await member.page.locator("#room").waitFor({state: "visible", timeout: STEP_TIMEOUT});
    };

    try {
        await join(alice);
        for (const text of ["one", "two", "three"]) {
            await say(alice, text);
        }
        const davesBrowser = await dave.page.evaluate(() => (navigator.userAgent.includes("HeadlessChrome/")
            ? "Headless Chrome" : "Chrome"));
        const daveJoined = `dave (${davesBrowser}) joined.`;
        const before = ["alice (Firefox) joined.", "alice one", "alice two", "alice three"];

        // Dave joins: the room's recent messages first, then his own join notice, live.
        await join(dave);
        await waitForTexts(dave.page, "#messages li", [...before, daveJoined], "dave's view when he joined");
        await say(dave, "dave was here");
        const had = [...before, daveJoined, "dave dave was here"];
        await waitForTexts(alice.page, "#messages li", had, "alice's view");
        await waitForTexts(dave.page, "#messages li", had, "dave's view");

        // Dave's tab goes offline. The message alice sends right away is lost on its way to him
        // (over HTTP it ends the /meta/connect the server held, whose reply is then lost), and
        // his session expires after max-interval.
        await network.goOffline();
        const offline = Date.now();
        await say(alice, "four");
        await waitForNotice(alice.page, "dave left (connection timed out).", MAX_INTERVAL_MS + STEP_TIMEOUT);
        await say(alice, "five");
        await say(alice, "six");
        await waitForText(dave.page, "#status", "connection lost, reconnecting…");
        const missed = ["alice four", "dave left (connection timed out).", "alice five", "alice six"];
        assert.deepEqual(await texts(dave.page, "#messages li"), had, "dave's view while offline");

        // Back online: the client learns its session is gone, handshakes again, and the handshake
        // listener subscribes again, from the last message the page has.
        network.goOnline();
        const back = Date.now();
        const after = [...had, ...missed, daveJoined];
        await waitForTexts(dave.page, "#messages li", after, "dave's view once back", 30_000);
        console.log(`# ${transport}: dave was offline ${back - offline} ms, caught up ${Date.now() - back} ms after`);
        await waitForText(dave.page, "#status", `connected as dave over ${transport}, acknowledged delivery`);
        await say(alice, "seven");
        await say(dave, "dave is back");
        const end = [...after, "alice seven", "dave dave is back"];
        await waitForTexts(dave.page, "#messages li", end, "dave's view at the end");
        await waitForTexts(alice.page, "#messages li", end, "alice's view at the end");

        // Erin joins last and sees the room's history, join and leave notices included.
        await join(erin);
        await waitForTexts(erin.page, "#messages li", [...end, "erin (Edge) joined."], "erin's view when she joined");

        for (const member of everyone) {
            const duplicates = await member.page.evaluate(() => window.roomHistory.duplicates);
            assert.equal(duplicates, 0, `the history extension in ${member.name}'s page dropped duplicates`);
            assert.deepEqual(member.errors.map(String), [], `uncaught errors in ${member.name}'s page`);
        }
        const screenshot = path.join(ARTIFACT_DIR, `chat-${transport}-history-dave.png`);
        await dave.page.screenshot({path: screenshot, fullPage: true});
        console.log(`# screenshot: ${screenshot}`);
    } finally {
        for (const member of everyone) {
            await member.context.close().catch(() => {});
        }
    }
}

/** A member in a browser context of its own. */
async function openMember(name, options) {
    const context = await browser.newContext({viewport: {width: 1000, height: 640}, ...options});
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (error) => errors.push(error));
    page.on("console", (message) => {
        if (message.type() === "error") {
            console.log(`# [${name}'s console] ${message.text()}`);
        }
    });
    return {name, context, page, errors};
}

/**
 * Intercepts the Bayeux traffic of `page`. Makes it lose the first server message that carries
 * `marker`, once `armed` is set: over HTTP the /meta/connect reply carrying it fails as if the
 * connection broke, over websocket the frame is swallowed and the socket closed. And takes the
 * page off the network and back (`goOffline()`, `goOnline()`): while offline every request
 * fails, the open websockets are closed and new ones close at once, and a /meta/connect reply
 * that comes back meanwhile is lost.
 */
async function interceptNetwork(page, transport, marker) {
    const sockets = new Set();
    const state = {
        armed: false,
        dropped: 0,
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
    const shouldDrop = (text) => marker !== undefined && state.armed && state.dropped === 0 && text.includes(marker);
    if (transport === "websocket") {
        await page.routeWebSocket(/\/cometd/, async (ws) => {
            if (state.offline) {
                // Not connected to the server: the page's websocket closes as soon as it opens.
                await ws.close({code: 1006, reason: "offline"}).catch(() => {});
                return;
            }
            const server = ws.connectToServer();
            sockets.add({ws, server});
            server.onMessage((message) => {
                if (shouldDrop(String(message))) {
                    state.dropped++;
                    ws.close({code: 1006, reason: "dropped by the test"});
                    server.close();
                    return;
                }
                ws.send(message);
            });
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
            if (shouldDrop(body)) {
                state.dropped++;
                await route.abort("connectionreset");
                return;
            }
            await route.fulfill({response, body});
        });
    }
    return state;
}

async function say(member, text) {
    await member.page.fill("#text", text);
    await member.page.click("#send button");
    // The page clears the input once the server accepted the message.
    await member.page.waitForFunction(() => document.getElementById("text").value === "", null,
        {timeout: STEP_TIMEOUT});
}

async function texts(page, selector) {
    return page.$$eval(selector, (elements) => elements.map((e) => e.textContent));
}

async function waitForMessage(page, text, timeout = STEP_TIMEOUT) {
    await waitForElement(page, "#messages li.message", text, timeout);
}

async function waitForNotice(page, text, timeout = STEP_TIMEOUT) {
    await waitForElement(page, "#messages li.notice", text, timeout);
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
