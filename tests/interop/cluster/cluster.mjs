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
