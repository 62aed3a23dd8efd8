// A small polyphonic synth on WebAudio: one oscillator pair and an envelope per note.
// The AudioContext is made on the first user gesture (browsers keep it suspended before).

interface Voice {
  osc: OscillatorNode[];
  gain: GainNode;
}

let ctx: AudioContext | undefined;
let master: GainNode | undefined;
const voices = new Map<string, Voice>();
let muted = false;

/** Call from a user gesture (click, key press): makes or resumes the AudioContext. */
export function unlockAudio(): void {
  const AC: typeof AudioContext | undefined =
    window.AudioContext ?? (window as unknown as { webkitAudioContext?: typeof AudioContext }).webkitAudioContext;
  if (!AC) return;
  if (!ctx) {
    try {
      ctx = new AC();
    } catch {
      return;
    }
    master = ctx.createGain();
    master.gain.value = 0.25;
    const comp = ctx.createDynamicsCompressor();
    master.connect(comp).connect(ctx.destination);
  }
  if (ctx.state === "suspended") void ctx.resume();
}

export function audioReady(): boolean {
  return !!ctx && ctx.state === "running";
}

export function setMuted(m: boolean): void {
  muted = m;
  if (m) for (const key of [...voices.keys()]) release(key);
}

export function isMuted(): boolean {
  return muted;
}

const freq = (note: number) => 440 * Math.pow(2, (note - 69) / 12);

/** Starts `note` (MIDI number) for `who`; a note already sounding for them restarts. */
export function noteOn(who: string, note: number, velocity = 100): void {
  if (muted || !ctx || !master || ctx.state !== "running") return;
  const key = `${who}:${note}`;
  release(key);
  const t = ctx.currentTime;
  const gain = ctx.createGain();
  const peak = Math.max(0.05, Math.min(1, velocity / 127)) * 0.6;
  gain.gain.setValueAtTime(0, t);
  gain.gain.linearRampToValueAtTime(peak, t + 0.01);
  gain.gain.exponentialRampToValueAtTime(peak * 0.4, t + 0.4);
  gain.connect(master);
  const a = ctx.createOscillator();
  a.type = "triangle";
  a.frequency.value = freq(note);
  const b = ctx.createOscillator();
  b.type = "sine";
  b.frequency.value = freq(note) * 2;
  const bGain = ctx.createGain();
  bGain.gain.value = 0.15;
  a.connect(gain);
  b.connect(bGain).connect(gain);
  a.start(t);
  b.start(t);
  voices.set(key, { osc: [a, b], gain });
  // A note whose off never comes (a dropped socket) fades out by itself.
  setTimeout(() => {
    if (voices.get(key)?.gain === gain) release(key);
  }, 8000);
}

export function noteOff(who: string, note: number): void {
  release(`${who}:${note}`);
}

function release(key: string): void {
  const v = voices.get(key);
  if (!v || !ctx) return;
  voices.delete(key);
  const t = ctx.currentTime;
  v.gain.gain.cancelScheduledValues(t);
  v.gain.gain.setValueAtTime(Math.max(v.gain.gain.value, 0.0001), t);
  v.gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.25);
  for (const o of v.osc) o.stop(t + 0.3);
}

/** Stops every note of `who` (they left), or every note. */
export function allNotesOff(who?: string): void {
  for (const key of [...voices.keys()]) {
    if (!who || key.startsWith(`${who}:`)) release(key);
  }
}
