// The standalone server's demo page: the official CometD client (served by
// `tower-bayeux --static server/demo` from node_modules/) on one channel with history, the
// history extension of clients/js/, and the server's /api/status.
//
// ?transport=websocket|long-polling|callback-polling forces one transport.

import {CometD} from "/node_modules/cometd/cometd.js";
import {HistoryExtension} from "/history-extension.js";

const channel = "/demo/board";
const $ = (id) => document.getElementById(id);

const cometd = new CometD();
window.cometd = cometd;
cometd.configure({url: `${location.origin}/cometd`, logLevel: "warn"});
// No storage: a reloaded page starts empty and asks for the recent messages again.
const history = new HistoryExtension({
    onRecovery(_channel, {recovered}) {
        if (!recovered) {
            notice("Some messages from while this page was away are no longer kept.");
        }
    },
});
cometd.registerExtension("history", history);
window.boardHistory = history;

const forced = new URLSearchParams(location.search).get("transport");
if (forced) {
    for (const type of cometd.getTransportTypes().filter((type) => type !== forced)) {
        cometd.unregisterTransport(type);
    }
}

function show(message) {
    const item = document.createElement("li");
    const offset = document.createElement("span");
    offset.className = "offset";
    offset.textContent = `#${message.ext?.history?.offset ?? "?"}`;
    item.append(offset, String(message.data?.text ?? JSON.stringify(message.data)));
    $("messages").append(item);
    item.scrollIntoView({block: "nearest"});
}

function notice(text) {
    const item = document.createElement("li");
    item.className = "notice";
    item.textContent = text;
    $("messages").append(item);
}

function subscribe() {
    cometd.subscribe(channel, show);
}

// After every handshake (a new session after an expiry too) the client has no subscriptions.
cometd.addListener("/meta/handshake", (reply) => {
    if (!reply.successful) {
        return;
    }
    if (history.positionOf(channel)) {
        // Back with a new session: the extension resumes after the last message shown.
        subscribe();
        return;
    }
    // The first time: the channel's recent messages and their position (a remote call the
    // server answers from the history), then the subscription from that position.
    cometd.remoteCall("history", {channel}, (answer) => {
        if (answer.successful) {
            answer.data.messages.forEach(show);
            history.setPosition(channel, {offset: answer.data.offset, epoch: answer.data.epoch});
        } else {
            notice(`No history here (${answer.error}): start the server with --history '/demo/**=50'.`);
        }
        subscribe();
    });
});

cometd.addListener("/meta/connect", (reply) => {
    const status = $("status");
    if (reply.successful) {
        status.textContent = `connected (${cometd.getTransport().type})`;
        status.className = "status connected";
    } else {
        status.textContent = "connection lost, reconnecting…";
        status.className = "status";
    }
});

$("send").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    if (!text) {
        return;
    }
    cometd.publish(channel, {text}, (reply) => {
        const error = $("send-error");
        error.hidden = reply.successful;
        error.textContent = reply.successful ? "" : `Not sent: ${reply.error} (is the server started with --no-client-publish?)`;
    });
    $("text").value = "";
});

$("curl").textContent =
    `curl -H 'Authorization: Bearer s3cret' \\\n` +
    `     -d '{"channel": "${channel}", "data": {"text": "hello from curl"}}' \\\n` +
    `     ${location.origin}/api/publish`;

async function showStatus() {
    try {
        const status = await (await fetch("/api/status")).json();
        const rows = {
            sessions: status.sessions,
            "by transport": Object.entries(status.sessions_by_transport).map(([k, v]) => `${k} ${v}`).join(", "),
            subscriptions: status.subscriptions,
            "messages published": status.messages_published,
            "messages delivered": status.messages_delivered,
            "retained in history": status.history.messages,
            uptime: `${status.uptime_seconds} s`,
        };
        $("server").replaceChildren(...Object.entries(rows).flatMap(([name, value]) => {
            const dt = document.createElement("dt");
            const dd = document.createElement("dd");
            dt.textContent = name;
            dd.textContent = String(value);
            return [dt, dd];
        }));
    } catch {
        // The server is away; the next round will tell.
    }
}
showStatus();
setInterval(showStatus, 2000);

// Once the page has loaded: with callback-polling every Bayeux request is a <script> element,
// and the ones added before `load` (the handshake, then the held /meta/connect, then the next...)
// would keep the page loading for good.
if (document.readyState === "complete") {
    cometd.handshake();
} else {
    window.addEventListener("load", () => cometd.handshake(), {once: true});
}
