// Session lifecycle with the CometD JavaScript client: handshake, disconnect.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    COMETD_URL, EXPECTED_TRANSPORT, TRANSPORT, channel, closeAllClients, connectClient, cookieHeader, createClient,
    disconnect, httpLog, rawPost, sleep, waitUntil,
} from "./helpers.mjs";

afterEach(closeAllClients);

function lastSent(client, channelName) {
    return client.sent.filter((m) => m.channel === channelName).at(-1);
}

test("handshake succeeds with a long random clientId; two handshakes get different ids", async (t) => {
    const a = createClient();
    const b = createClient();
    const replyA = await connectClient(a);
    const replyB = await connectClient(b);
    t.diagnostic(`COMETD_TRANSPORT=${TRANSPORT}, transport in use: ${a.getTransport().type}`);

    for (const [client, reply] of [[a, replyA], [b, replyB]]) {
        assert.equal(reply.channel, "/meta/handshake");
        assert.equal(reply.successful, true);
        assert.equal(reply.id, lastSent(client, "/meta/handshake").id, "handshake reply must echo the request id");
        assert.equal(typeof reply.version, "string", `handshake reply must carry version: ${JSON.stringify(reply)}`);
        assert.match(reply.version, /^1(\.\d+)*$/);
        assert.ok(Array.isArray(reply.supportedConnectionTypes) && reply.supportedConnectionTypes.includes("long-polling"),
            `supportedConnectionTypes must list long-polling: ${JSON.stringify(reply)}`);
        assert.equal(typeof reply.clientId, "string");
        // Bayeux grammar: clientId = alphanum *( alphanum ); at least 128 random bits recommended.
        assert.match(reply.clientId, /^[0-9A-Za-z]{16,}$/, `clientId should be a long alphanumeric string: ${reply.clientId}`);
        assert.equal(client.getClientId(), reply.clientId);
        // Between two /meta/connect the client is briefly "connecting".
        await waitUntil(() => client.getStatus() === "connected", 2000, () => `status connected, is ${client.getStatus()}`);
    }
    assert.notEqual(replyA.clientId, replyB.clientId, "two handshakes must yield different clientIds");

    // Random, not sequential: two random ids of the same length differ in most positions.
    if (replyA.clientId.length === replyB.clientId.length) {
        let differing = 0;
        for (let i = 0; i < replyA.clientId.length; ++i) {
            differing += replyA.clientId[i] !== replyB.clientId[i] ? 1 : 0;
        }
        assert.ok(differing >= replyA.clientId.length / 2,
            `clientIds look sequential, not random: ${replyA.clientId} vs ${replyB.clientId}`);
    }

    // The first /meta/connect after the handshake was answered successfully, echoing its id.
    for (const client of [a, b]) {
        const connect = client.sent.find((m) => m.channel === "/meta/connect");
        const connectReply = client.received.find((m) => m.channel === "/meta/connect" && m.id === connect.id);
        assert.ok(connectReply, `no reply to /meta/connect id ${connect.id}: ${JSON.stringify(client.received)}`);
        assert.equal(connectReply.successful, true);
    }
});

test("disconnect succeeds and the server then treats the clientId as unknown", async () => {
    const client = createClient();
    await connectClient(client);
    const clientId = client.getClientId();
    const cookie = cookieHeader();
    const probe = channel("disc", "/probe");

    if (client.getTransport().type === "long-polling") {
        // Control: while the session lives, the same raw request with this clientId + cookie works.
        const before = await rawPost(COMETD_URL, [{id: "p1", channel: probe, data: "alive", clientId}], {cookie});
        assert.equal(before.status, 200, before.text);
        const ack = before.json.find((m) => m.id === "p1");
        assert.equal(ack?.successful, true, `publish with a live session should succeed: ${before.text}`);
    }

    const reply = await disconnect(client);
    assert.equal(reply.channel, "/meta/disconnect");
    assert.equal(reply.successful, true, `disconnect reply: ${JSON.stringify(reply)}`);
    assert.equal(reply.id, lastSent(client, "/meta/disconnect").id, "disconnect reply must echo the request id");
    await waitUntil(() => client.getStatus() === "disconnected", 2000, "status disconnected");

    const after = await rawPost(COMETD_URL + "/connect", [{
        id: "c9", channel: "/meta/connect", connectionType: "long-polling", clientId, advice: {timeout: 0},
    }], {cookie});
    assert.equal(after.status, 200, after.text);
    assert.ok(Array.isArray(after.json) && after.json.length === 1, after.text);
    const connectReply = after.json[0];
    assert.equal(connectReply.id, "c9");
    assert.equal(connectReply.channel, "/meta/connect");
    assert.equal(connectReply.successful, false, `connect after disconnect must fail: ${after.text}`);
    assert.equal(connectReply.error, "402::session_unknown");
    assert.equal(connectReply.advice?.reconnect, "handshake");

    const publishAfter = await rawPost(COMETD_URL, [{id: "p2", channel: probe, data: "dead", clientId}], {cookie});
    assert.equal(publishAfter.status, 200, publishAfter.text);
    const nack = publishAfter.json.find((m) => m.id === "p2");
    assert.equal(nack?.successful, false, `publish after disconnect must fail: ${publishAfter.text}`);
    assert.match(nack.error, /^402:/);
});

test("disconnect releases the held /meta/connect at once", async () => {
    const client = createClient();
    await connectClient(client);
    // The client re-connects right after the first (non-held) connect reply: wait until that
    // second connect is on the wire and being held.
    await waitUntil(() => client.sent.filter((m) => m.channel === "/meta/connect").length >= 2, 2000,
        "a second /meta/connect");
    const heldId = lastSent(client, "/meta/connect").id;
    const clientId = client.getClientId();
    await sleep(100);
    const answered = () => client.received.some((m) => m.channel === "/meta/connect" && m.id === heldId);
    assert.equal(answered(), false, "the /meta/connect should still be held (server timeout is 2000 ms)");

    const start = Date.now();
    const reply = await disconnect(client);
    assert.equal(reply.successful, true);
    await waitUntil(answered, 3000, "the held /meta/connect to be answered");
    const releasedAfter = Date.now() - start;
    assert.ok(releasedAfter < 1000, `held /meta/connect was released ${releasedAfter} ms after the disconnect (hold timeout is 2000 ms)`);
    const connectReply = client.received.find((m) => m.channel === "/meta/connect" && m.id === heldId);
    assert.equal(connectReply.advice?.reconnect, "none", `released connect: ${JSON.stringify(connectReply)}`);
    if (EXPECTED_TRANSPORT === "long-polling") {
        const exchange = httpLog.find((e) => Array.isArray(e.messages) && e.messages.some((m) => m.id === heldId && m.clientId === clientId));
        assert.equal(exchange?.status, 200, `released /meta/connect HTTP status (body ${exchange?.body})`);
    }
});
