// Starts a real pod for a test file, on loopback ports, with a clean PARLOR_* environment.
import { spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import WebSocket from "ws";
import { ParlorClient } from "../dist/index.js";

const here = dirname(fileURLToPath(import.meta.url));

export function parlorBin() {
  if (process.env.PARLOR_BIN) return process.env.PARLOR_BIN;
  const candidates = [];
  if (process.env.CARGO_TARGET_DIR) candidates.push(join(process.env.CARGO_TARGET_DIR, "debug", "parlor"));
  candidates.push(resolve(here, "../../../target/debug/parlor"));
  const found = candidates.find((p) => existsSync(p));
  if (!found) throw new Error(`no parlor binary: set PARLOR_BIN (looked in ${candidates.join(", ")})`);
  return found;
}

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once("error", rej);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Starts a pod; `env` adds PARLOR_* settings (e.g. { PARLOR_AUTH__ACCESS_TTL_SECS: "3" }). */
export async function startPod(env = {}) {
  const [pub, admin] = [await freePort(), await freePort()];
  const dataDir = mkdtempSync(join(tmpdir(), "parlor-ts-"));
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("PARLOR_")));
  const child = spawn(
    parlorBin(),
    ["serve", "--public-addr", `127.0.0.1:${pub}`, "--admin-addr", `127.0.0.1:${admin}`, "--data-dir", dataDir],
    {
      env: {
        ...clean,
        // A test signs in many clients from one address.
        PARLOR_GUARD__AUTH_PER_MIN: "10000",
        PARLOR_GUARD__REST_PER_MIN: "10000",
        PARLOR_GUARD__WS_HANDSHAKES_PER_MIN: "10000",
        PARLOR_SERVER__SHUTDOWN_GRACE_SECS: "1",
        PARLOR_LOG_LEVEL: "warn",
        ...env,
      },
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
  // Never leave a pod behind, even if the test process dies early.
  const reap = () => child.kill("SIGKILL");
  process.once("exit", reap);
  let log = "";
  child.stdout.on("data", (d) => (log += d));
  child.stderr.on("data", (d) => (log += d));
  let exited = null;
  const exit = new Promise((r) => child.once("exit", (code, sig) => r((exited = { code, sig }))));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`pod exited early (${JSON.stringify(exited)}):\n${log}`);
    try {
      const r = await fetch(`http://127.0.0.1:${admin}/health/ready`);
      if (r.status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`pod not ready within 30 s:\n${log}`);
    }
    await sleep(100);
  }
  return {
    url: `http://127.0.0.1:${pub}`,
    log: () => log,
    async stop() {
      if (!exited) {
        child.kill("SIGTERM");
        const t = setTimeout(() => child.kill("SIGKILL"), 5_000);
        await exit;
        clearTimeout(t);
      }
      process.off("exit", reap);
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** `ws`'s WebSocket, remembering each instance so a test can cut one. */
export function trackedWebSocket() {
  const sockets = [];
  class Tracked extends WebSocket {
    constructor(url, protocols) {
      super(url, protocols);
      sockets.push(this);
    }
  }
  return { WebSocket: Tracked, sockets, last: () => sockets[sockets.length - 1] };
}

/** A client of `pod` on a tracked `ws`; `opts` go to ParlorClient. */
export function client(pod, opts = {}) {
  const ws = trackedWebSocket();
  const c = new ParlorClient({ url: pod.url, WebSocket: ws.WebSocket, ...opts });
  c.ws = ws;
  return c;
}

/** Resolves with the first `event` for which `pred` holds, or rejects after `ms`. */
export function waitFor(emitter, event, pred = () => true, ms = 5_000) {
  return new Promise((res, rej) => {
    const t = setTimeout(() => {
      off();
      rej(new Error(`no ${event} within ${ms} ms`));
    }, ms);
    const off = emitter.on(event, (arg) => {
      if (!pred(arg)) return;
      clearTimeout(t);
      off();
      res(arg);
    });
  });
}

/** Polls `cond` until it holds, or throws after `ms`. */
export async function until(cond, ms = 5_000, what = "condition") {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`${what} did not hold within ${ms} ms`);
    await sleep(20);
  }
}

/** Calls `fn` until `ok(result)`, and returns that result; throws after `ms`. */
export async function eventually(fn, ok, ms = 3_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await fn();
    if (ok(r)) return r;
    if (Date.now() > deadline) throw new Error(`not as wanted within ${ms} ms: ${JSON.stringify(r)}`);
    await sleep(50);
  }
}

export { sleep };
