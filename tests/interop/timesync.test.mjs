// Time synchronisation: the client's TimeSyncExtension against the server's TimesyncExtension.
// Client and server run on the same machine, so the measured offset must be about 0 and the
// network lag small, including for a /meta/connect the server held for its whole timeout.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {TimeSyncExtension} from "cometd";
import {
    channel, closeAllClients, connectClient, createClient, subscribeOk, unsubscribe, waitUntil,
} from "./helpers.mjs";

afterEach(closeAllClients);

/** Server hold of a /meta/connect (conformance server `timeout`). */
const HOLD_MS = 2000;

test("timesync: replies carry ext.timesync echoing tc; offset ~0 and small lag on the same machine", async (t) => {
    const client = createClient({name: "timesync"});
    const timesync = new TimeSyncExtension();
    client.registerExtension("timesync", timesync);
    // Control: a client without the extension gets no timesync answers.
    const plain = createClient({name: "timesync-control"});

    const start = Date.now();
    await connectClient(client);
    await connectClient(plain);

    // A few more /meta round trips while the second /meta/connect is held.
    const ch = channel("timesync");
    for (let i = 0; i < 3; ++i) {
        const subscription = await subscribeOk(client, ch, () => {});
        const reply = await unsubscribe(client, subscription);
        assert.equal(reply.successful, true, JSON.stringify(reply));
    }
    // ... and the held connect's reply (after the server's 2 s hold), then the next connect.
    const connectReplies = () => client.received.filter((m) => m.channel === "/meta/connect" && m.successful);
    await waitUntil(() => connectReplies().length >= 2, HOLD_MS + 3000, "the held /meta/connect's reply");

    // The client's recorder sees outgoing messages after every other extension (so with
    // ext.timesync) and incoming ones before them (so as the server sent them).
    const sentMeta = client.sent.filter((m) => m.channel.startsWith("/meta/"));
    assert.ok(sentMeta.length >= 9, `meta messages sent: ${sentMeta.length}`);
    for (const message of sentMeta) {
        const ts = message.ext?.timesync;
        assert.ok(ts && typeof ts.tc === "number" && typeof ts.l === "number" && typeof ts.o === "number",
            `the client sends ext.timesync {tc, l, o} on every meta message: ${JSON.stringify(message)}`);
    }
    const answered = client.received.filter((m) => m.channel.startsWith("/meta/") && m.ext?.timesync !== undefined);
    assert.ok(answered.length >= 1, `no meta reply carried ext.timesync: ${JSON.stringify(client.received)}`);
    assert.ok(answered.some((m) => m.channel === "/meta/handshake"),
        "the handshake reply must carry ext.timesync (the client had no lag measured yet)");
    const now = Date.now();
    for (const reply of answered) {
        const {tc, ts, p, a} = reply.ext.timesync;
        for (const [name, value] of Object.entries({tc, ts, p, a})) {
            assert.equal(typeof value, "number", `ext.timesync.${name} must be a number: ${JSON.stringify(reply)}`);
            assert.ok(Number.isInteger(value), `ext.timesync.${name} must be whole milliseconds: ${JSON.stringify(reply)}`);
        }
        const request = sentMeta.find((m) => m.id === reply.id);
        assert.ok(request, `no request with id ${reply.id} for ${JSON.stringify(reply)}`);
        const sentTs = request.ext.timesync;
        assert.equal(tc, sentTs.tc, `tc must echo the client's: sent ${JSON.stringify(sentTs)}, got ${JSON.stringify(reply.ext.timesync)}`);
        assert.equal(a, tc + sentTs.o + sentTs.l - ts, `a = tc + o + l - ts: sent ${JSON.stringify(sentTs)}, got ${JSON.stringify(reply.ext.timesync)}`);
        // Same clock: the server received the request between its sending and now.
        assert.ok(ts >= tc - 50 && ts <= now + 50, `ts ${ts} not within [tc ${tc}, now ${now}]`);
        assert.ok(p >= 0 && ts + p <= now + 50, `p ${p} (ts ${ts}, now ${now})`);
        if (reply.channel === "/meta/connect" && request.advice?.timeout === undefined) {
            // A held connect: p includes the hold.
            assert.ok(p >= HOLD_MS - 100, `a held /meta/connect's p must include the hold: ${JSON.stringify(reply.ext.timesync)}`);
        }
    }

    const offset = timesync.getTimeOffset();
    const lag = timesync.getNetworkLag();
    t.diagnostic(`transport ${client.getTransport().type}; ${answered.length} of ${sentMeta.length} meta replies `
        + `carried timesync (${answered.map((m) => m.channel.slice(6)).join(",")}); offset ${offset} ms, lag ${lag} ms; `
        + `${Date.now() - start} ms`);
    assert.ok(Math.abs(offset) <= 50, `time offset ${offset} ms, expected within ±50 ms of 0`);
    assert.ok(lag >= 0 && lag < 100, `network lag ${lag} ms, expected 0 <= lag < 100`);
    assert.ok(Math.abs(timesync.getServerTime() - Date.now()) <= 60, "server time estimate");

    const leaked = plain.received.filter((m) => m.ext?.timesync !== undefined);
    assert.deepEqual(leaked, [], "no timesync answers to a client that does not ask");
});

test("timesync: a client whose estimate is off is answered on every meta reply; a held connect's p includes the hold",
    async (t) => {
        const client = createClient({name: "timesync-skewed"});
        // Registered before the timesync extension, so its outgoing runs after it (outgoing
        // extensions run last-registered first): it makes the client report an offset 1 s off,
        // which the server must answer (|a| >= its 25 ms accuracy target) every time.
        const SKEW = 1000;
        client.registerExtension("timesync-skew", {
            outgoing(message) {
                if (message.ext?.timesync) {
                    message.ext.timesync.o += SKEW;
                }
                return message;
            },
        });
        const timesync = new TimeSyncExtension();
        client.registerExtension("timesync", timesync);

        await connectClient(client);
        // The first connect returns at once (advice timeout 0); the second is held 2 s.
        const connects = () => client.received.filter((m) => m.channel === "/meta/connect" && m.successful);
        await waitUntil(() => connects().length >= 2, HOLD_MS + 3000, "the held /meta/connect's reply");

        const sentMeta = client.sent.filter((m) => m.channel.startsWith("/meta/"));
        const replies = client.received.filter((m) => m.channel.startsWith("/meta/") && sentMeta.some((s) => s.id === m.id));
        assert.ok(replies.length >= 3, `meta replies: ${JSON.stringify(replies)}`);
        for (const reply of replies) {
            const request = sentMeta.find((s) => s.id === reply.id);
            const answer = reply.ext?.timesync;
            assert.ok(answer, `a meta reply without ext.timesync although the client's estimate is ${SKEW} ms off: `
                + `sent ${JSON.stringify(request.ext?.timesync)}, got ${JSON.stringify(reply)}`);
            assert.equal(answer.tc, request.ext.timesync.tc, "tc echoes the client's");
            assert.equal(answer.a, answer.tc + request.ext.timesync.o + request.ext.timesync.l - answer.ts);
            assert.ok(Math.abs(answer.a - SKEW) <= 50, `a ${answer.a} should be about the ${SKEW} ms skew`);
        }
        const held = replies.find((m) => m.channel === "/meta/connect"
            && sentMeta.find((s) => s.id === m.id).advice?.timeout === undefined);
        assert.ok(held, "the held /meta/connect's reply");
        const {ts, p} = held.ext.timesync;
        assert.ok(p >= HOLD_MS - 100 && p <= HOLD_MS + 500, `a held /meta/connect's p must include the ${HOLD_MS} ms hold: ${JSON.stringify(held.ext.timesync)}`);
        assert.ok(ts <= sentMeta.find((s) => s.id === held.id).ext.timesync.tc + 50, "ts is when the connect arrived, not when it was answered");

        // With the held connect's sample included, the client's estimates are still right.
        const offset = timesync.getTimeOffset();
        const lag = timesync.getNetworkLag();
        t.diagnostic(`transport ${client.getTransport().type}; held connect timesync ${JSON.stringify(held.ext.timesync)}; `
            + `offset ${offset} ms, lag ${lag} ms over ${replies.length} samples`);
        assert.ok(Math.abs(offset) <= 50, `time offset ${offset} ms, expected within ±50 ms of 0`);
        assert.ok(lag >= 0 && lag < 100, `network lag ${lag} ms, expected 0 <= lag < 100`);
    });
