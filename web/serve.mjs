// A development server: serves dist/ with the pod's Content-Security-Policy, and passes
// /api, /ws and /.well-known through to a running pod, so the page, the REST calls and
// the WebSocket share one origin (as they do when the pod serves dist/ itself).
//
//   node serve.mjs [--port 5173] [--pod http://127.0.0.1:8080]
//
// No dependencies: node:http for files and REST, a raw socket pipe for the WebSocket.
import { createReadStream, existsSync, statSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.join(here, "dist");
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
};
const port = Number(arg("--port", "5173"));
const pod = new URL(arg("--pod", process.env.PARLOR_POD ?? "http://127.0.0.1:8080"));

const CSP =
  "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self'; img-src 'self' data:; " +
  "script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
const TYPES = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".svg": "image/svg+xml",
  ".json": "application/json",
};
const proxied = (url) => url.startsWith("/api/") || url === "/ws" || url.startsWith("/ws?") || url.startsWith("/.well-known/");

const server = http.createServer((req, res) => {
  const url = req.url ?? "/";
  if (proxied(url)) {
    const up = http.request(
      { host: pod.hostname, port: pod.port || 80, method: req.method, path: url, headers: req.headers },
      (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      },
    );
    up.on("error", (e) => {
      res.writeHead(502, { "content-type": "application/json" });
      res.end(JSON.stringify({ error: { code: "UNAVAILABLE", message: `dev server: pod unreachable (${e.message})` } }));
    });
    req.pipe(up);
    return;
  }
  const rel = decodeURIComponent(url.split("?")[0]);
  let file = path.join(dist, rel === "/" ? "index.html" : rel);
  if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) {
    file = path.join(dist, "index.html");
  }
  const hashed = file.includes(`${path.sep}assets${path.sep}`);
  res.writeHead(200, {
    "content-type": TYPES[path.extname(file)] ?? "application/octet-stream",
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "cache-control": hashed ? "public, max-age=31536000, immutable" : "no-cache",
  });
  createReadStream(file).pipe(res);
});

// WebSocket: replay the upgrade request to the pod and pipe the two sockets.
server.on("upgrade", (req, socket, head) => {
  if (!proxied(req.url ?? "")) return socket.destroy();
  const up = net.connect(Number(pod.port || 80), pod.hostname, () => {
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (let i = 0; i < req.rawHeaders.length; i += 2) lines.push(`${req.rawHeaders[i]}: ${req.rawHeaders[i + 1]}`);
    up.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head?.length) up.write(head);
    up.pipe(socket);
    socket.pipe(up);
  });
  const close = () => {
    up.destroy();
    socket.destroy();
  };
  up.on("error", close);
  socket.on("error", close);
});

server.listen(port, "127.0.0.1", () => {
  console.log(`serve: http://127.0.0.1:${port}/ (dist/), /api and /ws -> ${pod.origin}`);
});
