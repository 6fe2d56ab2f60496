// Shared helpers for the interop suite: the real CometD JavaScript client (npm `cometd`)
// running in Node through `cometd-nodejs-client`, driven against the server at COMETD_URL.
//
// Environment:
//   COMETD_URL        Bayeux endpoint, e.g. http://127.0.0.1:8080/cometd (required)
//   COMETD_TRANSPORT  "long-polling" (default: the websocket transport is unregistered) or
//                     "websocket" (left registered: the client tries it first, falls back)
//   EXPECTED_TRANSPORT the transport clients must end up using (default: COMETD_TRANSPORT);
//                     "long-polling" with COMETD_TRANSPORT=websocket checks the fallback
//   CONFORMANCE_BIN   path of the conformance server binary, for tests that need a private
//                     server process (started with `--addr 127.0.0.1:<port>`)
//   CONFORMANCE_ARGS  extra arguments for those private servers (e.g. `--no-websocket`)
//   COMETD_LOG_LEVEL  CometD client log level (default "warn"; "debug" dumps the traffic)

import assert from "node:assert/strict";
import {spawn} from "node:child_process";
import {once} from "node:events";
import net from "node:net";
import readline from "node:readline";
import {setTimeout as delay} from "node:timers/promises";
import {adapt} from "cometd-nodejs-client";
import {CometD} from "cometd";

export const COMETD_URL = process.env.COMETD_URL;
if (!COMETD_URL) {
    throw new Error("COMETD_URL is not set (e.g. http://127.0.0.1:8080/cometd); run the suite through `cargo test --test interop`");
}
export const ORIGIN = new URL(COMETD_URL).origin;
export const TRANSPORT = process.env.COMETD_TRANSPORT || "long-polling";
if (TRANSPORT !== "long-polling" && TRANSPORT !== "websocket") {
    throw new Error(`COMETD_TRANSPORT must be "long-polling" or "websocket", not ${JSON.stringify(TRANSPORT)}`);
}
/** The transport clients must end up using (websocket falls back when the server refuses it). */
export const EXPECTED_TRANSPORT = process.env.EXPECTED_TRANSPORT || TRANSPORT;
export const CONFORMANCE_BIN = process.env.CONFORMANCE_BIN || null;
const LOG_LEVEL = process.env.COMETD_LOG_LEVEL || "warn";

/** Default time limit of one client operation (handshake, subscribe, publish, ...). */
export const OP_TIMEOUT = 5000;

// ---------------------------------------------------------------------------------------------
// Node adapter: one process-wide cookie jar we can read (same semantics as the adapter's own:
// only name=value is kept, keyed by hostname, so every client of this process shares
// BAYEUX_BROWSER like tabs of one browser), plus a log of every HTTP exchange.

const cookieJar = new Map(); // hostname -> Map(name -> "name=value")

adapt({
    cookies: {
        storeCookie(uri, header, callback) {
            const nameValue = String(header).split(";")[0].trim();
            const eq = nameValue.indexOf("=");
            if (eq > 0) {
                let jar = cookieJar.get(uri.hostname);
                if (!jar) {
                    cookieJar.set(uri.hostname, jar = new Map());
                }
                jar.set(nameValue.substring(0, eq), nameValue);
            }
            callback();
        },
        retrieveCookies(context, uri, callback) {
            const jar = cookieJar.get(uri.hostname);
            callback(null, jar ? [...jar.values()] : []);
        },
    },
});

/** The Cookie header value the clients of this process send to `url`'s host ("" if none). */
export function cookieHeader(url = COMETD_URL) {
    const jar = cookieJar.get(new URL(url).hostname);
    return jar ? [...jar.values()].join("; ") : "";
}

/**
 * Every long-polling HTTP exchange made by the clients of this process:
 * {url, messages (parsed request body), start, end, status, body (response text)}.
 */
export const httpLog = [];
const HTTP_LOG_MAX = 20000;

const AdaptedXHR = window.XMLHttpRequest;
window.XMLHttpRequest = class extends AdaptedXHR {
    #entry = null;

    open(method, uri) {
        this.#entry = {url: String(uri), messages: null, start: 0, end: 0, status: 0, body: null};
        return super.open(method, uri);
    }

    send(data) {
        const entry = this.#entry;
        try {
            entry.messages = JSON.parse(data);
        } catch {
            entry.messages = data;
        }
        entry.start = Date.now();
        if (httpLog.length >= HTTP_LOG_MAX) {
            httpLog.splice(0, HTTP_LOG_MAX / 2);
        }
        httpLog.push(entry);
        // The transport sets onload/onerror before send(): wrap them to record the outcome.
        const onload = this.onload;
        this.onload = () => {
            entry.end = Date.now();
            entry.status = this.status;
            entry.body = this.responseText;
            if (onload) {
                onload();
            }
        };
        const onerror = this.onerror;
        this.onerror = (x) => {
            entry.end = Date.now();
            entry.status = entry.status || -1;
            if (onerror) {
                onerror(x);
            }
        };
        return super.send(data);
    }
};

// The CometD WebSocket transport cannot set request headers; for the websocket runs the
// whoami test sets extra headers for the upgrade requests through this hook.
let wsExtraHeaders = null;
const AdaptedWebSocket = window.WebSocket;
window.WebSocket = class extends AdaptedWebSocket {
    constructor(url, protocols) {
        super(url, protocols, wsExtraHeaders ? {headers: {...wsExtraHeaders}} : undefined);
    }
};

/** Extra headers for the WebSocket upgrade requests of clients created from now on (null: none). */
export function setWebSocketHeaders(headers) {
    wsExtraHeaders = headers;
}

// ---------------------------------------------------------------------------------------------
// Utilities

export const sleep = (ms) => delay(ms);

/** A random alphanumeric token, to give every test its own channels. */
export function token(length = 10) {
    let s = "";
    while (s.length < length) {
        s += Math.random().toString(36).slice(2);
    }
    return s.slice(0, length);
}

/** A fresh channel name `/<prefix><token>` (plus `suffix` segments, if given). */
export function channel(prefix, suffix = "") {
    return `/${prefix}${token(8)}${suffix}`;
}

/** Rejects with `what` timed out after `ms` unless `promise` settles first. */
export function withTimeout(promise, ms, what) {
    let timer;
    const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${typeof what === "function" ? what() : what}`)), ms);
    });
    return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `predicate` every 10 ms until it returns a truthy value (returned) or `ms` elapse (throws). */
export async function waitUntil(predicate, ms, what) {
    const deadline = Date.now() + ms;
    for (;;) {
        const value = predicate();
        if (value) {
            return value;
        }
        if (Date.now() >= deadline) {
            throw new Error(`timed out after ${ms} ms waiting for ${typeof what === "function" ? what() : what}`);
        }
        await delay(10);
    }
}

/** Collects messages (use `inbox.push` as a listener/subscription callback) and waits for them. */
export class Inbox {
    messages = [];
    #waiters = [];

    push = (message) => {
        this.messages.push(message);
        this.#waiters = this.#waiters.filter((w) => !w());
    };

    get data() {
        return this.messages.map((m) => m.data);
    }

    get length() {
        return this.messages.length;
    }

    /** Waits until at least `n` messages arrived; resolves with the messages. */
    waitForCount(n, ms = OP_TIMEOUT, what = "") {
        return this.waitFor(() => this.messages.length >= n, ms,
            () => `${n} message(s)${what ? " " + what : ""}, got ${this.messages.length}: ${JSON.stringify(this.messages)}`);
    }

    /** Waits until `predicate(messages)` holds. */
    waitFor(predicate, ms = OP_TIMEOUT, what = "a message") {
        const p = new Promise((resolve) => {
            const check = () => {
                if (predicate(this.messages)) {
                    resolve(this.messages);
                    return true;
                }
                return false;
            };
            if (!check()) {
                this.#waiters.push(check);
            }
        });
        return withTimeout(p, ms, what);
    }
}

// ---------------------------------------------------------------------------------------------
// Clients

const liveClients = new Set();

/**
 * Creates a configured (not yet handshaken) CometD client. Every client records the messages
 * it receives from the server (`client.received`, after the transport, before any listener)
 * and sends (`client.sent`) through a CometD extension.
 */
export function createClient({url = COMETD_URL, name, requestHeaders, config = {}} = {}) {
    const client = new CometD(name || `client-${token(6)}`);
    if (TRANSPORT === "long-polling") {
        client.unregisterTransport("websocket");
    }
    client.configure({
        url,
        logLevel: LOG_LEVEL,
        maxNetworkDelay: 5000,
        requestHeaders: requestHeaders || {},
        ...config,
    });
    const received = [];
    const sent = [];
    const copy = (message) => {
        try {
            return JSON.parse(JSON.stringify(message));
        } catch {
            return message;
        }
    };
    client.received = received;
    client.sent = sent;
    client.registerExtension("interop-recorder", {
        incoming: (message) => {
            received.push(copy(message));
            return message;
        },
        outgoing: (message) => {
            sent.push(copy(message));
            return message;
        },
    });
    liveClients.add(client);
    return client;
}

/**
 * Handshakes and resolves with the first handshake reply that came from the server (successful
 * or not). Transport-level failures (e.g. the failed websocket attempt before the fallback to
 * long-polling, which the client reports through the same callback) are skipped.
 */
export function handshakeReply(client, props, ms = OP_TIMEOUT) {
    let lastFailure = null;
    const p = new Promise((resolve) => {
        client.handshake(props, (reply) => {
            if (reply.failure !== undefined && reply.error === undefined) {
                lastFailure = reply;
                return;
            }
            resolve(reply);
        });
    });
    return withTimeout(p, ms, () => `handshake reply${lastFailure ? ", last transport failure: " + describeFailure(lastFailure) : ""}`);
}

function describeFailure(message) {
    const f = message.failure || {};
    return JSON.stringify({channel: message.channel, reason: f.reason, httpCode: f.httpCode, connectionType: f.connectionType, exception: f.exception && String(f.exception)});
}

/**
 * Handshakes, asserts success, and waits until the first /meta/connect succeeded, so the session
 * is fully established on the server. Resolves with the handshake reply.
 */
export async function connectClient(client, props, ms = OP_TIMEOUT) {
    let connected = false;
    const listener = client.addListener("/meta/connect", (m) => {
        if (m.successful) {
            connected = true;
        }
    });
    try {
        const reply = await handshakeReply(client, props, ms);
        assert.equal(reply.successful, true, `handshake failed: ${JSON.stringify(reply)}`);
        await waitUntil(() => connected, ms, "the first successful /meta/connect");
        assert.equal(client.getTransport().type, EXPECTED_TRANSPORT, "the transport in use");
        return reply;
    } finally {
        client.removeListener(listener);
    }
}

/** Subscribes; resolves with {reply, subscription}. `onMessage` receives the delivered messages. */
export function subscribe(client, channelName, onMessage, ms = OP_TIMEOUT) {
    let subscription;
    const p = new Promise((resolve) => {
        subscription = client.subscribe(channelName, onMessage, (reply) => resolve(reply));
    });
    return withTimeout(p, ms, `subscribe reply for ${channelName}`).then((reply) => ({reply, subscription}));
}

/** Subscribes and asserts success; resolves with the subscription handle. */
export async function subscribeOk(client, channelName, onMessage, ms = OP_TIMEOUT) {
    const {reply, subscription} = await subscribe(client, channelName, onMessage, ms);
    assert.equal(reply.successful, true, `subscribe ${channelName} failed: ${JSON.stringify(reply)}`);
    return subscription;
}

/** Unsubscribes; resolves with the reply. */
export function unsubscribe(client, subscription, ms = OP_TIMEOUT) {
    const p = new Promise((resolve) => client.unsubscribe(subscription, (reply) => resolve(reply)));
    return withTimeout(p, ms, `unsubscribe reply for ${subscription.channel}`);
}

/** Publishes; resolves with the publish reply. */
export function publish(client, channelName, data, ms = OP_TIMEOUT) {
    const p = new Promise((resolve) => client.publish(channelName, data, (reply) => resolve(reply)));
    return withTimeout(p, ms, `publish reply for ${channelName}`);
}

/** Publishes and asserts the reply is successful. */
export async function publishOk(client, channelName, data, ms = OP_TIMEOUT) {
    const reply = await publish(client, channelName, data, ms);
    assert.equal(reply.successful, true, `publish to ${channelName} failed: ${JSON.stringify(reply)}`);
    return reply;
}

/** Disconnects; resolves with the /meta/disconnect reply (null if the client was not connected). */
export async function disconnect(client, ms = OP_TIMEOUT) {
    if (client.isDisconnected()) {
        liveClients.delete(client);
        return null;
    }
    const p = new Promise((resolve) => client.disconnect((reply) => resolve(reply)));
    try {
        return await withTimeout(p, ms, `disconnect reply of ${client.getName()}`);
    } finally {
        liveClients.delete(client);
    }
}

/** Disconnects every client created by createClient that is still live (for after/afterEach hooks). */
export async function closeAllClients() {
    const clients = [...liveClients];
    liveClients.clear();
    await Promise.all(clients.map(async (client) => {
        try {
            if (!client.isDisconnected()) {
                await withTimeout(new Promise((resolve) => client.disconnect(() => resolve())), 3000, "disconnect");
            }
        } catch {
            // Best effort: drop whatever is still in flight so no timer keeps the process alive.
            try {
                const transport = client.getTransport();
                if (transport) {
                    transport.abort();
                }
            } catch {
                // ignore
            }
        }
    }));
}

/** Messages with `data` received by `client` from the server on exactly `channelName`. */
export function deliveredOn(client, channelName) {
    return client.received.filter((m) => m.channel === channelName && m.data !== undefined);
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP (no client library)

/**
 * POSTs `body` (string, or anything else is JSON-encoded) to `url` (absolute, or a path on the
 * server's origin). Resolves with {status, headers, text, json (or undefined), setCookies}.
 */
export async function rawPost(url, body, {cookie, headers = {}, ms = OP_TIMEOUT} = {}) {
    const target = url.startsWith("http") ? url : ORIGIN + url;
    const h = {"Content-Type": "application/json", ...headers};
    if (cookie) {
        h.Cookie = cookie;
    }
    const response = await fetch(target, {
        method: "POST",
        headers: h,
        body: typeof body === "string" ? body : JSON.stringify(body),
        signal: AbortSignal.timeout(ms),
    });
    return readResponse(response);
}

/** GETs `url` (absolute, or a path on the server's origin). */
export async function rawGet(url, {cookie, headers = {}, ms = OP_TIMEOUT} = {}) {
    const target = url.startsWith("http") ? url : ORIGIN + url;
    const h = {...headers};
    if (cookie) {
        h.Cookie = cookie;
    }
    const response = await fetch(target, {headers: h, signal: AbortSignal.timeout(ms)});
    return readResponse(response);
}

async function readResponse(response) {
    const text = await response.text();
    let json;
    try {
        json = JSON.parse(text);
    } catch {
        json = undefined;
    }
    return {
        status: response.status,
        headers: response.headers,
        text,
        json,
        setCookies: response.headers.getSetCookie(),
    };
}

/** The Cookie header (name=value pairs) to send back for a response's Set-Cookie headers. */
export function cookiesFrom(setCookies) {
    return setCookies.map((c) => c.split(";")[0].trim()).join("; ");
}

/** A raw handshake; resolves with {reply, clientId, cookie, response}. */
export async function rawHandshake(id = "1") {
    const response = await rawPost(COMETD_URL + "/handshake", [{
        id,
        channel: "/meta/handshake",
        version: "1.0",
        minimumVersion: "1.0",
        supportedConnectionTypes: ["long-polling"],
    }]);
    assert.equal(response.status, 200, `raw handshake HTTP status, body: ${response.text}`);
    assert.ok(Array.isArray(response.json) && response.json.length === 1, `raw handshake reply: ${response.text}`);
    const reply = response.json[0];
    assert.equal(reply.successful, true, `raw handshake reply: ${response.text}`);
    return {reply, clientId: reply.clientId, cookie: cookiesFrom(response.setCookies), response};
}

// ---------------------------------------------------------------------------------------------
// Private server processes (CONFORMANCE_BIN)

/** A TCP port that was free a moment ago on 127.0.0.1. */
export async function freePort() {
    const server = net.createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const {port} = server.address();
    server.close();
    await once(server, "close");
    return port;
}

const liveServers = new Set();
process.on("exit", () => {
    for (const child of liveServers) {
        try {
            child.kill("SIGKILL");
        } catch {
            // ignore
        }
    }
});

/**
 * Starts CONFORMANCE_BIN on 127.0.0.1:`port` (0: any) and waits for its `listening on` line.
 * Resolves with {origin, url (the /cometd endpoint), port, child, kill()}. Retries a few
 * times if the process exits early (e.g. the port is still being released).
 */
export async function startServer(port = 0, {attempts = 20, ms = 10000} = {}) {
    assert.ok(CONFORMANCE_BIN, "CONFORMANCE_BIN is not set");
    let lastError;
    for (let attempt = 0; attempt < attempts; ++attempt) {
        try {
            return await startServerOnce(port, ms);
        } catch (x) {
            lastError = x;
            if (!x.exitedEarly) {
                throw x;
            }
            await delay(250);
        }
    }
    throw lastError;
}

async function startServerOnce(port, ms) {
    // The run's server flags (e.g. `--no-websocket`) apply to private servers too.
    const extra = (process.env.CONFORMANCE_ARGS || "").split(/\s+/).filter(Boolean);
    const child = spawn(CONFORMANCE_BIN, ["--addr", `127.0.0.1:${port}`, ...extra], {stdio: ["ignore", "pipe", "pipe"]});
    liveServers.add(child);
    let stderr = "";
    child.stderr.setEncoding("utf8");
    child.stderr.on("data", (chunk) => {
        stderr = (stderr + chunk).slice(-4000);
    });
    const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({code, signal})));
    child.exited = exited;
    const lines = readline.createInterface({input: child.stdout});
    const listening = new Promise((resolve, reject) => {
        lines.on("line", (line) => {
            const match = /^listening on (http:\/\/\S+)$/.exec(line.trim());
            if (match) {
                resolve(match[1]);
            }
        });
        child.once("error", reject);
        exited.then(({code, signal}) => {
            const error = new Error(`${CONFORMANCE_BIN} exited (code ${code}, signal ${signal}) before listening; stderr: ${stderr}`);
            error.exitedEarly = true;
            reject(error);
        });
    });
    let origin;
    try {
        origin = await withTimeout(listening, ms, `"listening on" line from ${CONFORMANCE_BIN}`);
    } catch (x) {
        child.kill("SIGKILL");
        liveServers.delete(child);
        throw x;
    }
    // Keep draining stdout so the server never blocks on a full pipe.
    lines.on("line", () => {});
    return {
        origin,
        url: origin + "/cometd",
        port: Number(new URL(origin).port),
        child,
        async kill(signal = "SIGKILL") {
            if (child.exitCode === null && child.signalCode === null) {
                child.kill(signal);
            }
            await exited;
            liveServers.delete(child);
        },
    };
}

// ---------------------------------------------------------------------------------------------
// TCP proxy that understands enough of the wire to record and cut Bayeux exchanges

/**
 * Incremental parser of one direction of a proxied connection: HTTP/1.1 messages (requests or
 * responses; bodies by Content-Length, chunked, or until close) and, after a `101` upgrade,
 * WebSocket frames. Calls `onUnit(unit)` for every complete unit; `unit.raw` holds its bytes.
 */
class WireParser {
    /** "http", or "ws" once a `101` response went by (switches the other direction too). */
    mode = "http";
    /** The parser of the other direction of the same connection. */
    peer = null;
    #buffer = Buffer.alloc(0);
    #fragments = [];
    #fragmentOpcode = 0;

    constructor(isResponse, onUnit) {
        this.isResponse = isResponse;
        this.onUnit = onUnit;
    }

    push(chunk) {
        this.#buffer = this.#buffer.length ? Buffer.concat([this.#buffer, chunk]) : chunk;
        for (;;) {
            const consumed = this.mode === "ws" ? this.#parseFrame() : this.#parseHttp(false);
            if (consumed === 0) {
                return;
            }
        }
    }

    /** The peer closed: a response delimited by the end of the connection is complete. */
    end() {
        if (this.mode === "http" && this.#buffer.length > 0) {
            this.#parseHttp(true);
        }
    }

    /** Bytes received but not yet part of a complete unit. */
    get pending() {
        return this.#buffer;
    }

    #parseHttp(atEof) {
        const buffer = this.#buffer;
        const headEnd = buffer.indexOf("\r\n\r\n");
        if (headEnd < 0) {
            return 0;
        }
        const head = buffer.subarray(0, headEnd).toString("latin1");
        const [startLine, ...headerLines] = head.split("\r\n");
        const headers = {};
        for (const line of headerLines) {
            const colon = line.indexOf(":");
            if (colon > 0) {
                headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
            }
        }
        const unit = {kind: this.isResponse ? "http-response" : "http-request", headers};
        if (this.isResponse) {
            unit.status = Number(startLine.split(" ")[1]);
        } else {
            [unit.method, unit.path] = startLine.split(" ");
        }
        let offset = headEnd + 4;
        let body;
        const noBody = this.isResponse
            ? (unit.status >= 100 && unit.status < 200) || unit.status === 204 || unit.status === 304
            : false;
        if (noBody) {
            body = Buffer.alloc(0);
        } else if (/chunked/i.test(headers["transfer-encoding"] || "")) {
            const parts = [];
            for (;;) {
                const lineEnd = buffer.indexOf("\r\n", offset);
                if (lineEnd < 0) {
                    return 0;
                }
                const size = parseInt(buffer.subarray(offset, lineEnd).toString("latin1"), 16);
                if (size === 0) {
                    // The last chunk, optional trailers, then an empty line.
                    const trailerEnd = buffer.indexOf("\r\n\r\n", lineEnd);
                    if (trailerEnd < 0) {
                        return 0;
                    }
                    offset = trailerEnd + 4;
                    break;
                }
                if (buffer.length < lineEnd + 2 + size + 2) {
                    return 0;
                }
                parts.push(buffer.subarray(lineEnd + 2, lineEnd + 2 + size));
                offset = lineEnd + 2 + size + 2;
            }
            body = Buffer.concat(parts);
        } else if (headers["content-length"] !== undefined) {
            const length = Number(headers["content-length"]);
            if (buffer.length < offset + length) {
                return 0;
            }
            body = buffer.subarray(offset, offset + length);
            offset += length;
        } else if (!this.isResponse || unit.status === 101) {
            body = Buffer.alloc(0);
        } else {
            // Delimited by the end of the connection.
            if (!atEof) {
                return 0;
            }
            body = buffer.subarray(offset);
            offset = buffer.length;
        }
        unit.raw = buffer.subarray(0, offset);
        unit.text = body.toString("utf8");
        unit.messages = parseJson(unit.text);
        this.#buffer = buffer.subarray(offset);
        if (this.isResponse && unit.status === 101) {
            this.mode = "ws";
            if (this.peer) {
                this.peer.mode = "ws";
            }
        }
        this.onUnit(unit);
        return offset;
    }

    #parseFrame() {
        const buffer = this.#buffer;
        if (buffer.length < 2) {
            return 0;
        }
        const fin = (buffer[0] & 0x80) !== 0;
        const compressed = (buffer[0] & 0x40) !== 0;
        const opcode = buffer[0] & 0x0f;
        const masked = (buffer[1] & 0x80) !== 0;
        let length = buffer[1] & 0x7f;
        let offset = 2;
        if (length === 126) {
            if (buffer.length < 4) {
                return 0;
            }
            length = buffer.readUInt16BE(2);
            offset = 4;
        } else if (length === 127) {
            if (buffer.length < 10) {
                return 0;
            }
            length = Number(buffer.readBigUInt64BE(2));
            offset = 10;
        }
        let mask = null;
        if (masked) {
            if (buffer.length < offset + 4) {
                return 0;
            }
            mask = buffer.subarray(offset, offset + 4);
            offset += 4;
        }
        if (buffer.length < offset + length) {
            return 0;
        }
        let payload = Buffer.from(buffer.subarray(offset, offset + length));
        if (mask) {
            for (let i = 0; i < payload.length; ++i) {
                payload[i] ^= mask[i & 3];
            }
        }
        const end = offset + length;
        const unit = {kind: "ws", opcode, fin, compressed, raw: buffer.subarray(0, end)};
        this.#buffer = buffer.subarray(end);
        if (opcode === 0 || ((opcode === 1 || opcode === 2) && !fin)) {
            // A fragmented message: log it once complete, on its last frame.
            if (opcode !== 0) {
                this.#fragmentOpcode = opcode;
                this.#fragments = [];
            }
            this.#fragments.push(payload);
            if (!fin) {
                unit.fragment = true;
                this.onUnit(unit);
                return end;
            }
            payload = Buffer.concat(this.#fragments);
            unit.opcode = this.#fragmentOpcode;
            this.#fragments = [];
        }
        if (unit.opcode === 1 || unit.opcode === 2) {
            unit.text = compressed ? null : payload.toString("utf8");
            unit.messages = unit.text === null ? undefined : parseJson(unit.text);
        } else if (unit.opcode === 8) {
            unit.closeCode = payload.length >= 2 ? payload.readUInt16BE(0) : undefined;
        }
        this.onUnit(unit);
        return end;
    }
}

function parseJson(text) {
    if (!text) {
        return undefined;
    }
    try {
        return JSON.parse(text);
    } catch {
        return undefined;
    }
}

/**
 * Starts a TCP proxy on 127.0.0.1 (a free port) forwarding to the host and port of `targetUrl`
 * (default COMETD_URL). Client→server bytes are forwarded as they come; server→client bytes are
 * forwarded one complete unit (HTTP response, WebSocket frame) at a time, so a unit can be
 * dropped whole. Every unit of both directions is recorded in `proxy.log`, in the order the
 * proxy saw them complete:
 * `{seq, conn, dir: "c2s"|"s2c", kind: "http-request"|"http-response"|"ws", method, path,
 *   status, opcode, text, messages (parsed JSON body/payload, if any), dropped, at}`.
 *
 * Resolves with the proxy:
 * - `url`: `targetUrl` with the proxy's host and port; `port`;
 * - `log`, `cuts` (the dropped units), `connections` (how many were accepted);
 * - `cutNext(predicate, times = 1)`: arms a cut: the next `times` server→client units for
 *   which `predicate(unit)` holds are not forwarded; instead both sockets of that connection
 *   are destroyed (as if the network failed while the unit was in flight). Returns the arming,
 *   `{remaining, done (promise resolving with the cut units once all happened)}`;
 * - `on("cut", (unit) => …)`: called right after each cut;
 * - `severAll()`: destroys every live connection now;
 * - `close()`: stops listening and severs everything.
 */
export async function startProxy(targetUrl = COMETD_URL) {
    const target = new URL(targetUrl);
    const targetPort = Number(target.port || 80);
    const targetHost = target.hostname;
    const live = new Set();
    const cutListeners = [];
    const armings = [];
    let seq = 0;
    let connections = 0;

    const proxy = {
        url: "",
        port: 0,
        log: [],
        cuts: [],
        get connections() {
            return connections;
        },
        cutNext(predicate, times = 1) {
            let resolve;
            const done = new Promise((r) => {
                resolve = r;
            });
            const arming = {predicate, remaining: times, units: [], done, resolve};
            armings.push(arming);
            return arming;
        },
        on(event, listener) {
            assert.equal(event, "cut");
            cutListeners.push(listener);
        },
        severAll() {
            for (const pair of [...live]) {
                pair.destroy();
            }
        },
        async close() {
            server.close();
            proxy.severAll();
            await once(server, "close").catch(() => {});
        },
    };

    const server = net.createServer((client) => {
        const conn = ++connections;
        const upstream = net.connect(targetPort, targetHost);
        client.setNoDelay(true);
        upstream.setNoDelay(true);
        let closed = false;
        const pair = {
            destroy() {
                if (!closed) {
                    closed = true;
                    live.delete(pair);
                }
                client.destroy();
                upstream.destroy();
            },
        };
        live.add(pair);
        const record = (dir, unit) => {
            const entry = {seq: ++seq, conn, dir, ...unit, dropped: false, at: Date.now()};
            delete entry.raw;
            delete entry.headers;
            proxy.log.push(entry);
            return entry;
        };

        const requests = new WireParser(false, (unit) => record("c2s", unit));
        const responses = new WireParser(true, (unit) => {
            const entry = record("s2c", unit);
            if (!closed) {
                const arming = armings.find((a) => a.remaining > 0 && a.predicate(entry));
                if (arming) {
                    entry.dropped = true;
                    arming.remaining -= 1;
                    arming.units.push(entry);
                    proxy.cuts.push(entry);
                    pair.destroy();
                    if (arming.remaining === 0) {
                        armings.splice(armings.indexOf(arming), 1);
                        arming.resolve(arming.units);
                    }
                    for (const listener of cutListeners) {
                        listener(entry);
                    }
                    return;
                }
                client.write(unit.raw);
            }
        });
        responses.peer = requests;

        client.on("data", (chunk) => {
            requests.push(chunk);
            if (!closed) {
                upstream.write(chunk);
            }
        });
        upstream.on("data", (chunk) => {
            if (!closed) {
                responses.push(chunk);
            }
        });
        client.on("end", () => upstream.end());
        upstream.on("end", () => {
            responses.end();
            if (!closed && responses.pending.length > 0) {
                // Whatever the parser could not frame goes through as it is.
                client.write(responses.pending);
            }
            client.end();
        });
        const onClose = () => pair.destroy();
        client.on("close", onClose);
        upstream.on("close", onClose);
        client.on("error", () => {});
        upstream.on("error", () => {});
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    proxy.port = server.address().port;
    const url = new URL(targetUrl);
    url.hostname = "127.0.0.1";
    url.port = String(proxy.port);
    proxy.url = url.toString();
    return proxy;
}
