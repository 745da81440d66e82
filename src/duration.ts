/**
 * Durations written the Consul (Go `time.ParseDuration`) way: `300ms`, `5s`, `5m`, `1h30m`,
 * `1.5s`. Used by the CLI flags and the sidecar's `?wait=` parameter, and to format the
 * `wait` query parameter sent to Consul.
 */

const UNIT_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/**
 * Parses a Go-style duration into milliseconds. Returns `undefined` when `text` is not a
 * valid non-negative duration (callers turn that into their own coded error). A bare `0`
 * is accepted, as in Go.
 */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  if (text.length === 0) return undefined;
  let total = 0;
  PART.lastIndex = 0;
  while (PART.lastIndex < text.length) {
    const match = PART.exec(text);
    if (match === null) return undefined;
    const [, value, unit] = match;
    total += Number(value) * (UNIT_MS[unit ?? ''] ?? Number.NaN);
  }
  return Number.isFinite(total) ? total : undefined;
}

/** Formats milliseconds as a Go duration Consul accepts (`wait=` parameter), e.g. `300000ms` → `5m`. */
export function formatDuration(ms: number): string {
  const whole = Math.max(0, Math.round(ms));
  if (whole % 3_600_000 === 0 && whole > 0) return `${whole / 3_600_000}h`;
  if (whole % 60_000 === 0 && whole > 0) return `${whole / 60_000}m`;
  if (whole % 1000 === 0 && whole > 0) return `${whole / 1000}s`;
  return `${whole}ms`;
}
