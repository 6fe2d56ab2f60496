// Raw websocket upgrades (node:http, no client library).
//
// Cross-site websocket protection: an upgrade carrying an `Origin` is accepted only from the
// server's own origin (the host and port of the request's `Host`; over HTTP/1 the server cannot
// tell http from https behind a TLS-terminating proxy, so the scheme is not tested here) or
// from the conformance server's allow-list (`http://allowed.test`); any other origin gets 403
// and no upgrade. Upgrades without an `Origin` (clients that are not browsers) are accepted.
//
// Sessions over a websocket opened without the browser cookie (as Faye's is): the clientId
// continues the session; a websocket carrying another browser's cookie cannot.
//
// In the websocket-fallback run the server refuses every upgrade (`--no-websocket`): there the
// tests only check that no upgrade is granted, whatever the origin.

import assert from "node:assert/strict";
import {createHash, randomBytes} from "node:crypto";
import http from "node:http";
import {afterEach, test} from "node:test";
import {
    COMETD_URL, Inbox, OP_TIMEOUT, ORIGIN, channel, closeAllClients, connectClient, createClient, publishOk,
    rawHandshake, subscribeOk, withTimeout,
} from "./helpers.mjs";

afterEach(closeAllClients);

const WEBSOCKET_ENABLED = !(process.env.CONFORMANCE_ARGS || "").split(/\s+/).includes("--no-websocket");
const PORT = Number(new URL(COMETD_URL).port);
const OTHER_PORT = PORT === 65535 ? PORT - 1 : PORT + 1;

/** Origins that must be refused: none is the server's own or on its allow-list. */
const FOREIGN = [
    "http://evil.test",
    "null", // sandboxed iframes, file: pages
    `http://127.0.0.1:${OTHER_PORT}`, // same host, other port
    "http://127.0.0.1", // same host, default port
    `http://localhost:${PORT}`, // another name for the host is another origin
    "https://allowed.test", // the allowed origin is http://allowed.test, not https
    "http://allowed.test.evil.test",
    `http://evil.test:${PORT}`,
];

/** Origins that must be accepted (null: no Origin header at all). */
const ACCEPTED = [null, ORIGIN, "http://allowed.test"];

/**
 * Sends a websocket upgrade request to the Bayeux endpoint, with `Origin: origin` unless null.
 * Resolves with {status, headers, upgraded, socket (if upgraded), key, body (if not)}.
 */
function upgrade(origin, {headers = {}, ms = OP_TIMEOUT} = {}) {
    const key = randomBytes(16).toString("base64");
    const requestHeaders = {
        Connection: "Upgrade",
        Upgrade: "websocket",
        "Sec-WebSocket-Version": "13",
        "Sec-WebSocket-Key": key,
        ...headers,
    };
    if (origin !== null) {
        requestHeaders.Origin = origin;
    }
    const p = new Promise((resolve, reject) => {
        const request = http.request(COMETD_URL, {method: "GET", headers: requestHeaders, agent: false});
        request.on("upgrade", (response, socket, head) => {
            socket.on("error", () => {}); // a reset shows up as a missing reply instead
            resolve({status: response.statusCode, headers: response.headers, upgraded: true, socket, head, key});
        });
        request.on("response", (response) => {
            let body = "";
            response.setEncoding("utf8");
            response.on("data", (chunk) => {
                body += chunk;
            });
            response.on("end", () => resolve({status: response.statusCode, headers: response.headers, upgraded: false, body, key}));
            response.on("error", reject);
        });
        request.on("error", reject);
        request.end();
    });
    return withTimeout(p, ms, `the answer to a websocket upgrade with Origin ${JSON.stringify(origin)}`);
}

/** The Sec-WebSocket-Accept value for `key` (RFC 6455, 4.2.2). */
function acceptFor(key) {
    return createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64");
}

/** A masked client text frame (RFC 6455, 5.2). */
function textFrame(text) {
    const payload = Buffer.from(text, "utf8");
    const mask = randomBytes(4);
    let header;
    if (payload.length < 126) {
        header = Buffer.from([0x81, 0x80 | payload.length]);
    } else if (payload.length < 65536) {
        header = Buffer.alloc(4);
        header[0] = 0x81;
        header[1] = 0x80 | 126;
        header.writeUInt16BE(payload.length, 2);
    } else {
        throw new Error("frame too large for this test");
    }
    const masked = Buffer.from(payload);
    for (let i = 0; i < masked.length; ++i) {
        masked[i] ^= mask[i & 3];
    }
    return Buffer.concat([header, mask, masked]);
}

/** Reads the first complete unfragmented text frame the server sends on `socket` (after `head`). */
function readTextFrame(socket, head, ms = OP_TIMEOUT) {
    const p = new Promise((resolve, reject) => {
        let buffer = head && head.length ? Buffer.from(head) : Buffer.alloc(0);
        const tryParse = () => {
            if (buffer.length < 2) {
                return false;
            }
            const opcode = buffer[0] & 0x0f;
            let length = buffer[1] & 0x7f;
            let offset = 2;
            if (length === 126) {
                if (buffer.length < 4) {
                    return false;
                }
                length = buffer.readUInt16BE(2);
                offset = 4;
            } else if (length === 127) {
                if (buffer.length < 10) {
                    return false;
                }
                length = Number(buffer.readBigUInt64BE(2));
                offset = 10;
            }
            if (buffer.length < offset + length) {
                return false;
            }
            const payload = buffer.subarray(offset, offset + length);
            if (opcode !== 1) {
                reject(new Error(`expected a text frame, got opcode ${opcode}: ${payload.toString("utf8")}`));
            } else {
                resolve(payload.toString("utf8"));
            }
            return true;
        };
        const onData = (chunk) => {
            buffer = Buffer.concat([buffer, chunk]);
            if (tryParse()) {
                socket.off("data", onData);
            }
        };
        if (!tryParse()) {
            socket.on("data", onData);
            socket.once("close", () => reject(new Error("the socket closed before a text frame arrived")));
        }
    });
    return withTimeout(p, ms, "a text frame from the server");
}

/** Sends `messages` on an upgraded connection; resolves with the messages of the first frame back. */
async function exchange(answer, messages) {
    answer.socket.write(textFrame(JSON.stringify(messages)));
    const text = await readTextFrame(answer.socket, answer.head);
    const replies = JSON.parse(text);
    assert.ok(Array.isArray(replies), `a websocket reply must be a JSON array: ${text}`);
    return replies;
}

/** Asserts `answer` is a working websocket upgrade: 101, the right accept key, Bayeux spoken. */
async function assertUpgraded(answer, what) {
    try {
        assert.equal(answer.status, 101, `${what}: HTTP ${answer.status} ${answer.body ?? ""}`);
        assert.equal(answer.upgraded, true, what);
        assert.equal(answer.headers["sec-websocket-accept"], acceptFor(answer.key), `${what}: Sec-WebSocket-Accept`);
        // The upgraded connection speaks Bayeux: a handshake over it succeeds.
        const replies = await exchange(answer, [{
            id: "ws1", channel: "/meta/handshake", version: "1.0", minimumVersion: "1.0",
            supportedConnectionTypes: ["websocket"],
        }]);
        const reply = replies.find((m) => m.id === "ws1");
        assert.equal(reply?.channel, "/meta/handshake", `${what}: ${JSON.stringify(replies)}`);
        assert.equal(reply.successful, true, `${what}: ${JSON.stringify(replies)}`);
    } finally {
        answer.socket?.destroy();
    }
}

function assertRefused(answer, what, status) {
    answer.socket?.destroy();
    assert.equal(answer.upgraded, false, `${what}: the server upgraded the connection (HTTP ${answer.status})`);
    assert.notEqual(answer.status, 101, what);
    if (status !== undefined) {
        assert.equal(answer.status, status, `${what}: HTTP ${answer.status} ${answer.body}`);
    }
    assert.equal(answer.headers["sec-websocket-accept"], undefined, `${what}: a refusal must not carry Sec-WebSocket-Accept`);
}

/** A normal client still works: connect, subscribe, publish, receive. */
async function assertServerServes() {
    const [publisher, subscriber] = [createClient(), createClient()];
    await connectClient(publisher);
    await connectClient(subscriber);
    const ch = channel("origin");
    const inbox = new Inbox();
    await subscribeOk(subscriber, ch, inbox.push);
    await publishOk(publisher, ch, {still: "serving"});
    const [message] = await inbox.waitForCount(1);
    assert.deepEqual(message.data, {still: "serving"});
}

test("websocket upgrades from a foreign Origin get 403 and no upgrade; the server keeps serving", {skip: !WEBSOCKET_ENABLED && "the server refuses websocket in this run"}, async () => {
    for (const origin of FOREIGN) {
        assertRefused(await upgrade(origin), `Origin ${origin}`, 403);
    }
    // With a live session's browser cookie too: the cookie is exactly what a cross-site page
    // would ride on.
    const {cookie} = await rawHandshake("o1");
    assert.match(cookie, /BAYEUX_BROWSER=/, "the handshake sets the browser cookie");
    assertRefused(await upgrade("http://evil.test", {headers: {Cookie: cookie}}), "Origin http://evil.test with the browser cookie", 403);
    await assertUpgraded(await upgrade(ORIGIN, {headers: {Cookie: cookie}}), "own Origin with the browser cookie");

    await assertServerServes();
    // And websocket upgrades keep working after the refusals.
    await assertUpgraded(await upgrade(ORIGIN), "own Origin after the refusals");
});

test("websocket upgrades without Origin, from the server's own origin and from an allowed origin get 101", {skip: !WEBSOCKET_ENABLED && "the server refuses websocket in this run"}, async () => {
    for (const origin of ACCEPTED) {
        await assertUpgraded(await upgrade(origin), origin === null ? "no Origin" : `Origin ${origin}`);
    }
});

test("with websocket disabled, no upgrade is granted whatever the Origin", {skip: WEBSOCKET_ENABLED && "websocket is enabled in this run"}, async () => {
    for (const origin of [...ACCEPTED, ...FOREIGN]) {
        assertRefused(await upgrade(origin), origin === null ? "no Origin" : `Origin ${origin}`);
    }
    await assertServerServes();
});

test("a websocket without the browser cookie continues a session by its clientId; one with another browser's cookie cannot", {skip: !WEBSOCKET_ENABLED && "the server refuses websocket in this run"}, async () => {
    const mine = await rawHandshake("c1");
    const other = await rawHandshake("c2");
    assert.notEqual(mine.cookie, other.cookie, "two cookie-less handshakes are two browsers");
    const connect = (id) => [{id, channel: "/meta/connect", connectionType: "websocket", clientId: mine.clientId, advice: {timeout: 0}}];
    const connectOver = async (cookie, id, what) => {
        const answer = await upgrade(null, {headers: cookie ? {Cookie: cookie} : {}});
        try {
            assert.equal(answer.status, 101, `${what}: HTTP ${answer.status} ${answer.body ?? ""}`);
            const replies = await exchange(answer, connect(id));
            const reply = replies.find((m) => m.id === id);
            assert.ok(reply, `${what}: no reply to the connect: ${JSON.stringify(replies)}`);
            assert.equal(reply.channel, "/meta/connect");
            return reply;
        } finally {
            answer.socket?.destroy();
        }
    };

    // Another browser's cookie: refused, as over HTTP.
    const foreign = await connectOver(other.cookie, "w1", "another browser's cookie");
    assert.equal(foreign.successful, false, `a session must not continue under another browser's cookie: ${JSON.stringify(foreign)}`);
    assert.equal(foreign.error, "402::session_unknown", JSON.stringify(foreign));

    // No cookie at all (Faye opens its websocket before the handshake reply sets the cookie).
    const cookieless = await connectOver(null, "w2", "no cookie");
    assert.equal(cookieless.successful, true, `a cookie-less websocket must continue the session: ${JSON.stringify(cookieless)}`);

    // The session's own cookie.
    const own = await connectOver(mine.cookie, "w3", "the session's own cookie");
    assert.equal(own.successful, true, JSON.stringify(own));
});
