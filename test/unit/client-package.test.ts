import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildClient, CLIENT_ENTRY } from '../../bin/build-client.js';
import * as source from '../../packages/client/src/index.js';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

let project: string;

beforeAll(async () => {
  // Another project that depends on Coffer (as `npm install ../coffer` would link it).
  project = await mkdtemp(join(tmpdir(), 'coffer-consumer-'));
  await mkdir(join(project, 'node_modules'));
  await symlink(ROOT, join(project, 'node_modules', 'coffer'), 'dir');
  await symlink(join(ROOT, 'node_modules', '@types'), join(project, 'node_modules', '@types'), 'dir');
  await writeFile(join(project, 'package.json'), '{"type":"module"}\n');
});

afterAll(async () => {
  await rm(project, { recursive: true, force: true });
});

describe('the coffer/client package entry', () => {
  it('when the client source changes, the committed built entry is rebuilt to match (npm run build:client)', async () => {
    const committed = await readFile(join(ROOT, CLIENT_ENTRY), 'utf8');
    expect(committed === (await buildClient()), `${CLIENT_ENTRY} is stale: run npm run build:client`).toBe(
      true,
    );
  });

  it('when a plain Node ESM script (no tsx) imports coffer/client, it gets every export of lib/client', async () => {
    const script = join(project, 'exports.mjs');
    await writeFile(
      script,
      `import * as m from 'coffer/client';
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

  it('when a TypeScript project imports coffer/client (the Lambda example of docs/sdk.md too), it type-checks', async () => {
    const docs = await readFile(join(ROOT, 'docs', 'sdk.md'), 'utf8');
    const lambda = /## Lambda example[\s\S]*?```ts\n([\s\S]*?)```/.exec(docs)?.[1];
    expect(lambda).toContain('batchGet');
    await writeFile(join(project, 'lambda.ts'), lambda as string);
    // The example's own application code.
    await writeFile(
      join(project, 'db.ts'),
      `export const createPool = (o: { password: string | undefined }) => ({ ready: o.password !== undefined });
       export const listOrders = async (_pool: unknown, _key: string, _event: unknown) => [] as string[];`,
    );
    await writeFile(
      join(project, 'app.ts'),
      `import { createClient, type SecretValue, type BatchGetResult } from 'coffer/client';
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
    const r = spawnSync(
      process.execPath,
      [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', '.'],
      {
        cwd: project,
        encoding: 'utf8',
      },
    );
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
