// `npm run screenshots`: one 1280x800 PNG of each page (sign-in, lobby, piano, dice,
// cards, trivia, match) into docs/screenshots/, taken from real play: a pod, two users in
// two Chromiums, chat, notes held, rolls, flips, a trivia question being answered.
import fs from "node:fs";
import path from "node:path";
import { createRoom, Harness, inRoom, joinAndList, joinByCode, REPO, say, signInGuest, until, waitForMembers } from "./support.js";

const OUT = path.join(REPO, "docs/screenshots");
const SAMPLE = JSON.parse(fs.readFileSync(path.join(REPO, "crates/parlor-games/src/trivia/sample.json"), "utf8"));
const CORRECT = new Map(SAMPLE.map((q) => [q.text, q.correct]));

async function shot(user, name) {
  const file = path.join(OUT, `${name}.png`);
  // Let the last frame paint (fonts, the latency figure) before the capture.
  await user.page.evaluate(() => {
    window.scrollTo(0, 0);
    return new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  });
  await user.page.screenshot({ path: file, animations: "disabled", caret: "hide" });
  const kb = Math.round(fs.statSync(file).size / 1024);
  console.log(`${path.relative(REPO, file)}  ${kb} KB`);
  if (kb > 300) console.warn(`  ${name}.png is over 300 KB`);
}

const blur = (u) => u.page.evaluate(() => (document.activeElement instanceof HTMLElement ? document.activeElement.blur() : undefined));

async function leave(...users) {
  for (const u of users) {
    await u.page.getByTestId("leave-room").click();
    await u.page.getByTestId("create-room").waitFor();
  }
}

async function meet(ann, bob, opts) {
  const room = await createRoom(ann, opts);
  await joinAndList(ann, bob, room);
  return room;
}

async function main() {
  fs.mkdirSync(OUT, { recursive: true });
  const h = new Harness("screenshots");
  try {
    const pod = await h.pod({ name: "screenshots" });
    const ann = await h.user("ann");
    const bob = await h.user("bob");

    // Sign-in, with a name being typed.
    await ann.page.goto(`${pod.url}/`);
    await ann.page.getByTestId("guest-name").fill("Ann");
    await shot(ann, "signin");
    await signInGuest(ann, pod.url, "Ann");
    await signInGuest(bob, pod.url, "Bob");

    // Other people's public rooms, made over REST, so that the lobby has a list.
    for (const [who, rooms] of [
      ["Cleo", [["Friday jam", "piano", 8], ["Pub quiz", "trivia", 12]]],
      ["Dev", [["Dragon's lair", "dice", 6], ["Poker night", "cards", 8], ["Chess final", "match", 2]]],
    ]) {
      const { access_token: token } = await pod.api("POST", "/api/v1/auth/guest", { name: who });
      for (const [name, kind, max] of rooms) await pod.api("POST", "/api/v1/rooms", { name, kind, public: true, max_members: max }, token);
    }
    const piano = await createRoom(ann, { name: "Evening jam", kind: "piano", max: 8 });
    await bob.page.getByTestId("rooms-refresh").click();
    await bob.page.locator(`[data-testid=room-row][data-room-id="${piano.id}"]`).waitFor();
    await until(async () => (await bob.page.getByTestId("room-row").count()) >= 6, { what: "six rooms listed" });
    await shot(bob, "lobby");

    // Piano: Bob holds a C major chord on his keyboard, Ann holds an A with the mouse.
    await joinByCode(bob, piano);
    await waitForMembers(ann.page, [
      { userId: ann.id, role: "owner" },
      { userId: bob.id, role: "player" },
    ]);
    await say(ann, "Hi Bob! Play me something?");
    await say(bob, "A C major chord, coming up");
    await say(ann, "Lovely. I'll add the A on top");
    await blur(bob);
    for (const k of ["z", "c", "b"]) await bob.page.keyboard.down(k);
    for (const n of [60, 64, 67]) await ann.page.locator(`[data-testid=piano-key-${n}][data-active=true]`).waitFor();
    await ann.page.getByTestId("piano-key-69").hover();
    await ann.page.mouse.down();
    await bob.page.locator("[data-testid=piano-key-69][data-active=true]").waitFor();
    await shot(ann, "piano");
    await ann.page.mouse.up();
    for (const k of ["z", "c", "b"]) await bob.page.keyboard.up(k);
    await leave(bob, ann);

    // Dice: a few rolls of different shapes, and Bob's values.
    await meet(ann, bob, { name: "The sunken keep", kind: "dice" });
    await say(ann, "Roll for initiative, then attack the goblin.");
    const roll = async (u, notation, label) => {
      const before = await u.page.getByTestId("roll").count();
      await u.page.getByTestId("dice-notation").fill(notation);
      await u.page.getByTestId("dice-label").fill(label);
      await u.page.getByTestId("dice-roll").click();
      await until(async () => (await u.page.getByTestId("roll").count()) > before, { what: `the ${notation} roll` });
    };
    await bob.page.getByTestId("dice-variables").fill("str=3, dex=2");
    await bob.page.getByTestId("dice-set-variables").click();
    await bob.page.getByTestId("dice-variables-list").locator("li").first().waitFor();
    await roll(bob, "1d20+@dex", "Initiative");
    await roll(ann, "4d6dl1", "Goblin hit points");
    await roll(bob, "2d20kh1+5", "Attack with advantage");
    await roll(bob, "2d6!+@str", "Damage");
    await say(bob, "Advantage! That has to hit.");
    await until(async () => (await ann.page.getByTestId("roll").count()) === 4, { what: "four rolls at Ann's" });
    await shot(bob, "dice");
    await leave(bob, ann);

    // Cards: a round dealt, a few flips, Bob's cursor over the table.
    await meet(ann, bob, { name: "Memory table", kind: "cards" });
    await ann.page.getByTestId("cards-start").click();
    await bob.page.locator("[data-testid=card]").first().waitFor();
    for (const [u, i] of [
      [bob, 3],
      [ann, 10],
      [bob, 17],
      [bob, 24],
    ]) {
      await u.page.locator(`[data-testid=card][data-index='${i}']`).click();
      await ann.page.locator(`[data-testid=card][data-index='${i}'][data-face]`).waitFor();
    }
    await say(bob, "Four down, forty-eight to go.");
    await say(ann, "My turn: I remember where the 4 was.");
    const card = bob.page.locator("[data-testid=card][data-index='20']");
    const box = await card.boundingBox();
    await bob.page.mouse.move(box.x + box.width / 2, box.y + box.height / 2, { steps: 5 });
    await ann.page.getByTestId("cursor").waitFor();
    await shot(ann, "cards");
    await leave(bob, ann);

    // Trivia: a matchmade arena; Bob takes the first question, and is answering the second.
    for (const u of [ann, bob]) {
      await u.page.getByTestId("quick-kind").selectOption("trivia");
      await u.page.getByTestId("matchmake").click();
      if (u === ann) await u.page.getByTestId("matchmake-status").filter({ hasText: "Looking" }).waitFor();
    }
    await inRoom(ann, { kind: "trivia" });
    await inRoom(bob, { kind: "trivia" });
    await say(bob, "Good luck!");
    for (let i = 0; i < 2; i++) {
      await bob.page.locator(`[data-testid=trivia-phase][data-phase=buzzing]`).waitFor();
      await bob.page.locator(`[data-testid=trivia-question][data-index='${i}']`).waitFor();
      const text = ((await bob.page.getByTestId("trivia-question").textContent()) ?? "").trim();
      await bob.page.getByTestId("trivia-buzz").click();
      await bob.page.locator("[data-testid=trivia-phase][data-phase=answering]").waitFor();
      if (i === 1) break;
      await bob.page.getByTestId(`trivia-answer-${CORRECT.get(text)}`).click();
      await bob.page.locator("[data-testid=trivia-phase][data-phase=revealed]").waitFor();
    }
    await shot(bob, "trivia");
    await leave(bob, ann);

    // Match: both seated; Ann has reported, Bob is about to answer.
    await meet(ann, bob, { name: "Chess: round 1", kind: "match" });
    await say(ann, "Good game! Checkmate on move 31.");
    await ann.page.getByTestId("match-report-win").click();
    await bob.page.getByTestId("match-report").waitFor();
    await say(bob, "Well played, confirming now.");
    await shot(bob, "match");
    await leave(bob, ann);
  } finally {
    await h.close();
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
