// Scenario 4: a full trivia game between two browsers, from the lobby's rated matchmaking
// ("Find a trivia arena") to the final standings.
//
// The web client's create form offers no trivia config but "start at N players" and
// "rated", so a game always plays the server's sample set (10 questions, 10 s windows,
// 3 s reveals). The matchmaker seats both browsers as players of one arena that starts by
// itself, which is the one way in the UI for two browsers to both be players. The test
// knows the right answers from the sample set's source, matched by question text.
import assert from "node:assert/strict";
import fs from "node:fs";
import path from "node:path";
import { inRoom, REPO, scenario, signInGuest, until } from "./support.js";

const SAMPLE = JSON.parse(fs.readFileSync(path.join(REPO, "crates/parlor-games/src/trivia/sample.json"), "utf8"));
const CORRECT = new Map(SAMPLE.map((q) => [q.text, q.correct]));

async function phase(page) {
  return page.getByTestId("trivia-phase").getAttribute("data-phase");
}

async function waitPhase(page, want, index, timeout = 15_000) {
  await page.waitForFunction(
    ([p, i]) =>
      document.querySelector("[data-testid=trivia-phase]")?.getAttribute("data-phase") === p &&
      (i === null || document.querySelector("[data-testid=trivia-question]")?.getAttribute("data-index") === String(i)),
    [want, index],
    { timeout },
  );
}

async function standings(page) {
  return page
    .getByTestId("trivia-scores")
    .locator("li[data-user-id]")
    .evaluateAll((els) =>
      els.map((el) => ({ userId: el.getAttribute("data-user-id"), score: Number(el.getAttribute("data-score")), place: Number(el.getAttribute("data-place")) })),
    );
}

async function judged(page) {
  return page.getByTestId("trivia-judged").evaluateAll((els) =>
    els.map((el) => ({ userId: el.getAttribute("data-user-id"), correct: el.getAttribute("data-correct"), text: el.textContent })),
  );
}

/** Both browsers queue for a two-player trivia arena from the lobby; resolves in the room. */
async function matchmakeArena(first, second) {
  for (const u of [first, second]) {
    await u.page.getByTestId("quick-kind").selectOption("trivia");
    const mm = u.page.getByTestId("matchmake");
    assert.equal((await mm.textContent())?.trim(), "Find a trivia arena");
    await mm.click();
    // The first to queue is the oldest ticket: the arena's owner.
    if (u === first) await u.page.getByTestId("matchmake-status").filter({ hasText: "Looking" }).waitFor();
  }
  const a = await inRoom(first, { kind: "trivia" });
  const b = await inRoom(second, { kind: "trivia", id: a.id });
  return b;
}

scenario("trivia: a matchmade arena plays to the final standings, the same in both browsers", { timeout: 75_000 }, async (h) => {
  const pod = await h.pod({ name: "trivia" });
  const ann = await h.user("ann");
  const bob = await h.user("bob");
  await signInGuest(ann, pod.url, "Ann");
  await signInGuest(bob, pod.url, "Bob");
  await matchmakeArena(ann, bob);
  assert.equal(await ann.page.getByTestId("room-meta").getAttribute("data-role"), "owner");
  assert.equal(await bob.page.getByTestId("room-meta").getAttribute("data-role"), "player");

  // The arena starts by itself once both seats are in.
  await waitPhase(ann.page, "buzzing", 0);
  await waitPhase(bob.page, "buzzing", 0);
  const progress = (await bob.page.getByTestId("trivia-progress").textContent()) ?? "";
  const total = Number(/of (\d+)/.exec(progress)?.[1]);
  assert.equal(total, SAMPLE.length, `the sample set is played: ${progress}`);
  // The game's start is in the log of whoever was in the arena when it began (the
  // other page may have joined a moment after, and then starts from the game's view).
  await until(
    async () => {
      for (const u of [ann, bob]) {
        const log = (await u.page.getByTestId("trivia-log").textContent()) ?? "";
        if (log.includes(`${total} questions, 2 players`)) return true;
      }
      return false;
    },
    { what: "the start in a game log" },
  );

  // Bob buzzes first on every question and picks the right answer.
  // (Ann, the arena's owner, is a seated player too; here she lets Bob buzz, and her
  // score stays at 0. The test below has her buzz.)
  for (let i = 0; i < total; i++) {
    await waitPhase(bob.page, "buzzing", i);
    const text = ((await bob.page.getByTestId("trivia-question").textContent()) ?? "").trim();
    assert.ok(CORRECT.has(text), `question ${i} is not in the sample set: ${text}`);
    assert.equal(((await ann.page.getByTestId("trivia-question").textContent()) ?? "").trim(), text, "both browsers ask the same question");
    const right = CORRECT.get(text);
    await bob.page.getByTestId("trivia-buzz").click();
    await waitPhase(bob.page, "answering", i);
    await bob.page.getByTestId(`trivia-answer-${right}`).click();
    // Both see the judgement and the reveal (the log keeps them after the next question).
    for (const u of [ann, bob]) {
      await until(async () => (await u.page.getByTestId("trivia-revealed").count()) === i + 1, { what: `${u.label} to see reveal ${i + 1}` });
    }
    const j = await judged(ann.page);
    assert.equal(j.length, i + 1);
    assert.equal(j[i].userId, bob.id);
    assert.equal(j[i].correct, "true", `Bob's answer to "${text}" was judged right`);
  }

  // The end: both browsers say it is over, and show the same standings.
  for (const u of [ann, bob]) {
    await waitPhase(u.page, "over", null, 15_000);
    await u.page.getByTestId("trivia-over").waitFor();
  }
  const a = await standings(ann.page);
  const b = await standings(bob.page);
  assert.deepEqual(a, b, "both browsers show the same final scores and places");
  assert.equal(a.length, 2, "both seats are in the standings");
  const bobRow = a.find((s) => s.userId === bob.id);
  const annRow = a.find((s) => s.userId === ann.id);
  assert.equal(bobRow.place, 1);
  assert.equal(annRow.place, 2);
  assert.equal(annRow.score, 0);
  // Each right answer is worth 10, plus up to 5 for speed; the log's running score agrees.
  assert.ok(bobRow.score >= 10 * total && bobRow.score <= 15 * total, `Bob's score ${bobRow.score}`);
  const lastJudged = (await judged(bob.page)).at(-1);
  assert.match(lastJudged.text, new RegExp(`score ${bobRow.score}\\.$`));
  // The scores are also written as text, with the places, in both browsers.
  for (const u of [ann, bob]) {
    const rows = await u.page.getByTestId("trivia-scores").locator("li").allTextContents();
    assert.deepEqual(
      rows.map((r) => r.replace(/\s+/g, " ").trim()),
      [`1.Bob${u === bob ? " (you)" : ""}${bobRow.score}`, `2.Ann${u === ann ? " (you)" : ""}0`],
    );
  }
  await ann.page.getByTestId("trivia-over").filter({ hasText: "Winner: Bob." }).waitFor();
  assert.equal(await phase(bob.page), "over");
});

scenario(
  "trivia: the owner of a matchmade arena, a seated player, may buzz",
  async (h) => {
    const pod = await h.pod({ name: "trivia-owner" });
    const ann = await h.user("ann");
    const bob = await h.user("bob");
    await signInGuest(ann, pod.url, "Ann");
    await signInGuest(bob, pod.url, "Bob");
    await matchmakeArena(ann, bob);
    await waitPhase(ann.page, "buzzing", 0);
    // The server seats her (TriviaConfig.players lists the owner) and takes her buzz.
    const seated = await standings(ann.page);
    assert.ok(seated.some((s) => s.userId === ann.id), "the owner is in the arena's seats");
    const buzz = ann.page.getByTestId("trivia-buzz");
    assert.equal(await buzz.isVisible(), true, "the owner's buzzer is shown");
    await until(() => buzz.isEnabled(), { timeout: 3000, what: "the owner's buzzer to be enabled" });
  },
);
