// Relay kind "piano": a two-octave keyboard. Notes go out as game events of type "note"
// with the payload [note, velocity, 1 = on | 0 = off]; "note_on" [note, velocity] and
// "note_off" [note] from other clients are understood too.
import { allNotesOff, audioReady, isMuted, noteOff, noteOn, setMuted, unlockAudio } from "../audio.ts";
import { checkbox, h } from "../dom.ts";
import type { GameEventMessage } from "../sdk.ts";
import { isWatcher, type KindPanel, type RoomCtx } from "./kind.ts";

const FIRST = 60; // C4
const KEYS = 24; // two octaves
const NAMES = ["C", "C♯", "D", "D♯", "E", "F", "F♯", "G", "G♯", "A", "A♯", "B"];
const SPOKEN = ["C", "C sharp", "D", "D sharp", "E", "F", "F sharp", "G", "G sharp", "A", "A sharp", "B"];
const BLACK = new Set([1, 3, 6, 8, 10]);
/** The computer keyboard: the bottom row for the lower octave, the top row for the upper. */
const KEYMAP = ["z", "s", "x", "d", "c", "v", "g", "b", "h", "n", "j", "m", "q", "2", "w", "3", "e", "r", "5", "t", "6", "y", "7", "u"];
const VELOCITY = 100;

export const noteName = (n: number) => `${NAMES[n % 12]}${Math.floor(n / 12) - 1}`;
const spokenName = (n: number) => `${SPOKEN[n % 12]} ${Math.floor(n / 12) - 1}`;

export function encodeNote(note: number, velocity: number, on: boolean): Uint8Array {
  return new Uint8Array([note & 0x7f, velocity & 0x7f, on ? 1 : 0]);
}

/** A relayed event as a note, or undefined when it is not one. */
export function decodeNote(type: string, p: Uint8Array): { note: number; velocity: number; on: boolean } | undefined {
  if (type === "note" && p.length >= 3) return { note: p[0]!, velocity: p[1]!, on: p[2] !== 0 };
  if (type === "note_on" && p.length >= 1) return { note: p[0]!, velocity: p[1] ?? VELOCITY, on: true };
  if (type === "note_off" && p.length >= 1) return { note: p[0]!, velocity: 0, on: false };
  return undefined;
}

export function pianoPanel(ctx: RoomCtx): KindPanel {
  const keys = new Map<number, HTMLButtonElement>();
  /** Who holds each note down: "me" or user ids. */
  const held = new Map<number, Set<string>>();
  const myDown = new Set<number>();
  const log = h("p", { class: "piano-log muted", "aria-live": "polite", "data-testid": "piano-last" });
  const audioNote = h("p", { class: "hint", "data-testid": "audio-state" });
  const watcher = isWatcher(ctx);

  const piano = h("div", {
    class: "piano",
    role: "group",
    "aria-label": "Piano keyboard, C4 to B5",
    "data-testid": "piano",
  });
  let white = 0;
  for (let i = 0; i < KEYS; i++) {
    const note = FIRST + i;
    const black = BLACK.has(note % 12);
    const kbd = KEYMAP[i]!;
    const key = h(
      "button",
      {
        type: "button",
        class: `key ${black ? "black" : "white"}`,
        "data-note": note,
        "data-testid": `piano-key-${note}`,
        title: `${spokenName(note)}: computer key ${kbd.toUpperCase()}`,
        "aria-pressed": "false",
        disabled: watcher,
      },
      h("span", null, noteName(note)),
      h("span", { class: "kbd" }, ` ${kbd.toUpperCase()}`),
    );
    if (black) key.style.setProperty("--pos", String(white));
    else white += 1;
    keys.set(note, key);
    piano.appendChild(key);
  }

  const paint = (note: number) => {
    const key = keys.get(note);
    if (!key) return;
    const who = held.get(note);
    const mine = myDown.has(note);
    key.classList.toggle("on-mine", mine);
    key.classList.toggle("on-theirs", !mine && !!who && who.size > 0);
    key.setAttribute("aria-pressed", String(mine));
    key.dataset.active = String(mine || (!!who && who.size > 0));
  };

  const audioText = () => {
    audioNote.textContent = isMuted()
      ? "Sound is off."
      : audioReady()
        ? "Sound is on."
        : "Sound starts after your first click or key press.";
  };

  const start = (note: number) => {
    if (watcher || myDown.has(note)) return;
    unlockAudio();
    audioText();
    myDown.add(note);
    paint(note);
    noteOn("me", note, VELOCITY);
    ctx.sendEvent("note", encodeNote(note, VELOCITY, true));
  };
  const stop = (note: number) => {
    if (!myDown.delete(note)) return;
    paint(note);
    noteOff("me", note);
    ctx.sendEvent("note", encodeNote(note, 0, false));
  };

  // Pointer: press and release; sliding off a key releases it.
  piano.addEventListener("pointerdown", (ev) => {
    const key = (ev.target as HTMLElement).closest<HTMLButtonElement>("button[data-note]");
    if (!key || key.disabled) return;
    ev.preventDefault();
    key.focus();
    start(Number(key.dataset.note));
    const note = Number(key.dataset.note);
    const up = () => {
      stop(note);
      key.removeEventListener("pointerleave", up);
      window.removeEventListener("pointerup", up);
      window.removeEventListener("pointercancel", up);
    };
    key.addEventListener("pointerleave", up);
    window.addEventListener("pointerup", up);
    window.addEventListener("pointercancel", up);
  });
  // Keyboard on a focused key: Enter or Space plays it while held.
  piano.addEventListener("keydown", (ev) => {
    const key = (ev.target as HTMLElement).closest<HTMLButtonElement>("button[data-note]");
    if (!key || (ev.key !== " " && ev.key !== "Enter")) return;
    ev.preventDefault();
    if (!ev.repeat) start(Number(key.dataset.note));
  });
  piano.addEventListener("keyup", (ev) => {
    const key = (ev.target as HTMLElement).closest<HTMLButtonElement>("button[data-note]");
    if (!key || (ev.key !== " " && ev.key !== "Enter")) return;
    ev.preventDefault();
    stop(Number(key.dataset.note));
  });
  // A click from assistive tech (no pointer or key events): a short note.
  piano.addEventListener("click", (ev) => {
    const key = (ev.target as HTMLElement).closest<HTMLButtonElement>("button[data-note]");
    if (!key || ev.detail !== 0 || myDown.has(Number(key.dataset.note))) return;
    if ((ev as PointerEvent).pointerType) return;
    const note = Number(key.dataset.note);
    start(note);
    setTimeout(() => stop(note), 300);
  });

  // The computer keyboard, anywhere on the page except in text fields.
  const typing = (t: EventTarget | null) =>
    t instanceof HTMLElement && (t.isContentEditable || t.matches("input, textarea, select"));
  const noteOfKey = (ev: KeyboardEvent) => {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return undefined;
    const i = KEYMAP.indexOf(ev.key.toLowerCase());
    return i < 0 ? undefined : FIRST + i;
  };
  const onKeyDown = (ev: KeyboardEvent) => {
    if (typing(ev.target)) return;
    const note = noteOfKey(ev);
    if (note === undefined) return;
    ev.preventDefault();
    if (!ev.repeat) start(note);
  };
  const onKeyUp = (ev: KeyboardEvent) => {
    const note = noteOfKey(ev);
    if (note !== undefined) stop(note);
  };
  const onBlur = () => {
    for (const n of [...myDown]) stop(n);
  };
  // Any gesture on the page lets the others' notes sound.
  const unlock = () => {
    unlockAudio();
    setTimeout(audioText, 50);
  };
  document.addEventListener("pointerdown", unlock, { once: true });
  document.addEventListener("keydown", unlock, { once: true });
  document.addEventListener("keydown", onKeyDown);
  document.addEventListener("keyup", onKeyUp);
  window.addEventListener("blur", onBlur);

  const mute = h("input", {
    "data-testid": "piano-mute",
    onchange: (ev: Event) => {
      setMuted((ev.target as HTMLInputElement).checked);
      audioText();
    },
  });
  audioText();

  const el = h(
    "section",
    { class: "panel", "aria-labelledby": "piano-h" },
    h("h2", { id: "piano-h" }, "Piano"),
    h(
      "p",
      { class: "hint", id: "piano-help" },
      watcher
        ? "You are watching: you hear the others play."
        : "Play with the mouse or touch, with Enter or Space on a focused key, or with your keyboard: Z to M and S, D, G, H, J for the lower octave, Q to U and 2, 3, 5, 6, 7 for the upper.",
    ),
    // A watcher's keys are disabled, so the strip itself takes focus to scroll on narrow screens.
    h("div", { class: "piano-wrap", ...(watcher ? { tabindex: 0, role: "group", "aria-label": "Piano keyboard" } : {}) }, piano),
    h("div", { class: "row" }, checkbox("Mute sound", mute)),
    audioNote,
    log,
  );

  return {
    el,
    event(e: GameEventMessage) {
      if (e.senderId === ctx.me) return; // our own echo: already played
      const n = decodeNote(e.type, e.payload);
      if (!n || !keys.has(n.note)) return;
      let who = held.get(n.note);
      if (n.on) {
        if (!who) held.set(n.note, (who = new Set()));
        who.add(e.senderId);
        noteOn(e.senderId, n.note, n.velocity);
        log.textContent = `${ctx.name(e.senderId)} played ${noteName(n.note)}`;
        log.dataset.lastNote = String(n.note);
        log.dataset.userId = e.senderId;
      } else {
        who?.delete(e.senderId);
        noteOff(e.senderId, n.note);
      }
      paint(n.note);
    },
    membersChanged() {
      // Release the notes of members who left.
      const present = ctx.members();
      for (const [note, who] of held) {
        for (const u of [...who]) {
          if (!present.has(u)) {
            who.delete(u);
            allNotesOff(u);
          }
        }
        paint(note);
      }
    },
    destroy() {
      document.removeEventListener("pointerdown", unlock);
      document.removeEventListener("keydown", unlock);
      document.removeEventListener("keydown", onKeyDown);
      document.removeEventListener("keyup", onKeyUp);
      window.removeEventListener("blur", onBlur);
      for (const n of [...myDown]) stop(n);
      allNotesOff();
    },
  };
}
