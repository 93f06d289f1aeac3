import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { Readable } from 'node:stream';
import { generateX25519Identity, identityToRecipient } from 'age-encryption';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CliIo, runCli } from '../../lib/cli/main.js';

/*
 * `coffer export`/`backup` check every recipient before they read a secret: a recipient age would
 * refuse (a wrong Bech32 checksum, a bad character, another type) is a usage error (exit 2) that
 * says why, as the reference age does ("invalid checksum"), and the server hears nothing.
 */
let server: Server;
let requests = 0;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  server = createServer((_req, res) => {
    requests++;
    res.writeHead(500).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  env = {
    COFFER_ADDR: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    COFFER_TOKEN: 'not-used',
  };
});

afterAll(() => new Promise((resolve) => server.close(resolve)));

async function cli(args: string[]) {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env,
    cwd: tmpdir(),
    stdin: Readable.from([]),
    stdout: { write: (s: string) => (o.stdout += s) },
    stderr: { write: (s: string) => (o.stderr += s) },
  };
  return { code: await runCli(args, io), ...o };
}

/** Replaces the character at `at` with another of the Bech32 alphabet. */
const flip = (s: string, at: number) => {
  const i = at < 0 ? s.length + at : at;
  const c = s[i] === 'q' ? 'p' : 'q';
  return `${s.slice(0, i)}${c}${s.slice(i + 1)}`;
};

describe('export recipients', () => {
  let good: string;
  beforeAll(async () => {
    good = await identityToRecipient(await generateX25519Identity());
  });

  it('when a recipient has a wrong Bech32 checksum, it exits 2 saying "invalid checksum" before reading any secret', async () => {
    for (const bad of [flip(good, -1), flip(good, 10)]) {
      for (const command of ['export', 'backup']) {
        const r = await cli([command, '--to', good, '--to', bad, 'team/', '-o', 'x.age']);
        expect(r.code, `${command} ${bad}`).toBe(2);
        expect(r.stderr).toContain('invalid recipient');
        expect(r.stderr).toContain('invalid checksum');
        expect(r.stderr).not.toContain('unexpected');
      }
    }
    expect(requests).toBe(0);
  });

  it('when a recipient is malformed otherwise, it exits 2 with a reason and reads nothing', async () => {
    const cases: Array<[string, string]> = [
      ['age1notakey', 'invalid recipient'],
      [good.toUpperCase().replace('AGE1', 'age1'), 'mixed case'],
      [`${good.slice(0, 20)}b${good.slice(21)}`, 'invalid character'],
      [`${good}q`, 'invalid recipient'],
      ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA', 'invalid recipient'],
      ['', 'invalid recipient'],
    ];
    for (const [bad, says] of cases) {
      const r = await cli(['export', '--to', bad, 'team/', '-o', 'x.age']);
      expect(r.code, bad).toBe(2);
      expect(r.stderr, bad).toContain(says);
    }
    expect(requests).toBe(0);
  });
});
