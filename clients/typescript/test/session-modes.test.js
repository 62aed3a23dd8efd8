// The two session modes' REST traffic, against a recording fetch (the cookie routes are
// checked here until a pod serves them).
import assert from "node:assert/strict";
import { test } from "node:test";
import { ParlorClient } from "../dist/index.js";

function recorder(answer) {
  const calls = [];
  const fetch = async (url, init) => {
    const headers = Object.fromEntries(Object.entries(init.headers ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    calls.push({ url, method: init.method, headers, body: init.body, credentials: init.credentials });
    const [status, json] = answer(url, calls.length);
    return new Response(JSON.stringify(json), { status, headers: { "content-type": "application/json" } });
  };
  return { fetch, calls };
}

const tokenJson = (n) => ({
  access_token: `access-${n}`,
  refresh_token: `refresh-${n}`,
  token_type: "Bearer",
  expires_in: 900,
  user: { id: "u_1", name: "Ann", role: "guest" },
});

test("cookie mode: the refresh token never reaches the SDK; refresh and logout use the session routes", async () => {
  const { fetch, calls } = recorder((url, n) => [200, url.endsWith("/logout") ? {} : tokenJson(n)]);
  const c = new ParlorClient({ url: "https://play.example/", session: "cookie", fetch });
  const auths = [];
  c.on("auth", (a) => auths.push(a.user?.id ?? null));

  const u = await c.guest("Ann");
  assert.equal(u.id, "u_1");
  assert.equal(calls[0].url, "https://play.example/api/v1/auth/guest");
  assert.equal(calls[0].headers["x-parlor-session"], "cookie");
  assert.equal(calls[0].credentials, "same-origin");
  assert.deepEqual(JSON.parse(calls[0].body), { name: "Ann" });
  assert.equal(c.tokens.refreshToken, "", "even if a pod sent one, cookie mode keeps none");
  assert.equal(c.tokens.accessToken, "access-1");

  await c.refresh();
  assert.equal(calls[1].url, "https://play.example/api/v1/auth/session/refresh");
  assert.equal(calls[1].method, "POST");
  assert.equal(calls[1].headers["x-parlor-csrf"], "1");
  assert.equal(calls[1].body, undefined);
  assert.equal(c.tokens.accessToken, "access-2");

  await c.me();
  assert.equal(calls[2].headers.authorization, "Bearer access-2");

  await c.logout();
  assert.equal(calls[3].url, "https://play.example/api/v1/auth/session/logout");
  assert.equal(calls[3].headers["x-parlor-csrf"], "1");
  assert.equal(c.tokens, null);
  assert.equal(c.user, null);
  assert.deepEqual(auths, ["u_1", "u_1", null]);
});

test("tokens mode: refresh sends the refresh token, concurrent refreshes share one request", async () => {
  const { fetch, calls } = recorder((_url, n) => [200, tokenJson(n)]);
  const c = new ParlorClient({ url: "http://h", fetch });
  await c.login("ann", "pw");
  assert.deepEqual(JSON.parse(calls[0].body), { login: "ann", password: "pw" });
  assert.equal(calls[0].headers["x-parlor-session"], undefined);
  await Promise.all([c.refresh(), c.refresh(), c.refresh()]);
  assert.equal(calls.length, 2, "one refresh for three callers: refresh tokens rotate");
  assert.equal(calls[1].url, "http://h/api/v1/auth/refresh");
  assert.deepEqual(JSON.parse(calls[1].body), { refresh_token: "refresh-1" });
  assert.equal(c.tokens.refreshToken, "refresh-2");
  await c.logout();
});

test("a REST 401 is answered by one refresh and a retry", async () => {
  const { fetch, calls } = recorder((url, n) => {
    if (url.endsWith("/api/v1/me")) {
      return n === 2
        ? [401, { error: { code: "TOKEN_EXPIRED", message: "expired" } }]
        : [200, { id: "u_1", name: "Ann", role: "guest" }];
    }
    return [200, tokenJson(n)];
  });
  const c = new ParlorClient({ url: "http://h", fetch });
  await c.guest("Ann");
  const me = await c.me();
  assert.equal(me.id, "u_1");
  assert.deepEqual(
    calls.map((x) => x.url.replace("http://h", "")),
    ["/api/v1/auth/guest", "/api/v1/me", "/api/v1/auth/refresh", "/api/v1/me"],
  );
  assert.equal(calls[3].headers.authorization, "Bearer access-3");
  await c.logout();
});
