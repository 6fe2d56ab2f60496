// Raw HTTP checks with fetch (no client library): routing, request validation, error replies,
// id echoing, callback-polling (JSONP), the timestamp extension.

import assert from "node:assert/strict";
import {test} from "node:test";
import vm from "node:vm";
import {COMETD_URL, channel, cookiesFrom, rawGet, rawHandshake, rawPost, token} from "./helpers.mjs";

function single(response, what) {
    assert.equal(response.status, 200, `${what}: HTTP ${response.status} ${response.text}`);
    assert.ok(Array.isArray(response.json), `${what}: reply must be a JSON array: ${response.text}`);
    return response.json;
}

function replyTo(replies, id, what) {
    const reply = replies.find((m) => m.id === id);
    assert.ok(reply, `${what}: no reply echoing id ${JSON.stringify(id)} in ${JSON.stringify(replies)}`);
    return reply;
}

function assertSessionUnknown(response, id, channelName) {
    assert.equal(response.status, 200, `HTTP ${response.status} ${response.text}`);
    assert.match(response.headers.get("content-type") || "", /^application\/json/);
    assert.ok(Array.isArray(response.json) && response.json.length === 1, response.text);
    const [reply] = response.json;
    assert.equal(reply.id, id, `the error reply must echo the id: ${response.text}`);
    assert.equal(reply.channel, channelName);
    assert.equal(reply.successful, false);
    assert.equal(reply.error, "402::session_unknown");
    assert.equal(reply.advice?.reconnect, "handshake", `advice must ask for a new handshake: ${response.text}`);
    assert.equal(reply.advice?.interval, 0, `advice interval: ${response.text}`);
}

test("paths outside /cometd go to the inner service", async () => {
    for (const path of ["/elsewhere", "/", "/cometdx", "/other/cometd"]) {
        const response = await rawGet(path);
        assert.equal(response.status, 200, `GET ${path}`);
        assert.equal(response.text, "inner", `GET ${path}`);
    }
    const posted = await rawPost("/elsewhere", "[]");
    assert.equal(posted.status, 200);
    assert.equal(posted.text, "inner");
});

test("a body that is not JSON is rejected with 400", async () => {
    const response = await rawPost(COMETD_URL, "not json");
    assert.equal(response.status, 400, `HTTP ${response.status} ${response.text}`);
});

test("an empty message array is rejected with 400", async () => {
    const response = await rawPost(COMETD_URL, "[]");
    assert.equal(response.status, 400, `HTTP ${response.status} ${response.text}`);
});

test("a handshake batched with other messages is rejected with 4xx", async () => {
    const response = await rawPost(COMETD_URL + "/handshake", [
        {id: "1", channel: "/meta/handshake", version: "1.0", supportedConnectionTypes: ["long-polling"]},
        {id: "2", channel: "/meta/connect", connectionType: "long-polling", clientId: "x"},
    ]);
    assert.ok(response.status >= 400 && response.status < 500, `expected 4xx, got HTTP ${response.status} ${response.text}`);
});

test("a /meta/connect with an unknown clientId gets 402::session_unknown with handshake advice", async () => {
    const connect = (id, clientId) => [{id, channel: "/meta/connect", connectionType: "long-polling", clientId, advice: {timeout: 0}}];

    // No cookie at all.
    assertSessionUnknown(await rawPost(COMETD_URL + "/connect", connect("abc7", token(24))), "abc7", "/meta/connect");

    // A live browser cookie, but a clientId the server never issued.
    const {cookie} = await rawHandshake("h1");
    assertSessionUnknown(await rawPost(COMETD_URL + "/connect", connect("9", token(24)), {cookie}), "9", "/meta/connect");
});

test("the handshake reply sets the BAYEUX_BROWSER cookie and issues distinct clientIds", async () => {
    const ids = new Set();
    for (let i = 0; i < 5; ++i) {
        const {reply, response} = await rawHandshake(`hs${i}`);
        assert.equal(reply.id, `hs${i}`);
        assert.ok(response.setCookies.some((c) => /^BAYEUX_BROWSER=[^;]+/.test(c)),
            `handshake reply must set BAYEUX_BROWSER: ${JSON.stringify(response.setCookies)}`);
        ids.add(reply.clientId);
    }
    assert.equal(ids.size, 5, `clientIds must be unique: ${[...ids]}`);
});

test("every reply of a raw session echoes the request id", async () => {
    const {reply: hs, clientId, cookie} = await rawHandshake("hs1");
    assert.equal(hs.id, "hs1");
    const post = (path, messages) => rawPost(COMETD_URL + path, messages, {cookie});

    const connected = single(await post("/connect", [{id: "c1", channel: "/meta/connect", connectionType: "long-polling", clientId, advice: {timeout: 0}}]), "connect");
    const connectReply = replyTo(connected, "c1", "connect");
    assert.equal(connectReply.channel, "/meta/connect");
    assert.equal(connectReply.successful, true, JSON.stringify(connected));

    const ch = channel("raw");
    const subscribed = single(await post("/", [{id: "s1", channel: "/meta/subscribe", subscription: ch, clientId}]), "subscribe");
    const subscribeReply = replyTo(subscribed, "s1", "subscribe");
    assert.equal(subscribeReply.successful, true, JSON.stringify(subscribed));
    assert.equal(subscribeReply.subscription, ch);

    // Two messages in one request: both replies, each with its own id.
    const ch2 = channel("raw");
    const batch = single(await post("/", [
        {id: "s2", channel: "/meta/subscribe", subscription: ch2, clientId},
        {id: "u2", channel: "/meta/unsubscribe", subscription: ch2, clientId},
    ]), "batch");
    assert.equal(replyTo(batch, "s2", "batched subscribe").successful, true, JSON.stringify(batch));
    assert.equal(replyTo(batch, "u2", "batched unsubscribe").successful, true, JSON.stringify(batch));
    assert.ok(batch.findIndex((m) => m.id === "s2") < batch.findIndex((m) => m.id === "u2"), `replies in request order: ${JSON.stringify(batch)}`);

    // Publish to the subscribed channel: the ack echoes the id and has no data; the delivered copy
    // (in this response or the next connect) neither reuses the id nor leaks the clientId.
    const published = single(await post("/", [{id: "p1", channel: ch, data: {k: 1}, clientId}]), "publish");
    const ack = replyTo(published, "p1", "publish");
    assert.equal(ack.successful, true, JSON.stringify(published));
    assert.equal(ack.channel, ch);
    assert.equal(ack.data, undefined, `the publish ack must not carry data: ${JSON.stringify(published)}`);
    let delivered = published.filter((m) => m.data !== undefined);
    if (delivered.length === 0) {
        const polled = single(await post("/connect", [{id: "c2", channel: "/meta/connect", connectionType: "long-polling", clientId, advice: {timeout: 0}}]), "connect");
        assert.equal(replyTo(polled, "c2", "connect").successful, true, JSON.stringify(polled));
        delivered = polled.filter((m) => m.data !== undefined);
    }
    assert.deepEqual(delivered.map((m) => [m.channel, m.data]), [[ch, {k: 1}]]);
    assert.notEqual(delivered[0].id, "p1", "a delivered message must not reuse the publish id");
    assert.notEqual(delivered[0].clientId, clientId, "a delivered message must not leak the publisher's clientId");

    const unsubscribed = single(await post("/", [{id: "u1", channel: "/meta/unsubscribe", subscription: ch, clientId}]), "unsubscribe");
    const unsubscribeReply = replyTo(unsubscribed, "u1", "unsubscribe");
    assert.equal(unsubscribeReply.successful, true, JSON.stringify(unsubscribed));
    assert.equal(unsubscribeReply.subscription, ch);

    // A service publish: the ack echoes the id; the echo is a separate message.
    const echoed = single(await post("/", [{id: "e1", channel: "/service/echo", data: "ping", clientId}]), "service publish");
    const echoAck = replyTo(echoed, "e1", "service publish");
    assert.equal(echoAck.successful, true, JSON.stringify(echoed));
    assert.equal(echoAck.data, undefined, `the service publish ack must not carry the data: ${JSON.stringify(echoed)}`);
    let echoes = echoed.filter((m) => m.data !== undefined);
    if (echoes.length === 0) {
        const polled = single(await post("/connect", [{id: "c3", channel: "/meta/connect", connectionType: "long-polling", clientId, advice: {timeout: 0}}]), "connect");
        assert.equal(replyTo(polled, "c3", "connect").successful, true, JSON.stringify(polled));
        echoes = polled.filter((m) => m.data !== undefined);
    }
    assert.deepEqual(echoes.map((m) => [m.channel, m.data]), [["/service/echo", "ping"]]);

    const disconnected = single(await post("/disconnect", [{id: "d1", channel: "/meta/disconnect", clientId}]), "disconnect");
    const disconnectReply = replyTo(disconnected, "d1", "disconnect");
    assert.equal(disconnectReply.channel, "/meta/disconnect");
    assert.equal(disconnectReply.successful, true, JSON.stringify(disconnected));

    // Errors echo the id too.
    const late = single(await post("/", [{id: "z1", channel: "/meta/subscribe", subscription: ch, clientId}]), "subscribe after disconnect");
    const lateReply = replyTo(late, "z1", "subscribe after disconnect");
    assert.equal(lateReply.successful, false);
    assert.match(lateReply.error, /^402:/);
});

/**
 * A callback-polling request: GET `COMETD_URL + path?jsonp=callback&message=<messages>`. The
 * answer is run as the script a browser would run, with `callback` defined; resolves with
 * {response, messages (the array passed to the callback)}.
 */
async function jsonp(path, callback, messages, cookie) {
    const query = new URLSearchParams({jsonp: callback, message: JSON.stringify(messages)});
    const response = await rawGet(`${COMETD_URL}${path}?${query}`, {cookie});
    assert.equal(response.status, 200, `JSONP ${path}: HTTP ${response.status} ${response.text}`);
    assert.match(response.headers.get("content-type") || "", /^(text|application)\/javascript\b/, `JSONP ${path}: content type`);
    // Define the callback, which may be a dotted path (`cb.first`), in a fresh global.
    const calls = [];
    const context = {};
    const names = callback.split(".");
    let scope = context;
    for (const name of names.slice(0, -1)) {
        scope = scope[name] = {};
    }
    // (Copied out of the script's realm, so that deepStrictEqual sees plain objects.)
    scope[names.at(-1)] = (...args) => calls.push(JSON.parse(JSON.stringify(args)));
    vm.runInNewContext(response.text, context, {timeout: 1000});
    assert.equal(calls.length, 1, `JSONP ${path}: the script must call ${callback} once: ${response.text}`);
    assert.equal(calls[0].length, 1);
    assert.ok(Array.isArray(calls[0][0]), `JSONP ${path}: the callback's argument must be the reply array: ${response.text}`);
    return {response, messages: calls[0][0]};
}

test("callback-polling (JSONP): a session over GET requests whose answers are scripts", async () => {
    const handshake = await jsonp("/handshake", "_cometd_jsonp_1", [{
        id: "1", channel: "/meta/handshake", version: "1.0", minimumVersion: "1.0",
        supportedConnectionTypes: ["callback-polling"],
    }]);
    const [hs] = handshake.messages;
    assert.equal(hs.successful, true, JSON.stringify(hs));
    assert.equal(hs.id, "1");
    assert.ok(hs.supportedConnectionTypes.includes("callback-polling"), `callback-polling must be offered: ${JSON.stringify(hs)}`);
    const clientId = hs.clientId;
    const cookie = cookiesFrom(handshake.response.setCookies);
    assert.match(cookie, /BAYEUX_BROWSER=/);

    const connect = (id) => [{id, channel: "/meta/connect", connectionType: "callback-polling", clientId, advice: {timeout: 0}}];
    const first = await jsonp("/connect", "_cometd_jsonp_2", connect("2"), cookie);
    assert.equal(replyTo(first.messages, "2", "connect").successful, true, JSON.stringify(first.messages));

    const ch = channel("jsonp");
    const subscribed = await jsonp("/", "cb.subscribe", [{id: "3", channel: "/meta/subscribe", subscription: ch, clientId}], cookie);
    assert.equal(replyTo(subscribed.messages, "3", "subscribe").successful, true, JSON.stringify(subscribed.messages));
    // Data that must survive the query string and the script: quotes, markup, unicode.
    const data = {text: "\"</script><script>x</script>' \u2028 ✓", n: 1};
    const published = await jsonp("/", "cb.publish", [{id: "4", channel: ch, data, clientId}], cookie);
    assert.equal(replyTo(published.messages, "4", "publish").successful, true, JSON.stringify(published.messages));

    let delivered = published.messages.filter((m) => m.channel === ch && m.data !== undefined);
    if (delivered.length === 0) {
        const polled = await jsonp("/connect", "_cometd_jsonp_5", connect("5"), cookie);
        assert.equal(replyTo(polled.messages, "5", "connect").successful, true, JSON.stringify(polled.messages));
        delivered = polled.messages.filter((m) => m.channel === ch && m.data !== undefined);
    }
    assert.deepEqual(delivered.map((m) => m.data), [data]);

    const disconnected = await jsonp("/disconnect", "_cometd_jsonp_6", [{id: "6", channel: "/meta/disconnect", clientId}], cookie);
    assert.equal(replyTo(disconnected.messages, "6", "disconnect").successful, true, JSON.stringify(disconnected.messages));
});

test("the timestamp extension stamps every message the server sends", async () => {
    const stamped = (message, what) => {
        assert.equal(typeof message.timestamp, "string", `${what} must carry a timestamp: ${JSON.stringify(message)}`);
        const at = Date.parse(message.timestamp);
        assert.ok(Number.isFinite(at), `${what}: the timestamp must be a date: ${message.timestamp}`);
        assert.ok(Math.abs(at - Date.now()) < 60000, `${what}: the timestamp ${message.timestamp} is not now`);
    };
    const {reply: hs, clientId, cookie} = await rawHandshake("t1");
    stamped(hs, "the handshake reply");
    const post = async (messages) => {
        const response = await rawPost(COMETD_URL, messages, {cookie});
        assert.equal(response.status, 200, response.text);
        return response.json;
    };
    const ch = channel("stamp");
    const [subscribed] = await post([{id: "t2", channel: "/meta/subscribe", subscription: ch, clientId}]);
    stamped(subscribed, "the subscribe reply");
    const acked = await post([{id: "t3", channel: ch, data: "x", clientId}]);
    stamped(replyTo(acked, "t3", "publish"), "the publish reply");
    const polled = await post([{id: "t4", channel: "/meta/connect", connectionType: "long-polling", clientId, advice: {timeout: 0}}]);
    stamped(replyTo(polled, "t4", "connect"), "the connect reply");
    const delivered = [...acked, ...polled].filter((m) => m.channel === ch && m.data !== undefined);
    assert.equal(delivered.length, 1, JSON.stringify([acked, polled]));
    stamped(delivered[0], "a delivered message");
    const refused = await post([{id: "t5", channel: "/meta/subscribe", subscription: "/forbidden/x", clientId}]);
    stamped(replyTo(refused, "t5", "refused subscribe"), "an error reply");
});
