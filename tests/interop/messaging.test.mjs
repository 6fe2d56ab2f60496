// Publish/subscribe with the CometD JavaScript client: broadcast, wildcards, service channels,
// unsubscribe, batching, ordering under load, request headers.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    Inbox, TRANSPORT, channel, closeAllClients, connectClient, createClient, deliveredOn, httpLog,
    publish, publishOk, setWebSocketHeaders, sleep, subscribeOk, token, unsubscribe, waitUntil,
} from "./helpers.mjs";

afterEach(closeAllClients);

/** Handshaken clients, ready to use. */
async function clients(n) {
    const result = [];
    for (let i = 0; i < n; ++i) {
        const client = createClient();
        await connectClient(client);
        result.push(client);
    }
    return result;
}

test("subscribe/publish between two clients delivers exactly the published data", async () => {
    const [publisher, subscriber] = await clients(2);
    const ch = channel("chat");
    const inbox = new Inbox();
    await subscribeOk(subscriber, ch, inbox.push);

    const data = {text: "hello, wörld ✓", n: 42, f: 1.5, ok: true, none: null, list: [1, "two", {three: 3}], nested: {a: {b: []}}};
    const reply = await publish(publisher, ch, data);
    assert.equal(reply.successful, true, `publish reply: ${JSON.stringify(reply)}`);
    assert.equal(reply.channel, ch);
    assert.equal(reply.data, undefined, "a publish reply must not carry data");

    const [message] = await inbox.waitForCount(1);
    assert.equal(message.channel, ch);
    assert.deepEqual(message.data, data);
    assert.notEqual(message.clientId, publisher.getClientId(), "the publisher's clientId must not leak to subscribers");

    await sleep(200);
    assert.equal(inbox.length, 1, `exactly one delivery expected: ${JSON.stringify(inbox.messages)}`);
    assert.equal(deliveredOn(publisher, ch).length, 0, "the (unsubscribed) publisher must not receive the message");
});

test("a client receives its own publish on a channel it subscribes to", async () => {
    const [client] = await clients(1);
    const ch = channel("self");
    const inbox = new Inbox();
    await subscribeOk(client, ch, inbox.push);

    await publishOk(client, ch, {me: "again"});
    const [message] = await inbox.waitForCount(1);
    assert.deepEqual(message.data, {me: "again"});
    await sleep(200);
    assert.equal(deliveredOn(client, ch).length, 1, `exactly one copy expected: ${JSON.stringify(client.received)}`);
});

test("wildcards: /* matches one segment, /** matches any depth", async () => {
    const [publisher, single, deep] = await clients(3);
    const base = channel("w");
    const singleInbox = new Inbox();
    const deepInbox = new Inbox();
    await subscribeOk(single, `${base}/*`, singleInbox.push);
    await subscribeOk(deep, `${base}/**`, deepInbox.push);

    await publishOk(publisher, `${base}/a`, 1);
    await publishOk(publisher, `${base}/a/b`, 2);
    await publishOk(publisher, base, 0); // matches neither: /w/* and /w/** need at least one more segment
    await publishOk(publisher, `${base}/end`, 3); // sentinel, matches both

    const isEnd = (ms) => ms.some((m) => m.channel === `${base}/end`);
    await singleInbox.waitFor(isEnd, 5000, `${base}/end on ${base}/*`);
    await deepInbox.waitFor(isEnd, 5000, `${base}/end on ${base}/**`);

    assert.deepEqual(singleInbox.messages.map((m) => [m.channel, m.data]), [[`${base}/a`, 1], [`${base}/end`, 3]]);
    assert.deepEqual(deepInbox.messages.map((m) => [m.channel, m.data]), [[`${base}/a`, 1], [`${base}/a/b`, 2], [`${base}/end`, 3]]);
});

test("overlapping subscriptions (/x/*, /x/**, /x/y) receive a message on /x/y once", async () => {
    const [publisher, subscriber] = await clients(2);
    const base = channel("x");
    const exact = new Inbox();
    const star = new Inbox();
    const starStar = new Inbox();
    await subscribeOk(subscriber, `${base}/*`, star.push);
    await subscribeOk(subscriber, `${base}/**`, starStar.push);
    await subscribeOk(subscriber, `${base}/y`, exact.push);

    await publishOk(publisher, `${base}/y`, {once: true});
    await publishOk(publisher, `${base}/z`, {sentinel: true});
    await star.waitFor((ms) => ms.some((m) => m.channel === `${base}/z`), 5000, "the sentinel");
    await sleep(100);

    // What the server sent (the JS client itself fans a delivered message out to every matching
    // local subscription, so count the messages on the wire, not the listener calls).
    const onY = deliveredOn(subscriber, `${base}/y`);
    assert.equal(onY.length, 1, `the server must send ${base}/y once to a session with overlapping subscriptions, got ${JSON.stringify(onY)}`);
    assert.deepEqual(onY[0].data, {once: true});
    assert.equal(deliveredOn(subscriber, `${base}/z`).length, 1, "the sentinel must be sent once");
    assert.equal(exact.length, 1, `the exact subscription must be notified once: ${JSON.stringify(exact.messages)}`);
});

test("/service/echo returns the data to the sender only", async () => {
    const [sender, other] = await clients(2);
    const senderInbox = new Inbox();
    const otherInbox = new Inbox();
    sender.addListener("/service/echo", senderInbox.push);
    other.addListener("/service/echo", otherInbox.push);

    const mine = {echo: token()};
    const reply = await publish(sender, "/service/echo", mine);
    assert.equal(reply.successful, true, `publish reply: ${JSON.stringify(reply)}`);
    const [echoed] = await senderInbox.waitForCount(1);
    assert.equal(echoed.channel, "/service/echo");
    assert.deepEqual(echoed.data, mine);

    // The other client gets its own echo, and never the sender's (which, if it were wrongly
    // delivered to it, would have been queued before its own).
    const theirs = {echo: token()};
    await publishOk(other, "/service/echo", theirs);
    await otherInbox.waitForCount(1);
    await sleep(200);
    assert.deepEqual(otherInbox.data, [theirs]);
    assert.deepEqual(senderInbox.data, [mine]);
});

test("/service/publish reaches the subscribers of the named channel", async () => {
    const [caller, subscriber, bystander] = await clients(3);
    const ch = channel("svc");
    const inbox = new Inbox();
    await subscribeOk(subscriber, ch, inbox.push);
    const bystanderInbox = new Inbox();
    await subscribeOk(bystander, channel("svc"), bystanderInbox.push);

    const payload = {via: "service", k: token()};
    await publishOk(caller, "/service/publish", {channel: ch, data: payload});
    const [message] = await inbox.waitForCount(1);
    assert.equal(message.channel, ch);
    assert.deepEqual(message.data, payload);
    await sleep(200);
    assert.equal(inbox.length, 1);
    assert.equal(bystanderInbox.length, 0, "a subscriber of another channel must get nothing");
    assert.equal(deliveredOn(caller, ch).length, 0, "the unsubscribed caller must not receive the broadcast");
});

test("after unsubscribing, no more messages arrive", async () => {
    const [publisher, subscriber] = await clients(2);
    const ch = channel("u");
    const control = `${ch}/control`;
    const inbox = new Inbox();
    const controlInbox = new Inbox();
    const subscription = await subscribeOk(subscriber, ch, inbox.push);
    await subscribeOk(subscriber, control, controlInbox.push);

    const t0 = Date.now();
    await publishOk(publisher, ch, "before");
    await inbox.waitForCount(1);
    const deliveryTime = Date.now() - t0;

    const reply = await unsubscribe(subscriber, subscription);
    assert.equal(reply.successful, true, `unsubscribe reply: ${JSON.stringify(reply)}`);
    assert.equal(reply.subscription, ch);

    await publishOk(publisher, ch, "after");
    await sleep(Math.max(300, 3 * deliveryTime));
    // The session still receives other channels: a later message arrives, the unsubscribed one not.
    await publishOk(publisher, control, "still-connected");
    await controlInbox.waitForCount(1);
    await sleep(100);
    assert.deepEqual(deliveredOn(subscriber, ch).map((m) => m.data), ["before"],
        "the server must stop sending a channel's messages after /meta/unsubscribe");
});

test("a batch (subscribe + publish in one request) succeeds and delivers", async () => {
    const [client] = await clients(1);
    const ch1 = channel("b", "/1");
    const ch2 = channel("b", "/2");
    const inbox1 = new Inbox();
    const inbox2 = new Inbox();
    const replies = [];
    const requestsBefore = httpLog.length;

    client.batch(() => {
        client.subscribe(ch1, inbox1.push, (r) => replies.push(r));
        client.subscribe(ch2, inbox2.push, (r) => replies.push(r));
        client.publish(ch1, {n: 1}, (r) => replies.push(r));
        client.publish(ch2, {n: 2}, (r) => replies.push(r));
    });

    await waitUntil(() => replies.length === 4, 5000, () => `4 replies, got ${JSON.stringify(replies)}`);
    for (const reply of replies) {
        assert.equal(reply.successful, true, `batched reply: ${JSON.stringify(reply)}`);
    }
    assert.deepEqual(replies.map((r) => r.channel).sort(), ["/meta/subscribe", "/meta/subscribe", ch1, ch2].sort());
    // The server processes a batch in order: the publishes reach the just-made subscriptions.
    await inbox1.waitForCount(1);
    await inbox2.waitForCount(1);
    assert.deepEqual(inbox1.data, [{n: 1}]);
    assert.deepEqual(inbox2.data, [{n: 2}]);

    if (client.getTransport().type === "long-polling") {
        const batched = httpLog.slice(requestsBefore).filter((e) => Array.isArray(e.messages) &&
            e.messages.some((m) => m.channel === "/meta/subscribe" && m.subscription === ch1));
        assert.equal(batched.length, 1);
        assert.equal(batched[0].messages.length, 4, "the client sent the batch as one request");
        assert.equal(batched[0].status, 200);
    }
});

test("ordering under load: 500 messages arrive complete, in order, once, at two subscribers", async () => {
    const N = 500;
    const [publisher, s1, s2] = await clients(3);
    const ch = channel("load");
    const in1 = new Inbox();
    const in2 = new Inbox();
    await subscribeOk(s1, ch, in1.push);
    await subscribeOk(s2, ch, in2.push);

    const acks = [];
    for (let i = 0; i < N; ++i) {
        publisher.publish(ch, {seq: i, pad: "x".repeat(i % 64)}, (r) => acks.push(r));
    }
    await waitUntil(() => acks.length === N, 30000, () => `${N} publish acks, got ${acks.length}`);
    const failed = acks.filter((r) => !r.successful);
    assert.equal(failed.length, 0, `failed publishes: ${JSON.stringify(failed.slice(0, 3))}`);

    await in1.waitForCount(N, 30000, "at subscriber 1");
    await in2.waitForCount(N, 30000, "at subscriber 2");
    await sleep(300);
    const expected = Array.from({length: N}, (_, i) => i);
    for (const [name, inbox] of [["subscriber 1", in1], ["subscriber 2", in2]]) {
        const seqs = inbox.data.map((d) => d.seq);
        assert.equal(seqs.length, N, `${name}: ${seqs.length} messages, expected ${N} (duplicates?)`);
        assert.deepEqual(seqs, expected, `${name}: messages lost, duplicated or out of order`);
    }
});

test("whoami: the server sees the client's User-Agent and custom request header", async () => {
    const userAgent = `tower-bayeux-interop/${token(4)}`;
    const header = `value-${token()}`;
    const headers = {"User-Agent": userAgent, "X-Test-Header": header};
    setWebSocketHeaders(TRANSPORT === "websocket" ? headers : null);
    let client;
    try {
        client = createClient({requestHeaders: headers});
        await connectClient(client);
    } finally {
        setWebSocketHeaders(null);
    }
    const plain = createClient();
    await connectClient(plain);

    const inbox = new Inbox();
    client.addListener("/service/whoami", inbox.push);
    await publishOk(client, "/service/whoami", {});
    const [reply] = await inbox.waitForCount(1);
    assert.deepEqual(reply.data, {userAgent, header});

    const plainInbox = new Inbox();
    plain.addListener("/service/whoami", plainInbox.push);
    await publishOk(plain, "/service/whoami", {});
    const [plainReply] = await plainInbox.waitForCount(1);
    assert.equal(plainReply.data.header, null, `no X-Test-Header was sent: ${JSON.stringify(plainReply.data)}`);
    assert.notEqual(plainReply.data.userAgent, userAgent);
    await sleep(100);
    assert.equal(inbox.length, 1, "whoami replies go to the caller only");
});
