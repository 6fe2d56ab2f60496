// The client re-handshakes on its own when the server has forgotten its session: a private
// conformance server (CONFORMANCE_BIN) is killed and restarted on the same port.
// Runs in its own process (own cookie jar): the restarted server never saw our BAYEUX_BROWSER.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    CONFORMANCE_BIN, Inbox, channel, closeAllClients, deliveredOn, connectClient, createClient, freePort,
    publishOk, sleep, startServer, subscribeOk, waitUntil,
} from "./helpers.mjs";

const servers = [];

afterEach(async () => {
    await closeAllClients();
    await Promise.all(servers.splice(0).map((s) => s.kill()));
});

test("after a server restart the client re-handshakes by itself and works again",
    {skip: !CONFORMANCE_BIN && "CONFORMANCE_BIN is not set"}, async (t) => {
        const port = await freePort();
        const first = await startServer(port);
        servers.push(first);

        const client = createClient({url: first.url});
        const handshakes = [];
        client.addListener("/meta/handshake", (m) => handshakes.push({...m}));
        const connects = [];
        client.addListener("/meta/connect", (m) => connects.push({successful: m.successful, error: m.error, at: Date.now()}));

        await connectClient(client);
        const firstId = client.getClientId();
        const inbox = new Inbox();
        const ch1 = channel("re");
        await subscribeOk(client, ch1, inbox.push);
        await publishOk(client, ch1, "before");
        await inbox.waitForCount(1);
        const successfulBefore = handshakes.filter((m) => m.successful).length;
        assert.equal(successfulBefore, 1);
        assert.equal(handshakes.find((m) => m.successful).reestablish, false);

        // Let the client's /meta/connect be held, then make the server forget everything.
        await sleep(200);
        await first.kill();
        servers.splice(servers.indexOf(first), 1);
        const second = await startServer(port);
        servers.push(second);
        assert.equal(second.url, first.url);

        const rehandshake = await waitUntil(() => handshakes.find((m) => m.successful && m.clientId !== firstId), 15000,
            () => `a new successful handshake; handshakes: ${JSON.stringify(handshakes)}; connects: ${JSON.stringify(connects)}`);
        t.diagnostic(`failed /meta/connect replies: ${JSON.stringify(connects.filter((c) => !c.successful))}`);
        assert.equal(rehandshake.reestablish, true, `re-handshake must be flagged as reestablish: ${JSON.stringify(rehandshake)}`);
        assert.notEqual(rehandshake.clientId, firstId);
        await waitUntil(() => client.getStatus() === "connected" && client.getClientId() === rehandshake.clientId, 5000,
            () => `connected with the new clientId (status ${client.getStatus()})`);

        // The restarted server replied 402 to the stale session (or the client gave up
        // connecting and handshook directly): either way the new session now works.
        const ch2 = channel("re");
        const inbox2 = new Inbox();
        await subscribeOk(client, ch2, inbox2.push);
        await publishOk(client, ch2, "after");
        await inbox2.waitForCount(1);
        assert.deepEqual(inbox2.data, ["after"]);
        // The new session has no subscription to the old channel: nothing on the wire for it.
        await publishOk(client, ch1, "stale");
        await sleep(200);
        assert.deepEqual(deliveredOn(client, ch1).map((m) => m.data), ["before"]);
    });
