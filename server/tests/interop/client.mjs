// The standalone server's interop suite: what its tests share, on top of the library's interop
// helpers (`tests/interop/helpers.mjs`, re-exported here: the official CometD JavaScript client
// in Node through `cometd-nodejs-client`, from `tests/interop/node_modules`).
//
// Environment (set by `server/tests/interop.rs`):
//   COMETD_URL               the binary's Bayeux endpoint, e.g. http://127.0.0.1:PORT/cometd
//   COMETD_TRANSPORT         for the helpers: "long-polling" (websocket unregistered) or "websocket"
//   CLIENT_TRANSPORT         "long-polling", "websocket" or "callback-polling" (then only the
//                            client's callback-polling transport is registered; its <script>
//                            loading is emulated below)
//   EXPECTED_TRANSPORT       the transport clients must end up using
//   SERVER_CONNECTION_TYPES  what the handshake reply must list, comma separated
//   PUBLISH_SECRET           the binary's --publish-secret, for POST /api/publish

import assert from "node:assert/strict";
import vm from "node:vm";
import * as helpers from "../../../tests/interop/helpers.mjs";

export * from "../../../tests/interop/helpers.mjs";

export const CLIENT_TRANSPORT = process.env.CLIENT_TRANSPORT || helpers.TRANSPORT;
if (!["long-polling", "websocket", "callback-polling"].includes(CLIENT_TRANSPORT)) {
    throw new Error(`CLIENT_TRANSPORT must be "long-polling", "websocket" or "callback-polling", not ${JSON.stringify(CLIENT_TRANSPORT)}`);
}
if (CLIENT_TRANSPORT === "callback-polling" && helpers.TRANSPORT !== "long-polling") {
    throw new Error("CLIENT_TRANSPORT=callback-polling needs COMETD_TRANSPORT=long-polling");
}
export const SERVER_CONNECTION_TYPES = (process.env.SERVER_CONNECTION_TYPES || "")
    .split(",").map((s) => s.trim()).filter(Boolean);
const PUBLISH_SECRET = process.env.PUBLISH_SECRET;
if (!PUBLISH_SECRET) {
    throw new Error("PUBLISH_SECRET is not set; run the suite through `cargo test -p tower-bayeux-server --test interop`");
}

// ---------------------------------------------------------------------------------------------
// callback-polling: the official CallbackPollingTransport loads every request as a <script>
// (`GET <url>?jsonp=<callback>&message=<JSON>`) and the script calls `window[<callback>]`. Node
// has no DOM: this is the part of one a browser would use, loading each script with fetch (with
// the browser's cookies, as a <script> request has) and running it in a fresh context that only
// has the callback, as a browser runs a cross-origin script that calls a global function.

/**
 * Every script request: {url, messages (the request's), start, end, status, contentType, text,
 * error (a failed load, or a script that did not call back), uncaught (the client's callback threw)}.
 */
export const jsonpLog = [];
const jsonpCookies = new Map(); // name -> "name=value"

/** Where a script's callback throws, as a browser reports an uncaught error (the run goes on). */
function uncaught(entry, x) {
    entry.uncaught = String(x);
    console.error(`callback-polling: uncaught error in the client's script callback (${entry.url}): ${x?.stack || x}`);
}

async function loadScript(script) {
    const url = script.src;
    // The client sets window[<callback>] right before inserting the script: take it now. The
    // names count from 0 in every client, and the clients of this process share one `window`
    // (in a browser each would be in its own page).
    const name = new URL(url).searchParams.get("jsonp");
    const callback = window[name];
    const onerror = script.onerror;
    const entry = {url, messages: null, start: Date.now(), end: 0, status: 0, contentType: null, text: null};
    jsonpLog.push(entry);
    try {
        entry.messages = JSON.parse(new URL(url).searchParams.get("message"));
    } catch {
        // keep null
    }
    const fail = (x) => {
        entry.error = String(x);
        try {
            if (onerror) {
                onerror({type: "error", error: x});
            }
        } catch (y) {
            uncaught(entry, y);
        }
    };
    let text;
    try {
        const headers = {};
        if (jsonpCookies.size > 0) {
            headers.Cookie = [...jsonpCookies.values()].join("; ");
        }
        const response = await fetch(url, {headers, signal: AbortSignal.timeout(30_000)});
        for (const header of response.headers.getSetCookie()) {
            const nameValue = header.split(";")[0].trim();
            const eq = nameValue.indexOf("=");
            if (eq > 0) {
                jsonpCookies.set(nameValue.substring(0, eq), nameValue);
            }
        }
        entry.status = response.status;
        entry.contentType = response.headers.get("content-type");
        text = await response.text();
        entry.text = text;
        entry.end = Date.now();
        if (!response.ok) {
            throw new Error(`HTTP ${response.status}: ${text}`);
        }
    } catch (x) {
        fail(x);
        return;
    }
    if (typeof callback !== "function") {
        fail(new Error(`no callback ${name}`));
        return;
    }
    let called = false;
    const sandbox = {
        // Objects made in the script's context belong to another realm: hand the client copies.
        [name]: (value) => {
            called = true;
            try {
                callback(JSON.parse(JSON.stringify(value)));
            } catch (x) {
                uncaught(entry, x);
            }
        },
    };
    try {
        vm.runInNewContext(text, sandbox, {filename: url, timeout: 1000});
    } catch (x) {
        entry.error = `script error: ${x}`;
    }
    if (!called) {
        // A script that loaded but did not call back: the client learns nothing, as in a browser
        // (its request times out); record it for the assertions.
        entry.error = entry.error || "the script did not call its callback";
    }
}

if (CLIENT_TRANSPORT === "callback-polling") {
    const head = {
        appendChild(script) {
            loadScript(script);
            return script;
        },
        removeChild(script) {
            return script;
        },
    };
    window.document = {
        getElementsByTagName: (tag) => (tag.toLowerCase() === "head" ? [head] : []),
        createElement: (tag) => ({tagName: tag.toUpperCase(), src: "", async: true, type: "", onerror: null}),
    };
}

/** The Cookie header value the clients of this process send to the server ("" if none). */
export function browserCookie() {
    return CLIENT_TRANSPORT === "callback-polling"
        ? [...jsonpCookies.values()].join("; ")
        : helpers.cookieHeader();
}

// ---------------------------------------------------------------------------------------------
// Clients

/** The helpers' client, with only callback-polling registered in the callback-polling run. */
export function createClient(options = {}) {
    const client = helpers.createClient(options);
    if (CLIENT_TRANSPORT === "callback-polling") {
        client.unregisterTransport("websocket");
        client.unregisterTransport("long-polling");
    }
    return client;
}

/** Asserts `client` uses the run's transport now, and that it really went over the wire that way. */
export function assertTransport(client) {
    assert.equal(client.getTransport()?.type, helpers.EXPECTED_TRANSPORT, "the transport in use");
    if (helpers.EXPECTED_TRANSPORT === "callback-polling") {
        const clientId = client.getClientId();
        const scripts = jsonpLog.filter((e) => Array.isArray(e.messages) && e.messages.some((m) => m.clientId === clientId));
        assert.ok(scripts.length > 0, `no callback-polling request of ${clientId} went out`);
        // A held /meta/connect displaced by a newer one is answered 500 (as CometD servers do),
        // which the client ignores: check the scripts that loaded.
        for (const e of scripts.filter((s) => s.status === 200)) {
            assert.match(e.contentType || "", /^(text|application)\/javascript/, `callback-polling response type: ${JSON.stringify(e)}`);
            assert.equal(e.error, undefined, `callback-polling response: ${JSON.stringify(e)}`);
        }
    } else if (helpers.EXPECTED_TRANSPORT === "long-polling") {
        const clientId = client.getClientId();
        assert.ok(helpers.httpLog.some((e) => Array.isArray(e.messages) && e.messages.some((m) => m.clientId === clientId)),
            `no long-polling request of ${clientId} went out`);
    }
}

// ---------------------------------------------------------------------------------------------
// The HTTP API

/** POST /api/publish with the secret; resolves with {status, json, text, headers}. */
export function apiPublish(body, {secret = PUBLISH_SECRET} = {}) {
    return helpers.rawPost("/api/publish", body, {headers: secret === null ? {} : {Authorization: `Bearer ${secret}`}});
}

/** POST /api/publish of one message or an array of them; asserts 200 and resolves with `published`. */
export async function apiPublishOk(body) {
    const response = await apiPublish(body);
    assert.equal(response.status, 200, `POST /api/publish ${JSON.stringify(body)}: ${response.status} ${response.text}`);
    const published = response.json?.published;
    assert.ok(Array.isArray(published), `POST /api/publish reply: ${response.text}`);
    const count = Array.isArray(body) ? body.length : 1;
    assert.equal(published.length, count, `one entry per message: ${response.text}`);
    const sent = Array.isArray(body) ? body : [body];
    sent.forEach((m, i) => assert.equal(published[i].channel, m.channel, `entry ${i}: ${response.text}`));
    return published;
}

/** GET /api/status (no auth); asserts 200 and resolves with the JSON. */
export async function apiStatus() {
    const response = await helpers.rawGet("/api/status");
    assert.equal(response.status, 200, `GET /api/status: ${response.status} ${response.text}`);
    assert.ok(response.json && typeof response.json === "object", `GET /api/status: ${response.text}`);
    return response.json;
}
