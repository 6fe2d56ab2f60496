// Faye's Node adapter behind a plain Node HTTP server, for benches/compare/run.sh.
//
//   node faye.mjs [--port 18082]
//
// Bayeux at /bayeux (long-polling and websocket), with the comparison's settings: long-poll
// timeout 20 s (Faye forgets a client 2 x timeout = 40 s after its last connect; it has no
// separate max interval), interval 0, no per-browser limit (Faye has none). /service/echo sends
// the data it receives back to the sender on /service/echo (Faye has no server-side `deliver`, so
// an extension queues the echo on the sender's inbox in the memory engine, as its publish does).
// Prints `listening on http://ADDR` when ready.
import http from "node:http";
import faye from "faye";

const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1] || 18082);

const bayeux = new faye.NodeAdapter({mount: "/bayeux", timeout: 20});

bayeux.addExtension({
    incoming(message, callback) {
        if (message.channel === "/service/echo" && message.clientId && message.data !== undefined) {
            const memory = bayeux._server._engine._engine;
            const clientId = message.clientId;
            const data = message.data;
            // After the publish itself is handled, as a delivery would be.
            queueMicrotask(() => {
                if (!memory._messages.has(clientId)) {
                    memory._messages.set(clientId, []);
                }
                memory._messages.get(clientId).push({channel: "/service/echo", data});
                memory.emptyQueue(clientId);
            });
        }
        callback(message);
    },
});

const httpServer = http.createServer((request, response) => {
    response.end("inner");
});
bayeux.attach(httpServer);
httpServer.keepAliveTimeout = 60000;
httpServer.headersTimeout = 65000;
httpServer.requestTimeout = 0;
httpServer.listen(port, "127.0.0.1", () => {
    console.log(`listening on http://127.0.0.1:${httpServer.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
