/**
 * Sidecar hardening (issue #5): 1,000 concurrent long polls all answered by one publish,
 * slow clients (trickled headers, unread large answers) do not block others, and the
 * default bind is loopback only.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { once } from 'node:events';
import { createWorkerResolver } from '../../src/index.js';
import type { DiscoveringWorkerResolver } from '../../src/index.js';
import { startSidecar } from '../../src/sidecar.js';
import type { Sidecar } from '../../src/sidecar.js';
import { ConsulDevServer } from '../../src/testing/index.js';
import { waitFor } from '../helpers/wait.js';

function register(consul: ConsulDevServer, n: number): void {
  consul.registerService({
    Name: 'worker',
    ID: `worker-${n}`,
    // Long tags and meta make the answer large enough (~1 MB) to overflow socket buffers.
    Address: `127.0.${Math.floor(n / 250) + 20}.${(n % 250) + 1}`,
    Port: 9000,
    Tags: Array.from({ length: 5 }, (_, i) => `tag-${i}-${'x'.repeat(20)}`),
    Meta: { version: '2.1.0', zone: `zone-${n % 3}`, note: 'y'.repeat(40) },
    Check: { CheckID: `check-${n}`, TTL: '1h', Status: 'passing' },
  });
}

function get(agent: http.Agent, url: string): Promise<{ status: number; index: number }> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { index: number };
          resolve({ status: res.statusCode ?? 0, index: body.index });
        });
        res.on('error', reject);
      })
      .on('error', reject);
  });
}

describe('sidecar hardening', () => {
  let consul: ConsulDevServer;
  let resolver: DiscoveringWorkerResolver;
  let sidecar: Sidecar;
  let next = 2001;

  before(async () => {
    consul = await ConsulDevServer.start({ dns: false });
    for (let n = 1; n <= 2000; n += 1) register(consul, n);
    resolver = createWorkerResolver({
      service: 'worker',
      consul: { address: consul.httpAddr },
      minPublishIntervalMs: 0,
      env: {},
    });
    await resolver.ready({ timeoutMs: 10_000 });
    sidecar = await startSidecar({ resolver, port: 0 });
  });
  after(async () => {
    await sidecar.close();
    await resolver.close();
    await consul.stop();
  });

  it('binds to 127.0.0.1 by default', async () => {
    const s = await startSidecar({ resolver, port: 0 });
    try {
      assert.equal(s.host, '127.0.0.1');
    } finally {
      await s.close();
    }
  });

  it('1,000 concurrent long polls are all answered by the next publish', async () => {
    const agent = new http.Agent({ keepAlive: false, maxSockets: Infinity });
    const index = resolver.snapshot().version;
    const polls = Array.from({ length: 1000 }, () => get(agent, `${sidecar.url}/v1/workers?index=${index}&wait=60s`));
    await waitFor(() => sidecar.openLongPolls() === 1000, 'all 1,000 polls to be held', 30_000);
    register(consul, next++);
    const answers = await Promise.all(polls);
    assert.ok(answers.every((a) => a.status === 200 && a.index === index + 1));
    assert.equal(sidecar.openLongPolls(), 0);
    agent.destroy();
  });

  it('clients that trickle headers or never read their answer do not block others', async () => {
    const slow: Socket[] = [];
    try {
      // 20 clients that send half a request line and stop (slowloris).
      for (let i = 0; i < 20; i += 1) {
        const s = connect(sidecar.port, '127.0.0.1');
        await once(s, 'connect');
        s.write('GET /v1/work');
        slow.push(s);
      }
      // 20 clients that ask for the ~1 MB answer and never read it: the server's writes back up.
      for (let i = 0; i < 20; i += 1) {
        const s = connect(sidecar.port, '127.0.0.1');
        await once(s, 'connect');
        s.pause();
        s.write('GET /v1/workers HTTP/1.1\r\nHost: x\r\n\r\n');
        slow.push(s);
      }
      const agent = new http.Agent({ keepAlive: false });
      const answers = await Promise.all(Array.from({ length: 10 }, () => get(agent, `${sidecar.url}/v1/workers`)));
      assert.ok(answers.every((a) => a.status === 200));
      // The normal clients were served while every slow one was still connected: they did not
      // wait for the slow ones to finish or to be cut by a timeout.
      assert.ok(
        slow.every((s) => !s.destroyed && s.readyState === 'open'),
        'slow clients still connected',
      );
      agent.destroy();
    } finally {
      for (const s of slow) s.destroy();
    }
  });
});
