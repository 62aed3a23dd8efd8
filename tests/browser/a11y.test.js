// Accessibility: axe-core on the sign-in page, the lobby, and a room of each kind (piano,
// dice, cards, trivia, match) in play, from the owner's side and from a player's side.
// Any violation of impact serious or critical fails the test; every one found is listed.
import assert from "node:assert/strict";
import { axeViolations, createRoom, formatViolations, joinAndList, joinByCode, say, scenario, signInGuest, until, waitForMembers } from "./support.js";

scenario("a11y: no serious or critical axe violations on any page", { timeout: 90_000 }, async (h, t) => {
  const pod = await h.pod({ name: "a11y" });
  const ann = await h.user("ann");
  const bob = await h.user("bob");
  const found = [];
  const check = async (where, user) => {
    const vs = await axeViolations(user.page);
    t.diagnostic(`${where}: ${vs.length} serious/critical`);
    if (vs.length) found.push(formatViolations(where, vs));
  };

  // Sign-in, as a first-time visitor sees it.
  await bob.page.goto(`${pod.url}/`);
  await bob.page.getByTestId("guest-form").waitFor();
  await check("sign-in", bob);
  // The check itself works: a button without a name is a critical violation.
  await bob.page.evaluate(() => document.querySelector("main")?.append(Object.assign(document.createElement("button"), { id: "axe-canary" })));
  const canary = await axeViolations(bob.page);
  assert.ok(canary.some((v) => v.id === "button-name" && v.impact === "critical"), "axe sees a nameless button");
  await bob.page.evaluate(() => document.getElementById("axe-canary")?.remove());

  await signInGuest(ann, pod.url, "Ann");
  await signInGuest(bob, pod.url, "Bob");

  const meet = async (kind, name, extra = {}) => {
    const room = await createRoom(ann, { name, kind, ...extra });
    await joinAndList(ann, bob, room);
    await say(ann, `Welcome to the ${kind} room`);
    await bob.page.getByTestId("chat-message").filter({ hasText: `Welcome to the ${kind} room` }).waitFor();
    return room;
  };
  const leave = async () => {
    for (const u of [bob, ann]) {
      await u.page.getByTestId("leave-room").click();
      await u.page.getByTestId("create-room").waitFor();
    }
  };

  // Piano. While Ann is in it, Bob's lobby lists the room: the lobby with a row.
  const piano = await createRoom(ann, { name: "Jam", kind: "piano" });
  await until(
    async () => {
      if (await bob.page.locator(`[data-testid=room-row][data-room-id="${piano.id}"]`).count()) return true;
      await bob.page.getByTestId("rooms-refresh").click();
      return false;
    },
    { timeout: 10_000, interval: 500, what: "the room in Bob's lobby" },
  );
  await check("lobby", bob);
  await joinByCode(bob, piano);
  await waitForMembers(ann.page, [
    { userId: ann.id, role: "owner" },
    { userId: bob.id, role: "player" },
  ]);
  await bob.page.evaluate(() => (document.activeElement instanceof HTMLElement ? document.activeElement.blur() : undefined));
  await bob.page.keyboard.down("e");
  await ann.page.locator("[data-testid=piano-key-76][data-active=true]").waitFor();
  await check("piano (owner, a note of Bob's held)", ann);
  await check("piano (player)", bob);
  await bob.page.keyboard.up("e");
  await leave();

  // Dice, with a roll shown.
  await meet("dice", "Dungeon");
  await bob.page.getByTestId("dice-notation").fill("2d20kh1+5");
  await bob.page.getByTestId("dice-roll").click();
  await ann.page.getByTestId("roll").waitFor();
  await bob.page.getByTestId("roll").waitFor();
  await check("dice (DM)", ann);
  await check("dice (player)", bob);
  await leave();

  // Cards: a round dealt, one card flipped.
  await meet("cards", "Table");
  await ann.page.getByTestId("cards-start").click();
  await bob.page.locator("[data-testid=card]").first().waitFor();
  await bob.page.locator("[data-testid=card][data-index='0']").click();
  await ann.page.locator("[data-testid=card][data-index='0'][data-face]").waitFor();
  await check("cards (master)", ann);
  await check("cards (player)", bob);
  await leave();

  // Trivia: Ann hosts, Bob plays; a question is up.
  await meet("trivia", "Quiz");
  await ann.page.getByTestId("trivia-start").click();
  for (const u of [ann, bob]) await u.page.locator("[data-testid=trivia-phase][data-phase=buzzing]").waitFor();
  await check("trivia (host, a question up)", ann);
  await check("trivia (player)", bob);
  await leave();

  // Match: both seated, one report in.
  await meet("match", "Final");
  await ann.page.getByTestId("match-report-win").click();
  await bob.page.getByTestId("match-report").waitFor();
  await check("match (owner, reported)", ann);
  await check("match (player)", bob);
  await leave();

  assert.equal(found.length, 0, `axe found serious or critical violations:\n${found.join("\n")}`);
});
