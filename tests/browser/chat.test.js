// Scenario 2: chat and the member list. Bob finds Ann's room in the lobby's list; both
// browsers list both members with their roles, and every line said shows on both sides,
// with the same sequence numbers in the same order.
import assert from "node:assert/strict";
import { chatLines, createRoom, inRoom, joinAndList, memberList, say, scenario, signInGuest, until, waitForChat, waitForMembers } from "./support.js";

scenario("chat: a line and the member list show on both sides", async (h) => {
  const pod = await h.pod({ name: "chat" });
  const ann = await h.user("ann");
  const bob = await h.user("bob");
  await signInGuest(ann, pod.url, "Ann");
  const room = await createRoom(ann, { name: "Card night", kind: "cards" });

  // Bob joins from the lobby's list of public rooms (the Cards tab).
  await signInGuest(bob, pod.url, "Bob");
  await bob.page.getByTestId("lobby-tab-cards").click();
  const row = bob.page.locator(`[data-testid=room-row][data-room-id="${room.id}"]`);
  await until(
    async () => {
      if (await row.count()) return true;
      await bob.page.getByTestId("rooms-refresh").click();
      return false;
    },
    { timeout: 10_000, interval: 500, what: "Ann's room in Bob's lobby" },
  );
  assert.equal(await row.getAttribute("data-kind"), "cards");
  await row.getByTestId("join-room").click();
  await inRoom(bob, { id: room.id, kind: "cards" });

  const both = [
    { userId: ann.id, role: "owner" },
    { userId: bob.id, role: "player" },
  ];
  for (const u of [ann, bob]) {
    const list = await waitForMembers(u.page, both);
    assert.deepEqual(
      list.map((m) => m.name),
      ["Ann", "Bob"],
      "the owner is listed first, then the players",
    );
    // Roles show in the kind's words: the owner of a card table is its master.
    const badges = await u.page.getByTestId("member").evaluateAll((els) => els.map((el) => el.querySelector(".badge")?.textContent));
    assert.deepEqual(badges, ["master", "player"]);
    const you = await u.page.locator(`[data-testid=member][data-user-id="${u.id}"]`).textContent();
    assert.match(you ?? "", /\(you\)/);
    assert.match((await u.page.getByTestId("member-count").textContent()) ?? "", /^2 of \d+/);
  }
  assert.equal(await ann.page.getByTestId("room-meta").getAttribute("data-role"), "owner");
  assert.equal(await bob.page.getByTestId("room-meta").getAttribute("data-role"), "player");
  await ann.page.getByTestId("chat-system").filter({ hasText: "Bob joined." }).waitFor();

  // Lines both ways, one of them with markup that must stay text.
  await say(ann, "Hello Bob, welcome to the table!");
  await waitForChat(bob.page, "Hello Bob, welcome to the table!", ann.id);
  await say(bob, "Hi Ann <b>not bold</b> & all");
  await waitForChat(ann.page, "Hi Ann <b>not bold</b> & all", bob.id);
  assert.equal(await ann.page.locator("[data-testid=chat-log] b").count(), 0, "chat text is never parsed as HTML");
  await say(ann, "Shall we deal?");
  await waitForChat(bob.page, "Shall we deal?", ann.id);

  const a = await chatLines(ann.page);
  const b = await chatLines(bob.page);
  assert.deepEqual(a, b, "both browsers show the same lines, in the same order, with the same seqs");
  assert.deepEqual(
    a.map((l) => [l.from, l.text]),
    [
      ["Ann", "Hello Bob, welcome to the table!"],
      ["Bob", "Hi Ann <b>not bold</b> & all"],
      ["Ann", "Shall we deal?"],
    ],
  );
  const seqs = a.map((l) => l.seq);
  assert.ok(seqs.every((s, i) => s > 0 && (i === 0 || s > seqs[i - 1])), `seqs increase: ${seqs}`);
  // My own lines are marked as mine.
  assert.deepEqual(
    await ann.page.getByTestId("chat-message").evaluateAll((els) => els.map((e) => e.classList.contains("mine"))),
    [true, false, true],
  );

  // Bob leaves: Ann's list drops him and her chat says so.
  await bob.page.getByTestId("leave-room").click();
  await bob.page.getByTestId("create-room").waitFor();
  await waitForMembers(ann.page, [{ userId: ann.id, role: "owner" }]);
  await ann.page.getByTestId("chat-system").filter({ hasText: "Bob left." }).waitFor();
  assert.equal((await memberList(ann.page)).length, 1);
});

scenario("chat: a kick is told once, with who did it, and the kicked page says so", async (h) => {
  const pod = await h.pod({ name: "kick" });
  const ann = await h.user("ann");
  const bob = await h.user("bob");
  await signInGuest(ann, pod.url, "Ann");
  await signInGuest(bob, pod.url, "Bob");
  const room = await createRoom(ann, { name: "Strict table", kind: "cards" });
  await joinAndList(ann, bob, room);
  await ann.page.locator(`[data-testid=member][data-user-id="${bob.id}"] [data-testid=member-kick]`).click();
  await bob.page.locator('[data-testid=room-left][data-reason="kicked"]').waitFor();
  await waitForMembers(ann.page, [{ userId: ann.id, role: "owner" }]);
  const told = (await ann.page.getByTestId("chat-system").allTextContents()).filter((l) => l.includes("Bob"));
  assert.deepEqual(told, ["Bob joined.", "Bob was kicked by Ann."], `Ann's system lines: ${told}`);
});
