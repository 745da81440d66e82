/**
 * The CLI's logger: one line per event on stderr, JSON or text, with secrets redacted.
 */
import type { Logger } from '../events.js';
import type { CliConfig, LogLevel } from './config.js';

const LEVELS: Readonly<Record<LogLevel, number>> = { debug: 0, info: 1, warn: 2, error: 3 };

/** Errors become their message in log fields (a JSON `{}` tells nobody anything). */
function plain(_key: string, value: unknown): unknown {
  if (value instanceof Error) return value.message;
  return typeof value === 'bigint' ? String(value) : value;
}

/**
 * The CLI's logger: one line per event on stderr (stdout belongs to the command's output),
 * JSON `{"time","level","msg",...fields}` or `time LEVEL msg key=value`. Any secret that
 * reached a line anyway is replaced by `[redacted]`: the library never logs the token, this
 * is the second lock.
 */
export function createCliLogger(
  log: CliConfig['log'],
  secrets: readonly string[],
  write: (line: string) => void = (line) => process.stderr.write(line),
): Logger {
  const emit =
    (level: LogLevel) =>
    (msg: string, fields: Record<string, unknown> = {}): void => {
      if (LEVELS[level] < LEVELS[log.level]) return;
      const time = new Date().toISOString();
      // assign() keeps time/level/msg first and lets no field overwrite them.
      let line =
        log.format === 'json'
          ? JSON.stringify(Object.assign({ time, level, msg }, fields, { time, level, msg }), plain)
          : `${time} ${level.toUpperCase().padEnd(5)} ${msg}${Object.entries(fields)
              .map(([k, v]) => ` ${k}=${typeof v === 'string' && /^[^\s"=]+$/.test(v) ? v : JSON.stringify(v, plain)}`)
              .join('')}`;
      for (const secret of secrets) line = line.split(secret).join('[redacted]');
      write(`${line}\n`);
    };
  return { debug: emit('debug'), info: emit('info'), warn: emit('warn'), error: emit('error') };
}
