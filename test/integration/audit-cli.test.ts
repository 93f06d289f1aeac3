import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { GetPublicKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeAll, describe, expect, inject, it } from 'vitest';
import { parseSince, principalId } from '../../lib/cli/commands/audit.js';
import { runCli } from '../../lib/cli/main.js';
import { auditFixture, context, KmsLikeRootSigner, tamper } from '../support/audit-fixtures.js';

const kms = mockClient(KMSClient);
afterEach(() => kms.reset());

async function cli(
  args: string[],
  cwd: string,
  env: Record<string, string> = {},
  tty: { stdout?: boolean; stderr?: boolean } = {},
) {
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    env: { COFFER_DATA_DIR: join(cwd, 'no-such-data-dir'), ...env },
    stdin: Object.assign(Readable.from([]), { isTTY: false }),
    stdout: { write: (s: string) => (stdout += s), isTTY: tty.stdout === true },
    stderr: { write: (s: string) => (stderr += s), isTTY: tty.stderr === true },
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

  it('verify --file: refuses, with the reason, a missing or empty file, a directory and the stdout copy', async () => {
    await writeFile(join(dir, 'empty.jsonl'), '\n\n');
    await mkdir(join(dir, 'a-dir'), { recursive: true });
    // The server's stdout copy: flat lines without certificates or full records.
    await writeFile(join(dir, 'stdout.jsonl'), `> coffer@0.1.0 start\n${fx.lines.join('\n')}\n`);
    const cases: [string, RegExp][] = [
      ['missing.jsonl', /no such file missing\.jsonl/],
      ['empty.jsonl', /empty\.jsonl is empty: nothing to verify/],
      ['a-dir', /a-dir is not a file/],
      ['stdout.jsonl', /stdout \(CloudWatch\) copy .*coffer audit export --out FILE/],
    ];
    for (const [file, message] of cases) {
      const run = await cli(['audit', 'verify', '--file', file, '--root-key', 'root.pem'], dir);
      expect(run.code, file).toBe(2);
      expect(run.stderr).toMatch(message);
      expect(run.stdout).toBe('');
    }
  });

  it('export --out: never overwrites an existing file', async () => {
    await writeFile(join(dir, 'keep.jsonl'), 'precious\n');
    const run = await cli(['audit', 'export', ...table, '--out', 'keep.jsonl'], dir);
    expect(run.code).toBe(2);
    expect(run.stderr).toContain('keep.jsonl already exists');
    expect(await readFile(join(dir, 'keep.jsonl'), 'utf8')).toBe('precious\n');
  });

  it('verify: a progress bar on stderr only when a person watches (both terminals, no --json or --quiet)', async () => {
    const args = ['audit', 'verify', ...table, '--root-key', 'root.pem'];
    const watched = await cli(args, dir, {}, { stdout: true, stderr: true });
    expect(watched.code, watched.stderr).toBe(0);
    expect(watched.stderr).toMatch(/\r.*items/);
    for (const [argv, tty] of [
      [args, { stdout: false, stderr: true }],
      [args, { stdout: true, stderr: false }],
      [['--json', ...args], { stdout: true, stderr: true }],
      [['--quiet', ...args], { stdout: true, stderr: true }],
    ] as const) {
      const run = await cli([...argv], dir, {}, tty);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stderr).toBe('');
    }
    await writeFile(join(dir, 'bar.jsonl'), '');
    const exported = await cli(['audit', 'export', ...table], dir);
    await writeFile(join(dir, 'bar.jsonl'), exported.stdout);
    const file = await cli(
      ['audit', 'verify', '--file', 'bar.jsonl', '--root-key', 'root.pem'],
      dir,
      {},
      { stdout: true, stderr: true },
    );
    expect(file.code, file.stderr).toBe(0);
    expect(file.stderr).toMatch(/\r\[#+-*\] +\d+% \d+\/\d+ items/);
  });

  it('query --since and --until: durations and ISO dates; anything else is a usage error that says why', async () => {
    const now = new Date('2025-03-02T12:00:00.000Z');
    expect(parseSince('1h', now)).toBe('2025-03-02T11:00:00.000Z');
    expect(parseSince('90s', now)).toBe('2025-03-02T11:58:30.000Z');
    expect(parseSince('2w', now)).toBe('2025-02-16T12:00:00.000Z');
    expect(parseSince('2025-03-01', now)).toBe('2025-03-01T00:00:00.000Z');
    expect(parseSince('2025-03-01T10:15:00Z', now)).toBe('2025-03-01T10:15:00.000Z');
    expect(parseSince('2025-03-01T10:15:00+02:00', now)).toBe('2025-03-01T08:15:00.000Z');
    // Date.parse alone would take "5" for May 2001.
    for (const bad of ['5', 'yesterday', '1 hour', '2025-13-45', '-1h', '']) {
      expect(() => parseSince(bad, now), bad).toThrow(/duration back from now .* ISO 8601/);
    }

    const iso = await cli(
      ['audit', 'query', ...table, '--since', new Date(0).toISOString().slice(0, 10)],
      dir,
    );
    expect(iso.code, iso.stderr).toBe(0);
    expect(iso.stdout.trim().split('\n')).toHaveLength(40);
    const future = await cli(['audit', 'query', ...table, '--since', '2999-01-01'], dir);
    expect(future.code).toBe(0);
    expect(future.stdout).toBe('');
    const bad = await cli(['audit', 'query', ...table, '--since', 'yesterday'], dir);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--since must be a duration back from now');
    const reversed = await cli(['audit', 'query', ...table, '--since', '1h', '--until', '2h'], dir);
    expect(reversed.code).toBe(2);
    expect(reversed.stderr).toMatch(/--until .* is before --since/);
    const decision = await cli(['audit', 'query', ...table, '--decision', 'maybe'], dir);
    expect(decision.code).toBe(2);
    expect(decision.stderr).toMatch(/allow, deny/);
  });

  it('query --principal: takes the id as shown by tail (User::id, User::"id") or bare', async () => {
    expect(principalId('dev:alice')).toBe('dev:alice');
    expect(principalId('User::dev:alice')).toBe('dev:alice');
    expect(principalId('User::"dev:alice"')).toBe('dev:alice');
    expect(principalId('Coffer::Role::"arn:aws:iam::1:role/x"')).toBe('arn:aws:iam::1:role/x');
    const counts = [];
    for (const who of ['dev:user3', 'User::dev:user3', 'User::"dev:user3"']) {
      const run = await cli(['audit', 'query', ...table, '--principal', who], dir);
      expect(run.code, run.stderr).toBe(0);
      counts.push(run.stdout.trim().split('\n').length);
      for (const line of run.stdout.trim().split('\n')) expect(line).toContain('User::dev:user3');
    }
    expect(counts[0]).toBeGreaterThan(0);
    expect(new Set(counts).size).toBe(1);
  });

  it('when the table cannot be read or the key is not a root key, the error says so (no "unexpected error")', async () => {
    const unreachable = await cli(
      ['audit', 'verify', '--table', 'x', '--endpoint', 'http://127.0.0.1:9', '--root-key', 'root.pem'],
      dir,
    );
    expect(unreachable.code).toBe(8);
    expect(unreachable.stderr).toContain('cannot reach table x at http://127.0.0.1:9');
    const missing = await cli(
      ['audit', 'tail', '--table', 'no-such-audit-table', '--endpoint', endpoint()],
      dir,
    );
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('table no-such-audit-table');
    expect(missing.stderr).toContain('does not exist');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    await writeFile(join(dir, 'rsa.pem'), rsa);
    const wrongType = await cli(['audit', 'verify', ...table, '--root-key', 'rsa.pem'], dir);
    expect(wrongType.code).toBe(2);
    expect(wrongType.stderr).toContain('not an audit root key');
    for (const run of [unreachable, missing, wrongType]) expect(run.stderr).not.toContain('unexpected error');
  });

  it('verify: says when records are not yet sealed, and warns when there is no checkpoint at all', async () => {
    const w = fx.trail();
    for (let i = 0; i < 3; i++) await w.finish(context(i), { status: 200 });
    const unsealed = await cli(['audit', 'verify', ...table, '--root-key', 'root.pem'], dir);
    expect(unsealed.code, unsealed.stderr).toBe(0);
    expect(unsealed.stdout).toContain('Not yet under a checkpoint: 4 records');
    expect(unsealed.stdout).toContain('Note: 4 records come after the newest checkpoint');
    await fx.checkpointer.write();

    const exported = await cli(['audit', 'export', ...table], dir);
    const withoutCheckpoints = exported.stdout
      .split('\n')
      .filter((l) => l !== '' && JSON.parse(l).type !== 'checkpoint');
    await writeFile(join(dir, 'no-checkpoints.jsonl'), `${withoutCheckpoints.join('\n')}\n`);
    const args = ['audit', 'verify', '--file', 'no-checkpoints.jsonl', '--root-key', 'root.pem'];
    const warned = await cli(args, dir);
    expect(warned.code, warned.stderr).toBe(0);
    expect(warned.stdout).toContain('Warning: no checkpoint.');
    const strict = await cli([...args, '--max-checkpoint-age', '1h'], dir);
    expect(strict.code).toBe(1);
    expect(strict.stderr).toContain('stale_checkpoint');
  });
});
