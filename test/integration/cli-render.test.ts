import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuthorizationRequest, Authorizer, Decision } from '../../lib/authz/authorizer.js';
import { parseTemplate } from '../../lib/cli/actions/render.js';
import { type CliIo, runCli } from '../../lib/cli/main.js';
import { createHarness, type Harness } from '../support/harness.js';

/** The admin may do anything; others may not read `denied/...`. */
class TestAuthorizer implements Authorizer {
  readonly policySetHash = 'test';
  authorize({ principal, action, resource }: AuthorizationRequest): Decision {
    const denied =
      principal.id !== 'dev:dev-admin' && resource.path.startsWith('denied/') && action === 'read';
    return { allowed: !denied, policyIds: [denied ? 'deny' : 'allow'], errors: [] };
  }
}

let h: Harness;
let server: ServerType;
let dir: string;
let env: NodeJS.ProcessEnv;

beforeAll(async () => {
  h = await createHarness({ label: 'clirender', authorizer: new TestAuthorizer() });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  dir = await mkdtemp(join(tmpdir(), 'coffer-render-'));
  env = {
    COFFER_ADDR: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    COFFER_TOKEN: await h.issuer.mint({ subject: 'dev', groups: [] }),
    COFFER_DATA_DIR: join(dir, 'data'),
  };
  for (const [path, value] of [
    ['render/db/password', 'pw "quoted" $x'],
    ['render/api', JSON.stringify({ key: 'k-1', port: 8443, nested: { a: 1 } })],
    ['denied/x', 'no'],
  ]) {
    expect((await h.call('PUT', `/v1/secrets/${path}`, { body: { value } })).status).toBe(200);
  }
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

async function cli(args: string[], stdin = '') {
  const o = { stdout: '', stderr: '' };
  const io: CliIo = {
    env,
    cwd: dir,
    stdin: Readable.from(stdin === '' ? [] : [stdin]),
    stdout: { write: (s: string) => (o.stdout += s) },
    stderr: { write: (s: string) => (o.stderr += s) },
  };
  const code = await runCli(args, io);
  return { code, ...o };
}

const TEMPLATE = `# app config
db_password = {{ secret "render/db/password" }}
api_key = {{secret "render/api" "key"}}
port = {{ secret  "render/api"  "port" }}
nested = {{ secret "render/api" "nested" }}
untouched = {{ other "thing" }}
`;

describe('coffer render', () => {
  it('when every secret is readable, it writes the whole file with mode 0600', async () => {
    await writeFile(join(dir, 'app.tmpl'), TEMPLATE);
    const r = await cli(['render', 'app.tmpl', '-o', 'app.conf']);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = await readFile(join(dir, 'app.conf'), 'utf8');
    expect(out).toBe(`# app config
db_password = pw "quoted" $x
api_key = k-1
port = 8443
nested = {"a":1}
untouched = {{ other "thing" }}
`);
    expect((await stat(join(dir, 'app.conf'))).mode & 0o777).toBe(0o600);
  });

  it('when the output file exists with a wider mode, it is replaced by a 0600 file', async () => {
    await writeFile(join(dir, 'wide.conf'), 'old', { mode: 0o644 });
    await writeFile(join(dir, 'one.tmpl'), 'p={{ secret "render/db/password" }}\n');
    expect((await cli(['render', 'one.tmpl', '-o', 'wide.conf'])).code).toBe(0);
    expect((await stat(join(dir, 'wide.conf'))).mode & 0o777).toBe(0o600);
    expect(await readFile(join(dir, 'wide.conf'), 'utf8')).toBe('p=pw "quoted" $x\n');
  });

  it('when a path is denied, it fails (exit 5) and leaves no output file, not even a temp file', async () => {
    await writeFile(
      join(dir, 'denied.tmpl'),
      'a={{ secret "render/db/password" }}\nb={{ secret "denied/x" }}\n',
    );
    const before = await readdir(dir);
    const r = await cli(['render', 'denied.tmpl', '-o', 'denied.conf']);
    expect(r.code).toBe(5);
    expect(r.stderr).toContain('denied/x');
    expect(r.stdout).toBe('');
    expect(await readdir(dir)).toEqual(before);
  });

  it('when a path is missing or a field absent, it fails (exit 3) and an existing file keeps its content', async () => {
    await writeFile(join(dir, 'keep.conf'), 'previous');
    await writeFile(join(dir, 'missing.tmpl'), 'a={{ secret "render/none" }}\n');
    expect((await cli(['render', 'missing.tmpl', '-o', 'keep.conf'])).code).toBe(3);
    await writeFile(join(dir, 'field.tmpl'), 'a={{ secret "render/api" "nope" }}\n');
    const r = await cli(['render', 'field.tmpl', '-o', 'keep.conf']);
    expect(r.code).toBe(3);
    expect(r.stderr).toContain('no field "nope"');
    expect(r.stderr).not.toContain('k-1');
    await writeFile(join(dir, 'notjson.tmpl'), 'a={{ secret "render/db/password" "f" }}\n');
    const notJson = await cli(['render', 'notjson.tmpl', '-o', 'keep.conf']);
    expect(notJson.code).toBe(7);
    expect(notJson.stderr).not.toContain('quoted');
    expect(await readFile(join(dir, 'keep.conf'), 'utf8')).toBe('previous');
  });

  it('when a directive is malformed, it fails with its line (exit 2) and reads nothing', async () => {
    await writeFile(join(dir, 'bad.tmpl'), 'ok\n{{ secret render/db/password }}\n');
    const r = await cli(['render', 'bad.tmpl', '-o', 'bad.conf']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('line 2');
    await expect(stat(join(dir, 'bad.conf'))).rejects.toThrow();
  });

  it('when no -o is given, it prints to stdout; the template may come from stdin', async () => {
    const r = await cli(['render', '-'], 'x={{ secret "render/api" "key" }}');
    expect(r.code).toBe(0);
    expect(r.stdout).toBe('x=k-1');
    const json = await cli(['--json', 'render', 'one.tmpl', '-o', 'j.conf']);
    expect(JSON.parse(json.stdout)).toEqual({ output: join(dir, 'j.conf'), secrets: ['render/db/password'] });
    // --json without -o: a JSON document whose content is the rendered text.
    const doc = await cli(['--json', 'render', '-'], 'x={{ secret "render/api" "key" }}\n');
    expect(doc.code).toBe(0);
    expect(JSON.parse(doc.stdout)).toEqual({ content: 'x=k-1\n', secrets: ['render/api'] });
  });

  it('when the output cannot be written (no such directory, a directory), it fails clearly with exit 1', async () => {
    await writeFile(join(dir, 'w.tmpl'), 'x={{ secret "render/api" "key" }}\n');
    const missing = await cli(['render', 'w.tmpl', '-o', 'no-such-dir/app.conf']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      `coffer: cannot write ${join(dir, 'no-such-dir/app.conf')}: its directory does not exist (write_failed)\n`,
    );
    const isDir = await cli(['render', 'w.tmpl', '-o', '.']);
    expect(isDir.code).toBe(1);
    expect(isDir.stderr).toContain('(write_failed)');
    expect(isDir.stderr).not.toContain('k-1');
    expect((await readdir(dir)).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('parses directives strictly and leaves other braces alone', () => {
    expect(parseTemplate('a {{ secret "p/q" }} b {{secret "r" "f"}} {{ x }}')).toEqual([
      'a ',
      { path: 'p/q' },
      ' b ',
      { path: 'r', field: 'f' },
      ' {{ x }}',
    ]);
    expect(() => parseTemplate('{{ secret "a" "b" "c" }}')).toThrow(/line 1/);
  });
});
