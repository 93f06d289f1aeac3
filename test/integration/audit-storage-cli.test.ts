import { mkdtemp, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { GetItemCommand, PutItemCommand } from '@aws-sdk/client-dynamodb';
import { beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../../lib/cli/main.js';
import { auditFixture } from '../support/audit-fixtures.js';
import { createHarness, type Harness } from '../support/harness.js';

let fx: Awaited<ReturnType<typeof auditFixture>>;
let h: Harness;
let dir: string;

async function cli(args: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    // The storage MAC key and installation id come from the data dir, as for the local server.
    env: { COFFER_DATA_DIR: h.dataDir },
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s), isTTY: false },
    stderr: { write: (s: string) => (stderr += s), isTTY: false },
    cwd: dir,
  });
  return { code, stdout, stderr };
}

const headKey = (path: string) => ({ pk: { S: `P#${path.split('/')[0]}` }, sk: { S: `H#${path}` } });

beforeAll(async () => {
  fx = await auditFixture('audit-storage-cli');
  h = await createHarness({ label: 'audit-storage-cli', audit: fx.trail() });
  dir = await mkdtemp(join(tmpdir(), 'coffer-audit-storage-cli-'));
  await writeFile(join(dir, 'root.pem'), fx.rootPem);
});

const verify = (...extra: string[]) =>
  cli([
    'audit',
    'verify',
    '--table',
    fx.tables.audit,
    '--endpoint',
    inject('dynamodbEndpoint'),
    '--root-key',
    'root.pem',
    '--storage',
    '--secrets-table',
    h.tables.secrets,
    ...extra,
  ]);

describe('coffer audit verify --storage', () => {
  it('when the live heads are the ones the log names, it passes', async () => {
    expect((await h.call('PUT', '/v1/secrets/svc/a', { body: { value: 'v1' } })).status).toBe(200);
    expect((await h.call('PUT', '/v1/secrets/svc/a', { body: { value: 'v2' } })).status).toBe(200);
    const run = await verify();
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`Storage:     secrets table ${h.tables.secrets}`);
    expect(run.stdout).toContain('1 paths checked');
    expect(run.stdout).toContain('OK: every live head and control record is the one the log names.');
  });

  it('when the v1 head is copied back over v2, it reports the rollback and exits non-zero', async () => {
    expect((await h.call('PUT', '/v1/secrets/svc/rb', { body: { value: 'v1' } })).status).toBe(200);
    const v1 = (
      await h.client.send(new GetItemCommand({ TableName: h.tables.secrets, Key: headKey('svc/rb') }))
    ).Item;
    expect((await h.call('PUT', '/v1/secrets/svc/rb', { body: { value: 'v2' } })).status).toBe(200);
    await h.client.send(new PutItemCommand({ TableName: h.tables.secrets, Item: v1 as never }));

    const run = await verify();
    expect(run.code).not.toBe(0);
    expect(run.stdout).toContain('OK: every certificate'); // the log itself is intact
    expect(run.stdout).toContain('FAILED: 1 storage problem.');
    expect(run.stdout).toContain('rolled_back (svc/rb, audited 2, live 1): an older head was put back');
    expect(run.stderr).toContain('storage verification failed: rolled_back (svc/rb');

    const json = await cli([
      '--json',
      'audit',
      'verify',
      '--table',
      fx.tables.audit,
      '--endpoint',
      inject('dynamodbEndpoint'),
      '--root-key',
      'root.pem',
      '--storage',
      '--secrets-table',
      h.tables.secrets,
    ]);
    expect(json.code).not.toBe(0);
    expect(JSON.parse(json.stdout).storage.problems).toEqual([
      { path: 'svc/rb', kind: 'rolled_back', auditedRev: 2, liveRev: 1 },
    ]);
  });

  it('with the wrong installation id every head fails its MAC: nothing unverified passes', async () => {
    const run = await verify('--installation-id', 'another-installation');
    expect(run.code).not.toBe(0);
    expect(run.stdout).toContain('invalid (svc/a');
  });

  it('refuses --storage with --file, and --table without --secrets-table', async () => {
    const file = await cli(['audit', 'verify', '--file', 'x.jsonl', '--root-key', 'root.pem', '--storage']);
    expect(file.code).not.toBe(0);
    expect(file.stderr).toContain('give --table, not --file');
    const noSecrets = await cli([
      'audit',
      'verify',
      '--table',
      fx.tables.audit,
      '--endpoint',
      inject('dynamodbEndpoint'),
      '--root-key',
      'root.pem',
      '--storage',
    ]);
    expect(noSecrets.code).not.toBe(0);
    expect(noSecrets.stderr).toContain('--storage with --table needs --secrets-table');
  });
});
