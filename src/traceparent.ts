/**
 * W3C Trace Context (`traceparent`) parsing, for the sidecar's server spans. The library
 * depends on `@opentelemetry/api` only and must work with an injected `TracerProvider` and no
 * global propagator, so it reads the one header it needs itself
 * (https://www.w3.org/TR/trace-context/#traceparent-header).
 */
import { TraceFlags, context, isSpanContextValid, trace } from '@opentelemetry/api';
import type { Context, SpanContext } from '@opentelemetry/api';

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The remote span context a `traceparent` value names, or undefined when it is absent or invalid. */
export function parseTraceparent(value: string | readonly string[] | undefined): SpanContext | undefined {
  // Two traceparent headers are invalid (the spec says to ignore them both).
  if (value === undefined || typeof value !== 'string') return undefined;
  const m = TRACEPARENT.exec(value.trim().toLowerCase());
  if (m === null) return undefined;
  const [, version, traceId, spanId, flags, rest] = m;
  // Version ff is forbidden; version 00 has exactly four fields.
  if (version === 'ff' || (version === '00' && rest !== undefined)) return undefined;
  const spanContext: SpanContext = {
    traceId: traceId ?? '',
    spanId: spanId ?? '',
    traceFlags: Number.parseInt(flags ?? '00', 16) & TraceFlags.SAMPLED,
    isRemote: true,
  };
  return isSpanContextValid(spanContext) ? spanContext : undefined;
}

/** `context.active()` with the remote parent of `traceparent`, when there is a valid one. */
export function contextFromTraceparent(value: string | readonly string[] | undefined): Context {
  const parent = parseTraceparent(value);
  return parent === undefined ? context.active() : trace.setSpanContext(context.active(), parent);
}
