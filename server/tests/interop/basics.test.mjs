// Protocol basics of the `tower-bayeux` binary with the official CometD JavaScript client:
// handshake, subscribe and publish between clients, publishing through the HTTP API
// (POST /api/publish) to subscribed clients, unsubscribe, disconnect. Every test checks that
// the client uses the run's transport (EXPECTED_TRANSPORT) on the wire.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    COMETD_URL, EXPECTED_TRANSPORT, Inbox, SERVER_CONNECTION_TYPES, apiPublish, apiPublishOk, apiStatus,
    assertTransport, browserCookie, channel, closeAllClients, connectClient, createClient, deliveredOn, disconnect,
    publish, publishOk, rawPost, sleep, subscribeOk, token, unsubscribe, waitUntil,
} from "./client.mjs";

afterEach(closeAllClients);

/** `n` handshaken clients, ready to use. */
async function clients(n) {
    const result = [];
    for (let i = 0; i < n; ++i) {
        const client = createClient();
        await connectClient(client);
        result.push(client);
    }
    return result;
}

test("handshake: successful, a clientId, the server's connection types, the run's transport", async () => {
    const client = createClient();
    const reply = await connectClient(client);
    assert.equal(reply.channel, "/meta/handshake");
    assert.equal(reply.successful, true, JSON.stringify(reply));
    assert.equal(reply.version, "1.0", JSON.stringify(reply));
    assert.equal(typeof reply.clientId, "string", JSON.stringify(reply));
    assert.ok(reply.clientId.length > 0, JSON.stringify(reply));
    assert.equal(client.getClientId(), reply.clientId);
    assert.deepEqual([...reply.supportedConnectionTypes].sort(), [...SERVER_CONNECTION_TYPES].sort(),
        `supportedConnectionTypes of the handshake reply: ${JSON.stringify(reply)}`);
    await waitUntil(() => client.getStatus() === "connected", 2000, "status connected");
    assertTransport(client);

    // The server sees the session on that transport.
    const status = await apiStatus();
    assert.ok(status.sessions >= 1, `GET /api/status: ${JSON.stringify(status)}`);
    assert.ok(status.sessions_by_transport?.[EXPECTED_TRANSPORT] >= 1,
        `GET /api/status must count the ${EXPECTED_TRANSPORT} session: ${JSON.stringify(status)}`);

    // A second client gets another session.
    const [other] = await clients(1);
    assert.notEqual(other.getClientId(), client.getClientId());
    assertTransport(other);
});

test("subscribe/publish between two clients delivers exactly the published data", async () => {
    const [publisher, subscriber] = await clients(2);
    const ch = channel("chat/");
    const inbox = new Inbox();
    await subscribeOk(subscriber, ch, inbox.push);

    const data = {text: "hello, wörld ✓", n: 42, f: 1.5, ok: true, none: null, list: [1, "two", {three: 3}]};
    const reply = await publish(publisher, ch, data);
    assert.equal(reply.successful, true, `publish reply: ${JSON.stringify(reply)}`);
    assert.equal(reply.channel, ch);

    const [message] = await inbox.waitForCount(1);
    assert.equal(message.channel, ch);
    assert.deepEqual(message.data, data);
    await sleep(200);
    assert.equal(inbox.length, 1, `exactly one delivery expected: ${JSON.stringify(inbox.messages)}`);
    assert.equal(deliveredOn(publisher, ch).length, 0, "the (unsubscribed) publisher must not receive the message");
    assertTransport(publisher);
    assertTransport(subscriber);
});

test("POST /api/publish reaches subscribed clients, in order; a wrong secret publishes nothing", async () => {
    const [subscriber, bystander] = await clients(2);
    const ch = channel("api/");
    const inbox = new Inbox();
    await subscribeOk(subscriber, ch, inbox.push);
    const otherInbox = new Inbox();
    await subscribeOk(bystander, channel("api/"), otherInbox.push);

    const data = {from: "backend", k: token(), nested: {list: [1, 2, 3]}};
    const published = await apiPublishOk({channel: ch, data});
    assert.deepEqual(published, [{channel: ch}], "no position for a channel without history");
    const [message] = await inbox.waitForCount(1);
    assert.equal(message.channel, ch);
    assert.deepEqual(message.data, data);

    // Several messages in one request arrive in their order.
    await apiPublishOk([{channel: ch, data: 2}, {channel: ch, data: 3}, {channel: ch, data: 4}]);
    await inbox.waitForCount(4);

    // Refused: nothing published.
    const wrong = await apiPublish({channel: ch, data: "wrong secret"}, {secret: "not-the-secret"});
    assert.equal(wrong.status, 401, wrong.text);
    const missing = await apiPublish({channel: ch, data: "no secret"}, {secret: null});
    assert.equal(missing.status, 401, missing.text);
    await apiPublishOk({channel: ch, data: "sentinel"});
    await inbox.waitFor((ms) => ms.some((m) => m.data === "sentinel"), 5000, "the sentinel");
    await sleep(200);

    assert.deepEqual(inbox.data, [data, 2, 3, 4, "sentinel"]);
    assert.deepEqual(deliveredOn(subscriber, ch).map((m) => m.data), [data, 2, 3, 4, "sentinel"], "once each on the wire");
    assert.equal(otherInbox.length, 0, "a subscriber of another channel gets nothing");
    assertTransport(subscriber);
    assertTransport(bystander);
});

test("after unsubscribing, no more messages arrive (from clients or the API)", async () => {
    const [publisher, subscriber] = await clients(2);
    const ch = channel("u/");
    const control = `${ch}/control`;
    const inbox = new Inbox();
    const controlInbox = new Inbox();
    const subscription = await subscribeOk(subscriber, ch, inbox.push);
    await subscribeOk(subscriber, control, controlInbox.push);

    await publishOk(publisher, ch, "before (client)");
    await apiPublishOk({channel: ch, data: "before (api)"});
    await inbox.waitForCount(2);

    const reply = await unsubscribe(subscriber, subscription);
    assert.equal(reply.successful, true, `unsubscribe reply: ${JSON.stringify(reply)}`);
    assert.equal(reply.subscription, ch);

    await publishOk(publisher, ch, "after (client)");
    await apiPublishOk({channel: ch, data: "after (api)"});
    await sleep(300);
    // The session still receives other channels: a later message arrives, the unsubscribed one not.
    await apiPublishOk({channel: control, data: "still-connected"});
    await controlInbox.waitForCount(1);
    await sleep(100);
    assert.deepEqual(deliveredOn(subscriber, ch).map((m) => m.data), ["before (client)", "before (api)"],
        "the server must stop sending a channel's messages after /meta/unsubscribe");
    assertTransport(subscriber);
});

test("disconnect: successful reply, then the server treats the clientId as unknown", async () => {
    const [client] = await clients(1);
    const ch = channel("d/");
    const inbox = new Inbox();
    await subscribeOk(client, ch, inbox.push);
    await apiPublishOk({channel: ch, data: "before"});
    await inbox.waitForCount(1);
    assertTransport(client);
    const clientId = client.getClientId();
    const cookie = browserCookie();

    const reply = await disconnect(client);
    assert.equal(reply?.channel, "/meta/disconnect", JSON.stringify(reply));
    assert.equal(reply.successful, true, `disconnect reply: ${JSON.stringify(reply)}`);
    await waitUntil(() => client.getStatus() === "disconnected", 2000, "status disconnected");

    // The session is gone: a /meta/connect with its clientId (and the browser cookie) is refused.
    const after = await rawPost(COMETD_URL + "/connect", [{
        id: "c9", channel: "/meta/connect", connectionType: "long-polling", clientId, advice: {timeout: 0},
    }], {cookie});
    assert.equal(after.status, 200, after.text);
    assert.ok(Array.isArray(after.json) && after.json.length === 1, after.text);
    const connectReply = after.json[0];
    assert.equal(connectReply.successful, false, `connect after disconnect must fail: ${after.text}`);
    assert.equal(connectReply.error, "402::session_unknown", after.text);
    assert.equal(connectReply.advice?.reconnect, "handshake", after.text);

    // And nothing more is delivered to it.
    await apiPublishOk({channel: ch, data: "after"});
    await sleep(300);
    assert.deepEqual(deliveredOn(client, ch).map((m) => m.data), ["before"]);
});
