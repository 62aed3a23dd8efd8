// Scenario 6: cluster mode. Two pods share one redis-server and one MongoDB wire server
// (SecantusDB) and one signing key; Ann's page is served by pod A and Bob's by pod B. They
// meet in one room (homed on pod A) and see each other's chat, members and notes.
import assert from "node:assert/strict";
import { chatLines, createRoom, joinByCode, say, scenario, signInGuest, until, waitForChat, waitForMembers } from "./support.js";

scenario("cluster: two browsers on two pods see each other's chat and members", async (h) => {
  const [redis, mongo] = await Promise.all([h.redis(), h.mongo()]);
  const key = h.keygen();
  const db = `browser_${process.pid}_${Date.now()}`;
  const shared = {
    PARLOR_CLUSTER__KIND: "redis",
    PARLOR_CLUSTER__REDIS_URL: redis.url,
    PARLOR_STORE__KIND: "mongodb",
    PARLOR_STORE__MONGODB_URI: mongo.uri,
    PARLOR_STORE__DATABASE: db,
    PARLOR_AUTH__SIGNING_KEY: key,
  };
  const podA = await h.pod({ name: "pod-a", env: shared });
  const podB = await h.pod({ name: "pod-b", env: shared });
  assert.notEqual(podA.url, podB.url);

  const ann = await h.user("ann");
  const bob = await h.user("bob");
  await signInGuest(ann, podA.url, "Ann");
  await signInGuest(bob, podB.url, "Bob");
  assert.ok(ann.page.url().startsWith(podA.url) && bob.page.url().startsWith(podB.url), "each page is on its own pod");

  const room = await createRoom(ann, { name: "Across the cluster", kind: "piano" });
  // Pod B finds the room by its code through the cluster's directory.
  await joinByCode(bob, room);
  const both = [
    { userId: ann.id, role: "owner" },
    { userId: bob.id, role: "player" },
  ];
  for (const u of [ann, bob]) {
    const list = await waitForMembers(u.page, both);
    assert.deepEqual(list.map((m) => m.name), ["Ann", "Bob"]);
  }
  await ann.page.getByTestId("chat-system").filter({ hasText: "Bob joined." }).waitFor();

  await say(ann, "hello from pod A");
  await waitForChat(bob.page, "hello from pod A", ann.id);
  await say(bob, "hello from pod B");
  await waitForChat(ann.page, "hello from pod B", bob.id);
  await say(ann, "the room lives on pod A");
  await waitForChat(bob.page, "the room lives on pod A", ann.id);
  const a = await chatLines(ann.page);
  const b = await chatLines(bob.page);
  assert.deepEqual(a, b, "the same lines with the same seqs on both pods");
  assert.deepEqual(
    a.map((l) => l.text),
    ["hello from pod A", "hello from pod B", "the room lives on pod A"],
  );

  // A relayed game event crosses the pods too: Bob's C5 lights up at Ann's.
  await bob.page.evaluate(() => (document.activeElement instanceof HTMLElement ? document.activeElement.blur() : undefined));
  await bob.page.keyboard.down("q");
  await ann.page.locator("[data-testid=piano-key-72][data-active=true].on-theirs").waitFor();
  await bob.page.keyboard.up("q");
  await ann.page.locator("[data-testid=piano-key-72][data-active=false]").waitFor();

  // Presence crosses too: Bob goes busy, Ann sees it.
  await bob.page.getByTestId("presence-status").selectOption("busy");
  await until(
    async () => (await ann.page.locator(`[data-testid=member][data-user-id="${bob.id}"]`).getAttribute("data-status")) === "busy",
    { what: "Ann to see Bob busy" },
  );
});
