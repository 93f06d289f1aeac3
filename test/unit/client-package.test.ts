import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import * as source from '../../packages/client/src/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');

let project: string;

/**
 * Another project that depends on Coffer and on @coffer/client, both laid out as `npm install`
 * would lay them out. The client is compiled from the current source with the package's own
 * tsconfig (not taken from a dist/ that may predate the last edit); the root package's
 * `coffer/client` entry points into its dist/ at the place tsconfig.build.json emits the client.
 * Slow, whole-install checks of the real tarballs are in test/e2e/packaging.test.ts.
 */
beforeAll(async () => {
  project = await mkdtemp(join(tmpdir(), 'coffer-consumer-'));
  const modules = join(project, 'node_modules');
  const sdk = join(modules, '@coffer', 'client');
  const root = join(modules, 'coffer');
  await mkdir(sdk, { recursive: true });
  await mkdir(join(root, 'dist', 'packages', 'client'), { recursive: true });
  const built = spawnSync(
    process.execPath,
    [TSC, '-p', join(ROOT, 'packages', 'client', 'tsconfig.json'), '--outDir', join(sdk, 'dist')],
    { encoding: 'utf8' },
  );
  expect(built.stdout + built.stderr).toBe('');
  await copyFile(join(ROOT, 'packages', 'client', 'package.json'), join(sdk, 'package.json'));
  await copyFile(join(ROOT, 'package.json'), join(root, 'package.json'));
  await symlink(join(sdk, 'dist'), join(root, 'dist', 'packages', 'client', 'src'), 'dir');
  // The SDK's own dependencies (and Node's types for the TypeScript checks), from this checkout.
  for (const scope of ['@types', '@smithy', '@aws-crypto', '@aws-sdk']) {
    await symlink(join(ROOT, 'node_modules', scope), join(modules, scope), 'dir');
  }
  await writeFile(join(project, 'package.json'), '{"type":"module"}\n');
}, 120_000);

afterAll(async () => {
  await rm(project, { recursive: true, force: true });
});

// The SDK's own package, and the root package's entry that existing `coffer/client` users import.
describe.each(['@coffer/client', 'coffer/client'])('the %s package entry', (entry) => {
  it('when a plain Node ESM script (no tsx) imports it, it gets every export of packages/client/src', async () => {
    const script = join(project, 'exports.mjs');
    await writeFile(
      script,
      `import * as m from '${entry}';
       const c = m.createClient({ endpoint: 'http://127.0.0.1:9', auth: { token: 't' } });
       const e = m.clientError('not_found', 404, 'secret not found');
       console.log(JSON.stringify({
         names: Object.keys(m).sort(),
         client: c instanceof m.CofferClient,
         typed: e instanceof m.CofferNotFoundError && e instanceof m.CofferClientError,
       }));`,
    );
    const r = spawnSync(process.execPath, [script], { cwd: project, encoding: 'utf8', env: { PATH: '' } });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout) as { names: string[]; client: boolean; typed: boolean };
    expect(out.names).toEqual(Object.keys(source).sort());
    expect(out.client).toBe(true);
    expect(out.typed).toBe(true);
  });

  it('when a TypeScript project imports it (the Lambda example of docs/sdk.md too), it type-checks', async () => {
    const docs = await readFile(join(ROOT, 'docs', 'sdk.md'), 'utf8');
    const lambda = /## Lambda example[\s\S]*?```ts\n([\s\S]*?)```/.exec(docs)?.[1];
    expect(lambda).toContain('batchGet');
    expect(lambda).toContain("from '@coffer/client'");
    await writeFile(
      join(project, 'lambda.ts'),
      (lambda as string).replace("from '@coffer/client'", `from '${entry}'`),
    );
    // The example's own application code.
    await writeFile(
      join(project, 'db.ts'),
      `export const createPool = (o: { password: string | undefined }) => ({ ready: o.password !== undefined });
       export const listOrders = async (_pool: unknown, _key: string, _event: unknown) => [] as string[];`,
    );
    await writeFile(
      join(project, 'app.ts'),
      `import { createClient, type SecretValue, type BatchGetResult } from '${entry}';
       const c = createClient({ endpoint: 'http://127.0.0.1:9', auth: { tokenProvider: () => 't' } });
       export const read = async (): Promise<SecretValue> => c.get('a/b', { version: 2 });
       export const many = async (): Promise<BatchGetResult[]> => c.batchGet(['a/b']);
       // @ts-expect-error auth takes exactly one kind
       createClient({ endpoint: 'http://x', auth: { token: 't', iam: {} } });
      `,
    );
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
        },
        files: ['app.ts', 'lambda.ts'],
      }),
    );
    const r = spawnSync(process.execPath, [TSC, '-p', '.'], { cwd: project, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
