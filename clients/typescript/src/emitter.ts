/** A small typed event emitter: `on` returns its own unsubscribe function. */
export class Emitter<Events extends { [K in keyof Events]: unknown }> {
  private readonly handlers = new Map<keyof Events, Set<(arg: never) => void>>();

  on<K extends keyof Events>(event: K, fn: (arg: Events[K]) => void): () => void {
    let set = this.handlers.get(event);
    if (!set) this.handlers.set(event, (set = new Set()));
    set.add(fn as (arg: never) => void);
    return () => this.off(event, fn);
  }

  once<K extends keyof Events>(event: K, fn: (arg: Events[K]) => void): () => void {
    const off = this.on(event, (arg) => {
      off();
      fn(arg);
    });
    return off;
  }

  off<K extends keyof Events>(event: K, fn: (arg: Events[K]) => void): void {
    this.handlers.get(event)?.delete(fn as (arg: never) => void);
  }

  /** Resolves with the next emission of `event`. */
  next<K extends keyof Events>(event: K): Promise<Events[K]> {
    return new Promise((resolve) => this.once(event, resolve));
  }

  protected emit<K extends keyof Events>(event: K, arg: Events[K]): void {
    const set = this.handlers.get(event);
    if (!set) return;
    // A throwing listener must not break the SDK's own bookkeeping.
    for (const fn of [...set]) {
      try {
        (fn as (arg: Events[K]) => void)(arg);
      } catch (e) {
        queueMicrotask(() => {
          throw e;
        });
      }
    }
  }
}
