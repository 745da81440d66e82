/**
 * Validators shared by the option modules. Each throws an {@link InvalidOptionError} (a
 * `TypeError`) naming the option, with a one-line message that never echoes secrets.
 */
import { InvalidOptionError } from './errors.js';

/** A short, safe rendering of a rejected value for an error message. */
export function show(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') return String(value);
  return value === null ? 'null' : typeof value;
}

export function isStringArray(value: unknown): value is readonly string[] {
  return Array.isArray(value) && value.every((t) => typeof t === 'string' && t !== '');
}

export function fail(option: string, problem: string): never {
  throw new InvalidOptionError(option, problem);
}

export function nonEmptyString(value: unknown, option: string): string {
  if (typeof value !== 'string' || value.trim() === '') fail(option, 'must be a non-empty string');
  return value;
}

export function optionalString(value: unknown, option: string): string | undefined {
  return value === undefined ? undefined : nonEmptyString(value, option);
}

/** A finite number within [min, max]; `integer` rejects fractions. */
export function numberOption(
  value: unknown,
  option: string,
  fallback: number,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
  integer = false,
): number {
  if (value === undefined) return fallback;
  if (
    typeof value !== 'number' ||
    !Number.isFinite(value) ||
    value < min ||
    value > max ||
    (integer && !Number.isInteger(value))
  ) {
    fail(option, `must be ${integer ? 'an integer' : 'a number'} between ${min} and ${max} (got ${show(value)})`);
  }
  return value;
}

/**
 * The longest delay Node's timers can express (2^31 − 1 ms, about 24.8 days). A longer one
 * fires after 1 ms with a `TimeoutOverflowWarning`, so a "30 days" option would spin.
 */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** A duration in milliseconds within [min, max], where max never exceeds what a timer can wait. */
export function durationOption(
  value: unknown,
  option: string,
  fallback: number,
  min: number,
  max = MAX_TIMER_MS,
): number {
  const limit = Math.min(max, MAX_TIMER_MS);
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > limit) {
    fail(
      option,
      `must be a duration in milliseconds between ${min} and ${limit}${limit === MAX_TIMER_MS ? " (Node's timer limit, ~24.8 days)" : ''} (got ${show(value)})`,
    );
  }
  return value;
}

const SCHEME = /^[a-z][a-z0-9+.-]*$/;

export function schemeOption(value: unknown, option: string): string {
  if (value === undefined) return 'http';
  if (typeof value !== 'string' || !SCHEME.test(value)) fail(option, 'must be a URL scheme such as "http" or "https"');
  return value;
}
