// Delivery order in a chat room: every client subscribes to one channel and publishes to it
// too, as a real application does (publishes fired without waiting for their replies, or in
// small paced groups, or batched). Every client must receive every publisher's messages
// exactly once and in that publisher's order, in the order its subscription callback fires.
//
// The regression this guards against: over HTTP a client that publishes while its
// /meta/connect is held has two requests in flight; if the server put deliveries on both the
// publish reply and the held connect reply, the client would process them in the order the
// two responses complete, which can invert a publisher's messages. Over long-polling the
// server therefore sends a session's queued messages only on /meta/connect replies (checked
// directly on the wire below); over websocket everything travels on one socket, in order.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    channel, closeAllClients, connectClient, createClient, httpLog, sleep, subscribeOk, waitUntil,
} from "./helpers.mjs";

afterEach(closeAllClients);

/** Clients, publishers and subscribers at once. */
const N = 10;
/** Messages each client publishes. */
const M = 50;

/** How client `i` publishes its M messages: the modes alternate between clients. */
const MODES = ["burst", "paced", "batched"];

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
        // Groups of 5 fired together; the next group after the previous one's replies, with a
        // little think time, so publishes keep overlapping the held /meta/connect.
        for (let seq = 0; seq < M; seq += 5) {
            const upTo = Math.min(M, seq + 5);
            for (let k = seq; k < upTo; ++k) {
                send(k);
            }
            await waitUntil(() => replies.length >= upTo, 10000, () => `${upTo} publish replies from client ${from}, got ${replies.length}`);
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
    await waitUntil(() => replies.length === M, 20000, () => `${M} publish replies from client ${from}, got ${replies.length}`);
    const failed = replies.filter((r) => !r.successful);
    assert.equal(failed.length, 0, `client ${from}: failed publishes: ${JSON.stringify(failed.slice(0, 3))}`);
}

test(`chat room: ${N} clients each publish ${M} messages to the channel they all subscribe to; every client gets every message once, in per-publisher order`, async () => {
    const ch = channel("room");
    const clients = [];
    const received = []; // received[i]: [from, seq] pairs in the order client i's callback fired
    for (let i = 0; i < N; ++i) {
        const client = createClient({name: `room-${i}`});
        await connectClient(client);
        clients.push(client);
        received.push([]);
    }
    const httpLogStart = httpLog.length;
    const clientIds = new Set(clients.map((c) => c.getClientId()));
    for (let i = 0; i < N; ++i) {
        await subscribeOk(clients[i], ch, (message) => received[i].push([message.data.from, message.data.seq]));
    }

    // Everybody talks at once.
    await Promise.all(clients.map((client, i) => publishAll(client, i, ch, MODES[i % MODES.length])));

    const total = N * M;
    await waitUntil(() => received.every((r) => r.length >= total), 20000,
        () => `every client to receive ${total} messages, got ${received.map((r) => r.length).join(", ")}`);
    // Give duplicates a chance to show up.
    await sleep(300);

    for (let i = 0; i < N; ++i) {
        const got = received[i];
        assert.equal(got.length, total, `client ${i}: ${got.length} messages, expected ${total} (duplicates?)`);
        for (let from = 0; from < N; ++from) {
            const seqs = got.filter(([f]) => f === from).map(([, seq]) => seq);
            const firstBad = seqs.findIndex((seq, k) => seq !== k);
            assert.equal(firstBad, -1,
                `client ${i}: the messages of publisher ${from} (${MODES[from % MODES.length]}) arrived lost, duplicated or out of order ` +
                `from position ${firstBad}: ...${JSON.stringify(seqs.slice(Math.max(0, firstBad - 3), firstBad + 4))}...`);
            assert.equal(seqs.length, M, `client ${i}: ${seqs.length} messages of publisher ${from}, expected ${M}`);
        }
    }

    // On the wire, over long-polling: a session's deliveries come only in /meta/connect
    // replies, never in the reply to a request that carried no /meta/connect (such as a
    // publish sent while the connect is held), so two concurrent replies of one client never
    // both carry deliveries.
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
        const deliveriesOnConnect = ours.filter((e) => e.messages.some((m) => m.channel === "/meta/connect") &&
            typeof e.body === "string" && e.body.includes(`"channel":"${ch}"`));
        assert.ok(deliveriesOnConnect.length > 0, "the deliveries must have come in /meta/connect replies");
    }
});
