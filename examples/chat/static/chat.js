// The chat page: the official CometD client (npm `cometd`, served at /js/cometd/) talking to
// the tower-bayeux server of examples/chat/main.rs, with the history extension of clients/js/
// (served at /js/history-extension.js).
//
// Query parameters: ?transport=websocket|long-polling|callback-polling forces one transport
// (default: the client negotiates), ?room=NAME picks a room (default "lobby").

import {AckExtension, CometD} from "/js/cometd/cometd.js";
import {HistoryExtension} from "/js/history-extension.js";

const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";
const roomChannel = `/chat/${room}`;
const forcedTransport = params.get("transport");

const $ = (id) => document.getElementById(id);

const cometd = new CometD();
// Exposed for the browser tests (and the curious): `cometd.getTransport().type`.
window.cometd = cometd;
cometd.configure({
    url: `${location.origin}/cometd`,
    logLevel: params.get("log") || "warn",
});
// Acknowledged delivery: messages lost with a dropped connection are sent again.
cometd.registerExtension("ack", new AckExtension());
// Room history: the extension remembers the last room message the page has, and whenever the
// page subscribes to the room again (after its session was lost: the handshake listener does)
// the server first sends every message after it.
const roomHistory = new HistoryExtension({onRecovery});
cometd.registerExtension("history", roomHistory);
// For the browser tests: `roomHistory.duplicates` must stay 0.
window.roomHistory = roomHistory;

if (forcedTransport) {
    const known = cometd.getTransportTypes();
    if (known.includes(forcedTransport)) {
        for (const type of known.filter((type) => type !== forcedTransport)) {
            cometd.unregisterTransport(type);
        }
    } else {
        showError("join-error", `Unknown transport "${forcedTransport}": use one of ${known.join(", ")}.`);
        $("join").querySelector("button").disabled = true;
    }
}

let me = null; // {id, name, browser} once joined
let members = [];
let acknowledged = false; // whether the server agreed to acknowledged delivery

// --- Connection -------------------------------------------------------------------------

$("join").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = $("name").value.trim();
    if (!name) {
        return;
    }
    hideError("join-error");
    setStatus("connecting…");
    // The server's policy refuses a handshake without a name.
    cometd.handshake({ext: {chat: {name}}}, (reply) => {
        if (!reply.successful) {
            const why = reply.error || reply.failure?.reason || "no answer";
            showError("join-error", `The server refused to let you in (${why}).`);
            setStatus("not connected");
        }
    });
});

// After every successful handshake (a new session after an expiry too): subscribe, then join.
// The client forgets its subscriptions on a handshake, so subscribing belongs here.
cometd.addListener("/meta/handshake", (reply) => {
    if (!reply.successful) {
        return;
    }
    acknowledged = reply.ext?.ack === true;
    if (roomHistory.positionOf(roomChannel)) {
        // Back with a new session: the extension resumes after the last message shown.
        subscribeAndJoin();
        return;
    }
    // The first time: the room's recent messages and their position, from which the
    // subscription then starts (what is said in between is replayed to it).
    cometd.remoteCall("history", {room}, (answer) => {
        if (answer.successful) {
            for (const data of answer.data.messages) {
                onRoomMessage(data);
            }
            roomHistory.setPosition(roomChannel, {offset: answer.data.offset, epoch: answer.data.epoch});
        }
        subscribeAndJoin();
    });
});

function subscribeAndJoin() {
    cometd.batch(() => {
        cometd.subscribe(roomChannel, (message) => onRoomMessage(message.data));
        cometd.subscribe(`/members/${room}`, (message) => showMembers(message.data.members));
        // Joining is a remote call: the server answers with the member we are.
        cometd.remoteCall("members", {room}, (joinReply) => {
            if (joinReply.successful) {
                me = joinReply.data.you;
                enterRoom();
            } else {
                showError("join-error", `Could not join: ${joinReply.error}`);
            }
        });
    });
}

// What the server answered to a subscription that resumed the room.
function onRecovery(channel, {recovered}) {
    if (!recovered) {
        addNotice("Messages from while you were away are no longer available.", "gap");
    }
}

// Private messages are delivered on a service channel: a listener is enough.
cometd.addListener("/service/private", (message) => onPrivateMessage(message.data));

cometd.addListener("/meta/connect", (reply) => {
    if (cometd.isDisconnected()) {
        return;
    }
    if (reply.successful) {
        showConnected();
    } else {
        setStatus("connection lost, reconnecting…");
    }
});

$("leave").addEventListener("click", () => {
    cometd.disconnect(() => {
        me = null;
        showMembers([]);
        addNotice("You left the room.");
        $("room").hidden = true;
        $("join").hidden = false;
        setStatus("not connected");
    });
});

// --- Sending ------------------------------------------------------------------------------

$("send").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("text").value.trim();
    if (!text) {
        return;
    }
    hideError("send-error");
    const to = $("to").value;
    const done = (reply) => {
        if (!reply.successful) {
            showError("send-error", `Not sent: ${reply.error}`);
            return;
        }
        $("text").value = "";
        if (to) {
            addMessage({from: `you → ${reply.data.toName}`, text, kind: "private mine"});
        }
    };
    if (to) {
        // A remote call: the server answers with who got the message.
        cometd.remoteCall("private", {to: Number(to), text}, done);
    } else {
        cometd.publish("/service/chat", {text}, done);
    }
});

// --- Receiving ----------------------------------------------------------------------------

function onRoomMessage(data) {
    switch (data.type) {
        case "message":
            addMessage({from: data.name, text: data.text, kind: data.id === me?.id ? "mine" : ""});
            break;
        case "join":
            addNotice(`${data.name} (${data.browser}) joined.`, "joined");
            break;
        case "leave": {
            const why = data.reason === "timeout" ? "connection timed out" : data.reason;
            addNotice(`${data.name} left (${why}).`, "left");
            break;
        }
    }
}

function onPrivateMessage(data) {
    addMessage({from: `${data.name} → you`, text: data.text, kind: "private"});
}

// --- Rendering ----------------------------------------------------------------------------

function enterRoom() {
    $("room-name").textContent = room;
    $("join").hidden = true;
    $("room").hidden = false;
    $("text").focus();
    showMembers(members); // the list may have come before we knew which member we are
    showConnected();
}

function showConnected() {
    const delivery = acknowledged ? ", acknowledged delivery" : "";
    setStatus(`connected as ${me ? me.name : "…"} over ${cometd.getTransport()?.type}${delivery}`);
}

function addMessage({from, text, kind}) {
    const item = document.createElement("li");
    item.className = `message ${kind}`.trim();
    const who = document.createElement("span");
    who.className = "from";
    who.textContent = from;
    item.append(who, " ", text);
    append(item);
}

function addNotice(text, kind = "") {
    const item = document.createElement("li");
    item.className = `notice ${kind}`.trim();
    item.textContent = text;
    append(item);
}

function append(item) {
    const list = $("messages");
    list.append(item);
    list.scrollTop = list.scrollHeight;
}

function showMembers(list) {
    members = list;
    $("members").replaceChildren(...members.map((member) => {
        const item = document.createElement("li");
        item.dataset.id = member.id;
        item.title = member.agent;
        const browser = document.createElement("span");
        browser.className = "browser";
        browser.textContent = ` (${member.browser})`;
        item.append(member.name, browser);
        if (member.id === me?.id) {
            const you = document.createElement("span");
            you.className = "you";
            you.textContent = "you";
            item.classList.add("me");
            item.append(" ", you);
        }
        return item;
    }));
    // The "to" choices: everyone, or one of the others; keep the current choice if it is there.
    const select = $("to");
    const chosen = select.value;
    const options = members
        .filter((member) => member.id !== me?.id)
        .map((member) => new Option(`Only ${member.name}`, member.id));
    select.replaceChildren(new Option("Everyone", ""), ...options);
    select.value = options.some((option) => option.value === chosen) ? chosen : "";
}

function setStatus(text) {
    $("status").textContent = text;
}

function showError(id, text) {
    $(id).textContent = text;
    $(id).hidden = false;
}

function hideError(id) {
    $(id).hidden = true;
}
