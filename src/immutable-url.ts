/**
 * A `URL` that cannot be changed: the worker URLs a snapshot hands out.
 *
 * `Object.freeze` does not protect a `URL`: its state lives in internal slots behind
 * accessor properties on `URL.prototype`, so `url.pathname = '/x'` still rewrites it. A
 * snapshot's URLs are shared by every later snapshot that keeps the worker (the engine reuses
 * unchanged workers), so one caller's assignment would silently reroute every other caller and
 * break the snapshot's sort and diff. This subclass overrides every setter to throw, and
 * hands out a copy of `searchParams` (whose methods would otherwise write through).
 *
 * It is still a real `URL` (`instanceof URL`, `href`, `toString()`, `toJSON()`, `fetch(url)`),
 * built once per worker per publish, so `getUrls()` stays O(1) and allocation-free.
 */

/** Thrown (a `TypeError`, with a stable `code`) when a caller tries to change a snapshot URL. */
export class ImmutableUrlError extends TypeError {
  readonly code = 'ERR_IMMUTABLE_URL' as const;

  constructor(property: string) {
    super(`worker URLs are immutable: cannot set "${property}" (copy it first: new URL(url))`);
  }

  override get name(): string {
    return 'ImmutableUrlError';
  }
}

/** The `URL` components a caller could assign; each becomes a throwing setter. */
const SETTABLE = [
  'href',
  'protocol',
  'username',
  'password',
  'host',
  'hostname',
  'port',
  'pathname',
  'search',
  'hash',
] as const;

/** A frozen `URL` whose setters throw {@link ImmutableUrlError}. */
export class ImmutableUrl extends URL {
  constructor(input: string) {
    super(input);
    Object.freeze(this);
  }
}

// The accessors are installed on the prototype rather than declared in the class: TypeScript
// types URL's accessors as plain properties, which a subclass may not redeclare as accessors.
for (const name of SETTABLE) {
  // eslint-disable-next-line @typescript-eslint/unbound-method -- reinstalled as an accessor, called with the URL as `this`
  const get = Object.getOwnPropertyDescriptor(URL.prototype, name)?.get;
  if (get === undefined) throw new Error(`URL.prototype.${name} is not an accessor`);
  Object.defineProperty(ImmutableUrl.prototype, name, {
    configurable: false,
    enumerable: true,
    get,
    set() {
      throw new ImmutableUrlError(name);
    },
  });
}
// eslint-disable-next-line @typescript-eslint/unbound-method -- called with the URL as `this`
const searchGet = Object.getOwnPropertyDescriptor(URL.prototype, 'search')?.get;
Object.defineProperty(ImmutableUrl.prototype, 'searchParams', {
  configurable: false,
  enumerable: true,
  /** A copy: changing it does not change this URL. */
  get(this: URL) {
    return new URLSearchParams(searchGet?.call(this) as string);
  },
});
Object.freeze(ImmutableUrl.prototype);
