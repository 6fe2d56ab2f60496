// A CometD JavaScript client extension for channel history and replay on a tower-bayeux server:
// it remembers where the client is on each channel with history, and when the client subscribes
// to such a channel again (after a re-handshake, a page reload, a failover, an explicit
// re-subscribe) it asks the server for what it missed. No dependencies; see README.md here.
//
// The server's wire contract:
// - a message on a channel with history arrives with `ext.history = {offset, epoch}` (offsets
//   count from 1 per channel; a new epoch means the channel's history was lost);
// - a `/meta/subscribe` to one such channel carrying `ext.history = {since, epoch}` first gets
//   the retained messages with offset > since, then live ones, no gap, no duplicate; its reply
//   carries `ext.history = {recovered, epoch, offset}`, and with `recovered: false` nothing old
//   is sent: the application must reload its state;
// - a subscribe without `since` gets `ext.history = {epoch, offset}` (where it starts);
// - `since` on a wildcard subscription is refused (`400::history_since_wildcard`).

/**
 * Where a client is on one channel: the offset of the last message it has, in an epoch.
 * @typedef {{offset: number, epoch: string}} Position
 */

/**
 * What the server answered to a subscription that asked to resume: `recovered` is `true` when
 * every missed message follows (they are delivered after the subscribe reply's position is
 * known, in order), `false` when they are gone (another epoch, or out of the retained window):
 * nothing old is sent then, and `epoch`/`offset` are the channel's current position, from which
 * live messages continue. `since` is the offset the extension asked to resume after (`null` when
 * the application set `ext.history` itself).
 * @typedef {{recovered: boolean, epoch: string, offset: number, since: (number|null)}} Recovery
 */

/**
 * A Storage-like object (`window.sessionStorage`, or anything with `getItem`/`setItem`).
 * @typedef {{getItem(key: string): (string|null), setItem(key: string, value: string): void}} PositionStorage
 */

const isWild = (channel) => channel.endsWith("/*") || channel.endsWith("/**");

/** Whether `value` is a position (`{offset: non-negative integer, epoch: string}`). */
const isPosition = (value) => value !== null && typeof value === "object"
    && Number.isSafeInteger(value.offset) && value.offset >= 0 && typeof value.epoch === "string";

/**
 * The history extension. Register it on a `CometD` client before subscribing:
 *
 * ```js
 * const history = new HistoryExtension({
 *     storage: window.sessionStorage, // optional: a reloaded page resumes where it was
 *     onRecovery: (channel, {recovered}) => { if (!recovered) reloadStateOf(channel); },
 * });
 * cometd.registerExtension("history", history);
 * // The client forgets its subscriptions on every handshake: subscribe in a handshake listener,
 * // and the extension resumes each channel where the client left it.
 * cometd.addListener("/meta/handshake", (reply) => {
 *     if (reply.successful) cometd.subscribe("/chat/lobby", onMessage);
 * });
 * ```
 *
 * It records the position of every message delivered on a channel with history, and the
 * starting position a subscribe reply carries. Every later `/meta/subscribe` to one of those
 * channels carries `ext.history = {since, epoch}`, unless the application set `ext.history`
 * itself (e.g. `cometd.subscribe(channel, callback, {ext: {history: {since: 0}}})`). Wildcard
 * subscriptions never carry `since`: positions belong to channels, resume each on its own.
 * Positions are kept across handshakes and unsubscriptions (`forget` or `clear` them).
 */
export class HistoryExtension {
    /** @type {Map<string, Position>} */
    #positions = new Map();
    /** The position each pending resuming subscribe was sent with, by channel. */
    #asked = new Map();
    #storage;
    #storageKey;
    #dropDuplicates;
    #cometd = null;

    /**
     * Called with the channel and the server's answer when a subscription that asked to resume
     * is acknowledged. May be set after construction.
     * @type {((channel: string, recovery: Recovery) => void) | null}
     */
    onRecovery;

    /**
     * How many delivered messages were dropped as duplicates (see `dropDuplicates`): a server
     * that keeps its contract never sends any, whatever the network does.
     */
    duplicates = 0;

    /**
     * @param {object} [options]
     * @param {PositionStorage} [options.storage] where positions are saved on every change and
     *   read from at construction (e.g. `window.sessionStorage`: one tab's positions; a
     *   `localStorage` shared by several tabs would mix them up)
     * @param {string} [options.storageKey] the storage key (default `"org.cometd.history"`)
     * @param {(channel: string, recovery: Recovery) => void} [options.onRecovery] see `onRecovery`
     * @param {boolean} [options.dropDuplicates] drop a delivered message at or before the
     *   channel's known position in the same epoch: the client already had it. That happens
     *   when a client re-subscribes while messages of its previous subscription are still on
     *   their way (they are delivered and then replayed). Default `true`.
     */
    constructor({storage = null, storageKey = "org.cometd.history", onRecovery = null, dropDuplicates = true} = {}) {
        this.#storage = storage;
        this.#storageKey = storageKey;
        this.onRecovery = onRecovery;
        this.#dropDuplicates = dropDuplicates;
        this.#load();
    }

    /** Called by `cometd.registerExtension`. */
    registered(name, cometd) {
        this.#cometd = cometd;
    }

    /** Called by `cometd.unregisterExtension`. */
    unregistered() {
        this.#cometd = null;
    }

    /**
     * The position of the last message the client has on `channel`, if known.
     * @param {string} channel
     * @returns {Position | undefined}
     */
    positionOf(channel) {
        const position = this.#positions.get(channel);
        return position && {...position};
    }

    /**
     * Every known position, by channel (what the storage holds).
     * @returns {Record<string, Position>}
     */
    positions() {
        return Object.fromEntries([...this.#positions].map(([channel, position]) => [channel, {...position}]));
    }

    /**
     * Sets where the client is on `channel`, e.g. after loading the channel's state another way
     * (a snapshot taken at that position): the next subscribe resumes after it.
     * @param {string} channel a channel name, not a wildcard
     * @param {Position} position
     */
    setPosition(channel, position) {
        if (typeof channel !== "string" || !channel.startsWith("/") || isWild(channel)) {
            throw new Error(`HistoryExtension: positions are for one channel, not ${JSON.stringify(channel)}`);
        }
        if (!isPosition(position)) {
            throw new Error(`HistoryExtension: not a position: ${JSON.stringify(position)}`);
        }
        this.#positions.set(channel, {offset: position.offset, epoch: position.epoch});
        this.#save();
    }

    /** Forgets `channel`'s position: the next subscribe to it starts from now. */
    forget(channel) {
        if (this.#positions.delete(channel)) {
            this.#save();
        }
    }

    /** Forgets every position. */
    clear() {
        this.#positions.clear();
        this.#save();
    }

    /** @param {object} message */
    outgoing(message) {
        if (message.channel === "/meta/handshake") {
            this.#asked.clear();
        } else if (message.channel === "/meta/subscribe") {
            const channel = message.subscription;
            const position = typeof channel === "string" && !isWild(channel) && this.#positions.get(channel);
            if (position && message.ext?.history === undefined) {
                message.ext = {...message.ext, history: {since: position.offset, epoch: position.epoch}};
                this.#asked.set(channel, position);
            }
        }
        return message;
    }

    /** @param {object} message */
    incoming(message) {
        const channel = message.channel;
        const history = message.ext?.history;
        if (typeof channel !== "string" || !isPosition(history)) {
            return message;
        }
        if (channel === "/meta/subscribe") {
            this.#subscribed(message, history);
            return message;
        }
        // A delivered message (a publish reply carries the position too, but the client does not
        // have the message: it is not counted).
        if (channel.startsWith("/meta/") || message.data === undefined || message.successful !== undefined) {
            return message;
        }
        const known = this.#positions.get(channel);
        if (known && known.epoch === history.epoch && history.offset <= known.offset) {
            if (this.#dropDuplicates) {
                this.duplicates += 1;
                this.#cometd?._debug?.("HistoryExtension: dropped a duplicate", message);
                return null;
            }
            return message;
        }
        this.#positions.set(channel, {offset: history.offset, epoch: history.epoch});
        this.#save();
        return message;
    }

    /** A subscribe reply with `ext.history`. */
    #subscribed(message, history) {
        const channel = message.subscription;
        if (message.successful !== true || typeof channel !== "string" || isWild(channel)) {
            return;
        }
        const asked = this.#asked.get(channel);
        this.#asked.delete(channel);
        const known = this.#positions.get(channel);
        const reply = {offset: history.offset, epoch: history.epoch};
        if (typeof history.recovered !== "boolean") {
            // Where a subscription without `since` starts (a message that overtook this reply
            // may already have moved further).
            if (!known || known.epoch !== reply.epoch || known.offset < reply.offset) {
                this.#positions.set(channel, reply);
                this.#save();
            }
            return;
        }
        if (!history.recovered && (!known || known === asked || known.epoch !== reply.epoch || known.offset < reply.offset)) {
            // Nothing old comes: live messages continue after the channel's current position
            // (unless a live one already came, which `known` then is).
            this.#positions.set(channel, reply);
            this.#save();
        }
        // Recovered: the missed messages follow and move the position themselves.
        const since = asked ? asked.offset : null;
        this.onRecovery?.(channel, {recovered: history.recovered, epoch: reply.epoch, offset: reply.offset, since});
    }

    #load() {
        if (!this.#storage) {
            return;
        }
        try {
            const saved = JSON.parse(this.#storage.getItem(this.#storageKey) || "{}");
            for (const [channel, position] of Object.entries(saved)) {
                if (channel.startsWith("/") && !isWild(channel) && isPosition(position)) {
                    this.#positions.set(channel, {offset: position.offset, epoch: position.epoch});
                }
            }
        } catch {
            // Unreadable: start without positions.
        }
    }

    #save() {
        if (!this.#storage) {
            return;
        }
        try {
            this.#storage.setItem(this.#storageKey, JSON.stringify(Object.fromEntries(this.#positions)));
        } catch {
            // Full or disabled storage: positions stay in memory.
        }
    }
}
