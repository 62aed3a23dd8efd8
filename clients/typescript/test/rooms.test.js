import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { ParlorError, actions } from "../dist/index.js";
import { client, eventually, startPod, until, waitFor } from "./support.js";

let pod;
const clients = [];
const make = (opts) => {
  const c = client(pod, opts);
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

test("a guest signs in over REST and connects", { timeout: 15_000 }, async () => {
  const c = make();
  const auth = waitFor(c, "auth");
  const user = await c.guest("Ann");
  assert.equal(user.name, "Ann");
  assert.equal(user.role, "guest");
  assert.match(user.id, /^u_/);
  assert.equal((await auth).user.id, user.id);
  assert.ok(c.tokens.accessToken && c.tokens.refreshToken);
  const me = await c.me();
  assert.equal(me.id, user.id);
  const connected = waitFor(c, "connected");
  const w = await c.connect();
  assert.equal(w.user.id, user.id);
  assert.match(w.sessionId, /^s_/);
  assert.ok(w.resumeToken.length > 20);
  assert.equal(c.state, "open");
  await connected;
});

test("a socket opened as a visitor is replaced by one of the account signed in after it", { timeout: 15_000 }, async () => {
  const c = make();
  const visitor = await c.connect();
  const user = await c.guest("Late");
  assert.notEqual(visitor.user.id, user.id);
  const w = await c.connect();
  assert.equal(w.user.id, user.id, "Hello again, as the guest");
  const room = await c.createRoom({ name: "signed in", kind: "piano" });
  assert.equal(room.yourRole, "owner");
});

test("two clients share a room: chat and member lists on both", { timeout: 15_000 }, async () => {
  const a = make();
  const b = make();
  await a.guest("Ann");
  await b.guest("Bob");
  await Promise.all([a.connect(), b.connect()]);
  const roomA = await a.createRoom({ name: "Jam", kind: "piano", settings: { welcomeMessage: "hi" } });
  assert.equal(roomA.info.kind, "piano");
  assert.equal(roomA.yourRole, "owner");
  assert.equal(roomA.settings.welcomeMessage, "hi");
  assert.equal(roomA.members.size, 1);

  const joined = waitFor(roomA, "member_joined");
  const roomB = await b.joinRoom(roomA.info.code.toLowerCase().replace(/(.{6})/, "$1-")); // by code, as typed
  assert.equal(roomB.id, roomA.id);
  assert.equal(roomB.yourRole, "player");
  assert.deepEqual([...roomB.members.keys()].sort(), [a.user.id, b.user.id].sort());
  const m = await joined;
  assert.equal(m.userId, b.user.id);
  assert.equal(m.name, "Bob");
  assert.equal(roomA.members.get(b.user.id).role, "player");

  const seenByA = waitFor(roomA, "chat", (l) => l.text === "hello from Bob");
  const line = await roomB.sendChat("hello from Bob");
  assert.equal(line.fromUserId, b.user.id);
  assert.equal(line.fromName, "Bob");
  assert.ok(line.seq > 0);
  const got = await seenByA;
  assert.equal(got.seq, line.seq);
  assert.equal(roomA.chat.at(-1).text, "hello from Bob");
  assert.equal(roomB.chat.at(-1).text, "hello from Bob");
  await until(() => roomA.lastSeq === roomB.lastSeq, 2_000, "both at the same seq");

  // A relayed game event reaches the other member byte for byte.
  const ev = waitFor(roomA, "game_event", (e) => e.type === "note_on");
  const seq = await roomB.sendEvent("note_on", new Uint8Array([60, 100]));
  const e = await ev;
  assert.equal(e.seq, seq);
  assert.equal(e.senderId, b.user.id);
  assert.deepEqual([...e.payload], [60, 100]);

  const updated = waitFor(roomB, "member_updated", (u) => u.member.userId === a.user.id && u.member.status === "busy");
  await roomA.setPresence("busy");
  await updated;
  assert.equal(roomB.members.get(a.user.id).status, "busy");

  const settingsSeen = waitFor(roomB, "updated");
  await roomA.update({ name: "Jam 2", settings: { allowChat: true } });
  const u = await settingsSeen;
  assert.equal(u.info.name, "Jam 2");
  assert.equal(roomB.info.name, "Jam 2");

  const left = waitFor(roomA, "member_left");
  const leftEvent = waitFor(roomB, "left");
  await roomB.leave();
  assert.equal((await leftEvent).reason, "left");
  assert.equal((await left).userId, b.user.id);
  assert.equal(roomA.members.has(b.user.id), false);
  assert.equal(b.rooms.size, 0);
  assert.equal(roomB.joined, false);
});

test("a failed request rejects with a typed error", { timeout: 15_000 }, async () => {
  const c = make();
  await c.guest("Cy");
  await c.connect();
  await assert.rejects(c.joinRoom({ id: "r_000000000000000000000000" }), (e) => {
    assert.ok(e instanceof ParlorError);
    assert.equal(e.code, "ROOM_NOT_FOUND");
    assert.equal(e.codeNumber, 20);
    return true;
  });
  await assert.rejects(c.joinRoom("ZZZZZZZZZZZZ"), (e) => e.code === "ROOM_NOT_FOUND");
  // A room the caller is not in.
  const room = await c.createRoom({ name: "x", kind: "piano" });
  await room.leave();
  await assert.rejects(room.sendChat("still here?"), (e) => e.code === "NOT_IN_ROOM");
  // REST errors carry the code and the HTTP status.
  await assert.rejects(c.login("nobody-here", "wrong-password"), (e) => {
    assert.equal(e.code, "INVALID_CREDENTIALS");
    assert.equal(e.status, 401);
    return true;
  });
  // Before connect(): no socket, no queue.
  const idle = make();
  await assert.rejects(idle.joinOrCreate("piano"), (e) => e.code === "DISCONNECTED");
});

test("listRooms over the socket and over REST; joinOrCreate", { timeout: 15_000 }, async () => {
  const a = make();
  await a.guest("Lister");
  await a.connect();
  const kind = `list-${Date.now() % 100000}`;
  const r1 = await a.joinOrCreate(kind);
  // The directory is written behind the room: poll until it lists it.
  const viaWs = await eventually(() => a.listRooms({ kind }), (l) => l.total === 1);
  assert.equal(viaWs.total, 1);
  assert.equal(viaWs.rooms[0].id, r1.id);
  assert.equal(viaWs.rooms[0].memberCount, 1);
  const rest = make();
  const viaRest = await eventually(() => rest.listRooms({ kind, limit: 10 }), (l) => l.total === 1);
  assert.equal(viaRest.total, 1);
  assert.equal(viaRest.rooms[0].id, r1.id);
  assert.equal(viaRest.rooms[0].visibility, "public");
});

test("a dice room: a roll and its update seen by both, with the game view kept", { timeout: 15_000 }, async () => {
  const dm = make();
  const pc = make();
  await dm.guest("DM");
  await pc.guest("Rogue");
  await Promise.all([dm.connect(), pc.connect()]);
  const roomDm = await dm.createRoom({ name: "Crypt", kind: "dice", game: { config: { case: "dice", value: { maxDice: 50 } } } });
  await until(() => roomDm.game, 2_000, "DM's game view");
  assert.equal(roomDm.game.kind, "dice");
  assert.equal(roomDm.game.view.case, "dice");
  assert.equal(roomDm.game.view.value.limits.maxDice, 50);
  assert.match(roomDm.game.fairness.seedCommitment, /^[0-9a-f]{64}$/);
  const roomPc = await pc.joinRoom(roomDm.id);
  await until(() => roomPc.game, 2_000, "player's game view");

  const seenByDm = waitFor(roomDm, "game_update");
  const seenByPc = waitFor(roomPc, "game_update");
  const seq = await roomPc.gameAction(actions.dice.roll("2d20kh1+5", { label: "attack" }));
  assert.ok(seq > 0);
  for (const ev of [await seenByDm, await seenByPc]) {
    assert.equal(ev.seq, seq);
    assert.equal(ev.private, false);
    const u = ev.update.update;
    assert.equal(u.case, "dice");
    assert.equal(u.value.update.case, "rolled");
    const r = u.value.update.value;
    assert.equal(r.rollerId, pc.user.id);
    assert.equal(r.label, "attack");
    const group = r.terms.find((t) => t.term.case === "dice").term.value;
    assert.equal(group.count, 2);
    assert.equal(group.sides, 20);
    assert.equal(group.dice.length, 2);
    assert.equal(group.dice.filter((d) => d.dropped).length, 1);
    const kept = group.dice.find((d) => !d.dropped).value;
    assert.equal(kept, Math.max(...group.dice.map((d) => d.value)));
    assert.equal(Number(r.total), kept + 5);
  }
  for (const room of [roomDm, roomPc]) {
    const h = room.game.view.value.history;
    assert.equal(h.length, 1);
    assert.equal(h[0].update.case, "rolled");
    assert.equal(room.game.fairness.nextNonce, h[0].update.value.nonce + 1n);
  }
  await assert.rejects(roomPc.gameAction(actions.dice.roll("2d")), (e) => e.code === "INVALID_ARGUMENT");
  // A relay message in a server-run room is refused.
  await assert.rejects(roomPc.sendEvent("x"), (e) => e.code === "WRONG_KIND");
});

test("ping: latency and the server clock", { timeout: 15_000 }, async () => {
  const c = make({ pingIntervalMs: 100 });
  await c.guest("Pinger");
  await c.connect();
  const l = await waitFor(c, "latency");
  assert.ok(l.rttMs >= 0 && l.rttMs < 1_000, `rtt ${l.rttMs}`);
  await waitFor(c, "latency"); // a second one from the timer
  assert.equal(typeof c.latencyMs, "number");
  assert.ok(c.smoothedLatencyMs >= 0);
  const rtt = await c.ping();
  assert.ok(rtt >= 0 && rtt < 1_000);
  assert.ok(Math.abs(c.serverNow() - Date.now()) < 1_000);
});
