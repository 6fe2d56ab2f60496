// Scenario b: delivery to one session by its clientId, across nodes. The conformance server's
// `/service/deliver` takes `{clientId, channel, data}` and delivers `data` on `channel` to that
// session, on whichever node holds it (`Bayeux::deliver`); the publish reply fails with
// `404::…` when no node holds it. A direct delivery needs no subscription: the official client
// hands it to the listeners of its channel (`addListener`).
//
// What would break it:
// - a node that only looks for the session among its own: a delivery from B to a client of A
//   (and from A to a client of B) would fail with 404 or go nowhere;
// - a delivery turned into a broadcast: a client of either node subscribed to the same
//   channel must not get it;
// - deliveries overtaking each other on the way through Redis, or arriving twice: numbered
//   ones sent back to back must arrive once each, in order;
// - a node that answers success for a session whose node is gone (the delivery lost without a
//   word): after that node is killed, a delivery to its client must fail with 404, as must one
//   to a clientId no node ever handed out.

import assert from "node:assert/strict";
import {after, afterEach, test} from "node:test";
import {
    Inbox, channel, closeAllClients, connectClient, createClient, publish, publishOk, sleep, subscribeOk, waitUntil,
} from "../helpers.mjs";
import {SETTLE_TIMEOUT, URL_A, URL_B, startNode} from "./cluster.mjs";

const nodes = [];

afterEach(closeAllClients);
after(async () => {
    await Promise.all(nodes.splice(0).map((n) => n.kill()));
});

/** Publishes to /service/deliver; resolves with the reply (not checked). */
function deliver(from, clientId, ch, data) {
    return publish(from, "/service/deliver", {clientId, channel: ch, data});
}

/** Fires `count` numbered deliveries from `from` to `clientId` without waiting; resolves with the replies. */
async function deliverNumbered(from, clientId, ch, count) {
    const replies = [];
    for (let seq = 0; seq < count; ++seq) {
        from.publish("/service/deliver", {clientId, channel: ch, data: {seq}}, (r) => replies.push(r));
    }
    await waitUntil(() => replies.length === count, SETTLE_TIMEOUT, () => `${count} /service/deliver replies, got ${replies.length}`);
    return replies;
}

test("a client on one node delivers to a client on the other by clientId, in order, exactly once, not as a broadcast", async () => {
    const onA = createClient({url: URL_A, name: "deliver-on-A"});
    await connectClient(onA);
    const onB = createClient({url: URL_B, name: "deliver-on-B"});
    await connectClient(onB);
    // Bystanders subscribed to the delivery channels, one on each node: a delivery is not theirs.
    const bystanderA = createClient({url: URL_A, name: "bystander-on-A"});
    await connectClient(bystanderA);
    const bystanderB = createClient({url: URL_B, name: "bystander-on-B"});
    await connectClient(bystanderB);

    const toA = channel("direct", "/to-a");
    const toB = channel("direct", "/to-b");
    const inboxA = new Inbox();
    const inboxB = new Inbox();
    onA.addListener(toA, inboxA.push);
    onB.addListener(toB, inboxB.push);
    const overheard = new Inbox();
    for (const bystander of [bystanderA, bystanderB]) {
        await subscribeOk(bystander, toA, overheard.push);
        await subscribeOk(bystander, toB, overheard.push);
    }

    // B -> A, then A -> B.
    await publishOk(onB, "/service/deliver", {clientId: onA.getClientId(), channel: toA, data: {hello: "from B"}});
    await inboxA.waitForCount(1, SETTLE_TIMEOUT, "delivered from node B to the client on node A");
    assert.deepEqual(inboxA.data, [{hello: "from B"}]);
    assert.equal(inboxA.messages[0].channel, toA);
    await publishOk(onA, "/service/deliver", {clientId: onB.getClientId(), channel: toB, data: {hello: "from A"}});
    await inboxB.waitForCount(1, SETTLE_TIMEOUT, "delivered from node A to the client on node B");
    assert.deepEqual(inboxB.data, [{hello: "from A"}]);

    // Numbered deliveries fired back to back, both ways at once.
    const COUNT = 50;
    const [repliesToA, repliesToB] = await Promise.all([
        deliverNumbered(onB, onA.getClientId(), toA, COUNT),
        deliverNumbered(onA, onB.getClientId(), toB, COUNT),
    ]);
    for (const [where, replies] of [["to A", repliesToA], ["to B", repliesToB]]) {
        const failed = replies.filter((r) => !r.successful);
        assert.equal(failed.length, 0, `deliveries ${where} failed: ${JSON.stringify(failed.slice(0, 3))}`);
    }
    await inboxA.waitForCount(1 + COUNT, SETTLE_TIMEOUT, "numbered deliveries on node A");
    await inboxB.waitForCount(1 + COUNT, SETTLE_TIMEOUT, "numbered deliveries on node B");
    // Give duplicates a chance to show up.
    await sleep(300);
    const expected = Array.from({length: COUNT}, (_, seq) => seq);
    assert.deepEqual(inboxA.data.slice(1).map((d) => d.seq), expected, "deliveries to A: lost, duplicated or out of order");
    assert.deepEqual(inboxB.data.slice(1).map((d) => d.seq), expected, "deliveries to B: lost, duplicated or out of order");
    assert.equal(inboxA.length, 1 + COUNT);
    assert.equal(inboxB.length, 1 + COUNT);

    // The sender got nothing back, and the subscribers of those channels overheard nothing.
    assert.equal(onB.received.filter((m) => m.channel === toA).length, 0);
    assert.equal(onA.received.filter((m) => m.channel === toB).length, 0);
    assert.deepEqual(overheard.messages, [], "a delivery to one session reached subscribers of its channel");
});

test("a delivery to a client whose node was killed fails with 404; so does one to a clientId no node handed out", async () => {
    const doomed = await startNode();
    nodes.push(doomed);
    const onDoomed = createClient({url: doomed.url, name: "on-doomed-node"});
    await connectClient(onDoomed);
    const onB = createClient({url: URL_B, name: "deliver-on-B"});
    await connectClient(onB);

    // While its node is up, the delivery works (so the failure below is the node's death).
    const ch = channel("direct", "/doomed");
    const inbox = new Inbox();
    onDoomed.addListener(ch, inbox.push);
    await publishOk(onB, "/service/deliver", {clientId: onDoomed.getClientId(), channel: ch, data: "alive"});
    await inbox.waitForCount(1, SETTLE_TIMEOUT, "delivered to the client of the node about to be killed");
    assert.deepEqual(inbox.data, ["alive"]);

    const doomedId = onDoomed.getClientId();
    // The client stays pointed at the dead node (its retries fail there).
    await doomed.kill("SIGKILL");
    nodes.splice(nodes.indexOf(doomed), 1);

    const reply = await deliver(onB, doomedId, ch, "dead");
    assert.equal(reply.successful, false, `a delivery to a session of a killed node must fail: ${JSON.stringify(reply)}`);
    assert.match(String(reply.error), /^404/, `the error must start with 404: ${JSON.stringify(reply)}`);

    // A clientId of a node that never existed, and one that is no clientId at all.
    for (const bogus of ["0123abcd" + "f".repeat(32), "not-a-client-id"]) {
        const r = await deliver(onB, bogus, ch, "nobody");
        assert.equal(r.successful, false, `a delivery to ${bogus} must fail: ${JSON.stringify(r)}`);
        assert.match(String(r.error), /^404/, `the error for ${bogus} must start with 404: ${JSON.stringify(r)}`);
    }
    // And B's own client is still reachable (the failures did not break the path).
    const inboxB = new Inbox();
    onB.addListener(ch, inboxB.push);
    await publishOk(onB, "/service/deliver", {clientId: onB.getClientId(), channel: ch, data: "self"});
    await inboxB.waitForCount(1, SETTLE_TIMEOUT, "a delivery to oneself");
    assert.equal(inbox.length, 1, "nothing more reached the client of the killed node");
});
