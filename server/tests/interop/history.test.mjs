// Channel history of the `tower-bayeux` binary (started with `--history /history/**=100`) with
// the official CometD JavaScript client and the project's history extension
// (`clients/js/history-extension.js`): messages published through POST /api/publish are kept,
// and a subscribe that resumes from a position gets the ones after it replayed, once each, in
// order, with `recovered: true`, then live ones. As in the library's history suite, every check
// reads the wire (`client.received`, recorded before the extension sees a message) as well as
// what the application got, and the extension's duplicate count must stay 0.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {HistoryExtension} from "../../../clients/js/history-extension.js";
import {
    Inbox, OP_TIMEOUT, apiPublishOk, assertTransport, channel, closeAllClients, connectClient, createClient,
    deliveredOn, disconnect, sleep, waitUntil,
} from "./client.mjs";

/** Clients of this file, disconnected after each test (helpers' `disconnect` stops tracking them). */
const mine = new Set();

afterEach(async () => {
    await Promise.all([...mine].map((client) => disconnect(client).catch(() => {})));
    mine.clear();
    await closeAllClients();
});

const settle = () => sleep(300);
const offsetsOf = (messages) => messages.map((m) => m.ext?.history?.offset);
const numbersOf = (messages) => messages.map((m) => m.data?.n);
const range = (from, to) => Array.from({length: to - from + 1}, (_, i) => from + i);

/**
 * A client with the history extension that subscribes to `channelName` the way an application
 * does: in a /meta/handshake listener, so every (re-)handshake subscribes again and the
 * extension adds where to resume from.
 */
function historyClient(channelName) {
    const client = createClient();
    mine.add(client);
    const recoveries = [];
    const history = new HistoryExtension({onRecovery: (ch, recovery) => recoveries.push({channel: ch, ...recovery})});
    client.registerExtension("history", history);
    const inbox = new Inbox();
    const replies = [];
    client.addListener("/meta/handshake", (reply) => {
        if (reply.successful) {
            client.subscribe(channelName, inbox.push, (subscribeReply) => replies.push(subscribeReply));
        }
    });
    return {client, history, inbox, replies, recoveries};
}

/** Handshakes (again) and waits for the `n`-th subscribe reply, which must be successful. */
async function connectAndSubscribe(member, n) {
    await connectClient(member.client);
    await waitUntil(() => member.replies.length >= n, OP_TIMEOUT, () => `subscribe reply #${n}`);
    const reply = member.replies[n - 1];
    assert.equal(reply.successful, true, `subscribe failed: ${JSON.stringify(reply)}`);
    return reply;
}

/** The /meta/subscribe messages `client` sent for `channelName`. */
function subscribesSent(client, channelName) {
    return client.sent.filter((m) => m.channel === "/meta/subscribe" && m.subscription === channelName);
}

/** Publishes `{n}` for each n in [from, to] in one POST /api/publish; resolves with the positions. */
async function apiPublishRange(channelName, from, to) {
    const published = await apiPublishOk(range(from, to).map((n) => ({channel: channelName, data: {n}})));
    for (const entry of published) {
        assert.ok(Number.isSafeInteger(entry.offset) && typeof entry.epoch === "string",
            `a channel with history gets a position: ${JSON.stringify(published)}`);
    }
    return published;
}

test("a client resuming from a position the API gave gets the later API messages replayed (recovered: true)", async () => {
    const ch = channel("history/x");
    const published = await apiPublishRange(ch, 1, 3);
    const epoch = published[0].epoch;
    assert.deepEqual(published.map((p) => p.offset), [1, 2, 3], "offsets count from 1 on a new channel");
    assert.ok(published.every((p) => p.epoch === epoch), JSON.stringify(published));

    // The application loaded the channel's state up to the first message (e.g. from its
    // backend), and resumes after it.
    const sub = historyClient(ch);
    sub.history.setPosition(ch, {offset: published[0].offset, epoch});
    const reply = await connectAndSubscribe(sub, 1);
    assert.deepEqual(subscribesSent(sub.client, ch)[0].ext?.history, {since: 1, epoch});
    assert.deepEqual(reply.ext?.history, {recovered: true, epoch, offset: 3}, JSON.stringify(reply));
    await sub.inbox.waitForCount(2);

    // Then live ones.
    const live = await apiPublishRange(ch, 4, 4);
    assert.deepEqual(live.map((p) => [p.offset, p.epoch]), [[4, epoch]]);
    await sub.inbox.waitForCount(3);
    await settle();

    assert.deepEqual(numbersOf(sub.inbox.messages), [2, 3, 4], "what the application got");
    assert.deepEqual(offsetsOf(deliveredOn(sub.client, ch)), [2, 3, 4], "once each on the wire, in order");
    assert.ok(deliveredOn(sub.client, ch).every((m) => m.ext.history.epoch === epoch));
    assert.deepEqual(sub.recoveries, [{channel: ch, recovered: true, epoch, offset: 3, since: 1}]);
    assert.deepEqual(sub.history.positionOf(ch), {offset: 4, epoch});
    assert.equal(sub.history.duplicates, 0);
    assertTransport(sub.client);
});

test("a client that was away gets what the API published meanwhile replayed, then live messages", async () => {
    const ch = channel("history/x");
    const sub = historyClient(ch);
    const first = await connectAndSubscribe(sub, 1);
    const epoch = first.ext?.history?.epoch;
    assert.equal(typeof epoch, "string", `a subscribe to a channel with history gets its position: ${JSON.stringify(first)}`);
    assert.equal(first.ext.history.offset, 0, `a new channel starts at 0: ${JSON.stringify(first)}`);
    assertTransport(sub.client);

    const [one] = await apiPublishRange(ch, 1, 1);
    assert.deepEqual([one.offset, one.epoch], [1, epoch]);
    await sub.inbox.waitForCount(1);
    await disconnect(sub.client);

    // Published while the client is away.
    await apiPublishRange(ch, 2, 4);

    const reply = await connectAndSubscribe(sub, 2);
    assert.deepEqual(subscribesSent(sub.client, ch)[1].ext?.history, {since: 1, epoch});
    assert.deepEqual(reply.ext?.history, {recovered: true, epoch, offset: 4}, JSON.stringify(reply));
    await sub.inbox.waitForCount(4);
    await apiPublishRange(ch, 5, 5);
    await sub.inbox.waitForCount(5);
    await settle();

    assert.deepEqual(numbersOf(sub.inbox.messages), range(1, 5), "what the application got");
    assert.deepEqual(offsetsOf(deliveredOn(sub.client, ch)), range(1, 5), "once each on the wire, in order");
    assert.deepEqual(sub.recoveries, [{channel: ch, recovered: true, epoch, offset: 4, since: 1}]);
    assert.deepEqual(sub.history.positionOf(ch), {offset: 5, epoch});
    assert.equal(sub.history.duplicates, 0);
    assertTransport(sub.client);
});
