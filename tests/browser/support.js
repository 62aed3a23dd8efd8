// Shared machinery of the browser tests: real pods (and, for the cluster scenario, a
// redis-server and a MongoDB wire server) on free loopback ports, one Debian Chromium per
// user driven by playwright-core, and helpers that speak the web client's data-testid hooks.
//
// Nothing here sleeps for correctness: every wait is on a condition (a testid, an
// attribute, a health check) with a deadline, and fails with what it last saw.
import { spawn, execFileSync } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { chromium } from "playwright-core";

export const HERE = path.dirname(fileURLToPath(import.meta.url));
export const REPO = path.resolve(HERE, "../..");
export const PARLOR_BIN =
  process.env.PARLOR_BIN ||
  process.env.BROWSER_TESTS_PARLOR_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(REPO, "target"), "debug/parlor");
export const CHROMIUM = process.env.BROWSER_TESTS_CHROMIUM || "/usr/bin/chromium";
export const SECANTUS = process.env.BROWSER_TESTS_SECANTUS || path.join(os.homedir(), ".cache/parlor/secantus/bin/secantusd-py");
export const REDIS = process.env.BROWSER_TESTS_REDIS || "redis-server";
/** Where a failed scenario leaves its screenshots, page logs and pod logs. */
export const ARTIFACTS = path.join(HERE, "artifacts");

/** The flags every Chromium of these tests runs with (checked on chrome://version). */
export const CHROMIUM_FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

export const VIEWPORT = { width: 1280, height: 800 };

// --- processes -------------------------------------------------------------------------

/** Every child process still running, so that nothing outlives the test process. */
const children = new Set();
process.on("exit", () => {
  for (const c of children) {
    try {
      c.kill("SIGKILL");
    } catch {
      /* already gone */
    }
  }
});
for (const sig of ["SIGINT", "SIGTERM"]) {
  process.once(sig, () => process.exit(130));
}

function track(child) {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Stops one child that we started: SIGTERM, then SIGKILL after `graceMs`. */
async function stopChild(child, graceMs = 3000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once("exit", resolve));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

/** The environment of this process without any PARLOR_* variable (the pod refuses unknown ones). */
export function cleanEnv(extra = {}) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("PARLOR_")) env[k] = v;
  return { ...env, ...extra };
}

/** A free TCP port on 127.0.0.1 (bound, then released). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

export function tmpDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), `parlor-bt-${prefix}-`));
}

/** Polls `fn` until it returns a truthy value; throws with `what` and the last result. */
export async function until(fn, { timeout = 15_000, interval = 50, what = "condition" } = {}) {
  const end = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) {
      const detail = last instanceof Error ? last.message : JSON.stringify(last);
      throw new Error(`timed out after ${timeout} ms waiting for ${what} (last: ${detail})`);
    }
    await new Promise((r) => setTimeout(r, interval));
  }
}

function tail(file, lines = 40) {
  try {
    return fs.readFileSync(file, "utf8").trimEnd().split("\n").slice(-lines).join("\n");
  } catch {
    return "(no log)";
  }
}

function tcpOpen(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Sends one inline command to a redis-server and resolves with the first reply line. */
function redisCommand(port, command) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port });
    let buf = "";
    s.setTimeout(1000, () => {
      s.destroy();
      reject(new Error("redis timeout"));
    });
    s.once("error", reject);
    s.on("data", (d) => {
      buf += d.toString();
      if (buf.includes("\r\n")) {
        s.end();
        resolve(buf.split("\r\n")[0]);
      }
    });
    s.write(`${command}\r\n`);
  });
}

/** A pod started from the built binary, with its own ports, data dir and log. */
export class Pod {
  constructor({ name = "pod", env = {}, dataDir } = {}) {
    this.name = name;
    this.extraEnv = env;
    this.dataDir = dataDir ?? tmpDir(name);
    this.log = path.join(this.dataDir, "pod.log");
  }

  /** Starts the pod; a start that fails because a port was taken meanwhile is retried. */
  async start() {
    if (!fs.existsSync(PARLOR_BIN)) throw new Error(`no pod binary at ${PARLOR_BIN} (build it, or set BROWSER_TESTS_PARLOR_BIN)`);
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.startOnce();
      } catch (e) {
        const portTaken = /address already in use|os error 98/i.test(String(e?.message));
        if (!portTaken || attempt >= 3) throw e;
      }
    }
  }

  async startOnce() {
    this.publicPort = await freePort();
    this.adminPort = await freePort();
    const env = cleanEnv({
      // Both test users sign in from 127.0.0.1: one address's budgets would be shared by
      // what are two people in real life, so the per-address limits are raised.
      PARLOR_GUARD__AUTH_PER_MIN: "600",
      PARLOR_GUARD__REST_PER_MIN: "6000",
      PARLOR_SERVER__SHUTDOWN_GRACE_SECS: "2",
      PARLOR_SERVER__POD_NAME: this.name,
      PARLOR_LOG_LEVEL: "info",
      ...this.extraEnv,
    });
    const out = fs.openSync(this.log, "a");
    this.child = track(
      spawn(
        PARLOR_BIN,
        ["serve", "--public-addr", `127.0.0.1:${this.publicPort}`, "--admin-addr", `127.0.0.1:${this.adminPort}`, "--data-dir", this.dataDir],
        { cwd: this.dataDir, env, stdio: ["ignore", out, out] },
      ),
    );
    fs.closeSync(out);
    let exited = false;
    this.child.once("exit", () => (exited = true));
    await until(
      async () => {
        if (exited) throw new Error(`pod ${this.name} exited during start-up:\n${tail(this.log)}`);
        const r = await fetch(`http://127.0.0.1:${this.adminPort}/health/ready`).catch(() => undefined);
        return r?.status === 200;
      },
      { timeout: 30_000, what: `pod ${this.name} to be ready` },
    ).catch((e) => {
      throw new Error(`${e.message}\n${tail(this.log)}`);
    });
    return this;
  }

  /** The page URL: localhost, so that the pod's Secure session cookie is kept. */
  get url() {
    return `http://localhost:${this.publicPort}`;
  }

  /** A REST call made from Node (no Origin header), JSON in and out. */
  async api(method, p, body, token) {
    const r = await fetch(`http://127.0.0.1:${this.publicPort}${p}`, {
      method,
      headers: { "content-type": "application/json", ...(token ? { authorization: `Bearer ${token}` } : {}) },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await r.text();
    if (!r.ok) throw new Error(`${method} ${p}: ${r.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }

  logTail(lines) {
    return tail(this.log, lines);
  }

  async stop() {
    if (this.child) await stopChild(this.child);
  }
}

export class RedisServer {
  async start() {
    this.port = await freePort();
    this.dir = tmpDir("redis");
    this.log = path.join(this.dir, "redis.log");
    const out = fs.openSync(this.log, "a");
    this.child = track(
      spawn(REDIS, ["--port", String(this.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", this.dir], {
        stdio: ["ignore", out, out],
      }),
    );
    fs.closeSync(out);
    await until(async () => (await redisCommand(this.port, "PING").catch(() => "")) === "+PONG", {
      timeout: 15_000,
      what: "redis-server to answer PING",
    }).catch((e) => {
      throw new Error(`${e.message}\n${tail(this.log)}`);
    });
    return this;
  }
  get url() {
    return `redis://127.0.0.1:${this.port}/0`;
  }
  async stop() {
    if (this.child) await stopChild(this.child);
  }
}

/** SecantusDB, a MongoDB wire server, in memory. */
export class MongoServer {
  async start() {
    if (!fs.existsSync(SECANTUS)) throw new Error(`no SecantusDB at ${SECANTUS} (scripts/test-deps.sh installs it)`);
    this.port = await freePort();
    this.dir = tmpDir("mongo");
    this.log = path.join(this.dir, "mongo.log");
    const out = fs.openSync(this.log, "a");
    this.child = track(
      spawn(SECANTUS, ["--host", "127.0.0.1", "--port", String(this.port), "--storage-path", ":memory:"], {
        stdio: ["ignore", out, out],
      }),
    );
    fs.closeSync(out);
    await until(() => tcpOpen(this.port), { timeout: 30_000, what: "the MongoDB wire server to listen" }).catch((e) => {
      throw new Error(`${e.message}\n${tail(this.log)}`);
    });
    return this;
  }
  get uri() {
    return `mongodb://127.0.0.1:${this.port}`;
  }
  async stop() {
    if (this.child) await stopChild(this.child);
  }
}

/** A signing key for pods that must share one (`parlor keygen`). */
export function keygen(dir = tmpDir("keys")) {
  execFileSync(PARLOR_BIN, ["keygen", "--out", dir], { env: cleanEnv(), stdio: "ignore" });
  return path.join(dir, "signing.pem");
}

/**
 * A TCP proxy in front of a pod: the page is served through it, so that a network cut can
 * be made real. `cut()` resets every connection through it and refuses new ones until
 * `restore()`. (Chromium's offline emulation, context.setOffline, leaves WebSockets that are
 * already open untouched: alone it cannot make the page lose its socket.)
 */
export class CutProxy {
  constructor(targetPort) {
    this.targetPort = targetPort;
    this.sockets = new Set();
    this.down = false;
    this.cuts = 0;
  }
  async start() {
    this.server = net.createServer((client) => {
      if (this.down) {
        client.resetAndDestroy();
        return;
      }
      const upstream = net.connect({ host: "127.0.0.1", port: this.targetPort });
      const pair = [client, upstream];
      for (const s of pair) {
        this.sockets.add(s);
        s.on("error", () => undefined);
        s.once("close", () => {
          this.sockets.delete(s);
          for (const o of pair) if (o !== s) o.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.port = this.server.address().port;
    return this;
  }
  get url() {
    return `http://localhost:${this.port}`;
  }
  cut() {
    this.down = true;
    this.cuts += 1;
    for (const s of [...this.sockets]) {
      if (typeof s.resetAndDestroy === "function") s.resetAndDestroy();
      else s.destroy();
    }
  }
  restore() {
    this.down = false;
  }
  async stop() {
    this.cut();
    await new Promise((resolve) => this.server?.close(resolve) ?? resolve());
  }
}

// --- browsers --------------------------------------------------------------------------

/** One person: their own Chromium with a fresh profile (user-data-dir), and one page. */
export class User {
  constructor(label) {
    this.label = label;
    this.errors = [];
    this.console = [];
  }

  async launch() {
    this.profile = tmpDir(`chromium-${this.label}`);
    this.context = await chromium.launchPersistentContext(this.profile, {
      executablePath: CHROMIUM,
      headless: true,
      chromiumSandbox: false,
      args: CHROMIUM_FLAGS,
      viewport: VIEWPORT,
      locale: "en-GB",
      timezoneId: "UTC",
      reducedMotion: "reduce",
    });
    this.context.setDefaultTimeout(15_000);
    this.page = this.context.pages()[0] ?? (await this.context.newPage());
    this.page.on("pageerror", (e) => this.errors.push(`${e.name}: ${e.message}`));
    this.page.on("console", (m) => this.console.push(`[${m.type()}] ${m.text()}`));
    return this;
  }

  /** The command line Chromium really runs with (to check that the flags are applied). */
  async commandLine() {
    const p = await this.context.newPage();
    try {
      await p.goto("chrome://version");
      return (await p.locator("#command_line").textContent()) ?? "";
    } finally {
      await p.close();
    }
  }

  get id() {
    return this.userId;
  }

  async close() {
    await this.context?.close().catch(() => undefined);
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

// --- one scenario ----------------------------------------------------------------------

/**
 * Everything one scenario started, stopped at its end whatever happens. On failure it
 * saves a screenshot and the console of every page, and the pods' log tails, under
 * tests/browser/artifacts/<scenario>/.
 */
export class Harness {
  constructor(name) {
    this.name = name;
    this.slug = name.replace(/[^a-z0-9]+/gi, "-").replace(/^-|-$/g, "").toLowerCase().slice(0, 60);
    this.pods = [];
    this.users = [];
    this.others = [];
  }
  async pod(opts) {
    const p = new Pod(opts);
    this.pods.push(p);
    return p.start();
  }
  async redis() {
    const r = new RedisServer();
    this.others.push(r);
    return r.start();
  }
  async mongo() {
    const m = new MongoServer();
    this.others.push(m);
    return m.start();
  }
  async proxy(port) {
    const p = new CutProxy(port);
    this.others.push(p);
    return p.start();
  }
  /** A signing key that several pods share; removed with the harness. */
  keygen() {
    const dir = tmpDir("keys");
    this.others.push({ dir, stop: async () => undefined });
    return keygen(dir);
  }
  async user(label) {
    const u = new User(label);
    this.users.push(u);
    return u.launch();
  }
  /** Uncaught exceptions and unhandled rejections in any page fail the scenario. */
  assertNoPageErrors() {
    const errs = this.users.flatMap((u) => u.errors.map((e) => `${u.label}: ${e}`));
    if (errs.length) throw new Error(`uncaught errors in the page:\n${errs.join("\n")}`);
  }
  async diagnose(err) {
    const dir = path.join(ARTIFACTS, this.slug);
    fs.mkdirSync(dir, { recursive: true });
    const notes = [`${this.name}\n${err?.stack ?? err}\n`];
    for (const u of this.users) {
      try {
        await u.page.screenshot({ path: path.join(dir, `${u.label}.png`), timeout: 5000 });
      } catch {
        /* the page may be gone */
      }
      notes.push(`--- ${u.label} page errors\n${u.errors.join("\n")}\n--- ${u.label} console\n${u.console.slice(-60).join("\n")}`);
    }
    for (const p of this.pods) notes.push(`--- pod ${p.name} log tail\n${p.logTail(60)}`);
    fs.writeFileSync(path.join(dir, "notes.txt"), notes.join("\n\n"));
    console.error(`scenario "${this.name}" failed: artifacts in ${dir}`);
  }
  async close() {
    await Promise.all(this.users.map((u) => u.close()));
    await Promise.all(this.pods.map((p) => p.stop()));
    await Promise.all(this.others.map((o) => o.stop()));
    for (const p of this.pods) fs.rmSync(p.dataDir, { recursive: true, force: true });
    for (const o of this.others) if (o.dir) fs.rmSync(o.dir, { recursive: true, force: true });
  }
}

/**
 * A node:test test with a harness, bounded by `timeout` (the harness is torn down even when
 * the deadline passes), that fails on any uncaught error in a page.
 */
export function scenario(name, opts, fn) {
  if (typeof opts === "function") [opts, fn] = [{}, opts];
  const { timeout = 60_000, ...testOpts } = opts;
  test(name, { ...testOpts, timeout: timeout + 15_000 }, async (t) => {
    const h = new Harness(name);
    let timer;
    const started = Date.now();
    try {
      await Promise.race([
        fn(h, t),
        new Promise((_, reject) => {
          timer = setTimeout(() => reject(new Error(`scenario took longer than ${timeout} ms`)), timeout);
        }),
      ]);
      h.assertNoPageErrors();
      t.diagnostic(`took ${((Date.now() - started) / 1000).toFixed(1)} s`);
    } catch (e) {
      // A todo scenario documents a known bug: its failure is expected, and left quiet.
      if (!testOpts.todo) await h.diagnose(e).catch(() => undefined);
      throw e;
    } finally {
      clearTimeout(timer);
      await h.close();
    }
  });
}

// --- the web client, through its data-testid hooks ---------------------------------------

/** Waits until the header's connection banner shows `state`. */
export async function waitConnection(page, state, timeout = 15_000) {
  await page.waitForFunction(
    (s) => document.querySelector("[data-testid=connection-status]")?.getAttribute("data-state") === s,
    state,
    { timeout },
  );
}

/** Signs in as a guest on the sign-in page of `baseUrl`; resolves at the lobby, connected. */
export async function signInGuest(user, baseUrl, name) {
  const { page } = user;
  await page.goto(`${baseUrl}/#/signin`);
  await page.getByTestId("guest-name").fill(name);
  await page.getByTestId("guest-submit").click();
  const who = page.getByTestId("current-user");
  await who.waitFor();
  await page.getByTestId("create-room").waitFor();
  await waitConnection(page, "connected");
  user.userId = await who.getAttribute("data-user-id");
  user.name = name;
  user.baseUrl = baseUrl;
  return user;
}

/** Creates a room with the lobby's form; resolves in the room with its id and code. */
export async function createRoom(user, { name, kind, public: isPublic = true, password = "", max, cards, trivia } = {}) {
  const { page } = user;
  await page.getByTestId("create-name").fill(name);
  await page.getByTestId("create-kind").selectOption(kind);
  const pub = page.getByTestId("create-public");
  if ((await pub.isChecked()) !== isPublic) await pub.setChecked(isPublic);
  if (password) await page.getByTestId("create-password").fill(password);
  if (max) await page.getByTestId("create-max").fill(String(max));
  if (cards?.turnOrder !== undefined) await page.getByTestId("create-turn-order").selectOption(String(cards.turnOrder));
  if (cards?.turnTimeoutSecs !== undefined) await page.getByTestId("create-turn-timeout").fill(String(cards.turnTimeoutSecs));
  if (trivia?.autoStart !== undefined) await page.getByTestId("create-auto-start").fill(String(trivia.autoStart));
  await page.getByTestId("create-submit").click();
  return inRoom(user, { kind });
}

/** Waits until the page shows a joined room; resolves with its id and code. */
export async function inRoom(user, { kind, id } = {}) {
  const { page } = user;
  const room = page.getByTestId("room");
  await room.waitFor();
  const roomId = await room.getAttribute("data-room-id");
  if (id && roomId !== id) throw new Error(`${user.label} is in room ${roomId}, not ${id}`);
  if (kind && (await room.getAttribute("data-kind")) !== kind) throw new Error(`${user.label}'s room is not a ${kind} room`);
  const code = ((await page.getByTestId("room-code-display").textContent()) ?? "").trim();
  return { id: roomId, code };
}

/** Joins a room by its code with the lobby's form. */
export async function joinByCode(user, room, { password = "", watch = false } = {}) {
  const { page } = user;
  await page.getByTestId("room-code").fill(room.code);
  if (password) await page.getByTestId("join-password").fill(password);
  if (watch) await page.getByTestId("join-watch").check();
  await page.getByTestId("join-code").click();
  return inRoom(user, { id: room.id });
}

/** Says `text` in the room's chat, and waits until the line is in the sender's own log. */
/** `guest` joins `owner`'s room by its code, and both pages list both: owner and player. */
export async function joinAndList(owner, guest, room) {
  await joinByCode(guest, room);
  const both = [
    { userId: owner.id, role: "owner" },
    { userId: guest.id, role: "player" },
  ];
  await waitForMembers(owner.page, both);
  await waitForMembers(guest.page, both);
  return both;
}

export async function say(user, text) {
  const { page } = user;
  await page.getByTestId("chat-input").fill(text);
  await page.getByTestId("chat-send").click();
  await page.getByTestId("chat-log").getByTestId("chat-message").filter({ hasText: text }).first().waitFor();
}

/** The chat log's lines: who said what, with their room sequence numbers. */
export async function chatLines(page) {
  return page.getByTestId("chat-message").evaluateAll((els) =>
    els.map((el) => ({
      seq: Number(el.getAttribute("data-seq") ?? 0),
      userId: el.getAttribute("data-user-id"),
      from: el.querySelector(".from")?.textContent ?? "",
      text: el.querySelector(".text")?.textContent ?? "",
    })),
  );
}

/** Waits until the chat log holds a line with exactly `text` (from `userId`, if given). */
export async function waitForChat(page, text, userId, timeout = 15_000) {
  await until(async () => (await chatLines(page)).some((l) => l.text === text && (!userId || l.userId === userId)), {
    timeout,
    what: `chat line "${text}"`,
  });
}

/** The member list: id, role, status and the name shown. */
export async function memberList(page) {
  return page.getByTestId("member").evaluateAll((els) =>
    els.map((el) => ({
      userId: el.getAttribute("data-user-id"),
      role: el.getAttribute("data-role"),
      status: el.getAttribute("data-status"),
      name: el.querySelector(".member-name")?.textContent ?? "",
    })),
  );
}

/** Waits until the member list shows exactly `expected` ({userId, role}, any order). */
export async function waitForMembers(page, expected, timeout = 15_000) {
  const want = expected.map((m) => `${m.userId}:${m.role}`).sort().join(",");
  return until(
    async () => {
      const got = await memberList(page);
      return got.map((m) => `${m.userId}:${m.role}`).sort().join(",") === want ? got : false;
    },
    { timeout, what: `members ${want}` },
  );
}

/** Records every data-state the connection banner takes from now on, in page memory. */
export async function recordConnectionStates(page) {
  await page.evaluate(() => {
    const el = document.querySelector("[data-testid=connection-status]");
    const w = window;
    w.__connStates = [el.getAttribute("data-state")];
    new MutationObserver(() => w.__connStates.push(el.getAttribute("data-state"))).observe(el, {
      attributes: true,
      attributeFilter: ["data-state"],
    });
  });
}

export async function connectionStates(page) {
  return page.evaluate(() => window.__connStates ?? []);
}

// --- axe-core ----------------------------------------------------------------------------

const AXE_SOURCE = fs.readFileSync(path.join(HERE, "node_modules/axe-core/axe.min.js"), "utf8");

/**
 * Runs axe-core on the page as it is, and resolves with the violations of impact serious
 * or critical. The pod's CSP (script-src 'self') refuses an injected <script>, so axe's
 * source is evaluated through the DevTools protocol (page.evaluate), which CSP does not
 * govern; the page keeps its real CSP.
 */
export async function axeViolations(page, { include } = {}) {
  const loaded = await page.evaluate(() => typeof window.axe === "object");
  if (!loaded) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(async (ctx) => {
    const r = await window.axe.run(ctx ?? document, { resultTypes: ["violations"] });
    return r.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.map((n) => ({ target: n.target.join(" "), summary: n.failureSummary })),
    }));
  }, include ?? null);
  return result.filter((v) => v.impact === "serious" || v.impact === "critical");
}

export function formatViolations(where, vs) {
  return vs
    .map((v) => `${where}: [${v.impact}] ${v.id}: ${v.help}\n${v.nodes.map((n) => `    ${n.target}\n      ${n.summary?.replace(/\n/g, "\n      ")}`).join("\n")}`)
    .join("\n");
}
