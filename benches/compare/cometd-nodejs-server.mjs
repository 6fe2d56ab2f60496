// cometd-nodejs-server behind a plain Node HTTP server, for benches/compare/run.sh.
//
//   node cometd-nodejs-server.mjs [--port 18081]
//
// Bayeux at /cometd (and below it), with the comparison's settings: long-poll timeout 20 s,
// max interval 10 s, interval 0, any number of sessions per browser. /service/echo sends the data
// it receives back to the sender on /service/echo. Prints `listening on http://ADDR` when ready.
import http from "node:http";
import cometd from "cometd-nodejs-server";

const args = process.argv.slice(2);
const port = Number(args[args.indexOf("--port") + 1] || 18081);

const server = cometd.createCometDServer({
    timeout: 20000,
    maxInterval: 10000,
    interval: 0,
    maxSessionsPerBrowser: -1,
    logLevel: "info",
});

server.createServerChannel("/service/echo").addListener("message", (session, channel, message, callback) => {
    session.deliver(null, "/service/echo", message.data);
    callback();
});

const httpServer = http.createServer((request, response) => {
    if (request.url === "/cometd" || request.url.startsWith("/cometd/")) {
        server.handle(request, response);
    } else {
        response.end("inner");
    }
});
httpServer.keepAliveTimeout = 60000;
httpServer.headersTimeout = 65000;
httpServer.requestTimeout = 0;
httpServer.listen(port, "127.0.0.1", () => {
    console.log(`listening on http://127.0.0.1:${httpServer.address().port}`);
});
process.on("SIGTERM", () => process.exit(0));
