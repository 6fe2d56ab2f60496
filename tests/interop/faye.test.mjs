// Interop with another Bayeux client: Faye's Node client (npm `faye`), alone and together with
// the CometD JavaScript client.
//
// How Faye behaves (faye 1.4.3, read from its source):
// - every Faye client has its own cookie jar (tough-cookie), so each is a separate browser to
//   the server; clients of one process share nothing;
// - it handshakes over HTTP long-polling; while doing so it already opens its websocket (to
//   probe it), so that socket's upgrade carries no BAYEUX_BROWSER cookie; once the handshake
//   reply lists websocket, it moves the session (by clientId) onto that socket;
// - it has no handshake callback or meta-channel listeners; replies and deliveries are
//   observed here by wrapping Faye's transport classes (`_receive`, `sendMessage`, `request`),
//   which also tells which transport (websocket or long-polling) actually carried each message;
// - subscribe/publish return thenables that reject with a Faye Error parsed from the reply's
//   `error` ("403::subscribe_denied" -> {code: 403, params: [""], message: "subscribe_denied"}).
//
// Runs: long-polling (`client.disable("websocket")`), websocket (left on; the test checks the
// messages travel on the websocket), websocket-fallback (the server refuses upgrades; the test
// checks Faye tried the websocket and ended up on long-polling).

import assert from "node:assert/strict";
import {createRequire} from "node:module";
import {afterEach, test} from "node:test";
import faye from "faye";
import {
    COMETD_URL, EXPECTED_TRANSPORT, Inbox, TRANSPORT, channel, closeAllClients, connectClient, createClient,
    deliveredOn, publishOk, sleep, subscribeOk, token, waitUntil, withTimeout,
} from "./helpers.mjs";

// Faye's transport classes: the same module instances the client uses.
const requireFaye = createRequire(import.meta.url);
const FayeTransport = requireFaye("faye/src/transport/transport.js");
const FayeNodeHttp = requireFaye("faye/src/transport/node_http.js");
const FayeWebSocket = requireFaye("faye/src/transport/web_socket.js");

if (process.env.COMETD_LOG_LEVEL === "debug") {
    faye.logger = {debug: console.log, info: console.log, warn: console.warn, error: console.error};
}

const copy = (message) => JSON.parse(JSON.stringify(message));

// Record, per Faye client, every message a transport received from the server and every message
// handed to a transport for sending, with the transport's connection type.
const originalReceive = FayeTransport.prototype._receive;
FayeTransport.prototype._receive = function (replies) {
    const log = this._dispatcher?._client?.interop;
    if (log && replies) {
        for (const message of [].concat(replies)) {
            log.received.push({transport: this.connectionType, message: copy(message), at: Date.now()});
        }
    }
    return originalReceive.call(this, replies);
};
// Every transport's request(messages): one HTTP request, or one websocket message.
for (const transport of [FayeNodeHttp, FayeWebSocket]) {
    const request = transport.prototype.request;
    transport.prototype.request = function (messages) {
        const log = this._dispatcher?._client?.interop;
        if (log) {
            log.requests.push({transport: this.connectionType, messages: copy(messages), at: Date.now()});
        }
        return request.call(this, messages);
    };
}
// The Cookie header of every websocket Faye opens (its jar's contents at that moment).
const originalCreateSocket = FayeWebSocket.prototype._createSocket;
FayeWebSocket.prototype._createSocket = function () {
    const log = this._dispatcher?._client?.interop;
    if (log) {
        log.websocketCookies.push(this._getCookies());
    }
    return originalCreateSocket.call(this);
};
const originalSend = FayeTransport.prototype.sendMessage;
FayeTransport.prototype.sendMessage = function (message) {
    const log = this._dispatcher?._client?.interop;
    if (log) {
        log.sent.push({transport: this.connectionType, message: copy(message), at: Date.now()});
    }
    return originalSend.call(this, message);
};

const liveFaye = new Set();

/** A Faye client for the run's transport (not yet connected: Faye connects lazily). */
function createFaye(options = {}) {
    const client = new faye.Client(COMETD_URL, options);
    if (TRANSPORT === "long-polling") {
        client.disable("websocket");
    }
    client.interop = {received: [], sent: [], requests: [], websocketCookies: [], name: `faye-${token(4)}`};
    liveFaye.add(client);
    return client;
}

/** What the server sent to `client`, as {transport, message}. */
const fromServer = (client) => client.interop.received;

function describe(client) {
    const line = ({transport, message}) => `${transport}: ${JSON.stringify(message)}`;
    return `${client.interop.name} sent:\n  ${client.interop.sent.map(line).join("\n  ")}\n` +
        `received:\n  ${client.interop.received.map(line).join("\n  ")}`;
}

/**
 * Connects `client` (handshake, then /meta/connect) and waits until a /meta/connect was answered
 * successfully over the run's expected transport, so the session is established on it.
 */
async function connectFaye(client, ms = 5000) {
    client.connect();
    await waitUntil(() => fromServer(client).some(({transport, message}) =>
        message.channel === "/meta/connect" && message.successful === true && transport === EXPECTED_TRANSPORT),
    ms, () => `a successful /meta/connect over ${EXPECTED_TRANSPORT}; ${describe(client)}`);
    assertFayeTransport(client);
}

/**
 * Checks the transport `client` uses: the run's expected one; every delivery, publish and
 * subscribe reply came over it; one handshake and no error replies (a session the server did
 * not accept on the transport would show up as 402::session_unknown and a new handshake).
 */
function assertFayeTransport(client) {
    const dispatcher = client._dispatcher;
    assert.equal(dispatcher.connectionType, EXPECTED_TRANSPORT, `the transport Faye selected; ${describe(client)}`);
    assert.equal(dispatcher._transport?.connectionType, EXPECTED_TRANSPORT);

    const handshakes = client.interop.sent.filter(({message}) => message.channel === "/meta/handshake");
    assert.equal(handshakes.length, 1, `exactly one handshake expected; ${describe(client)}`);
    assert.equal(handshakes[0].transport, "long-polling", "Faye handshakes over HTTP");
    const errors = fromServer(client).filter(({message}) => message.successful === false &&
        !/^403::/.test(message.error || ""));
    assert.deepEqual(errors, [], `unexpected error replies; ${describe(client)}`);

    // Everything after the handshake: replies to subscribe/unsubscribe/publish and deliveries.
    const traffic = fromServer(client).filter(({message}) => !message.channel?.startsWith("/meta/") ||
        message.channel === "/meta/subscribe" || message.channel === "/meta/unsubscribe");
    const elsewhere = traffic.filter(({transport}) => transport !== EXPECTED_TRANSPORT);
    assert.deepEqual(elsewhere, [], `messages that did not travel over ${EXPECTED_TRANSPORT}; ${describe(client)}`);
    const connects = client.interop.sent.filter(({message}) => message.channel === "/meta/connect");
    assert.ok(connects.length > 0, `no /meta/connect sent; ${describe(client)}`);
    const lastConnect = connects.at(-1);
    assert.equal(lastConnect.transport, EXPECTED_TRANSPORT, `the last /meta/connect's transport; ${describe(client)}`);
    assert.equal(lastConnect.message.connectionType, EXPECTED_TRANSPORT, "the last /meta/connect's connectionType");

    const websockets = dispatcher.transports.websocket;
    if (EXPECTED_TRANSPORT === "websocket") {
        const socket = dispatcher._transport._socket;
        assert.ok(socket, "Faye's websocket transport has no open socket");
        assert.equal(socket.readyState, 1, "Faye's websocket is not open");
        assert.match(String(socket.url), /^ws:\/\//);
    } else if (TRANSPORT === "websocket") {
        // The fallback: Faye tried the websocket (its transport object exists, it probes it during
        // the handshake), the server refused it, and nothing came over it.
        assert.ok(websockets && websockets.size > 0, "Faye did not try the websocket transport");
        assert.ok([...websockets.values()].every((ws) => !ws._socket), "a websocket is open although the server refuses them");
        assert.equal(fromServer(client).filter(({transport}) => transport === "websocket").length, 0);
    } else {
        assert.ok(!websockets || websockets.size === 0, "Faye created a websocket transport although it is disabled");
    }
}

/**
 * `n` connected Faye clients, in an array: a Faye client is itself a thenable (its connection
 * state is a Deferrable), so an async function must not resolve with a bare client.
 */
async function fayeClients(n) {
    const clients = [];
    for (let i = 0; i < n; ++i) {
        const client = createFaye();
        await connectFaye(client);
        clients.push(client);
    }
    return clients;
}

/** Disconnects every Faye client of the test and makes sure none keeps timers or sockets. */
async function closeAllFaye() {
    const clients = [...liveFaye];
    liveFaye.clear();
    await Promise.all(clients.map(async (client) => {
        try {
            if (client._state === client.CONNECTED) {
                await withTimeout(Promise.resolve(client.disconnect()), 3000, `disconnect of ${client.interop.name}`);
            }
        } catch {
            // best effort
        }
        // Stop whatever is left: no more handshakes or connects, no retry timers, no sockets.
        client._advice.reconnect = "none";
        client._state = client.DISCONNECTED;
        const dispatcher = client._dispatcher;
        for (const envelope of dispatcher._envelopes.values()) {
            clearTimeout(envelope.timer);
        }
        dispatcher._envelopes.clear();
        dispatcher.close();
        for (const transport of dispatcher.transports.websocket?.values() ?? []) {
            transport.close();
        }
    }));
}

afterEach(async () => {
    await closeAllFaye();
    await closeAllClients();
});

/** Subscribes `client` to `ch` and waits for the server's acknowledgement; records into `inbox`. */
async function subscribeFaye(client, ch, inbox) {
    const subscription = client.subscribe(ch).withChannel((name, data) => inbox.push({channel: name, data}));
    await withTimeout(Promise.resolve(subscription), 5000, `Faye subscribe to ${ch}`);
}

/** Publishes and waits for the server's (successful) acknowledgement. */
async function publishFaye(client, ch, data) {
    await withTimeout(Promise.resolve(client.publish(ch, data)), 5000, `Faye publish to ${ch}`);
}

/** Deliveries (messages with data and no `successful`) the server sent to `client` on `ch`. */
function fayeDeliveredOn(client, ch) {
    return fromServer(client).filter(({message}) => message.channel === ch &&
        message.data !== undefined && message.successful === undefined).map(({message}) => message);
}

/** Asserts that `promise` (a Faye subscription/publication) is rejected with `expected`. */
async function assertFayeError(promise, expected, what) {
    let error;
    await withTimeout(Promise.resolve(promise).then(
        () => assert.fail(`${what} must be refused`),
        (e) => {
            error = e;
        }), 5000, what);
    assert.equal(String(error), expected, `${what}: ${JSON.stringify(error)}`);
    assert.equal(error.code, Number(expected.split(":")[0]));
}

test("Faye: the session continues on the websocket Faye opened before it had the browser cookie", {skip: EXPECTED_TRANSPORT !== "websocket" && "websocket is not in use in this run"}, async () => {
    const [client] = await fayeClients(1);
    // Faye probes the websocket while the handshake is in flight, so the socket it then uses
    // carried no cookie; the handshake reply did set one in its jar.
    assert.deepEqual(client.interop.websocketCookies, [""], `the Cookie header of Faye's websockets: ${JSON.stringify(client.interop.websocketCookies)}`);
    assert.match(client._dispatcher.cookies.getCookiesSync(COMETD_URL).map(String).join("; "), /BAYEUX_BROWSER=/,
        "the handshake reply set the browser cookie in Faye's jar");
    // connectFaye checked one handshake, no 402 and a successful /meta/connect over the
    // websocket; now a round trip on it.
    const ch = channel("fcookieless");
    const inbox = new Inbox();
    await subscribeFaye(client, ch, inbox);
    await publishFaye(client, ch, "over the cookie-less socket");
    await inbox.waitForCount(1);
    assert.deepEqual(inbox.data, ["over the cookie-less socket"]);
    assertFayeTransport(client);
});

test("Faye: subscribe/publish between two Faye clients delivers exactly the published data", async () => {
    const [publisher, subscriber] = await fayeClients(2);
    assert.notEqual(publisher._dispatcher.clientId, subscriber._dispatcher.clientId);
    const ch = channel("faye");
    const inbox = new Inbox();
    await subscribeFaye(subscriber, ch, inbox);

    const data = {text: "hello, wörld ✓ \u{1F600}", n: 42, f: -1.5e-3, ok: true, none: null, list: [1, "two", {three: [3]}], nested: {a: {b: []}}};
    await publishFaye(publisher, ch, data);
    const [message] = await inbox.waitForCount(1);
    assert.equal(message.channel, ch);
    assert.deepEqual(message.data, data);

    await sleep(200);
    assert.equal(inbox.length, 1, `exactly one delivery expected: ${JSON.stringify(inbox.messages)}`);
    const [wire] = fayeDeliveredOn(subscriber, ch);
    assert.notEqual(wire.clientId, publisher._dispatcher.clientId, "the publisher's clientId must not leak to subscribers");
    assert.equal(fayeDeliveredOn(publisher, ch).length, 0, "the (unsubscribed) publisher must not receive the message");
    const ack = fromServer(publisher).find(({message}) => message.channel === ch && message.successful !== undefined);
    assert.equal(ack?.message.successful, true, `publish reply: ${JSON.stringify(ack)}`);
    assert.equal(ack.message.data, undefined, "a publish reply must not carry data");

    assertFayeTransport(publisher);
    assertFayeTransport(subscriber);
});

test("Faye: wildcards, /* matches one segment, /** matches any depth", async () => {
    const [publisher, single, deep] = await fayeClients(3);
    const base = channel("fw");
    const singleInbox = new Inbox();
    const deepInbox = new Inbox();
    await subscribeFaye(single, `${base}/*`, singleInbox);
    await subscribeFaye(deep, `${base}/**`, deepInbox);

    await publishFaye(publisher, `${base}/a`, 1);
    await publishFaye(publisher, `${base}/a/b`, 2);
    await publishFaye(publisher, base, 0); // matches neither
    await publishFaye(publisher, `${base}/end`, 3); // sentinel, matches both

    const isEnd = (ms) => ms.some((m) => m.channel === `${base}/end`);
    await singleInbox.waitFor(isEnd, 5000, `${base}/end on ${base}/*`);
    await deepInbox.waitFor(isEnd, 5000, `${base}/end on ${base}/**`);
    await sleep(100);

    assert.deepEqual(singleInbox.messages.map((m) => [m.channel, m.data]), [[`${base}/a`, 1], [`${base}/end`, 3]]);
    assert.deepEqual(deepInbox.messages.map((m) => [m.channel, m.data]), [[`${base}/a`, 1], [`${base}/a/b`, 2], [`${base}/end`, 3]]);
    // What the server sent matches what the callbacks saw (Faye matches wildcards locally too).
    assert.deepEqual(fromServer(single).filter(({message}) => message.channel?.startsWith(base) && message.successful === undefined)
        .map(({message}) => message.channel), [`${base}/a`, `${base}/end`]);
    for (const client of [publisher, single, deep]) {
        assertFayeTransport(client);
    }
});

test("Faye: a client receives its own publish, once", async () => {
    const [client] = await fayeClients(1);
    const ch = channel("fself");
    const inbox = new Inbox();
    await subscribeFaye(client, ch, inbox);

    await publishFaye(client, ch, {me: "again"});
    const [message] = await inbox.waitForCount(1);
    assert.deepEqual(message.data, {me: "again"});
    await sleep(200);
    assert.equal(inbox.length, 1);
    assert.equal(fayeDeliveredOn(client, ch).length, 1, `exactly one copy expected; ${describe(client)}`);
    assertFayeTransport(client);
});

test("Faye: one publisher's messages arrive complete, once, and in the order the server got them", async () => {
    const [publisher, subscriber] = await fayeClients(2);
    const ch = channel("fload");
    const inbox = new Inbox();
    await subscribeFaye(subscriber, ch, inbox);
    await subscribeFaye(publisher, ch, new Inbox());
    const seqs = (messages) => messages.map((m) => m.data.seq);
    const range = (from, to) => Array.from({length: to - from}, (_, i) => from + i);

    // Published one after the other (each awaited): in order everywhere.
    const S = 30;
    for (let seq = 0; seq < S; ++seq) {
        await publishFaye(publisher, ch, {seq});
    }
    await inbox.waitForCount(S, 10000);
    await waitUntil(() => fayeDeliveredOn(publisher, ch).length >= S, 5000, "the publisher's own copies");
    assert.deepEqual(inbox.data.map((d) => d.seq), range(0, S), "the subscriber's copies: lost, duplicated or out of order");
    assert.deepEqual(seqs(fayeDeliveredOn(publisher, ch)), range(0, S), "the publisher's own copies: lost, duplicated or out of order");

    // A burst fired without waiting, as an application does. Over websocket Faye sends it down
    // its one socket, so it must arrive in order. Over long-polling Faye packs it into requests
    // of up to 2 KB and sends those concurrently, on several connections: the server cannot
    // know their order, so only the order within each request is checked.
    const B = 100;
    const requestsBefore = publisher.interop.requests.length;
    const publications = range(S, S + B).map((seq) => Promise.resolve(publisher.publish(ch, {seq, pad: "p".repeat(seq % 30)})));
    await withTimeout(Promise.all(publications), 10000, `${B} Faye publish replies`);
    await inbox.waitForCount(S + B, 10000);
    await waitUntil(() => fayeDeliveredOn(publisher, ch).length >= S + B, 5000, "the publisher's own copies");
    await sleep(200);
    for (const [who, got] of [["subscriber", inbox.data.map((d) => d.seq)], ["publisher", seqs(fayeDeliveredOn(publisher, ch))]]) {
        assert.deepEqual([...got].sort((a, b) => a - b), range(0, S + B), `the ${who}'s copies: lost or duplicated`);
        const burst = got.slice(S);
        if (EXPECTED_TRANSPORT === "websocket") {
            assert.deepEqual(burst, range(S, S + B), `the ${who}'s copies of the burst: out of order`);
        } else {
            const position = new Map(burst.map((seq, i) => [seq, i]));
            const requests = publisher.interop.requests.slice(requestsBefore)
                .map((r) => r.messages.filter((m) => m.channel === ch).map((m) => m.data.seq))
                .filter((r) => r.length > 0);
            assert.ok(requests.length > 0, "no publish requests recorded");
            for (const request of requests) {
                const positions = request.map((seq) => position.get(seq));
                assert.deepEqual(positions, [...positions].sort((a, b) => a - b),
                    `the ${who}'s copies of one request's publishes ${JSON.stringify(request)} arrived out of order: ${JSON.stringify(burst)}`);
            }
        }
    }
    assertFayeTransport(publisher);
    assertFayeTransport(subscriber);
});

test("Faye and the CometD client talk to each other on one channel", async () => {
    const [fayeClient] = await fayeClients(1);
    const cometd = createClient();
    await connectClient(cometd);
    const ch = channel("mixed");
    const fayeInbox = new Inbox();
    const cometdInbox = new Inbox();
    await subscribeFaye(fayeClient, ch, fayeInbox);
    await subscribeOk(cometd, ch, cometdInbox.push);

    await publishFaye(fayeClient, ch, {from: "faye", list: [1, {x: "ü"}]});
    await publishOk(cometd, ch, {from: "cometd", n: 7});

    const sorted = (inbox) => inbox.data.map((d) => d.from).sort();
    await fayeInbox.waitForCount(2);
    await cometdInbox.waitForCount(2);
    await sleep(200);
    assert.deepEqual(sorted(fayeInbox), ["cometd", "faye"], `Faye received: ${JSON.stringify(fayeInbox.data)}`);
    assert.deepEqual(sorted(cometdInbox), ["cometd", "faye"], `CometD received: ${JSON.stringify(cometdInbox.data)}`);
    assert.deepEqual(fayeInbox.data.find((d) => d.from === "cometd"), {from: "cometd", n: 7});
    assert.deepEqual(cometdInbox.data.find((d) => d.from === "faye"), {from: "faye", list: [1, {x: "ü"}]});
    assert.equal(deliveredOn(cometd, ch).length, 2, "the CometD client must receive each message once");
    assert.equal(fayeDeliveredOn(fayeClient, ch).length, 2, "the Faye client must receive each message once");
    assertFayeTransport(fayeClient);
});

test("Faye: the security policy refuses subscribing under /forbidden/** and publishing under /readonly/**", async () => {
    const [client, other] = await fayeClients(2);

    const forbidden = `/forbidden/${channel("f").slice(1)}`;
    const forbiddenInbox = new Inbox();
    const denied = client.subscribe(forbidden).withChannel((name, data) => forbiddenInbox.push({channel: name, data}));
    await assertFayeError(denied, "403::subscribe_denied", `subscribe to ${forbidden}`);
    const subscribeReply = fromServer(client).find(({message}) => message.channel === "/meta/subscribe" && message.subscription === forbidden);
    assert.equal(subscribeReply?.message.successful, false, `the subscribe reply; ${describe(client)}`);

    const readonly = `/readonly/${channel("r").slice(1)}`;
    const readonlyInbox = new Inbox();
    await subscribeFaye(other, readonly, readonlyInbox); // subscribing there is allowed
    await assertFayeError(client.publish(readonly, {denied: true}), "403::publish_denied", `publish to ${readonly}`);

    // The refused client keeps working, the denied publish was not delivered, and the denied
    // subscription was not recorded (publishing to the forbidden channel is allowed).
    const allowed = channel("fallowed");
    const allowedInbox = new Inbox();
    await subscribeFaye(client, allowed, allowedInbox);
    await publishFaye(other, forbidden, "nope");
    await publishFaye(other, allowed, "fine");
    await allowedInbox.waitForCount(1);
    await sleep(200);
    assert.deepEqual(allowedInbox.data, ["fine"]);
    assert.equal(readonlyInbox.length, 0, `the denied publish was delivered: ${JSON.stringify(readonlyInbox.messages)}`);
    assert.equal(fayeDeliveredOn(client, forbidden).length, 0, "the server delivered a message on a denied subscription");
    assert.equal(forbiddenInbox.length, 0);
    assertFayeTransport(client);
    assertFayeTransport(other);
});

test("Faye: /service/echo answers the sender only", async () => {
    const [sender, other] = await fayeClients(2);
    const senderInbox = new Inbox();
    const otherInbox = new Inbox();
    // Faye only calls back subscriptions; subscribing to a service channel is accepted by the
    // server and delivers nothing by itself, but lets Faye hand the echo to a callback.
    await subscribeFaye(sender, "/service/echo", senderInbox);
    await subscribeFaye(other, "/service/echo", otherInbox);

    const mine = {echo: token()};
    await publishFaye(sender, "/service/echo", mine);
    const [echoed] = await senderInbox.waitForCount(1);
    assert.equal(echoed.channel, "/service/echo");
    assert.deepEqual(echoed.data, mine);

    const theirs = {echo: token()};
    await publishFaye(other, "/service/echo", theirs);
    await otherInbox.waitForCount(1);
    await sleep(200);
    assert.deepEqual(otherInbox.data, [theirs]);
    assert.deepEqual(senderInbox.data, [mine]);
    assertFayeTransport(sender);
    assertFayeTransport(other);
});

test("Faye: a handshake refused by the policy (ext.auth.deny) fails with 403::handshake_denied and is not retried", async () => {
    // Faye retries a failed handshake after `retry` seconds unless the advice says "none"; a
    // short retry shows it obeys the advice within the test (and leaves no 5 s timer behind).
    const client = createFaye({retry: 0.3});
    client.addExtension({
        outgoing(message, callback) {
            if (message.channel === "/meta/handshake") {
                message.ext = {...message.ext, auth: {deny: true}};
            }
            callback(message);
        },
    });
    client.connect();
    const reply = await waitUntil(() => fromServer(client).find(({message}) => message.channel === "/meta/handshake"),
        5000, () => `the handshake reply; ${describe(client)}`);
    assert.equal(reply.message.successful, false, `handshake must be refused: ${JSON.stringify(reply.message)}`);
    assert.equal(reply.message.error, "403::handshake_denied");
    assert.equal(reply.message.advice?.reconnect, "none");
    await sleep(1000);
    assert.equal(client.interop.sent.filter(({message}) => message.channel === "/meta/handshake").length, 1,
        `Faye must not retry; ${describe(client)}`);
    assert.equal(client.interop.sent.filter(({message}) => message.channel === "/meta/connect").length, 0);
});
