// Scenario d: history across a node failure. An official client with the history extension
// (clients/js/history-extension.js) reaches a node the test starts through the load balancer
// of cluster.mjs and subscribes, in its /meta/handshake listener (the documented pattern), to a
// channel under /history/**, whose last 100 messages the conformance nodes keep in the Redis
// they share (same offsets and epoch on every node). The node dies; while the client is cut
// off, messages keep being published; the balancer sends the client to node B, where it meets
// `402::unknown client`, handshakes again, and subscribes again with `ext.history = {since,
// epoch}` (added by the extension). It must get every message it missed exactly once, in order,
// then live ones, with `recovered: true`.
//
// The guarantee: what a client missed while its node died is replayed by the node it fails over
// to, from the shared history, in the epoch it already had; nothing lost, nothing twice.
//
// What would break it (and what the tests would then see):
// - node B answering the resume from a history of its own (its memory) instead of the shared
//   one: another epoch, or no messages it did not publish itself, so `recovered: false` and a
//   gap on the wire (or `recovered: true` with the messages published on the dead node missing);
// - messages published on a node only reaching Redis's stream once delivered locally (or
//   dropped from it when their node dies): the messages published on the killed node just
//   before it died (second test, while the client was already cut off) would be missing from
//   the replay;
// - node B taking the live subscription and reading the stream in two steps a publish can fall
//   between (B has no interest in the channel until the client subscribes there, so the
//   subscribe also makes B start receiving the channel from Redis): a publish racing the
//   re-subscription (first test, B's client publishing back to back through it) lost, or
//   delivered live and replayed (a repeated offset on the wire);
// - the epoch handed out in a subscribe reply on a channel without messages yet not being the
//   one its first message gets: a client that subscribed and then failed over would resume in
//   an epoch the server does not know (`recovered: false`);
// - an extension that sends no `since` after the re-handshake, or one from a position it did
//   not have (a publish reply's), or an application that does not subscribe again in its
//   handshake listener (then nothing is resumed at all).
//
// Exactly once is checked on the wire (`client.received`, recorded before the history extension
// sees a message) as well as for the application, so the extension's duplicate filter cannot
// hide a second copy the server sent: every message here reaches the failed-over client on a
// new session of node B (nothing is in flight from the dead node), so the wire must carry each
// offset once and `duplicates` must stay 0.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {HistoryExtension} from "../../../clients/js/history-extension.js";
import {
    EXPECTED_TRANSPORT, Inbox, channel, closeAllClients, connectClient, createClient, deliveredOn, publishOk, sleep,
    waitUntil,
} from "../helpers.mjs";
import {SETTLE_TIMEOUT, URL_B, startBalancer, startNode} from "./cluster.mjs";

/** The conformance nodes keep the last 100 messages of each channel under /history/**. */
const RETAINED = 100;

const cleanups = [];

afterEach(async () => {
    await closeAllClients();
    for (const cleanup of cleanups.splice(0).reverse()) {
        await cleanup();
    }
});

const range = (from, to) => Array.from({length: to - from + 1}, (_, i) => from + i);
const offsetsOf = (messages) => messages.map((m) => m.ext?.history?.offset);
const numbersOf = (messages) => messages.map((m) => m.data?.n);

/**
 * A client of `url` with the history extension that subscribes to `channelName` in a
 * /meta/handshake listener, as an application does. Records the handshake replies, the failed
 * /meta/connects, every subscribe reply (with the clientId it was made with), every onRecovery
 * call, and a timeline of the traffic (for failure messages).
 */
function historyClient(url, channelName, name) {
    const client = createClient({url, name});
    const timeline = [];
    client.registerExtension("timeline", {
        incoming: (message) => {
            timeline.push({in: true, ...message});
            return message;
        },
        outgoing: (message) => {
            timeline.push({in: false, ...message});
            return message;
        },
    });
    const recoveries = [];
    const history = new HistoryExtension({onRecovery: (ch, recovery) => recoveries.push({channel: ch, ...recovery})});
    client.registerExtension("history", history);
    const member = {
        client, history, timeline, recoveries, inbox: new Inbox(), handshakes: [], connectFailures: [], replies: [],
    };
    client.addListener("/meta/handshake", (m) => {
        member.handshakes.push({successful: m.successful, clientId: m.clientId, reestablish: m.reestablish, error: m.error});
        if (m.successful) {
            client.subscribe(channelName, member.inbox.push, (reply) => member.replies.push({clientId: client.getClientId(), ...reply}));
        }
    });
    client.addListener("/meta/connect", (m) => {
        if (!m.successful) {
            const failure = m.failure && {reason: m.failure.reason, httpCode: m.failure.httpCode, websocketCode: m.failure.websocketCode};
            member.connectFailures.push({error: m.error, advice: m.advice, failure});
        }
    });
    return member;
}

/** The successful subscribe reply made with `clientId` (waits for it). */
async function subscribedWith(member, clientId) {
    const reply = await waitUntil(() => member.replies.find((r) => r.clientId === clientId), SETTLE_TIMEOUT,
        () => `the subscribe reply of session ${clientId}; replies: ${JSON.stringify(member.replies)}`);
    assert.equal(reply.successful, true, `the subscription made in the handshake listener failed: ${JSON.stringify(reply)}`);
    return reply;
}

/** `member`'s traffic on `channelName`, compact: offsets received, `>sub{…}` sent, `<sub{…}` replies, handshakes. */
function trace(member, channelName) {
    return member.timeline.filter((m) => m.channel === channelName || m.subscription === channelName
        || m.channel === "/meta/handshake").map((m) => {
        if (m.channel === "/meta/handshake") {
            return m.in ? `<handshake(${m.successful ? m.clientId : m.error})` : ">handshake";
        }
        if (m.channel === channelName) {
            return String(m.ext?.history?.offset);
        }
        const history = m.ext?.history ? JSON.stringify(m.ext.history) : "";
        return `${m.in ? "<" : ">"}${m.channel.slice("/meta/".length)}${history}`;
    }).join(" ");
}

/** Publishes `{n}` for each n in [from, to] one after the other; resolves with the replies' positions. */
async function publishRange(client, channelName, from, to) {
    const positions = [];
    for (let n = from; n <= to; ++n) {
        const reply = await publishOk(client, channelName, {n});
        positions.push(reply.ext?.history);
    }
    return positions;
}

/** The /meta/subscribe messages `client` sent for `channelName` (as they went on the wire). */
function subscribesSent(client, channelName) {
    return client.sent.filter((m) => m.channel === "/meta/subscribe" && m.subscription === channelName);
}

/**
 * Waits for the re-handshake of `member` on another session than `firstId` and for its
 * subscription; checks the way there (402 with advice to handshake, a re-established session,
 * the transport, the balancer sending the client to node B). Resolves with the new session's
 * subscribe reply.
 */
async function failedOver(t, member, firstId, balancer, since) {
    const rehandshake = await waitUntil(() => member.handshakes.find((m) => m.successful && m.clientId !== firstId), SETTLE_TIMEOUT,
        () => `a successful re-handshake on node B; handshakes: ${JSON.stringify(member.handshakes)}; failed connects: ${JSON.stringify(member.connectFailures)}`);
    const reply = await subscribedWith(member, rehandshake.clientId);
    await waitUntil(() => member.client.getStatus() === "connected", SETTLE_TIMEOUT, () => `connected again (status ${member.client.getStatus()})`);
    t.diagnostic(`re-handshake and resumed subscription ${Date.now() - since} ms after the client was cut off; `
        + `failed connects: ${JSON.stringify(member.connectFailures.map((f) => f.error
            || (f.failure?.websocketCode ? `websocket closed ${f.failure.websocketCode}` : f.failure?.httpCode || f.failure?.reason)))}`);

    const unknown = member.connectFailures.filter((f) => typeof f.error === "string" && f.error.startsWith("402"));
    assert.ok(unknown.length > 0, `node B must answer the old session's /meta/connect with 402; failed connects: ${JSON.stringify(member.connectFailures)}`);
    assert.equal(unknown[0].advice?.reconnect, "handshake", `402 must advise a handshake: ${JSON.stringify(unknown[0])}`);
    assert.equal(rehandshake.reestablish, true, `the re-handshake must be flagged as re-established: ${JSON.stringify(rehandshake)}`);
    assert.equal(member.client.getTransport().type, EXPECTED_TRANSPORT, "the transport in use after the failover");
    const portB = new URL(URL_B).port;
    const onB = balancer.forwarded.filter((f) => f.backend === portB);
    assert.ok(onB.some((f) => f.kind === "http" || f.status === 101), `the balancer sent the client's traffic to node B: ${JSON.stringify(balancer.forwarded)}`);
    return reply;
}

test("after its node is killed, a client fails over to the other node and resumes from the shared history: what it missed once, in order, then live, with publishes racing the re-subscription", async (t) => {
    const nodeA = await startNode();
    cleanups.push(() => nodeA.kill());
    const balancer = await startBalancer(nodeA.url);
    cleanups.push(() => balancer.close());
    const ch = channel("history/failover-");

    // The publisher is a client of node B, connected directly (it has no subscription: node B
    // has no interest in the channel until the failed-over client subscribes there).
    const pubB = createClient({url: URL_B, name: "publisher-on-B"});
    await connectClient(pubB);

    const sub = historyClient(balancer.url, ch, "history-behind-balancer");
    await connectClient(sub.client);
    const firstId = sub.client.getClientId();
    const first = await subscribedWith(sub, firstId);
    const start = first.ext?.history;
    assert.ok(start && typeof start.epoch === "string" && start.offset === 0,
        `a new history channel's subscribe reply gives its start: ${JSON.stringify(first)}`);
    assert.equal(subscribesSent(sub.client, ch)[0].ext?.history, undefined, "nothing to resume the first time");
    const epoch = start.epoch;

    // Before the failure: B's messages reach the client on the node behind the balancer.
    const published = await publishRange(pubB, ch, 1, 3);
    assert.deepEqual(published, range(1, 3).map((offset) => ({offset, epoch})),
        "publish replies' positions (on node B, in the epoch node A gave in the subscribe reply)");
    await sub.inbox.waitForCount(3, SETTLE_TIMEOUT, "from node B through Redis and node A");
    assert.deepEqual(sub.history.positionOf(ch), {offset: 3, epoch});

    // Node A dies (its /meta/connect is held there); the balancer does not know yet: the
    // client is cut off while B's client publishes 4..8.
    await sleep(300);
    const cutAt = Date.now();
    await nodeA.kill("SIGKILL");
    await publishRange(pubB, ch, 4, 8);
    assert.equal(sub.inbox.length, 3, "nothing reaches a client of a dead node");

    // The balancer fails over to B. B's client keeps publishing, every 100 ms while the client
    // finds its way to B, then back to back (a millisecond apart) from the client's re-handshake
    // on (its listener sends the resuming subscribe at that moment, so publishes are on their
    // way while node B starts receiving the channel and reads the stream) until 20 went by after
    // the subscribe reply.
    // It stops anyway before the first missed message (4) leaves the retained window.
    let count = 8;
    let pause = 100;
    let wake = () => {};
    let stop = false;
    const cap = 3 + RETAINED - 5;
    const publishing = (async () => {
        while (!stop && count < cap) {
            await publishOk(pubB, ch, {n: count + 1});
            count += 1;
            await new Promise((resolve) => {
                wake = resolve;
                setTimeout(resolve, pause);
            });
        }
    })();
    let rehandshakeAt;
    const rehandshaken = sub.client.addListener("/meta/handshake", (m) => {
        if (m.successful) {
            rehandshakeAt = count;
            pause = 1;
            wake();
        }
    });
    balancer.switchTo(URL_B);
    let reply;
    let repliedAt;
    try {
        reply = await failedOver(t, sub, firstId, balancer, cutAt);
        repliedAt = count;
        await waitUntil(() => count >= Math.min(repliedAt + 20, cap), SETTLE_TIMEOUT, "the publisher's progress");
    } finally {
        stop = true;
        await publishing;
        sub.client.removeListener(rehandshaken);
    }
    const total = count;
    await sub.inbox.waitForCount(total, SETTLE_TIMEOUT, `(all ${total}) after the failover; traffic: ${trace(sub, ch)}`);
    await sleep(300);

    const resumed = subscribesSent(sub.client, ch);
    assert.equal(resumed.length, 2, `one subscribe per session: ${JSON.stringify(resumed)}`);
    assert.deepEqual(resumed[1].ext?.history, {since: 3, epoch}, "the extension resumes after the last message the client had");
    t.diagnostic(`resumed after 3 on node B: replayed up to ${reply.ext?.history?.offset}; the publisher was at `
        + `${rehandshakeAt} at the re-handshake reply, ${repliedAt} at the subscribe reply, stopped at ${total}`);
    const recovery = reply.ext?.history;
    assert.ok(recovery && recovery.recovered === true && recovery.epoch === epoch && recovery.offset >= 8 && recovery.offset <= total,
        `node B must recover the shared history (epoch ${epoch}, offset 8..${total}): ${JSON.stringify(reply)}`);
    assert.deepEqual(sub.recoveries, [{channel: ch, recovered: true, epoch, offset: recovery.offset, since: 3}]);

    const wire = deliveredOn(sub.client, ch);
    assert.deepEqual(offsetsOf(wire), range(1, total), `offsets on the wire, each once, in order; traffic: ${trace(sub, ch)}`);
    assert.ok(wire.every((m) => m.ext.history.epoch === epoch), "every message in the one shared epoch");
    assert.deepEqual(numbersOf(sub.inbox.messages), range(1, total), "what the application got");
    assert.equal(sub.history.duplicates, 0, "no second copy to drop");
    assert.deepEqual(sub.history.positionOf(ch), {offset: total, epoch});
});

test("messages published on a node just before it is killed, while the client is cut off, are replayed by the other node", async (t) => {
    const nodeA = await startNode();
    cleanups.push(() => nodeA.kill());
    const balancer = await startBalancer(nodeA.url);
    cleanups.push(() => balancer.close());
    const ch = channel("history/dying-");

    // One publisher on each node, connected directly.
    const pubA = createClient({url: nodeA.url, name: "publisher-on-A"});
    await connectClient(pubA);
    const pubB = createClient({url: URL_B, name: "publisher-on-B"});
    await connectClient(pubB);

    const sub = historyClient(balancer.url, ch, "history-behind-balancer");
    await connectClient(sub.client);
    const firstId = sub.client.getClientId();
    const epoch = (await subscribedWith(sub, firstId)).ext?.history?.epoch;
    assert.equal(typeof epoch, "string");

    await publishRange(pubA, ch, 1, 2);
    await publishRange(pubB, ch, 3, 3);
    await sub.inbox.waitForCount(3, SETTLE_TIMEOUT, "before the failure");
    assert.deepEqual(numbersOf(sub.inbox.messages), [1, 2, 3]);

    // The client is cut off (its connections through the balancer fail, and the balancer has
    // no backend), then A's client publishes 4..6 on node A, which is killed as soon as the
    // last publish reply is in: those three messages were published (they have their offsets)
    // but never reached the client.
    await sleep(300);
    const cutAt = Date.now();
    balancer.switchTo(null);
    balancer.severAll();
    const onA = await publishRange(pubA, ch, 4, 6);
    assert.deepEqual(onA, range(4, 6).map((offset) => ({offset, epoch})), "node A's publish replies' positions");
    await nodeA.kill("SIGKILL");
    pubA.disconnect();
    // More while the client is still cut off, on B.
    await publishRange(pubB, ch, 7, 8);
    assert.equal(sub.inbox.length, 3, "nothing reached the client while it was cut off");

    balancer.switchTo(URL_B);
    const reply = await failedOver(t, sub, firstId, balancer, cutAt);
    assert.deepEqual(subscribesSent(sub.client, ch)[1]?.ext?.history, {since: 3, epoch});
    assert.deepEqual(reply.ext?.history, {recovered: true, epoch, offset: 8},
        `node B must replay 4..8, three of them published on the dead node: ${JSON.stringify(reply)}; traffic: ${trace(sub, ch)}`);
    await sub.inbox.waitForCount(8, SETTLE_TIMEOUT, `the replay; traffic: ${trace(sub, ch)}`);
    await publishRange(pubB, ch, 9, 10);
    await sub.inbox.waitForCount(10, SETTLE_TIMEOUT, `live after the replay; traffic: ${trace(sub, ch)}`);
    await sleep(300);

    assert.deepEqual(offsetsOf(deliveredOn(sub.client, ch)), range(1, 10), `offsets on the wire, each once, in order; traffic: ${trace(sub, ch)}`);
    assert.deepEqual(numbersOf(sub.inbox.messages), range(1, 10), "what the application got");
    assert.deepEqual(sub.recoveries, [{channel: ch, recovered: true, epoch, offset: 8, since: 3}]);
    assert.equal(sub.history.duplicates, 0);
    assert.deepEqual(sub.history.positionOf(ch), {offset: 10, epoch});
});
