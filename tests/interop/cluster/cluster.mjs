// Shared by the cluster scenarios (tests/interop/cluster/*.test.mjs, run by
// `cargo test --all-features --test interop_cluster`): two conformance nodes joined into one
// Bayeux space through one Redis, driven with the official CometD client (../helpers.mjs).
//
// Environment (set by tests/interop_cluster.rs):
//   CLUSTER_URL_A, CLUSTER_URL_B  the Bayeux endpoints of the two nodes (COMETD_URL is A's)
//   REDIS_URL                     the Redis they share
//   CONFORMANCE_BIN, CONFORMANCE_ARGS  a conformance binary built with the `redis` feature and
//                                 `--redis REDIS_URL`: startNode() starts more nodes of the space

import assert from "node:assert/strict";
import {once} from "node:events";
import http from "node:http";
import net from "node:net";
import {startServer} from "../helpers.mjs";

function required(name) {
    const value = process.env[name];
    if (!value) {
        throw new Error(`${name} is not set: run the cluster scenarios through \`cargo test --all-features --test interop_cluster\``);
    }
    return value;
}

export const URL_A = required("CLUSTER_URL_A");
export const URL_B = required("CLUSTER_URL_B");
export const REDIS_URL = required("REDIS_URL");

/** Generous bound for cross-node traffic to settle (deliveries, re-handshakes). */
export const SETTLE_TIMEOUT = 30000;

/**
 * Starts one more node of the space (a conformance process of this test's own, which it may
 * kill). Resolves with {origin, url, port, child, kill()} (see helpers.mjs startServer).
 */
export async function startNode() {
    const args = (process.env.CONFORMANCE_ARGS || "").split(/\s+/);
    assert.ok(args.includes("--redis") && args.includes(REDIS_URL),
        `CONFORMANCE_ARGS must join private nodes to ${REDIS_URL}, is ${JSON.stringify(process.env.CONFORMANCE_ARGS)}`);
    return startServer(0);
}

/** Hop-by-hop headers: each side of the balancer has its own connection. */
const HOP_BY_HOP = new Set(["connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade", "te", "trailer"]);

function endToEnd(headers) {
    return Object.fromEntries(Object.entries(headers).filter(([name]) => !HOP_BY_HOP.has(name.toLowerCase())));
}

/**
 * A load balancer with one backend at a time: each HTTP request is forwarded (on a connection
 * of its own) to the backend of the moment, each websocket upgrade is forwarded and then piped
 * both ways. When the backend fails, a request without a response yet gets `502`, a response
 * or websocket in progress is cut. Resolves with {url, switchTo(url), severAll(), forwarded,
 * close()}; `forwarded` lists {kind: "http"|"upgrade", backend, path, status}.
 *
 * `switchTo(null)` leaves it without a backend (the client cut off from every node): requests
 * get `502` at once, upgrades are refused by closing the socket (`backend` is then `null`).
 * `severAll()` cuts every connection in progress (requests, responses, websockets) now, as a
 * network failure between the client and the balancer would.
 */
export async function startBalancer(backendUrl) {
    let backend = backendUrl === null ? null : new URL(backendUrl);
    const forwarded = [];
    const sockets = new Set();

    const server = http.createServer((req, res) => {
        const entry = {kind: "http", backend: backend && backend.port, path: req.url, status: 0};
        forwarded.push(entry);
        const badGateway = () => {
            entry.status = 502;
            res.writeHead(502, {"Content-Type": "text/plain", "Connection": "close"});
            res.end("bad gateway");
        };
        if (backend === null) {
            req.resume();
            badGateway();
            return;
        }
        const upstream = http.request({
            host: backend.hostname,
            port: backend.port,
            method: req.method,
            path: req.url,
            headers: endToEnd(req.headers),
            agent: false,
        }, (response) => {
            entry.status = response.statusCode;
            res.writeHead(response.statusCode, endToEnd(response.headers));
            response.pipe(res);
            response.on("aborted", () => res.destroy());
            response.on("error", () => res.destroy());
        });
        upstream.on("error", () => {
            if (!res.headersSent) {
                badGateway();
            } else {
                res.destroy();
            }
        });
        res.on("close", () => upstream.destroy());
        req.pipe(upstream);
    });

    server.on("upgrade", (req, socket, head) => {
        const entry = {kind: "upgrade", backend: backend && backend.port, path: req.url, status: 0};
        forwarded.push(entry);
        if (backend === null) {
            socket.destroy();
            return;
        }
        const upstream = net.connect(Number(backend.port), backend.hostname);
        sockets.add(upstream);
        const close = () => {
            socket.destroy();
            upstream.destroy();
        };
        upstream.on("connect", () => {
            entry.status = 101;
            const lines = [`${req.method} ${req.url} HTTP/${req.httpVersion}`];
            for (let i = 0; i < req.rawHeaders.length; i += 2) {
                lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
            }
            upstream.write(lines.join("\r\n") + "\r\n\r\n");
            if (head.length > 0) {
                upstream.write(head);
            }
            upstream.pipe(socket);
            socket.pipe(upstream);
        });
        upstream.on("error", close);
        upstream.on("close", () => {
            sockets.delete(upstream);
            close();
        });
        socket.on("error", close);
        socket.on("close", close);
    });

    server.on("connection", (socket) => {
        sockets.add(socket);
        socket.on("close", () => sockets.delete(socket));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    return {
        url: `http://127.0.0.1:${server.address().port}/cometd`,
        forwarded,
        switchTo(url) {
            backend = url === null ? null : new URL(url);
        },
        severAll() {
            for (const socket of [...sockets]) {
                socket.destroy();
            }
        },
        async close() {
            server.close();
            for (const socket of sockets) {
                socket.destroy();
            }
            await once(server, "close").catch(() => {});
        },
    };
}
