/**
 * What the CLI says: the version subcommand, help that offers only what a command accepts,
 * SDK diagnostics as one readable line, and worker changes named in the serve log.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ConsulDevServer } from '../../src/testing/index.js';
import { diagLine } from '../../src/cli/otel.js';
import { packageVersion } from '../../src/version.js';
import { runCli, within } from '../fixtures/cli-http.js';
import { waitFor } from '../helpers/wait.js';

describe('CLI wording', () => {
  it('`version` prints the package version, like --version', async () => {
    for (const args of [['version'], ['--version']]) {
      const cli = runCli(args);
      assert.equal(await within(cli.exited, 20_000, args.join(' ')), 0);
      assert.equal(cli.stdout(), `${packageVersion()}\n`);
    }
  });

  it('doctor --help offers no flag doctor rejects', async () => {
    const cli = runCli(['doctor', '--help']);
    assert.equal(await within(cli.exited, 20_000, 'doctor --help'), 0);
    assert.doesNotMatch(cli.stdout(), /^\s+--static\b/m);
    const rejected = runCli(['doctor', '--service', 'w', '--static', 'http://10.0.0.1:80']);
    assert.equal(await within(rejected.exited, 20_000, 'doctor --static'), 2);
    const noConsul = runCli(['doctor', '--service', 'w', '--no-consul']);
    assert.equal(await within(noConsul.exited, 20_000, 'doctor --no-consul'), 2);
    assert.match(noConsul.stderr(), /--no-consul needs --dns-srv/);
    assert.doesNotMatch(noConsul.stderr(), /--static/);
  });

  it('an SDK diagnostic with an error (or its JSON) becomes one line without a stack', () => {
    const err = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:4318'), { code: 'ECONNREFUSED' });
    assert.equal(diagLine('Export failed', [err]), 'Export failed: connect ECONNREFUSED 127.0.0.1:4318 (ECONNREFUSED)');
    const json = JSON.stringify({ stack: 'Error: boom\n    at x (y.js:1:1)', message: 'boom', name: 'Error' });
    const line = diagLine(json, []);
    assert.equal(line, 'boom');
    assert.ok(!line.includes('\n') && !line.includes(' at '));
  });

  it('serve names the workers added and removed in its log', async () => {
    const consul = await ConsulDevServer.start({ dns: false });
    consul.registerService({ Name: 'worker', ID: 'w1', Address: '127.0.3.1', Port: 9101 });
    const cli = runCli(['serve', '--service', 'worker', '--consul', consul.httpAddr, '--listen', '127.0.0.1:0']);
    try {
      await waitFor(
        () => /"addedUrls":\["http:\/\/127\.0\.3\.1:9101\/"\]/.test(cli.stderr()),
        `the added worker:\n${cli.stderr()}`,
        20_000,
      );
      consul.deregisterService('w1');
      await waitFor(
        () => /"removedUrls":\["http:\/\/127\.0\.3\.1:9101\/"\]/.test(cli.stderr()),
        `the removed worker:\n${cli.stderr()}`,
        20_000,
      );
      cli.child.kill('SIGTERM');
      assert.equal(await within(cli.exited, 20_000, 'serve exit'), 0);
    } finally {
      cli.child.kill('SIGKILL');
      await consul.stop();
    }
  });
});
