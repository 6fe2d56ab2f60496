// Channel history and replay with the official client: clients/js/history-extension.js on the
// CometD JavaScript client, against the conformance server, which keeps the last 100 messages of
// every channel under /history/**.
//
// The guarantee: a client that comes back (re-handshake, or a new client carrying the first
// one's positions) and re-subscribes gets every message it missed exactly once, in order, then
// live ones, and `recovered: true`; when the messages are gone it gets `recovered: false` and
// nothing old, never a silent gap.
//
// What would break it (and what each test would then see):
// - the server adding the subscriber and taking its replay in two steps that a publish can fall
//   between: the message published in between is lost (a gap) or arrives twice (replayed and
//   live); "publishes racing with the re-subscription" sees that as a missing or repeated offset
//   on the wire;
// - the server replaying from a window that no longer reaches back to `since` (the 101st missed
//   message) and still saying `recovered: true`: "out of the retained window" sees it;
// - the client resuming a channel from a position it did not have (a stale or shared storage, a
//   `since` on a wildcard, a position taken from a publish reply, whose message the client never
//   received): the extension never sends `since` for a wildcard, ignores publish replies, and
//   keeps positions per channel and per epoch ("the extension alone" checks it offline);
// - an application that does not subscribe again in its /meta/handshake listener: after a
//   re-handshake it is subscribed to nothing, and nothing can be resumed.
// Beyond the guarantee by design: positions live in one node's memory (a restart or another
// node without shared history gives another epoch, hence `recovered: false`), and a client that
// only subscribes through a wildcard cannot resume (resume each channel on its own).
//
// Every check of "exactly once" reads the wire (`client.received`, recorded before the history
// extension sees a message) as well as what the application got, so the extension's duplicate
// filter cannot hide a duplicate the server sent; `duplicates` must stay 0. One exception, by
// the protocol: a client that unsubscribes and subscribes again on the same session while
// messages are on their way to it gets those both ways (delivered, then replayed, since the
// server cannot know the client did not have them); the extension drops the second copies, and
// the test checks that each such duplicate is one the extension dropped.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {HistoryExtension} from "../../clients/js/history-extension.js";
import {
    Inbox, OP_TIMEOUT, channel, closeAllClients, connectClient, createClient, deliveredOn, disconnect, publishOk,
    sleep, subscribe, waitUntil, withTimeout,
} from "./helpers.mjs";

/** Clients of this file, disconnected after each test (helpers' `disconnect` stops tracking them). */
const mine = new Set();

afterEach(async () => {
    await Promise.all([...mine].map((client) => disconnect(client).catch(() => {})));
    mine.clear();
    await closeAllClients();
});

/** A Storage (the subset the extension uses) in memory, as `window.sessionStorage` would be. */
class MemoryStorage {
    #items = new Map();

    getItem(key) {
        return this.#items.has(key) ? this.#items.get(key) : null;
    }

    setItem(key, value) {
        this.#items.set(key, String(value));
    }

    removeItem(key) {
        this.#items.delete(key);
    }
}

/**
 * A client with the history extension that subscribes to `channelName` the way an application
 * does: in a /meta/handshake listener, so every (re-)handshake subscribes again, and the
 * extension adds where to resume from. `inbox` gets what the application receives, `replies`
 * every subscribe reply, `recoveries` every onRecovery call.
 */
function historyClient(channelName, options = {}) {
    const client = createClient();
    mine.add(client);
    const recoveries = [];
    // What went by on the wire, both ways, in order (for failure messages).
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
    const history = new HistoryExtension({...options, onRecovery: (ch, recovery) => recoveries.push({channel: ch, ...recovery})});
    client.registerExtension("history", history);
    const inbox = new Inbox();
    const replies = [];
    const member = {client, history, inbox, replies, recoveries, timeline, subscription: null};
    member.subscribe = () => {
        member.subscription = client.subscribe(channelName, inbox.push, (subscribeReply) => replies.push(subscribeReply));
    };
    client.addListener("/meta/handshake", (reply) => {
        if (reply.successful) {
            member.subscribe();
        }
    });
    return member;
}

/** Handshakes (again) and waits for the `n`-th subscribe reply, which must be successful. */
async function connectAndSubscribe(member, n) {
    await connectClient(member.client);
    await waitUntil(() => member.replies.length >= n, OP_TIMEOUT, () => `subscribe reply #${n}`);
    const reply = member.replies[n - 1];
    assert.equal(reply.successful, true, `subscribe failed: ${JSON.stringify(reply)}`);
    return reply;
}

async function publisher() {
    const client = createClient();
    mine.add(client);
    await connectClient(client);
    return client;
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

/** Publishes `{n}` for each n in [from, to] in one batch (one request). */
async function publishBatch(client, channelName, from, to) {
    const replies = [];
    const done = new Promise((resolve) => {
        client.batch(() => {
            for (let n = from; n <= to; ++n) {
                client.publish(channelName, {n}, (reply) => {
                    replies.push(reply);
                    if (replies.length === to - from + 1) {
                        resolve();
                    }
                });
            }
        });
    });
    await withTimeout(done, 10_000, () => `${to - from + 1} publish replies, got ${replies.length}`);
    assert.ok(replies.every((r) => r.successful), `publishes failed: ${JSON.stringify(replies.filter((r) => !r.successful))}`);
}

/**
 * `member`'s traffic on `channelName`, compact: offsets of the messages received, `>sub{…}` and
 * `>unsub` sent, `<sub{…}` and `<unsub` replies.
 */
function trace(member, channelName) {
    return member.timeline.filter((m) => m.channel === channelName || m.subscription === channelName).map((m) => {
        if (m.channel === channelName) {
            return m.data === undefined ? `(publish reply ${m.ext?.history?.offset})` : String(m.ext?.history?.offset);
        }
        const history = m.ext?.history ? JSON.stringify(m.ext.history) : "";
        return `${m.in ? "<" : ">"}${m.channel.slice("/meta/".length)}${history}`;
    }).join(" ");
}

const range = (from, to) => Array.from({length: to - from + 1}, (_, i) => from + i);
const offsetsOf = (messages) => messages.map((m) => m.ext?.history?.offset);
const numbersOf = (messages) => messages.map((m) => m.data?.n);

/** The /meta/subscribe messages `client` sent for `channelName`. */
function subscribesSent(client, channelName) {
    return client.sent.filter((m) => m.channel === "/meta/subscribe" && m.subscription === channelName);
}

/** Waits a little, then checks that nothing more came than what the test waited for. */
async function settle() {
    await sleep(300);
}

test("messages carry offsets; after a re-handshake the client gets exactly what it missed, then live ones",
    async () => {
        const ch = channel("history/");
        const pub = await publisher();
        const sub = historyClient(ch);

        const first = await connectAndSubscribe(sub, 1);
        const start = first.ext?.history;
        assert.ok(start && typeof start.epoch === "string" && start.offset === 0,
            `a new history channel's subscribe reply gives its start: ${JSON.stringify(first)}`);
        assert.equal(start.recovered, undefined);
        assert.equal(subscribesSent(sub.client, ch)[0].ext?.history, undefined, "nothing to resume the first time");
        assert.deepEqual(sub.history.positionOf(ch), {offset: 0, epoch: start.epoch});
        const epoch = start.epoch;

        const published = await publishRange(pub, ch, 1, 3);
        assert.deepEqual(published, range(1, 3).map((offset) => ({offset, epoch})), "publish replies' positions");
        await sub.inbox.waitForCount(3);
        assert.deepEqual(numbersOf(sub.inbox.messages), [1, 2, 3]);
        assert.deepEqual(sub.inbox.messages.map((m) => m.ext.history), published);
        assert.deepEqual(sub.history.positionOf(ch), {offset: 3, epoch});

        // Away: the session is gone, messages go by.
        await disconnect(sub.client);
        await publishRange(pub, ch, 4, 8);

        // Back: a new session; the handshake listener subscribes again, the extension resumes.
        const again = await connectAndSubscribe(sub, 2);
        assert.deepEqual(subscribesSent(sub.client, ch)[1].ext?.history, {since: 3, epoch});
        assert.deepEqual(again.ext?.history, {recovered: true, epoch, offset: 8});
        await sub.inbox.waitForCount(8, OP_TIMEOUT, "after the replay");
        await publishRange(pub, ch, 9, 10);
        await sub.inbox.waitForCount(10, OP_TIMEOUT, "live after the replay");
        await settle();

        assert.deepEqual(numbersOf(sub.inbox.messages), range(1, 10), "the application got each once, in order");
        assert.deepEqual(offsetsOf(deliveredOn(sub.client, ch)), range(1, 10), "the wire carried each once, in order");
        assert.deepEqual(sub.recoveries, [{channel: ch, recovered: true, epoch, offset: 8, since: 3}]);
        assert.deepEqual(sub.history.positionOf(ch), {offset: 10, epoch});
        assert.equal(sub.history.duplicates, 0);
    });

test("a new client carrying the first one's positions (through its storage) resumes where it left", async () => {
    const ch = channel("history/");
    const pub = await publisher();
    const storage = new MemoryStorage();
    const first = historyClient(ch, {storage});
    const epoch = (await connectAndSubscribe(first, 1)).ext.history.epoch;
    await publishRange(pub, ch, 1, 3);
    await first.inbox.waitForCount(3);
    await disconnect(first.client);
    assert.deepEqual(JSON.parse(storage.getItem("org.cometd.history")), {[ch]: {offset: 3, epoch}},
        "the storage holds the position");

    await publishRange(pub, ch, 4, 6);

    // As a reloaded page would: a new client, a new extension on the same storage.
    const second = historyClient(ch, {storage});
    assert.deepEqual(second.history.positionOf(ch), {offset: 3, epoch});
    const reply = await connectAndSubscribe(second, 1);
    assert.deepEqual(subscribesSent(second.client, ch)[0].ext?.history, {since: 3, epoch});
    assert.deepEqual(reply.ext?.history, {recovered: true, epoch, offset: 6});
    await second.inbox.waitForCount(3);
    await publishRange(pub, ch, 7, 7);
    await second.inbox.waitForCount(4);
    await settle();

    assert.deepEqual(numbersOf(second.inbox.messages), [4, 5, 6, 7]);
    assert.deepEqual(offsetsOf(deliveredOn(second.client, ch)), [4, 5, 6, 7]);
    assert.deepEqual(second.recoveries, [{channel: ch, recovered: true, epoch, offset: 6, since: 3}]);
    assert.deepEqual(JSON.parse(storage.getItem("org.cometd.history")), {[ch]: {offset: 7, epoch}});
    assert.equal(second.history.duplicates, 0);
});

test("publishes racing with the re-subscription: every offset arrives once, in order, with no gap", async (t) => {
    for (let round = 1; round <= 3; ++round) {
        const ch = channel("history/");
        const pub = await publisher();
        const sub = historyClient(ch);
        await connectAndSubscribe(sub, 1);

        // One publisher publishes back to back (a millisecond apart) while the subscriber leaves
        // after message `leaveAt` and comes back while messages keep coming, until 20 more
        // went by after the subscribe reply.
        let count = 0;
        let stop = false;
        const publishing = (async () => {
            while (!stop) {
                await publishOk(pub, ch, {n: count + 1});
                count += 1;
                await sleep(1);
            }
        })();
        const leaveAt = 5 + 5 * round;
        await sub.inbox.waitForCount(leaveAt, 10_000);
        await disconnect(sub.client);
        await waitUntil(() => count >= leaveAt + 15, 10_000, "the publisher's progress");
        const rejoinedAt = count;
        const reply = await connectAndSubscribe(sub, 2);
        const repliedAt = count;
        await waitUntil(() => count >= repliedAt + 20, 10_000, "the publisher's progress");
        stop = true;
        await publishing;
        const total = count;
        await sub.inbox.waitForCount(total, 10_000, `round ${round}`);
        await settle();

        const resumedAfter = subscribesSent(sub.client, ch)[1].ext?.history?.since;
        t.diagnostic(`round ${round}: resumed after ${resumedAfter}, replayed up to ${reply.ext?.history?.offset}; `
            + `the publisher was at ${rejoinedAt} when the client came back, at ${repliedAt} at the reply, `
            + `stopped at ${total}`);
        const wire = offsetsOf(deliveredOn(sub.client, ch));
        assert.deepEqual(wire, range(1, total),
            `round ${round}: left after ${leaveAt}, resumed after ${resumedAfter} (reply `
            + `${JSON.stringify(reply.ext?.history)}): offsets on the wire; traffic: ${trace(sub, ch)}`);
        assert.deepEqual(numbersOf(sub.inbox.messages), range(1, total), `round ${round}: what the application got`);
        assert.equal(reply.ext.history.recovered, true);
        assert.equal(sub.history.duplicates, 0);
        await disconnect(sub.client);
        await disconnect(pub);
    }
});

test("an explicit re-subscribe (unsubscribe, subscribe) resumes: each message once for the application", async (t) => {
    const ch = channel("history/");
    const pub = await publisher();
    const sub = historyClient(ch);
    const epoch = (await connectAndSubscribe(sub, 1)).ext.history.epoch;

    // Quietly first: away and back on the same session.
    await publishRange(pub, ch, 1, 3);
    await sub.inbox.waitForCount(3);
    const unsubscribed = new Promise((resolve) => sub.client.unsubscribe(sub.subscription, resolve));
    assert.equal((await withTimeout(unsubscribed, OP_TIMEOUT, "the unsubscribe reply")).successful, true);
    await publishRange(pub, ch, 4, 6);
    sub.subscribe();
    await waitUntil(() => sub.replies.length >= 2, OP_TIMEOUT, "the subscribe reply");
    assert.deepEqual(subscribesSent(sub.client, ch)[1].ext?.history, {since: 3, epoch});
    assert.deepEqual(sub.replies[1].ext?.history, {recovered: true, epoch, offset: 6});
    await sub.inbox.waitForCount(6);
    await settle();
    assert.deepEqual(numbersOf(sub.inbox.messages), range(1, 6));
    assert.deepEqual(offsetsOf(deliveredOn(sub.client, ch)), range(1, 6));
    assert.equal(sub.history.duplicates, 0);

    // While messages flow: those already on their way to the old subscription arrive and are
    // replayed too (the server cannot know the client has not seen them); the extension drops
    // the second copies, so the application still gets each once, in order.
    let count = 6;
    let stop = false;
    const publishing = (async () => {
        while (!stop) {
            await publishOk(pub, ch, {n: count + 1});
            count += 1;
            await sleep(1);
        }
    })();
    for (let i = 0; i < 5; ++i) {
        await sub.inbox.waitForCount(count, 10_000);
        sub.client.batch(() => {
            sub.client.unsubscribe(sub.subscription);
            sub.subscribe();
        });
        await waitUntil(() => sub.replies.length >= 3 + i, OP_TIMEOUT, "the subscribe reply");
        assert.equal(sub.replies[2 + i].ext?.history?.recovered, true, JSON.stringify(sub.replies[2 + i]));
    }
    const at = count;
    await waitUntil(() => count >= at + 10, 10_000, "the publisher's progress");
    stop = true;
    await publishing;
    await sub.inbox.waitForCount(count, 10_000);
    await settle();
    assert.deepEqual(numbersOf(sub.inbox.messages), range(1, count), "what the application got");
    const wire = offsetsOf(deliveredOn(sub.client, ch));
    assert.deepEqual([...new Set(wire)].sort((a, b) => a - b), range(1, count), "every offset on the wire");
    assert.equal(wire.length - count, sub.history.duplicates, "every second copy was dropped");
    t.diagnostic(`${count} messages, ${sub.history.duplicates} delivered twice (in flight during a re-subscribe)`);
    if (process.env.HISTORY_TRACE) {
        t.diagnostic(trace(sub, ch));
    }
});

test("out of the retained window (101 missed): recovered false, nothing old, then live", async () => {
    const ch = channel("history/");
    const pub = await publisher();
    const sub = historyClient(ch);
    const epoch = (await connectAndSubscribe(sub, 1)).ext.history.epoch;
    await publishRange(pub, ch, 1, 2);
    await sub.inbox.waitForCount(2);
    await disconnect(sub.client);

    // 101 messages while away: the conformance server keeps the last 100 (4..103), so message 3,
    // the first missed, is gone.
    await publishBatch(pub, ch, 3, 103);

    const reply = await connectAndSubscribe(sub, 2);
    assert.deepEqual(subscribesSent(sub.client, ch)[1].ext?.history, {since: 2, epoch});
    assert.deepEqual(reply.ext?.history, {recovered: false, epoch, offset: 103});
    assert.deepEqual(sub.recoveries, [{channel: ch, recovered: false, epoch, offset: 103, since: 2}]);
    assert.deepEqual(sub.history.positionOf(ch), {offset: 103, epoch}, "live messages continue after 103");
    await publishRange(pub, ch, 104, 104);
    await sub.inbox.waitForCount(3);
    await settle();
    assert.deepEqual(numbersOf(sub.inbox.messages), [1, 2, 104], "nothing old after recovered: false");
    assert.deepEqual(offsetsOf(deliveredOn(sub.client, ch)), [1, 2, 104]);

    // The edge of the window: 100 missed are all there.
    await disconnect(sub.client);
    await publishBatch(pub, ch, 105, 204);
    const edge = await connectAndSubscribe(sub, 3);
    assert.deepEqual(edge.ext?.history, {recovered: true, epoch, offset: 204});
    await sub.inbox.waitForCount(103);
    await settle();
    assert.deepEqual(numbersOf(sub.inbox.messages), [1, 2, ...range(104, 204)]);
    assert.deepEqual(offsetsOf(deliveredOn(sub.client, ch)), [1, 2, ...range(104, 204)]);
    assert.equal(sub.history.duplicates, 0);
});

test("another epoch (a seeded position the server does not know): recovered false, nothing old", async () => {
    const ch = channel("history/");
    const pub = await publisher();
    const published = await publishRange(pub, ch, 1, 3);
    const epoch = published[0].epoch;

    const sub = historyClient(ch);
    sub.history.setPosition(ch, {offset: 1, epoch: "not-this-one"});
    // A channel without history ignores `since`: a position for it is harmless.
    const plain = channel("plain/");
    sub.history.setPosition(plain, {offset: 7, epoch});
    const reply = await connectAndSubscribe(sub, 1);
    assert.deepEqual(subscribesSent(sub.client, ch)[0].ext?.history, {since: 1, epoch: "not-this-one"});
    assert.deepEqual(reply.ext?.history, {recovered: false, epoch, offset: 3});
    assert.deepEqual(sub.history.positionOf(ch), {offset: 3, epoch});

    const plainInbox = new Inbox();
    const {reply: plainReply} = await subscribe(sub.client, plain, plainInbox.push);
    assert.equal(plainReply.successful, true, JSON.stringify(plainReply));
    assert.deepEqual(subscribesSent(sub.client, plain)[0].ext?.history, {since: 7, epoch});
    assert.equal(plainReply.ext?.history, undefined, "a channel without history has no position");

    await publishRange(pub, ch, 4, 4);
    await publishOk(pub, plain, {n: 1});
    await sub.inbox.waitForCount(1);
    await plainInbox.waitForCount(1);
    await settle();
    assert.deepEqual(numbersOf(sub.inbox.messages), [4]);
    assert.deepEqual(offsetsOf(deliveredOn(sub.client, ch)), [4]);
    assert.deepEqual(sub.recoveries, [{channel: ch, recovered: false, epoch, offset: 3, since: 1}]);
});

test("wildcard subscriptions never carry since; each channel's position is recorded", async () => {
    const base = channel("history/");
    const wild = `${base}/*`;
    const pub = await publisher();
    const sub = historyClient(wild);
    const first = await connectAndSubscribe(sub, 1);
    assert.equal(first.ext?.history, undefined, "a wildcard subscription has no position");
    await publishRange(pub, `${base}/a`, 1, 2);
    await publishRange(pub, `${base}/b`, 1, 1);
    await sub.inbox.waitForCount(3);
    const epochA = sub.inbox.messages[0].ext.history.epoch;
    assert.deepEqual(sub.history.positionOf(`${base}/a`), {offset: 2, epoch: epochA});
    assert.equal(sub.history.positionOf(`${base}/b`).offset, 1);
    assert.equal(sub.history.positionOf(wild), undefined);
    assert.throws(() => sub.history.setPosition(wild, {offset: 1, epoch: epochA}), /one channel/);

    await disconnect(sub.client);
    await connectAndSubscribe(sub, 2);
    const sent = subscribesSent(sub.client, wild);
    assert.equal(sent.length, 2);
    assert.ok(sent.every((m) => m.ext?.history === undefined), `no since for a wildcard: ${JSON.stringify(sent)}`);

    // A `since` the application sets itself is left alone (and the server refuses it there).
    const refused = await withTimeout(new Promise((resolve) => {
        sub.client.subscribe(`${base}/z/*`, () => {}, {ext: {history: {since: 0}}}, resolve);
    }), OP_TIMEOUT, "the subscribe reply");
    assert.equal(refused.successful, false);
    assert.equal(refused.error, "400::history_since_wildcard");
    assert.deepEqual(subscribesSent(sub.client, `${base}/z/*`)[0].ext.history, {since: 0});
});

test("the extension alone: duplicates dropped and counted, publish replies and bad input ignored", () => {
    const storage = new MemoryStorage();
    storage.setItem("org.cometd.history", JSON.stringify({
        "/a": {offset: 2, epoch: "e"},
        "/b/*": {offset: 1, epoch: "e"},
        "/c": {offset: -1, epoch: "e"},
        "/d": {offset: 1},
    }));
    const history = new HistoryExtension({storage});
    assert.deepEqual(history.positions(), {"/a": {offset: 2, epoch: "e"}}, "invalid saved positions are skipped");

    const delivered = (offset, epoch = "e") => ({channel: "/a", data: {offset}, ext: {history: {offset, epoch}}});
    assert.equal(history.incoming(delivered(2)), null, "at the known position: a duplicate");
    assert.equal(history.duplicates, 1);
    assert.ok(history.incoming(delivered(3)));
    assert.deepEqual(history.positionOf("/a"), {offset: 3, epoch: "e"});
    assert.ok(history.incoming(delivered(1, "f")), "another epoch starts over");
    assert.deepEqual(history.positionOf("/a"), {offset: 1, epoch: "f"});

    // A publish reply has the message's position, but the client does not have the message.
    history.incoming({channel: "/a", successful: true, id: "9", ext: {history: {offset: 5, epoch: "f"}}});
    assert.deepEqual(history.positionOf("/a"), {offset: 1, epoch: "f"});

    const keep = new HistoryExtension({dropDuplicates: false});
    keep.setPosition("/a", {offset: 4, epoch: "e"});
    assert.ok(keep.incoming(delivered(4)));
    assert.equal(keep.duplicates, 0);

    const subscribeMessage = {id: "1", channel: "/meta/subscribe", subscription: "/a"};
    assert.deepEqual(history.outgoing(subscribeMessage).ext, {history: {since: 1, epoch: "f"}});
    assert.equal(history.outgoing({id: "2", channel: "/meta/subscribe", subscription: ["/a"]}).ext, undefined);
    history.forget("/a");
    assert.equal(history.outgoing({id: "3", channel: "/meta/subscribe", subscription: "/a"}).ext, undefined);
    assert.deepEqual(JSON.parse(storage.getItem("org.cometd.history")), {});
    assert.throws(() => history.setPosition("/a", {offset: 1.5, epoch: "e"}), /not a position/);
});
