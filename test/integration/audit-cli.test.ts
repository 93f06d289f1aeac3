import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { runCli } from '../../lib/cli/main.js';
import { auditFixture, context, KmsLikeRootSigner, tamper } from '../support/audit-fixtures.js';

const kms = mockClient(KMSClient);
afterEach(() => kms.reset());

async function cli(args: string[], cwd: string, env: Record<string, string> = {}) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env: { COFFER_DATA_DIR: join(cwd, 'no-such-data-dir'), ...env },
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    cwd,
  });
  return { code, stdout, stderr };
}

describe('coffer audit', () => {
  let fx: Awaited<ReturnType<typeof auditFixture>>;
  let dir: string;
  let table: string[];
  const endpoint = () => inject('dynamodbEndpoint');

  beforeAll(async () => {
    fx = await auditFixture('audit-cli');
    dir = await mkdtemp(join(tmpdir(), 'coffer-audit-cli-'));
    await writeFile(join(dir, 'root.pem'), fx.rootPem);
    const writers = [fx.trail(), fx.trail()];
    for (let i = 0; i < 40; i++) {
      await writers[i % 2]?.finish(context(i, { path: i % 4 === 0 ? 'team-a/db' : 'team-b/api' }), {
        status: i % 5 === 0 ? 403 : 200,
      });
    }
    await fx.checkpointer.write();
    table = ['--table', fx.tables.audit, '--endpoint', endpoint()];
  });

  it('verify: when the log is untouched, it prints a summary and exits 0', async () => {
    const run = await cli(['audit', 'verify', ...table, '--root-key', 'root.pem'], dir);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain('2 chains, 42 records, 1 checkpoints');
    expect(run.stdout).toContain('OK:');
    expect(run.stdout).toContain(join(dir, 'root.pem'));
    const json = await cli(['--json', 'audit', 'verify', ...table, '--root-key', 'root.pem'], dir);
    expect(JSON.parse(json.stdout)).toMatchObject({ ok: true, records: 42, problemCount: 0 });
  });

  it('export then verify --file: the export verifies on its own', async () => {
    const exported = await cli(['audit', 'export', ...table, '--out', 'log.jsonl'], dir);
    expect(exported.code, exported.stderr).toBe(0);
    const lines = (await readFile(join(dir, 'log.jsonl'), 'utf8')).trim().split('\n');
    expect(lines.length).toBe(1 + 2 + 42);
    const run = await cli(['audit', 'verify', '--file', 'log.jsonl', '--root-key', 'root.pem'], dir);
    expect(run.code, run.stderr).toBe(0);

    // An edited line makes it fail, naming the line's record.
    let done = false;
    const edited = lines.map((l) => {
      const v = JSON.parse(l);
      if (done || v.type !== 'request' || v.seq !== 3) return l;
      done = true;
      return JSON.stringify({ ...v, status: 201 });
    });
    await writeFile(join(dir, 'edited.jsonl'), `${edited.join('\n')}\n`);
    const bad = await cli(['audit', 'verify', '--file', 'edited.jsonl', '--root-key', 'root.pem'], dir);
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/hash_mismatch \(chain \S+, record 3/);
  });

  it('query and tail: filter by principal, path and decision; the newest records', async () => {
    const q = await cli(
      [
        '--json',
        'audit',
        'query',
        ...table,
        '--principal',
        'dev:user0',
        '--decision',
        'deny',
        '--since',
        '1h',
      ],
      dir,
    );
    expect(q.code, q.stderr).toBe(0);
    const found = q.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(found.length).toBeGreaterThan(0);
    for (const r of found) expect(r).toMatchObject({ principalId: 'dev:user0', decision: 'deny' });

    const byPath = await cli(['audit', 'query', ...table, '--path', 'team-a/'], dir);
    const lines = byPath.stdout.trim().split('\n');
    expect(lines).toHaveLength(10);
    for (const l of lines) expect(l).toContain('team-a/db');

    const tail = await cli(['--json', 'audit', 'tail', ...table, '-n', '5'], dir);
    const newest = tail.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    expect(newest).toHaveLength(5);
    const times = newest.map((r) => r.time);
    expect([...times].sort()).toEqual(times);
  });

  it('verify: when the log was altered, it exits non-zero and names the first bad record and the problem', async () => {
    const t = tamper(fx.client, fx.tables.audit);
    const chains: string[] = [];
    for await (const e of fx.reader.chainIndex()) chains.push(e.chain);
    const chain = chains.sort()[0] as string;
    const original = await t.getRecord(chain, 9);
    await t.deleteRecord(chain, 9);
    try {
      const run = await cli(['audit', 'verify', ...table, '--root-key', 'root.pem'], dir);
      expect(run.code).toBe(1);
      expect(run.stdout).toContain('FAILED: 1 problem');
      expect(run.stdout).toContain(`missing_record (chain ${chain}, record 9)`);
      expect(run.stderr).toContain(`missing_record (chain ${chain}, record 9)`);
      expect(run.stderr).toContain('audit_verification_failed');
    } finally {
      await t.put(original);
    }
    expect((await cli(['audit', 'verify', ...table, '--root-key', 'root.pem'], dir)).code).toBe(0);
  });

  it('verify: without a trust root given out of band, it refuses (never takes a key from the table)', async () => {
    const run = await cli(['audit', 'verify', ...table], dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('--root-key');
  });

  it('verify --kms-key-id: trusts the public key KMS returns for the AWS audit key', async () => {
    const root = new KmsLikeRootSigner();
    const fk = await auditFixture('audit-cli-kms', root);
    const w = fk.trail();
    for (let i = 0; i < 5; i++) await w.finish(context(i), { status: 200 });
    await fk.checkpointer.write();
    kms.on(GetPublicKeyCommand, { KeyId: root.keyId }).resolves({
      KeyId: root.keyId,
      KeyUsage: 'SIGN_VERIFY',
      KeySpec: 'ECC_NIST_P256',
      SigningAlgorithms: ['ECDSA_SHA_256'],
      PublicKey: root.publicKeyDer(),
    });
    const args = ['audit', 'verify', '--table', fk.tables.audit, '--endpoint', endpoint()];
    const run = await cli([...args, '--kms-key-id', root.keyId, '--region', 'eu-west-1'], dir);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout).toContain(`KMS ${root.keyId}`);
    // The local key is not the AWS one: the same log fails against it.
    const wrong = await cli([...args, '--root-key', 'root.pem'], dir);
    expect(wrong.code).toBe(1);
    expect(wrong.stdout).toContain('bad_certificate');
  });
});
