/**
 * Durations written the Consul (Go `time.ParseDuration`) way: `300ms`, `5s`, `5m`, `1h30m`,
 * `1.5s`. One implementation for the CLI flags, the sidecar's `?wait=`, the `wait` sent to
 * Consul, and the Consul dev server's parsing of `?wait=` and check intervals.
 *
 * Grammar: a possibly signed sequence of decimal numbers, each with an optional fraction and
 * a unit suffix (`ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`). A bare `0` is the only number
 * allowed without a unit.
 */

/** Milliseconds per Go duration unit. */
const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  '\u00b5s': 1e-3, // micro sign
  '\u03bcs': 1e-3, // Greek small letter mu
  ms: 1,
  s: 1_000,
  m: 60_000,
  h: 3_600_000,
};

/** One `<number><unit>` term: integer part, optional fraction, unit (letters and micro signs). */
const TERM = /^(\d*)(?:\.(\d*))?([a-zA-Z\u00b5\u03bc]+)/;

/**
 * Parses a Go duration string into milliseconds (possibly fractional, possibly negative).
 * Returns `undefined` when `text` is not a valid Go duration (Consul then answers
 * `400 Invalid wait time`).
 */
export function parseGoDuration(text: string): number | undefined {
  let rest = text;
  let sign = 1;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    sign = rest.startsWith('-') ? -1 : 1;
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') return undefined;
  let total = 0;
  while (rest !== '') {
    const match = TERM.exec(rest);
    if (match === null) return undefined;
    const [whole, intPart = '', fracPart, unit = ''] = match;
    // Go requires at least one digit on one side of the dot: ".5s" and "5.s" are valid, ".s" is not.
    if (intPart === '' && (fracPart === undefined || fracPart === '')) return undefined;
    const perUnit = UNIT_MS[unit];
    if (perUnit === undefined) return undefined;
    total += Number(`${intPart === '' ? '0' : intPart}.${fracPart ?? ''}0`) * perUnit;
    rest = rest.slice(whole.length);
  }
  return sign * total;
}

/** Formats milliseconds as a short Go duration (`150ms`, `5s`, `2m0s` is written `2m`): for messages and outputs. */
export function formatGoDuration(ms: number): string {
  if (ms % 3_600_000 === 0 && ms !== 0) return `${ms / 3_600_000}h`;
  if (ms % 60_000 === 0 && ms !== 0) return `${ms / 60_000}m`;
  if (ms % 1_000 === 0) return `${ms / 1_000}s`;
  return `${ms}ms`;
}

/**
 * Parses a non-negative Go duration into milliseconds; `undefined` when invalid or negative
 * (callers turn that into their own coded error).
 */
export function parseDuration(text: string): number | undefined {
  const ms = parseGoDuration(text);
  return ms === undefined || ms < 0 || !Number.isFinite(ms) ? undefined : ms;
}

/** Formats milliseconds as a Go duration Consul accepts (`wait=` parameter), e.g. `300000` → `5m`. */
export function formatDuration(ms: number): string {
  return formatGoDuration(Math.max(0, Math.round(ms)));
}
