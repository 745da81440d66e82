/**
 * The sidecar's SERVER spans: one per request, named by the fixed route, child of the
 * caller's W3C `traceparent`, with the OTel HTTP semantic-convention attributes.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { SpanKind, SpanStatusCode } from '@opentelemetry/api';
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { StaticWorkerResolver } from '../../src/resolver.js';
import type { DiscoveringWorkerResolver } from '../../src/resolver.js';
import { startSidecar } from '../../src/sidecar.js';
import type { Sidecar } from '../../src/sidecar.js';
import { parseTraceparent } from '../../src/traceparent.js';
import { waitFor } from '../helpers/wait.js';

function get(url: string, headers: Record<string, string> = {}): Promise<number> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
}

describe('sidecar tracing', () => {
  const exporter = new InMemorySpanExporter();
  let sidecar: Sidecar;
  before(async () => {
    const fixed = new StaticWorkerResolver(['http://10.0.0.1:8080']);
    // The sidecar needs subscribe/snapshot: a static resolver never publishes again.
    const resolver = Object.assign(fixed, {
      service: 'worker',
      subscribe: () => () => undefined,
      consulLeader: () => undefined,
    }) as unknown as DiscoveringWorkerResolver;
    sidecar = await startSidecar({
      resolver,
      port: 0,
      tracerProvider: new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(exporter)] }),
    });
  });
  after(() => sidecar.close());

  it('a request with traceparent becomes a SERVER span under the caller’s span', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const parentId = '00f067aa0ba902b7';
    assert.equal(await get(`${sidecar.url}/v1/workers`, { traceparent: `00-${traceId}-${parentId}-01` }), 200);
    await waitFor(() => exporter.getFinishedSpans().length === 1, 'one finished span');
    const [span] = exporter.getFinishedSpans();
    assert.ok(span);
    assert.equal(span.name, 'GET /v1/workers');
    assert.equal(span.kind, SpanKind.SERVER);
    assert.equal(span.spanContext().traceId, traceId);
    assert.equal(span.parentSpanContext?.spanId, parentId);
    assert.equal(span.attributes['http.request.method'], 'GET');
    assert.equal(span.attributes['http.route'], '/v1/workers');
    assert.equal(span.attributes['url.path'], '/v1/workers');
    assert.equal(span.attributes['http.response.status_code'], 200);
    assert.equal(span.attributes['server.port'], sidecar.port);
    assert.equal(span.attributes['worker_resolver.long_poll'], false);
    assert.equal(span.status.code, SpanStatusCode.UNSET);
  });

  it('without traceparent a root span; unknown paths keep a bounded name; 4xx is not an error', async () => {
    exporter.reset();
    assert.equal(await get(`${sidecar.url}/no/such/path/123`), 404);
    assert.equal(await get(`${sidecar.url}/v1/workers?index=x`), 400);
    await waitFor(() => exporter.getFinishedSpans().length === 2, 'two finished spans');
    const [notFound, bad] = exporter.getFinishedSpans();
    assert.equal(notFound?.name, 'GET', 'the raw path never becomes a span name');
    assert.equal(notFound?.parentSpanContext, undefined);
    assert.equal(notFound?.attributes['http.route'], undefined);
    assert.equal(notFound?.attributes['http.response.status_code'], 404);
    assert.equal(bad?.attributes['worker_resolver.long_poll'], true);
    assert.equal(bad?.status.code, SpanStatusCode.UNSET);
  });

  it('parses traceparent per W3C: invalid, all-zero and version-ff values give no parent', () => {
    assert.ok(parseTraceparent('00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01'));
    for (const bad of [
      undefined,
      '',
      'garbage',
      '00-00000000000000000000000000000000-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01',
      'ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01',
      '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra',
    ]) {
      assert.equal(parseTraceparent(bad), undefined, String(bad));
    }
    // A future version may carry more fields.
    assert.ok(parseTraceparent('01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more'));
  });
});
