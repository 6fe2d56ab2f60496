// The conformance server's security policy, seen from the CometD JavaScript client:
// handshake with ext.auth.deny refused, /forbidden/** subscriptions refused, client publishes
// to /readonly/** refused.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    Inbox, channel, closeAllClients, connectClient, createClient, deliveredOn, handshakeReply,
    publish, publishOk, sleep, subscribe, subscribeOk, waitUntil,
} from "./helpers.mjs";

afterEach(closeAllClients);

test("a denied handshake fails with 403::handshake_denied and is not retried", async () => {
    const client = createClient();
    const handshakeReplies = [];
    client.addListener("/meta/handshake", (m) => handshakeReplies.push(m));

    const reply = await handshakeReply(client, {ext: {auth: {deny: true}}});
    assert.equal(reply.successful, false, `handshake must be refused: ${JSON.stringify(reply)}`);
    assert.equal(reply.error, "403::handshake_denied");
    assert.equal(reply.advice?.reconnect, "none", `advice must stop the client: ${JSON.stringify(reply)}`);
    assert.equal(reply.clientId, undefined, "a refused handshake must not hand out a clientId");

    // Advice "none": the client gives up instead of re-handshaking.
    await sleep(1500);
    assert.equal(client.getStatus(), "disconnected");
    const fromServer = client.received.filter((m) => m.channel === "/meta/handshake");
    assert.equal(fromServer.length, 1, `exactly one handshake reached the server: ${JSON.stringify(fromServer)}`);
    assert.equal(client.received.filter((m) => m.channel === "/meta/connect").length, 0, "no /meta/connect after a refused handshake");

    // The same client may handshake again without the deny flag.
    const ok = await connectClient(client);
    assert.equal(ok.successful, true);
});

test("subscribe under /forbidden/** fails with 403::subscribe_denied; allowed channels still work", async () => {
    const [client, publisher] = [createClient(), createClient()];
    await connectClient(client);
    await connectClient(publisher);

    const forbidden = `/forbidden/${channel("f").slice(1)}`;
    const forbiddenListener = new Inbox();
    const {reply} = await subscribe(client, forbidden, forbiddenListener.push);
    assert.equal(reply.successful, false, `subscribe must be refused: ${JSON.stringify(reply)}`);
    assert.equal(reply.error, "403::subscribe_denied");
    assert.equal(reply.channel, "/meta/subscribe");

    // The allowed channel works for the same client...
    const allowed = channel("allowed");
    const inbox = new Inbox();
    await subscribeOk(client, allowed, inbox.push);
    // ...and the denied subscription was not recorded by the server: publishing to the forbidden
    // channel (publishing there is allowed) reaches nobody, the later allowed one arrives.
    await publishOk(publisher, forbidden, "nope");
    await publishOk(publisher, allowed, "yes");
    await inbox.waitForCount(1);
    await sleep(100);
    assert.deepEqual(inbox.data, ["yes"]);
    assert.equal(deliveredOn(client, forbidden).length, 0, "the server delivered a message on a denied subscription");
    assert.equal(forbiddenListener.length, 0, "no local listener may be notified");
});

test("publish under /readonly/** fails with 403::publish_denied and is not delivered", async () => {
    const [client, subscriber] = [createClient(), createClient()];
    await connectClient(client);
    await connectClient(subscriber);

    const readonly = `/readonly/${channel("r").slice(1)}`;
    const readonlyInbox = new Inbox();
    await subscribeOk(subscriber, readonly, readonlyInbox.push); // subscribing is allowed

    const reply = await publish(client, readonly, {denied: true});
    assert.equal(reply.successful, false, `publish must be refused: ${JSON.stringify(reply)}`);
    assert.equal(reply.error, "403::publish_denied");
    assert.equal(reply.channel, readonly);

    // Server-side publishes to /readonly/** are not subject to the client publish policy.
    await publishOk(client, "/service/publish", {channel: readonly, data: "from-server"});
    await readonlyInbox.waitForCount(1);
    await sleep(100);
    assert.deepEqual(readonlyInbox.data, ["from-server"], "the denied publish must not be delivered");

    // The refused client keeps working on allowed channels.
    const allowed = channel("allowed");
    const inbox = new Inbox();
    await subscribeOk(subscriber, allowed, inbox.push);
    await publishOk(client, allowed, "fine");
    await inbox.waitForCount(1);
    assert.deepEqual(inbox.data, ["fine"]);
    await waitUntil(() => client.getStatus() === "connected", 1000, "the refused client to stay connected");
});
