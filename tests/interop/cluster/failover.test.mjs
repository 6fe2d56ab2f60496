// Scenario c: a node dies behind a load balancer. An official client reaches node A through a
// small HTTP + websocket-upgrade forwarding proxy (the "load balancer", startBalancer in
// cluster.mjs) and subscribes in its /meta/handshake listener, the documented pattern for
// subscriptions that must survive a re-handshake. Node A is killed and the balancer sends
// everything to node B from then on: the client must meet B's `402::unknown client`,
// re-handshake on B, subscribe again, and then get what a client of B publishes to the room
// (and B's client what it publishes), exactly once.
//
// What would break it:
// - node B answering the stranger's /meta/connect with anything but 402 and advice to
//   handshake (e.g. taking the session for one held elsewhere and holding the connect, or
//   answering success): the client would never re-handshake;
// - a re-handshake on B refused or not flagged as re-established, e.g. because the browser
//   cookie A issued is unknown to B;
// - node B without interest for the channel after the client subscribes again there, or the
//   old session's subscription lingering so that messages arrive twice;
// - the room's traffic between the nodes broken by the death of one (B's own subscriber must
//   keep getting the messages, including those the failed-over client publishes).

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    EXPECTED_TRANSPORT, Inbox, channel, closeAllClients, connectClient, createClient, publishOk, sleep, subscribeOk,
    waitUntil,
} from "../helpers.mjs";
import {SETTLE_TIMEOUT, URL_B, startBalancer, startNode} from "./cluster.mjs";

const cleanups = [];

afterEach(async () => {
    await closeAllClients();
    for (const cleanup of cleanups.splice(0).reverse()) {
        await cleanup();
    }
});

test("behind a load balancer, a client of a killed node re-handshakes on the other node, subscribes again in its handshake listener, and gets the room's messages", async (t) => {
    const nodeA = await startNode();
    cleanups.push(() => nodeA.kill());
    const balancer = await startBalancer(nodeA.url);
    cleanups.push(() => balancer.close());
    const portA = new URL(nodeA.url).port;
    const portB = new URL(URL_B).port;

    const room = channel("failover");

    // A member of the room on node B, connected directly.
    const onB = createClient({url: URL_B, name: "member-on-B"});
    await connectClient(onB);
    const inboxB = new Inbox();
    await subscribeOk(onB, room, inboxB.push);

    // The client behind the balancer, subscribing on every successful handshake.
    const client = createClient({url: balancer.url, name: "behind-balancer"});
    const inbox = new Inbox();
    const handshakes = [];
    const connectFailures = [];
    const subscribeReplies = [];
    client.addListener("/meta/handshake", (m) => {
        handshakes.push({successful: m.successful, clientId: m.clientId, reestablish: m.reestablish, error: m.error});
        if (m.successful) {
            client.batch(() => {
                client.subscribe(room, inbox.push, (reply) => subscribeReplies.push({clientId: client.getClientId(), ...reply}));
            });
        }
    });
    client.addListener("/meta/connect", (m) => {
        if (!m.successful) {
            connectFailures.push({error: m.error, advice: m.advice, failure: m.failure && {reason: m.failure.reason, httpCode: m.failure.httpCode}, at: Date.now()});
        }
    });
    await connectClient(client);
    const firstId = client.getClientId();
    assert.ok(firstId.length > 0);
    await waitUntil(() => subscribeReplies.some((r) => r.successful && r.clientId === firstId), SETTLE_TIMEOUT,
        () => `the subscription made in the handshake listener; replies: ${JSON.stringify(subscribeReplies)}`);
    assert.ok(balancer.forwarded.every((f) => f.backend === portA), "before the failure everything went to node A");

    // Across the nodes before the failure: B -> A's client, and A's client -> B.
    await publishOk(onB, room, {from: "B", n: 1});
    await publishOk(client, room, {from: "A", n: 1});
    await inbox.waitFor((ms) => ms.length >= 2, SETTLE_TIMEOUT, () => `both messages on node A's client, got ${JSON.stringify(inbox.data)}`);
    await inboxB.waitFor((ms) => ms.length >= 2, SETTLE_TIMEOUT, () => `both messages on node B's client, got ${JSON.stringify(inboxB.data)}`);

    // Node A dies while the client's /meta/connect is held there; the balancer fails over.
    await sleep(300);
    const killedAt = Date.now();
    await nodeA.kill("SIGKILL");
    balancer.switchTo(URL_B);

    const rehandshake = await waitUntil(() => handshakes.find((m) => m.successful && m.clientId !== firstId), SETTLE_TIMEOUT,
        () => `a successful re-handshake on node B; handshakes: ${JSON.stringify(handshakes)}; failed connects: ${JSON.stringify(connectFailures)}`);
    const newId = rehandshake.clientId;
    await waitUntil(() => subscribeReplies.some((r) => r.clientId === newId), SETTLE_TIMEOUT,
        () => `the subscription made again in the handshake listener; replies: ${JSON.stringify(subscribeReplies)}`);
    const resubscribe = subscribeReplies.find((r) => r.clientId === newId);
    assert.equal(resubscribe.successful, true, `subscribing again on node B failed: ${JSON.stringify(resubscribe)}`);
    await waitUntil(() => client.getStatus() === "connected", SETTLE_TIMEOUT, () => `connected again (status ${client.getStatus()})`);
    t.diagnostic(`re-handshake and re-subscription ${Date.now() - killedAt} ms after the kill; failed connects: ${JSON.stringify(connectFailures)}`);

    // The stranger's /meta/connect met node B's 402 (unknown client) with advice to handshake.
    const unknown = connectFailures.filter((f) => typeof f.error === "string" && f.error.startsWith("402"));
    assert.ok(unknown.length > 0, `node B must answer the old session's /meta/connect with 402; failed connects: ${JSON.stringify(connectFailures)}`);
    assert.equal(unknown[0].advice?.reconnect, "handshake", `402 must advise a handshake: ${JSON.stringify(unknown[0])}`);
    assert.equal(rehandshake.reestablish, true, `the re-handshake must be flagged as re-established: ${JSON.stringify(rehandshake)}`);
    assert.equal(client.getTransport().type, EXPECTED_TRANSPORT, "the transport in use after the failover");
    const afterFailover = balancer.forwarded.filter((f) => f.backend === portB);
    assert.ok(afterFailover.length > 0, "the balancer sent the client's traffic to node B");
    if (EXPECTED_TRANSPORT === "websocket") {
        assert.ok(afterFailover.some((f) => f.kind === "upgrade" && f.status === 101),
            `the client opened a new websocket to node B through the balancer: ${JSON.stringify(afterFailover)}`);
    }

    // The room works again both ways, exactly once.
    await publishOk(onB, room, {from: "B", n: 2});
    await publishOk(client, room, {from: "A", n: 2});
    await inbox.waitFor((ms) => ms.length >= 4, SETTLE_TIMEOUT, () => `the messages after the failover on the failed-over client, got ${JSON.stringify(inbox.data)}`);
    await inboxB.waitFor((ms) => ms.length >= 4, SETTLE_TIMEOUT, () => `the messages after the failover on node B's client, got ${JSON.stringify(inboxB.data)}`);
    await sleep(300);
    const sorted = (data) => [...data].sort((x, y) => x.n - y.n || x.from.localeCompare(y.from));
    const expected = [{from: "A", n: 1}, {from: "B", n: 1}, {from: "A", n: 2}, {from: "B", n: 2}];
    assert.deepEqual(sorted(inbox.data), expected, "the failed-over client: lost or duplicated messages");
    assert.deepEqual(sorted(inboxB.data), expected, "node B's client: lost or duplicated messages");
    // Each publisher's own order held.
    for (const data of [inbox.data, inboxB.data]) {
        for (const from of ["A", "B"]) {
            assert.deepEqual(data.filter((d) => d.from === from).map((d) => d.n), [1, 2]);
        }
    }
});
