// Remote calls (`cometd.remoteCall`) answered with data in the server's reply.

import assert from "node:assert/strict";
import {afterEach, test} from "node:test";
import {
    Inbox, channel, closeAllClients, connectClient, createClient, publishOk, sleep, withTimeout,
} from "./helpers.mjs";

afterEach(closeAllClients);

/** `remoteCall` as a promise of its reply. */
function call(client, target, data, ms = 3000) {
    return withTimeout(new Promise((resolve) => client.remoteCall(target, data, ms, resolve)), ms + 1000,
        `remoteCall ${target}`);
}

test("a remote call gets the data of the server's reply", async () => {
    // A short network delay: a reply the transport does not recognise would fail the call fast.
    const client = createClient({config: {maxNetworkDelay: 1500}});
    await connectClient(client);
    const reply = await call(client, "call", {n: 1});
    assert.equal(reply.successful, true, JSON.stringify(reply));
    assert.deepEqual(reply.data, {echo: {n: 1}});
});

test("a subscription batched with a remote call survives it", async () => {
    const client = createClient({config: {maxNetworkDelay: 1500}});
    await connectClient(client);
    const ch = channel("batched-with-call");
    const inbox = new Inbox();
    let subscribed;
    const replies = [];
    client.batch(() => {
        client.remoteCall("call", "x", 3000, (reply) => replies.push(reply));
        client.subscribe(ch, inbox.push, (reply) => {
            subscribed = reply;
        });
    });
    await withTimeout((async () => {
        while (replies.length === 0 || subscribed === undefined) {
            await sleep(20);
        }
    })(), 4000, "the call and the subscription replies");
    assert.equal(replies[0].successful, true, JSON.stringify(replies[0]));
    assert.equal(subscribed.successful, true, JSON.stringify(subscribed));
    // Past the network delay, the subscription is still there: messages arrive.
    await sleep(1700);
    await publishOk(client, ch, "still subscribed");
    const [message] = await inbox.waitForCount(1);
    assert.equal(message.data, "still subscribed");
});
