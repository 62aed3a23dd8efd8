// Scenario 5: Ann's network goes away for 3 s and comes back. Her page shows that it is
// reconnecting, then connected again; it resumes the room, and every chat line Bob said
// meanwhile is in her log exactly once, in order.
//
// How the outage is made: context.setOffline(true) makes Chromium offline (navigator.onLine
// false, every new request and WebSocket handshake fails), but Chromium leaves a WebSocket
// that is already open untouched, so the page would never notice. Ann's page is therefore
// served through a TCP proxy (support.js CutProxy), and the same instant it goes offline
// the proxy resets her connections and refuses new ones, as a real outage would.
import assert from "node:assert/strict";
import {
  chatLines,
  connectionStates,
  createRoom,
  joinByCode,
  memberList,
  recordConnectionStates,
  say,
  scenario,
  signInGuest,
  until,
  waitConnection,
  waitForChat,
  waitForMembers,
} from "./support.js";

const OUTAGE_MS = 3000;

async function statusOf(page, userId) {
  return (await memberList(page)).find((m) => m.userId === userId)?.status;
}

scenario("reconnect: 3 s offline, then back: resumed, no chat line lost or doubled", async (h) => {
  const pod = await h.pod({ name: "reconnect" });
  const proxy = await h.proxy(pod.publicPort);
  const ann = await h.user("ann");
  const bob = await h.user("bob");
  await signInGuest(ann, proxy.url, "Ann");
  await signInGuest(bob, pod.url, "Bob");
  const room = await createRoom(bob, { name: "Steady line", kind: "piano" });
  await joinByCode(ann, room);
  const both = [
    { userId: bob.id, role: "owner" },
    { userId: ann.id, role: "player" },
  ];
  await waitForMembers(ann.page, both);
  await waitForMembers(bob.page, both);
  await say(bob, "before the outage");
  await waitForChat(ann.page, "before the outage", bob.id);
  await say(ann, "Ann is here");
  await waitForChat(bob.page, "Ann is here", ann.id);

  // The outage.
  await recordConnectionStates(ann.page);
  const began = Date.now();
  await ann.context.setOffline(true);
  proxy.cut();
  await waitConnection(ann.page, "reconnecting", 10_000);
  assert.equal(await ann.page.evaluate(() => navigator.onLine), false);
  // Her seat is kept, shown away, while she is gone.
  await until(async () => (await statusOf(bob.page, ann.id)) === "away", { what: "Bob to see Ann away" });
  const meanwhile = ["while you were away 1", "while you were away 2", "while you were away 3"];
  for (const line of meanwhile) await say(bob, line);
  // The outage lasts its 3 s (this wait is the scenario's length, not a condition).
  await new Promise((r) => setTimeout(r, Math.max(0, OUTAGE_MS - (Date.now() - began))));
  const duringOutage = (await chatLines(ann.page)).map((l) => l.text);
  assert.ok(!duringOutage.some((t) => meanwhile.includes(t)), "nothing reached Ann while she was offline");
  assert.equal(await ann.page.getByTestId("connection-status").getAttribute("data-state"), "reconnecting");

  // Back online: the page reconnects by itself (its back-off is 0.5 s, doubling, ±50%).
  await ann.context.setOffline(false);
  proxy.restore();
  await waitConnection(ann.page, "connected", 20_000);
  const back = Date.now() - began;
  await waitForChat(ann.page, meanwhile.at(-1), bob.id);
  await until(async () => (await statusOf(bob.page, ann.id)) === "online", { what: "Bob to see Ann online again" });
  await say(bob, "welcome back");
  await waitForChat(ann.page, "welcome back", bob.id);
  await say(ann, "thanks, I am back");
  await waitForChat(bob.page, "thanks, I am back", ann.id);

  const states = await connectionStates(ann.page);
  const r = states.indexOf("reconnecting");
  assert.ok(r >= 0 && states.lastIndexOf("connected") > r, `the banner went reconnecting, then connected: ${states}`);
  assert.ok(!states.includes("closed"), `the page never gave up: ${states}`);
  assert.ok(proxy.cuts === 1 && back < 25_000, `back after ${back} ms`);

  const a = await chatLines(ann.page);
  const b = await chatLines(bob.page);
  const want = ["before the outage", "Ann is here", ...meanwhile, "welcome back", "thanks, I am back"];
  assert.deepEqual(
    a.map((l) => l.text),
    want,
    "Ann's log holds every line once, in order",
  );
  assert.deepEqual(a, b, "Ann's log is Bob's: same lines, same seqs");
  assert.equal(new Set(a.map((l) => l.seq)).size, a.length, "no seq shown twice");
  // A resume, not a new join: Bob's chat never said that Ann left or joined again.
  const system = await bob.page.getByTestId("chat-system").allTextContents();
  assert.deepEqual(system, ["Ann joined."], `Bob's system lines: ${system}`);
  await waitForMembers(ann.page, both);
});

scenario(
  "reconnect: going offline alone shows in the banner",
  async (h) => {
    const pod = await h.pod({ name: "offline-only" });
    const ann = await h.user("ann");
    await signInGuest(ann, pod.url, "Ann");
    await recordConnectionStates(ann.page);
    await ann.context.setOffline(true);
    assert.equal(await ann.page.evaluate(() => navigator.onLine), false);
    // Longer than the SDK's ping interval (5 s): a ping goes out while offline.
    await until(async () => (await ann.page.getByTestId("connection-status").getAttribute("data-state")) !== "connected", {
      timeout: 6000,
      what: "the banner to leave Connected while the browser is offline",
    });
  },
);
