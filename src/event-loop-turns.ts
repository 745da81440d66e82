/**
 * Long work in event-loop turns (large answers, docs/performance.md): a generator that does a slice of its work and
 * yields when the slice has used its time, driven here with a `setImmediate` hop between
 * slices, so timers, sockets and other callbacks run in between. Used by the Consul body
 * parser (`consul/health-incremental.ts`) and the engine's large full builds (`worker-set.ts`).
 */

/** One `setImmediate` hop: the rest runs in a later event-loop turn, after pending I/O. */
export function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * Runs `steps` to its end, one slice per turn; resolves its result, or undefined when
 * `cancelled()` is true at the start of a turn (the generator is then left unfinished: it
 * must change nothing until it returns).
 */
export async function finishInTurns<T>(steps: Generator<void, T>, cancelled: () => boolean): Promise<T | undefined> {
  let step = steps.next();
  while (step.done !== true) {
    await nextTurn();
    if (cancelled()) return undefined;
    step = steps.next();
  }
  return step.value;
}

/** Runs `steps` to its end in this turn. */
export function finishNow<T>(steps: Generator<void, T>): T {
  let step = steps.next();
  while (step.done !== true) step = steps.next();
  return step.value;
}
