import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { client, sleep, startPod, waitFor } from "./support.js";

// Access tokens live 3 s here, so the client must refresh them on its own.
const TTL_SECS = 3;
let pod;
const clients = [];
const make = (opts) => {
  const c = client(pod, opts);
  clients.push(c);
  return c;
};

before(async () => {
  pod = await startPod({ PARLOR_AUTH__ACCESS_TTL_SECS: String(TTL_SECS) });
});
after(async () => {
  for (const c of clients) c.close();
  await pod?.stop();
});

test("access tokens are refreshed before they expire", { timeout: 20_000 }, async () => {
  const c = make();
  const user = await c.guest("Refresher");
  const first = c.tokens;
  assert.ok(first.expiresAt - Date.now() <= TTL_SECS * 1000);
  const refreshes = [];
  c.on("auth", (a) => refreshes.push(a));
  // Past two lifetimes of the first token: only refreshed tokens can still work.
  await sleep(TTL_SECS * 2 * 1000 + 500);
  assert.ok(refreshes.length >= 2, `refreshed ${refreshes.length} times`);
  assert.ok(refreshes.every((r) => r.user?.id === user.id));
  const now = c.tokens;
  assert.notEqual(now.accessToken, first.accessToken);
  assert.notEqual(now.refreshToken, first.refreshToken, "refresh tokens rotate");
  assert.ok(now.expiresAt > Date.now());
  assert.equal((await c.me()).id, user.id);
  const w = await c.connect();
  assert.equal(w.user.id, user.id);
});

test("a refused token at connect: one refresh, then Hello again", { timeout: 20_000 }, async () => {
  const donor = make();
  await donor.guest("Donor");
  const { refreshToken } = donor.tokens;
  // The donor forgets its tokens, so that only `c` uses the refresh token (reuse revokes it).
  await donor.logout();
  const c = make();
  c.useTokens({ accessToken: "not-a-jwt", refreshToken, expiresAt: Date.now() + 3_600_000 });
  const refreshed = waitFor(c, "auth", (a) => a.user !== null);
  const w = await c.connect();
  assert.equal((await refreshed).user.id, w.user.id);
  assert.equal(w.user.name, "Donor");
  assert.notEqual(c.tokens.accessToken, "not-a-jwt");
});

test("a refresh the pod refuses signs out, and connect fails with the code", { timeout: 20_000 }, async () => {
  const c = make();
  c.useTokens({ accessToken: "not-a-jwt", refreshToken: "not-a-refresh-token", expiresAt: Date.now() + 3_600_000 });
  const out = waitFor(c, "auth", (a) => a.user === null);
  await assert.rejects(c.connect(), (e) => e.isAuth);
  assert.equal((await out).error.code, "TOKEN_INVALID");
  assert.equal(c.tokens, null);
  assert.equal(c.state, "closed");
});

test("after the first access token expired, a drop still resumes the session", { timeout: 20_000 }, async () => {
  const c = make({ reconnect: { initialDelayMs: 100, jitter: 0 } });
  const user = await c.guest("Long");
  await c.connect();
  const room = await c.createRoom({ name: "r", kind: "piano" });
  await sleep(TTL_SECS * 1000 + 500);
  const back = waitFor(c, "reconnected", () => true, 10_000);
  c.ws.last().terminate();
  const w = await back;
  assert.equal(w.user.id, user.id);
  assert.equal(c.rooms.get(room.id), room);
  assert.ok(room.joined);
});
