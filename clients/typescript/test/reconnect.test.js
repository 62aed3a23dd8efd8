import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { actions } from "../dist/index.js";
import { client, startPod, until, waitFor } from "./support.js";

let pod;
const clients = [];
const fast = { initialDelayMs: 300, maxDelayMs: 1_000, factor: 2, jitter: 0 };
const make = (opts) => {
  const c = client(pod, { reconnect: fast, ...opts });
  clients.push(c);
  return c;
};

before(async () => {
  pod = await startPod();
});
after(async () => {
  for (const c of clients) c.close();
  await pod?.stop();
});

async function pair(kind = "piano") {
  const a = make();
  const b = make();
  await a.guest("Ann");
  await b.guest("Bob");
  await Promise.all([a.connect(), b.connect()]);
  const roomB = await b.createRoom({ name: "Resume", kind });
  const roomA = await a.joinRoom(roomB.id);
  await until(() => roomB.members.has(a.user.id), 2_000, "Bob sees Ann");
  return { a, b, roomA, roomB };
}

/** Chat lines without the fields a snapshot and a live line may differ in. */
const lines = (room) => room.chat.map((l) => `${l.seq}:${l.fromName}:${l.text}`);

test("a dropped socket resumes: exactly the missed events, none twice", { timeout: 20_000 }, async () => {
  const { a, b, roomA, roomB } = await pair();
  await roomA.sendChat("before the drop");
  await until(() => roomB.chat.some((l) => l.text === "before the drop"), 2_000, "Bob has the first line");
  const seenByA = [];
  roomA.on("chat", (l) => seenByA.push(l));
  const states = [];
  for (const e of ["disconnected", "reconnecting", "reconnected"]) a.on(e, (x) => states.push([e, x]));
  const before = roomA.lastSeq;
  let resyncs = 0;
  roomA.on("resync", () => resyncs++);

  const dropped = waitFor(a, "disconnected");
  a.ws.last().terminate(); // the TCP connection dies, no close handshake
  await dropped;
  assert.equal(a.state, "reconnecting");
  // While Ann is away, Bob talks.
  for (let i = 1; i <= 5; i++) await roomB.sendChat(`missed ${i}`);

  await waitFor(a, "reconnected", () => true, 10_000);
  assert.equal(a.state, "open");
  assert.equal(a.rooms.get(roomA.id), roomA, "the same Room object goes on");
  assert.equal(resyncs, 0, "resumed from last_seq, not resynced");
  // The replayed events follow the resumed RoomJoined, so some may land just after
  // "reconnected".
  await until(() => seenByA.length >= 5, 3_000, "Ann got the missed lines");
  assert.deepEqual(
    seenByA.map((l) => l.text),
    ["missed 1", "missed 2", "missed 3", "missed 4", "missed 5"],
  );
  const seqs = seenByA.map((l) => l.seq);
  assert.ok(seqs[0] > before && seqs.every((s, i) => i === 0 || s > seqs[i - 1]), `seqs ${seqs}`);
  assert.deepEqual(
    states.map(([e]) => e),
    ["disconnected", "reconnecting", "reconnected"],
  );
  assert.equal(states[1][1].attempt, 1);
  assert.equal(states[1][1].delayMs, 300);

  // Both converge on the same room state.
  await until(() => roomA.lastSeq === roomB.lastSeq, 3_000, "Ann caught up with Bob");
  assert.deepEqual(lines(roomA), lines(roomB));
  await until(() => roomB.members.get(a.user.id)?.status === "online", 3_000, "Ann back online for Bob");
  assert.deepEqual([...roomA.members.keys()].sort(), [...roomB.members.keys()].sort());

  // Live events after the resume still flow both ways.
  const back = waitFor(roomB, "chat", (l) => l.text === "I am back");
  await roomA.sendChat("I am back");
  await back;
});

test("sends while reconnecting are queued, bounded, and flushed once", { timeout: 20_000 }, async () => {
  const { a, roomA, roomB } = await pair();
  const small = make({ sendQueueLimit: 2 });
  await small.guest("Queue");
  await small.connect();
  const roomS = await small.joinRoom(roomB.id);

  const dropped = Promise.all([waitFor(a, "disconnected"), waitFor(small, "disconnected")]);
  a.ws.last().terminate();
  small.ws.last().terminate();
  await dropped;
  // Sent while away: held, then sent after the rejoin.
  const queued = [roomA.sendChat("queued 1"), roomA.sendChat("queued 2"), roomA.sendChat("queued 3")];
  const s1 = roomS.sendChat("small 1");
  const s2 = roomS.setPresence("away");
  await assert.rejects(roomS.sendChat("one too many"), (e) => e.code === "QUEUE_FULL");

  const got = await Promise.all(queued);
  assert.deepEqual(
    got.map((l) => l.text),
    ["queued 1", "queued 2", "queued 3"],
  );
  assert.ok(got[0].seq < got[1].seq && got[1].seq < got[2].seq);
  await s1;
  await s2;
  await until(() => roomB.chat.filter((l) => l.text.startsWith("queued")).length === 3, 3_000, "Bob got the queued lines");
  await until(() => roomB.members.get(small.user.id)?.status === "away", 3_000, "presence flushed");
  const texts = roomB.chat.map((l) => l.text);
  for (const t of ["queued 1", "queued 2", "queued 3", "small 1"]) {
    assert.equal(texts.filter((x) => x === t).length, 1, `${t} once`);
  }
});

test("a dice room resumes with the rolls it missed and a fresh game view", { timeout: 20_000 }, async () => {
  const { a, roomA, roomB } = await pair("dice");
  await until(() => roomA.game && roomB.game, 2_000, "both have a view");
  const views = [];
  roomA.on("game_view", (v) => views.push(v));
  const updates = [];
  roomA.on("game_update", (u) => updates.push(u));
  const dropped = waitFor(a, "disconnected");
  a.ws.last().terminate();
  await dropped;
  await roomB.gameAction(actions.dice.roll("1d6"));
  await roomB.gameAction(actions.dice.roll("1d8"));
  await waitFor(a, "reconnected", () => true, 10_000);
  await until(() => views.length === 1, 2_000, "the view after the resume");
  assert.equal(updates.length, 2, "each missed roll once");
  const hist = roomA.game.view.value.history;
  assert.equal(hist.length, 2);
  assert.deepEqual(
    hist.map((h) => h.update.value.notation),
    ["1d6", "1d8"],
  );
});

test("close() ends it: closed, rooms left, later sends refused", { timeout: 15_000 }, async () => {
  const { a, roomA } = await pair();
  const closed = waitFor(a, "closed");
  const left = waitFor(roomA, "left");
  a.close();
  assert.equal((await closed).code, 1000);
  assert.equal((await left).reason, "disconnected");
  assert.equal(a.state, "closed");
  await assert.rejects(roomA.sendChat("gone"), (e) => e.code === "DISCONNECTED");
});

test("giving up after maxAttempts", { timeout: 20_000 }, async () => {
  const c = make({ reconnect: { initialDelayMs: 50, maxDelayMs: 50, jitter: 0, maxAttempts: 2 } });
  await c.guest("Quitter");
  await c.connect();
  // Point the next attempts at a port nobody listens on.
  c.wsUrl = "ws://127.0.0.1:1/ws";
  const attempts = [];
  c.on("reconnecting", (r) => attempts.push(r.attempt));
  const closed = waitFor(c, "closed", () => true, 10_000);
  c.ws.last().terminate();
  const e = await closed;
  assert.equal(e.error.code, "DISCONNECTED");
  assert.deepEqual(attempts, [1, 2]);
});
