/**
 * The package as published: `tsc -p tsconfig.build.json` into a scratch directory, then plain
 * `node` (no tsx) runs the compiled CLI and a resolver whose Consul reader thread is started
 * from the compiled worker file next to it — the one path the source-run tests cannot show.
 * The script runs as `node --input-type=module -e …`: a flag that the thread must not inherit
 * (it did, and died at start, before the thread was started without the process's execArgv).
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = fileURLToPath(new URL('../..', import.meta.url));

describe('the compiled package (dist)', () => {
  let out: string;
  before(async () => {
    // Inside the repository, so the compiled modules resolve node_modules as dist/ does.
    out = await mkdtemp(join(root, '.test-dist-'));
    await run(
      process.execPath,
      [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json', '--outDir', out],
      {
        cwd: root,
      },
    );
  });
  after(async () => {
    await rm(out, { recursive: true, force: true });
  });

  it('the CLI runs from the compiled files', async () => {
    const { stdout } = await run(process.execPath, [join(out, 'cli/main.js'), '--version']);
    assert.match(stdout, /^\d+\.\d+\.\d+\n$/);
  });

  it('a resolver reads Consul through the compiled reader thread and follows a change', async () => {
    const script = `
      import { createWorkerResolver } from ${JSON.stringify(join(out, 'index.js'))};
      import { ConsulDevServer } from ${JSON.stringify(join(out, 'testing/index.js'))};
      const dev = await ConsulDevServer.start({ dns: false });
      const add = (i) => dev.registerService({ Name: 'worker', ID: 'w' + i, Address: '127.0.0.' + i, Port: 9000,
        Check: { CheckID: 'c' + i, TTL: '1h', Status: 'passing' } });
      for (let i = 1; i <= 3; i++) add(i);
      const r = createWorkerResolver({ service: 'worker', consul: { address: dev.httpAddr, readInThread: true },
        env: {}, minPublishIntervalMs: 0 });
      await r.ready({ timeoutMs: 10000 });
      const first = r.getUrls().map(String);
      const changed = new Promise((resolve) => r.subscribe((s) => { if (s.workers.length === 4) resolve(); }));
      add(4);
      await changed;
      console.log(JSON.stringify({ first, then: r.getUrls().map(String) }));
      await r.close();
      await dev.stop();
    `;
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { timeout: 60_000 });
    const { first, then } = JSON.parse(stdout) as { first: string[]; then: string[] };
    assert.deepEqual(first, ['http://127.0.0.1:9000/', 'http://127.0.0.2:9000/', 'http://127.0.0.3:9000/']);
    assert.deepEqual(then, [...first, 'http://127.0.0.4:9000/']);
  });
});
