// Scenario a: one chat room across two nodes. Official clients on node A and on node B all
// subscribe to the room and all publish numbered messages to it (bursts, paced groups,
// batches, as in ../ordering.test.mjs), and every client must get every publisher's messages
// exactly once and in that publisher's order: its own, its node's, and the other node's.
//
// What would break it:
// - a node receiving several Redis copies of one broadcast: a node whose clients subscribe to
//   the room itself, to `/room…/*` and to `/room…/**` has interest in three Redis channels, and
//   the publishing node publishes each broadcast on all three; a node that does not keep only
//   the first copy delivers it up to three times (the clients here subscribe in all three
//   ways, so each node has all three interests);
// - a node fanning out what it receives from Redis out of order, or out of order with what its
//   own clients publish (a publisher's messages must keep their order at every node);
// - a subscription confirmed before the other node can reach it: the subscribe replies on
//   both nodes are all in before anyone publishes, and from then on nothing may be lost (the
//   broker confirms a subscription once it holds at Redis);
// - over long-polling, remote broadcasts put on a reply other than /meta/connect's (the
//   client would process two replies in the order they complete): checked on the wire.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    closeAllClients, connectClient, createClient, httpLog, sleep, subscribeOk, token, waitUntil,
} from "../helpers.mjs";
import {SETTLE_TIMEOUT, URL_A, URL_B} from "./cluster.mjs";

afterEach(closeAllClients);

/** Clients: publishers and subscribers at once, alternately on node A and node B. */
const N = 12;
/** Messages each client publishes. */
const M = 100;
/** How a client publishes: the modes go by pairs of clients, so each node has all of them. */
const MODES = ["burst", "paced", "batched"];
const modeOf = (i) => MODES[(i >> 1) % MODES.length];
const nodeOf = (i) => (i % 2 === 0 ? "A" : "B");

/** Publishes `{from, seq}` for seq = 0..M-1 from `client` in `mode`; resolves once all replied. */
async function publishAll(client, from, ch, mode) {
    const replies = [];
    const send = (seq) => client.publish(ch, {from, seq, pad: "x".repeat((from * 7 + seq) % 40)}, (r) => replies.push(r));
    if (mode === "burst") {
        // Everything at once, never waiting for a reply.
        for (let seq = 0; seq < M; ++seq) {
            send(seq);
        }
    } else if (mode === "paced") {
        // Groups of 5, the next one after the previous one's replies and a little think time.
        for (let seq = 0; seq < M; seq += 5) {
            const upTo = Math.min(M, seq + 5);
            for (let k = seq; k < upTo; ++k) {
                send(k);
            }
            await waitUntil(() => replies.length >= upTo, 20000, () => `${upTo} publish replies from client ${from}, got ${replies.length}`);
            await sleep((from + seq) % 3);
        }
    } else {
        // Batches of 10 publishes, each batch one request (one websocket message).
        for (let seq = 0; seq < M; seq += 10) {
            client.batch(() => {
                for (let k = seq; k < Math.min(M, seq + 10); ++k) {
                    send(k);
                }
            });
        }
    }
    await waitUntil(() => replies.length === M, 30000, () => `${M} publish replies from client ${from}, got ${replies.length}`);
    const failed = replies.filter((r) => !r.successful);
    assert.equal(failed.length, 0, `client ${from}: failed publishes: ${JSON.stringify(failed.slice(0, 3))}`);
}

test(`chat room over two nodes: ${N} clients (half on each node, subscribed to the room, to /room/* or to /room/**) each publish ${M} messages; every client gets every message once, in per-publisher order`, async () => {
    const room = `/room${token(8)}`;
    const ch = `${room}/chat`;
    // Each node gets clients of every kind of subscription: i % 3 while the nodes go by i % 2.
    const SUBSCRIPTIONS = [ch, `${room}/*`, `${room}/**`];
    const subscriptionOf = (i) => SUBSCRIPTIONS[i % SUBSCRIPTIONS.length];
    const describe = (i) => `client ${i} (node ${nodeOf(i)}, ${subscriptionOf(i)}, ${modeOf(i)})`;

    const clients = [];
    const received = []; // received[i]: [from, seq] pairs in the order client i's callback fired
    const wrongChannel = [];
    // One by one: the first handshake sets the browser cookie, which every later one (on
    // either node: one host, one cookie jar) carries and keeps.
    for (let i = 0; i < N; ++i) {
        const client = createClient({url: nodeOf(i) === "A" ? URL_A : URL_B, name: `room-${i}-${nodeOf(i)}`});
        await connectClient(client);
        clients.push(client);
        received.push([]);
    }
    const httpLogStart = httpLog.length;
    const clientIds = new Set(clients.map((c) => c.getClientId()));

    // Every subscription confirmed, on both nodes, before anybody publishes.
    await Promise.all(clients.map((client, i) => subscribeOk(client, subscriptionOf(i), (message) => {
        if (message.channel !== ch) {
            wrongChannel.push({to: i, message});
        }
        received[i].push([message.data.from, message.data.seq]);
    })));

    // Everybody talks at once.
    const started = Date.now();
    await Promise.all(clients.map((client, i) => publishAll(client, i, ch, modeOf(i))));

    const total = N * M;
    await waitUntil(() => received.every((r) => r.length >= total), SETTLE_TIMEOUT,
        () => `every client to receive ${total} messages, got ${received.map((r, i) => `${i}${nodeOf(i)}:${r.length}`).join(", ")}`);
    const elapsed = Date.now() - started;
    // Give duplicates a chance to show up.
    await sleep(500);

    assert.deepEqual(wrongChannel, [], "deliveries must carry the channel they were published to");
    for (let i = 0; i < N; ++i) {
        const got = received[i];
        for (let from = 0; from < N; ++from) {
            const seqs = got.filter(([f]) => f === from).map(([, seq]) => seq);
            const firstBad = seqs.findIndex((seq, k) => seq !== k);
            assert.equal(firstBad, -1,
                `${describe(i)}: the messages of ${describe(from)} arrived lost, duplicated or out of order ` +
                `from position ${firstBad}: ...${JSON.stringify(seqs.slice(Math.max(0, firstBad - 3), firstBad + 4))}...`);
            assert.equal(seqs.length, M, `${describe(i)}: ${seqs.length} messages of ${describe(from)}, expected ${M}`);
        }
        assert.equal(got.length, total, `${describe(i)}: ${got.length} messages, expected ${total}`);
    }
    // Nothing arrived twice on the wire either (a client-side duplicate filter would hide it).
    for (let i = 0; i < N; ++i) {
        const onWire = clients[i].received.filter((m) => m.channel === ch && m.data !== undefined);
        assert.equal(onWire.length, total, `${describe(i)}: ${onWire.length} deliveries on the wire, expected ${total}`);
    }

    // Over long-polling a session's deliveries, those from the other node included, come only
    // in /meta/connect replies, never in the reply to a request without /meta/connect.
    if (clients[0].getTransport().type === "long-polling") {
        const ours = httpLog.slice(httpLogStart).filter((e) => Array.isArray(e.messages) &&
            e.messages.some((m) => clientIds.has(m.clientId)));
        assert.ok(ours.length > 0, "no long-polling exchanges of the room's clients were recorded");
        const offending = ours.filter((e) => {
            if (e.messages.some((m) => m.channel === "/meta/connect")) {
                return false;
            }
            let replies;
            try {
                replies = JSON.parse(e.body);
            } catch {
                return false;
            }
            return Array.isArray(replies) && replies.some((m) => m.data !== undefined && m.successful === undefined);
        });
        assert.equal(offending.length, 0,
            `${offending.length} replies to requests without /meta/connect carried deliveries, e.g. request ` +
            `${JSON.stringify(offending[0]?.messages)} got ${offending[0]?.body?.slice(0, 600)}`);
    }
    console.log(`# ${N * total} deliveries (${N} clients x ${total}) in ${elapsed} ms`);
});
