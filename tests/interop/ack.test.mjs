// Acknowledged delivery (client AckExtension + the server's AckExtension): a subscriber whose
// connection drops while a /meta/connect reply carrying messages is in flight still gets every
// message exactly once, in order, once it reconnects within the server's max_interval.
//
// The subscriber talks to the server through a TCP proxy (helpers' startProxy) that drops such
// replies on demand; the publisher talks to the server directly.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {AckExtension} from "cometd";
import {
    Inbox, channel, closeAllClients, connectClient, createClient, publish, sleep, startProxy, subscribeOk,
    waitUntil, withTimeout,
} from "./helpers.mjs";

const proxies = [];

afterEach(async () => {
    await closeAllClients();
    await Promise.all(proxies.splice(0).map((p) => p.close()));
});

/** The data of messages on `channelName` in a recorded unit (array of Bayeux messages). */
function seqsIn(unit, channelName) {
    if (!Array.isArray(unit.messages)) {
        return [];
    }
    return unit.messages.filter((m) => m && m.channel === channelName && m.data !== undefined).map((m) => m.data?.seq);
}

function connectIn(unit) {
    return Array.isArray(unit.messages) ? unit.messages.find((m) => m && m.channel === "/meta/connect") : undefined;
}

/** Compact ranges: [1,2,3,5] -> "1-3,5". */
function ranges(numbers) {
    const out = [];
    for (let i = 0; i < numbers.length;) {
        let j = i;
        while (j + 1 < numbers.length && numbers[j + 1] === numbers[j] + 1) {
            ++j;
        }
        out.push(i === j ? `${numbers[i]}` : `${numbers[i]}-${numbers[j]}`);
        i = j + 1;
    }
    return out.join(",");
}

/** One line per unit the proxy recorded (WebSocket control frames aside), for failure messages. */
function transcript(proxy, channelName) {
    return proxy.log.filter((u) => Array.isArray(u.messages) || u.kind !== "ws").map((u) => {
        const parts = (Array.isArray(u.messages) ? u.messages : []).filter((m) => m && m.channel !== channelName).map((m) => {
            const fields = [m.channel, `id=${m.id}`];
            if (m.successful !== undefined) {
                fields.push(`ok=${m.successful}`);
            }
            if (m.ext?.ack !== undefined) {
                fields.push(`ack=${JSON.stringify(m.ext.ack)}`);
            }
            if (m.advice) {
                fields.push(`advice=${JSON.stringify(m.advice)}`);
            }
            if (m.error) {
                fields.push(`error=${m.error}`);
            }
            return fields.join(" ");
        });
        const seqs = seqsIn(u, channelName);
        if (seqs.length) {
            parts.unshift(`data[${ranges(seqs)}]`);
        }
        if (!Array.isArray(u.messages) && u.text) {
            parts.push(JSON.stringify(u.text.slice(0, 200)));
        }
        const head = u.kind === "http-request" ? ` ${u.method} ${u.path}` : u.status ? ` ${u.status}` : "";
        return `#${u.seq} conn${u.conn} ${u.dir} ${u.kind}${head}${u.dropped ? " DROPPED" : ""}: ${parts.join(" | ")}`;
    }).join("\n");
}

test("with the ack extension, messages in a dropped /meta/connect reply are re-sent: all arrive once, in order",
    async (t) => {
        const proxy = await startProxy();
        proxies.push(proxy);
        const ch = channel("ack");
        const N = 200;

        const subscriber = createClient({url: proxy.url, name: "ack-subscriber"});
        subscriber.registerExtension("ack", new AckExtension());
        const publisher = createClient({name: "ack-publisher"});

        const handshake = await connectClient(subscriber);
        assert.equal(handshake.ext?.ack, true, `the handshake reply must enable acks: ${JSON.stringify(handshake)}`);
        await connectClient(publisher);
        const inbox = new Inbox();
        await subscribeOk(subscriber, ch, inbox.push);

        const context = () => `\nsubscriber got [${ranges(inbox.data.map((d) => d?.seq))}]\nwire (through the proxy):\n${transcript(proxy, ch)}`;

        /** Publishes seq from..to in one batch (one request/frame), in order; waits for the acks. */
        const publishBurst = async (from, to) => {
            const replies = [];
            publisher.batch(() => {
                for (let seq = from; seq <= to; ++seq) {
                    replies.push(publish(publisher, ch, {seq}));
                }
            });
            for (const reply of await Promise.all(replies)) {
                assert.equal(reply.successful, true, `publish failed: ${JSON.stringify(reply)}`);
            }
        };
        // A server→client unit that is a /meta/connect reply carrying messages of the channel.
        const carriesMessages = (unit) => unit.dir === "s2c" && connectIn(unit) !== undefined && seqsIn(unit, ch).length > 0;

        // 1. One cut: the first connect reply that carries messages of 1..50 is lost.
        const cutA = proxy.cutNext(carriesMessages, 1);
        await publishBurst(1, 50);
        await withTimeout(cutA.done, 5000, () => `a connect reply carrying messages (cut A)${context()}`);
        await inbox.waitForCount(50, 8000, `after cut A${context()}`);

        // 2. Two cuts in a row: the reply carrying 51..100 is lost, and so is the reply that
        //    re-sends it. Right after the first of them, while the subscriber is disconnected,
        //    101..150 are published: they must come after the re-sent ones.
        const cutB = proxy.cutNext(carriesMessages, 2);
        let burstDuringCut = null;
        proxy.on("cut", () => {
            if (cutB.units.length === 1 && burstDuringCut === null) {
                burstDuringCut = publishBurst(101, 150);
            }
        });
        await publishBurst(51, 100);
        await withTimeout(cutB.done, 8000, () => `two connect replies carrying messages (cut B)${context()}`);
        assert.ok(burstDuringCut, "the burst published during the cut");
        await burstDuringCut;

        // 3. No cut: two more bursts over the resumed connection.
        await inbox.waitForCount(150, 8000, `after cut B${context()}`);
        await publishBurst(151, 175);
        await publishBurst(176, 200);
        await inbox.waitForCount(N, 8000, `in total${context()}`);
        // Nothing more may arrive (no duplicates after the acknowledgements).
        await sleep(300);

        const expected = Array.from({length: N}, (_, i) => i + 1);
        const got = inbox.data.map((d) => d?.seq);
        assert.deepEqual(got, expected, `every message exactly once, in order: got [${ranges(got)}]${context()}`);
        assert.ok(inbox.messages.every((m) => m.channel === ch));

        // --- What travelled through the proxy -------------------------------------------------
        const units = proxy.log.filter((u) => u.dir === "s2c" && Array.isArray(u.messages));
        assert.ok(units.length > 0 && proxy.log.filter((u) => u.dir === "s2c").every((u) => !u.compressed),
            "the proxy must see the server's messages in clear");
        const cuts = proxy.cuts;
        assert.equal(cuts.length, 3, `cuts: ${cuts.length}${context()}`);
        assert.ok(cuts.every(carriesMessages));

        // With acks, messages travel only on /meta/connect replies.
        for (const unit of units) {
            if (seqsIn(unit, ch).length > 0) {
                assert.ok(connectIn(unit), `messages outside a /meta/connect reply: #${unit.seq}${context()}`);
            }
        }

        // Lost on the wire, then re-sent: every message of a dropped reply travelled again later.
        const sentCount = new Map();
        for (const unit of units) {
            for (const seq of seqsIn(unit, ch)) {
                sentCount.set(seq, (sentCount.get(seq) || 0) + 1);
            }
        }
        const lost = [...new Set(cuts.flatMap((u) => seqsIn(u, ch)))].sort((a, b) => a - b);
        assert.ok(lost.length > 0, "some messages must have been lost on the wire");
        for (const seq of lost) {
            const later = units.some((u) => !u.dropped && u.seq > Math.min(...cuts.filter((c) => seqsIn(c, ch).includes(seq)).map((c) => c.seq))
                && seqsIn(u, ch).includes(seq));
            assert.ok(later, `message ${seq}, lost in a dropped reply, was never sent again${context()}`);
        }
        for (const seq of expected) {
            assert.ok(sentCount.get(seq) >= 1, `message ${seq} never went through the proxy`);
        }
        const resent = [...sentCount.values()].reduce((sum, n) => sum + n - 1, 0);
        // Forwarded (not dropped) units carry each message exactly once: the client saw no duplicate.
        const forwardedCount = new Map();
        for (const unit of units.filter((u) => !u.dropped)) {
            for (const seq of seqsIn(unit, ch)) {
                forwardedCount.set(seq, (forwardedCount.get(seq) || 0) + 1);
            }
        }
        assert.ok(expected.every((seq) => forwardedCount.get(seq) === 1),
            `each message must reach the client once: ${JSON.stringify([...forwardedCount].filter(([, n]) => n !== 1))}`);

        // Batch numbers: every connect reply carries a numeric ext.ack, increasing; after a cut
        // the client's next connect acknowledges an older batch than the dropped one.
        const connectReplies = units.map((u) => ({unit: u, reply: connectIn(u)})).filter(({reply}) => reply && reply.successful === true);
        let previous = 0;
        for (const {unit, reply} of connectReplies) {
            assert.equal(typeof reply.ext?.ack, "number", `connect reply without a numeric ext.ack: #${unit.seq} ${JSON.stringify(reply)}`);
            assert.ok(reply.ext.ack > previous, `batch numbers must increase: ${reply.ext.ack} after ${previous}${context()}`);
            previous = reply.ext.ack;
        }
        const clientConnects = proxy.log.filter((u) => u.dir === "c2s" && connectIn(u));
        for (const cut of cuts) {
            const dropped = connectIn(cut).ext.ack;
            const next = clientConnects.find((u) => u.seq > cut.seq);
            assert.ok(next, `no /meta/connect after the cut #${cut.seq}${context()}`);
            const acked = connectIn(next).ext?.ack;
            assert.equal(typeof acked, "number", `connect without ext.ack: ${JSON.stringify(connectIn(next))}`);
            assert.ok(acked < dropped, `after losing batch ${dropped} the client acknowledged ${acked}${context()}`);
        }
        // The client saw the same: numeric ext.ack on each successful connect reply it received.
        const received = subscriber.received.filter((m) => m.channel === "/meta/connect" && m.successful);
        assert.ok(received.length >= 4);
        for (const reply of received) {
            assert.equal(typeof reply.ext?.ack, "number", `connect reply: ${JSON.stringify(reply)}`);
        }
        // Same session throughout: no re-handshake.
        assert.equal(subscriber.received.filter((m) => m.channel === "/meta/handshake" && m.successful).length, 1,
            `the subscriber must not re-handshake${context()}`);

        if (process.env.ACK_TRACE) {
            for (const line of transcript(proxy, ch).split("\n")) {
                t.diagnostic(line);
            }
        }
        t.diagnostic(`transport ${subscriber.getTransport().type}; proxy connections ${proxy.connections}; `
            + `cut ${cuts.length} connect replies (batches ${cuts.map((c) => connectIn(c).ext.ack).join(",")}) `
            + `carrying [${cuts.map((c) => ranges(seqsIn(c, ch))).join("] [")}]; `
            + `${lost.length} distinct messages lost on the wire, ${resent} re-sent in total`);
    });
