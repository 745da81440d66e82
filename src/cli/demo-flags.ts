/**
 * The command line of `worker-resolver demo`: its flags, `--help` text and up-front
 * validation (a bad flag is one usage line and exit 2, before anything starts), and the
 * choice of Consul: `--consul URL`, else `CONSUL_HTTP_ADDR`, else the embedded dev server
 * (`--embedded` forces it).
 */
import { parseArgs } from 'node:util';
import { parseDuration } from '../duration.js';
import { hostPortOf } from './config.js';
import { CliUsageError } from './flags.js';

/** The service of the embedded demo, and the default one against a real agent. */
const EMBEDDED_SERVICE = 'datafusion-worker';
const REAL_SERVICE = 'worker-resolver-demo';

/** `worker-resolver demo --help`. */
export const DEMO_USAGE = `Usage: worker-resolver demo [options]

Runs a Consul dev server, example workers, the sidecar and an example coordinator on
127.0.0.1, and shows the worker set and each job's plan while workers come and go.
With --consul (or CONSUL_HTTP_ADDR), uses that real Consul agent instead of the dev server.

Options:
  --consul URL        a real Consul agent (http(s)://host:port or host:port) instead of the
                      embedded dev server. Default: $CONSUL_HTTP_ADDR if set, else embedded.
                      CONSUL_HTTP_TOKEN(_FILE), CONSUL_CACERT, ... are honoured
  --consul-dns H:P    that agent's DNS interface, for the SRV fallback. Default: asked from
                      the agent (/v1/agent/self); no DNS fallback if it cannot say
  --embedded          use the embedded dev server even when CONSUL_HTTP_ADDR is set
  --service NAME      the workers' service. Default datafusion-worker (embedded),
                      worker-resolver-demo (real agent)
  --duration D        run for D (e.g. 30s, 2m), then exit 0. Default: until Ctrl-C
  --workers N         initial workers (1-32). Default 4
  --port-base P       Consul on P, its DNS on P+1, the sidecar on P+2, workers on P+10...
                      (0 = all ephemeral). Default: Consul 8500, DNS 8600, sidecar 9464,
                      workers ephemeral; a busy port falls back to an ephemeral one.
                      With a real agent only the sidecar and workers use it
  --job-every D       pause between jobs. Default 2s
  --events-every D    pause between worker events. Default 3s
  --quiet             print only the addresses, failures and the final summary
  -h, --help          this text`;

/** The parsed command line. */
export interface DemoFlags {
  /** A real agent's base URL (`http(s)://host:port`); undefined = the embedded dev server. */
  readonly consul: URL | undefined;
  /** Where `consul` came from, for the header and errors. */
  readonly consulOrigin: '--consul' | 'CONSUL_HTTP_ADDR';
  /** `--consul-dns`; undefined = ask the agent. */
  readonly consulDns: string | undefined;
  readonly service: string;
  readonly durationMs: number | undefined;
  readonly workers: number;
  readonly portBase: number | undefined;
  readonly jobEveryMs: number;
  readonly eventsEveryMs: number;
  readonly quiet: boolean;
}

/** `host:port` or `http(s)://host:port` → the agent's base URL, the way Consul's CLI reads `CONSUL_HTTP_ADDR`. */
function consulUrl(text: string, origin: string, env: Env): URL {
  const ssl = /^(1|true)$/i.test(env['CONSUL_HTTP_SSL'] ?? '');
  let url: URL | undefined;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `${ssl ? 'https' : 'http'}://${text}`);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    throw new CliUsageError(
      `demo: ${origin}: "${text.slice(0, 80)}" is not a Consul address such as http://127.0.0.1:8500`,
    );
  }
  if (url.username !== '' || url.password !== '') {
    throw new CliUsageError(`demo: ${origin}: credentials in the address are not supported; use CONSUL_HTTP_TOKEN`);
  }
  return new URL(url.origin);
}

/** Environment variables. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Parses and validates the demo's argv and environment; starts nothing. Throws {@link CliUsageError}. */
export function parseDemoFlags(argv: readonly string[], env: Env): DemoFlags | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      options: {
        consul: { type: 'string' },
        'consul-dns': { type: 'string' },
        embedded: { type: 'boolean' },
        service: { type: 'string' },
        duration: { type: 'string' },
        workers: { type: 'string' },
        'port-base': { type: 'string' },
        'job-every': { type: 'string' },
        'events-every': { type: 'string' },
        quiet: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
    });
  } catch (err) {
    throw new CliUsageError(`demo: ${(err as Error).message}`);
  }
  const { values } = parsed;
  if (values.help === true) return 'help';
  const duration = (name: string, text: string | undefined, fallback: number | undefined): number | undefined => {
    if (text === undefined) return fallback;
    const ms = parseDuration(text);
    if (ms === undefined || ms <= 0) throw new CliUsageError(`demo: --${name} must be a duration such as 30s or 2m`);
    return ms;
  };
  const integer = (name: string, text: string | undefined, fallback: number | undefined, min: number, max: number) => {
    if (text === undefined) return fallback;
    const n = Number(text);
    if (!Number.isInteger(n) || n < min || n > max)
      throw new CliUsageError(`demo: --${name} must be an integer in [${min}, ${max}]`);
    return n;
  };
  if (values.embedded === true && (values.consul !== undefined || values['consul-dns'] !== undefined)) {
    throw new CliUsageError('demo: --embedded and --consul/--consul-dns are mutually exclusive');
  }
  const fromEnv = env['CONSUL_HTTP_ADDR'] === '' ? undefined : env['CONSUL_HTTP_ADDR'];
  const consul =
    values.consul !== undefined
      ? consulUrl(values.consul, '--consul', env)
      : values.embedded !== true && fromEnv !== undefined
        ? consulUrl(fromEnv, 'CONSUL_HTTP_ADDR', env)
        : undefined;
  const consulDns = values['consul-dns'];
  if (consulDns !== undefined) {
    if (consul === undefined) throw new CliUsageError('demo: --consul-dns needs --consul (or CONSUL_HTTP_ADDR)');
    hostPortOf(consulDns, 'demo: --consul-dns', 8600);
  }
  const service = values.service ?? (consul === undefined ? EMBEDDED_SERVICE : REAL_SERVICE);
  if (!/^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(service)) {
    throw new CliUsageError(`demo: --service: "${service.slice(0, 64)}" must be letters, digits and dashes`);
  }
  return {
    consul,
    consulOrigin: values.consul === undefined ? 'CONSUL_HTTP_ADDR' : '--consul',
    consulDns,
    service,
    durationMs: duration('duration', values.duration, undefined),
    workers: integer('workers', values.workers, 4, 1, 32) ?? 4,
    portBase: integer('port-base', values['port-base'], undefined, 0, 65_000),
    jobEveryMs: duration('job-every', values['job-every'], 2000) ?? 2000,
    eventsEveryMs: duration('events-every', values['events-every'], 3000) ?? 3000,
    quiet: values.quiet === true,
  };
}
