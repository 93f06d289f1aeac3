import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { type CofferClient, CofferClientError, createClient } from '../../packages/client/src/index.js';
import { BYTE_CASES } from '../support/bytes.js';
import { createHarness, type Harness } from '../support/harness.js';

let h: Harness;
let server: ServerType;
let addr: string;
let sdk: CofferClient;

beforeAll(async () => {
  h = await createHarness({ label: 'valcli' });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await writeFile(join(h.dataDir, 'dev-token'), `${h.token}\n`, { mode: 0o600 });
  sdk = createClient({ endpoint: addr, auth: { token: h.token } });
});

afterAll(async () => {
  sdk.clearCache();
  await new Promise((resolve) => server.close(resolve));
});

/** Runs the CLI in-process; stdin and stdout are bytes, kept exactly. */
async function cli(args: string[], stdin?: Uint8Array) {
  const out: Buffer[] = [];
  let stderr = '';
  const io: CliIo = {
    env: { COFFER_ADDR: addr, COFFER_DATA_DIR: h.dataDir, COFFER_LOGIN_CACHE: '/nonexistent' },
    cwd: h.dataDir,
    stdin: Object.assign(Readable.from(stdin ? [Buffer.from(stdin)] : []), { isTTY: false }),
    stdout: { write: (s: string | Uint8Array) => out.push(Buffer.from(s)), isTTY: false },
    stderr: { write: (s: string) => (stderr += s) },
  };
  const code = await runCli(args, io);
  return { code, stdout: Buffer.concat(out), stderr };
}

const slug = (name: string) => name.replace(/[^a-z0-9]/gi, '-');

describe('binary values: the SDK', () => {
  for (const [name, make] of BYTE_CASES) {
    it(`when bytes (${name}) are put as a Uint8Array, getBytes returns them exactly`, async () => {
      const bytes = new Uint8Array(make());
      const path = `sdk/bin-${slug(name)}`;
      await sdk.put(path, bytes);
      const secret = await sdk.get(path, { noCache: true });
      expect(secret.type).toBe('binary');
      expect(secret.value).toBeUndefined();
      expect(Buffer.from(await sdk.getBytes(path)).equals(Buffer.from(bytes))).toBe(true);
      // The cached copy is not the caller's: changing the returned bytes changes nothing.
      const first = await sdk.getBytes(path);
      if (first.length > 0) first[0] = (first[0] as number) ^ 0xff;
      expect(Buffer.from(await sdk.getBytes(path)).equals(Buffer.from(bytes))).toBe(true);
      // A batch read gives the same bytes.
      sdk.clearCache();
      const [batch] = await sdk.batchGet([path]);
      expect(batch?.ok && batch.secret.valueBase64).toBe(Buffer.from(bytes).toString('base64'));
    });
  }

  it('when a binary secret is read as text, it is binary_value; text reads as text and as its UTF-8', async () => {
    await sdk.put('sdk/raw', new Uint8Array([0xff, 0xfe]));
    await expect(sdk.getText('sdk/raw')).rejects.toMatchObject({ code: 'binary_value' });
    await sdk.put('sdk/text', 'ünï');
    expect(await sdk.getText('sdk/text')).toBe('ünï');
    expect(Buffer.from(await sdk.getBytes('sdk/text')).toString('utf8')).toBe('ünï');
  });

  it('when a field is read, getField returns it; an absent field is no_such_field', async () => {
    await sdk.put('sdk/json', JSON.stringify({ user: 'app', password: 'pw' }), { type: 'json' });
    expect(await sdk.getField('sdk/json', 'user')).toBe('app');
    const err = await sdk.getField('sdk/json', 'nope').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CofferClientError);
    expect(err).toMatchObject({ code: 'no_such_field' });
    expect((await sdk.history('sdk/json')).type).toBe('json');
  });
});

describe('binary values: the CLI', () => {
  it("when stdin is not UTF-8 (printf '\\xff\\xfe\\x80ok' | coffer put bin/raw -), it is stored as binary and got back byte for byte", async () => {
    const raw = Buffer.from([0xff, 0xfe, 0x80, 0x6f, 0x6b]);
    const put = await cli(['put', 'cli/raw', '-'], raw);
    expect(put.code, put.stderr).toBe(0);
    const got = await cli(['get', 'cli/raw']);
    expect(got.code).toBe(0);
    expect(got.stdout.equals(raw)).toBe(true);
    expect((await sdk.get('cli/raw', { noCache: true })).type).toBe('binary');
  });

  for (const [name, make] of BYTE_CASES) {
    it(`when bytes (${name}) go through put - and get, they come back exactly`, async () => {
      const bytes = make();
      const path = `cli/bin-${slug(name)}`;
      const put = await cli(['put', path, '-', '--type', 'binary'], bytes);
      expect(put.code, put.stderr).toBe(0);
      const got = await cli(['get', path]);
      expect(got.code, got.stderr).toBe(0);
      expect(got.stdout.equals(bytes)).toBe(true);
    });
  }

  it('when stdin is UTF-8 it is stored as text, a byte-order mark and all', async () => {
    const text = Buffer.from('\ufeffhello\n', 'utf8');
    expect((await cli(['put', 'cli/bom', '-'], text)).code).toBe(0);
    expect((await cli(['get', 'cli/bom'])).stdout.equals(text)).toBe(true);
    expect((await sdk.get('cli/bom', { noCache: true })).type).toBe('text');
  });

  it('when --type is given, the value is checked as that type; a bad one exits 7 (invalid)', async () => {
    const k = generateKeyPairSync('ed25519');
    const value = JSON.stringify({
      private_key: k.privateKey.export({ type: 'pkcs8', format: 'pem' }),
      public_key: k.publicKey.export({ type: 'spki', format: 'pem' }),
    });
    const ok = await cli(['put', 'cli/kp', '-', '--type', 'keypair'], Buffer.from(value));
    expect(ok.code, ok.stderr).toBe(0);
    expect((await cli(['meta', 'cli/kp'])).stdout.toString()).toContain('type: keypair');
    const history = (await cli(['history', 'cli/kp'])).stdout.toString();
    expect(history).toContain('key type: ed25519');
    expect(history).toContain(String(k.publicKey.export({ type: 'spki', format: 'pem' })).trim());
    expect(history).not.toContain('PRIVATE KEY');
    const field = await cli(['get', 'cli/kp', '--field', 'public_key']);
    expect(field.stdout.toString()).toBe(k.publicKey.export({ type: 'spki', format: 'pem' }));
    const missing = await cli(['get', 'cli/kp', '--field', 'nope']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('no field "nope"');
    const bad = await cli(['put', 'cli/kp', '-', '--type', 'keypair'], Buffer.from('{"private_key":"x"}'));
    expect(bad.code).toBe(7);
    expect(bad.stderr).toContain('invalid_value');
    const unknown = await cli(['put', 'cli/kp', 'x', '--type', 'blob']);
    expect(unknown.code).toBe(2);
  });

  it('when run or render meet a binary secret, they refuse it (binary_value, exit 7) and start nothing', async () => {
    await cli(['put', 'cli/run/raw', '-'], Buffer.from([0x80]));
    const run = await cli(['run', '--map', 'X=cli/run/raw', '--', 'sh', '-c', 'echo started']);
    expect(run.code).toBe(7);
    expect(run.stderr).toContain('binary');
    expect(run.stdout.toString()).not.toContain('started');
    await writeFile(join(h.dataDir, 'bin.tmpl'), 'x={{ secret "cli/run/raw" }}\n');
    const render = await cli(['render', 'bin.tmpl', '-o', 'bin.conf']);
    expect(render.code).toBe(7);
    expect(render.stderr).toContain('binary');
    await expect(readFile(join(h.dataDir, 'bin.conf'))).rejects.toThrow();
  });

  it('when run maps NAME=PATH#FIELD, the variable holds that field; render reads fields the same way', async () => {
    await sdk.put('cli/db', JSON.stringify({ user: 'app', password: 'pw-1' }), { type: 'json' });
    const run = await cli(['run', '--map', 'DB_USER=cli/db#user', '--', 'sh', '-c', 'printf %s "$DB_USER"']);
    expect(run.code, run.stderr).toBe(0);
    expect(run.stdout.toString()).toBe('app');
    const missing = await cli(['run', '--map', 'X=cli/db#nope', '--', 'true']);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toContain('no field "nope"');
    const malformed = await cli(['run', '--map', 'X=cli/db#', '--', 'true']);
    expect(malformed.code).toBe(2);
    await writeFile(
      join(h.dataDir, 'db.tmpl'),
      'pw={{ secret "cli/db" "password" }} u={{ secret "cli/db#user" }}\n',
    );
    const render = await cli(['render', 'db.tmpl']);
    expect(render.stdout.toString()).toBe('pw=pw-1 u=app\n');
    await writeFile(join(h.dataDir, 'bad.tmpl'), 'u={{ secret "cli/db#" }}\n');
    expect((await cli(['render', 'bad.tmpl'])).code).toBe(2);
  });
});

describe('binary values: export and import', () => {
  it('when a bundle holds binary and typed secrets, import writes the same bytes and types', async () => {
    const raw = Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x0a]);
    await sdk.put('bundle/src/raw', new Uint8Array(raw));
    await sdk.put('bundle/src/db', JSON.stringify({ user: 'u' }), { type: 'json' });
    const key = await cli(['--quiet', 'keygen', '-o', 'bundle.key']);
    expect(key.code, key.stderr).toBe(0);
    const recipient = key.stdout.toString().trim();
    const exp = await cli(['export', '--to', recipient, 'bundle/src/', '-o', 'bin.age']);
    expect(exp.code, exp.stderr).toBe(0);
    const imp = await cli(['import', 'bin.age', '--identity', 'bundle.key', '--prefix', 'bundle/dst/']);
    expect(imp.code, imp.stderr).toBe(0);
    sdk.clearCache();
    expect(Buffer.from(await sdk.getBytes('bundle/dst/raw')).equals(raw)).toBe(true);
    expect((await sdk.get('bundle/dst/raw')).type).toBe('binary');
    expect((await sdk.get('bundle/dst/db')).type).toBe('json');
    // Imported again, the same bytes are recognised as unchanged: no new version.
    const again = await cli([
      '--json',
      'import',
      'bin.age',
      '--identity',
      'bundle.key',
      '--prefix',
      'bundle/dst/',
    ]);
    expect([...JSON.parse(again.stdout.toString()).unchanged].sort()).toEqual([
      'bundle/dst/db',
      'bundle/dst/raw',
    ]);
  });
});
