import { spawn } from 'node:child_process';
import { existsSync, readdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { TestProject } from 'vitest/node';
import { type DynamoDbLocal, startDynamoDbLocal } from '../../lib/local/dynamodb-local.js';

declare module 'vitest' {
  export interface ProvidedContext {
    dynamodbEndpoint: string;
  }
}

const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** What tsconfig.build.json compiles into dist/ (the code bin/coffer.js and `coffer/client` run). */
const BUILD_INPUTS = ['lib', 'bin', 'packages/client/src', 'tsconfig.json', 'tsconfig.build.json'];
const BUILD_STAMP = join(ROOT, 'dist', 'bin', 'coffer.js');

function newestMtime(path: string): number {
  const info = statSync(path);
  if (!info.isDirectory()) return info.mtimeMs;
  let newest = info.mtimeMs;
  for (const name of readdirSync(path)) newest = Math.max(newest, newestMtime(join(path, name)));
  return newest;
}

/**
 * Tests that run the CLI as users do (bin/coffer.js) or import `coffer/client` from plain Node run
 * the build in dist/. `prepare` builds it on `npm ci`, but a source edited since would be tested
 * in its old form, so it is built again (as `npm run build` does) whenever a source is newer. The
 * new build is written beside dist/ and swapped in, so that another test run going on in the same
 * checkout never sees a half-written dist/.
 */
async function ensureBuilt(): Promise<void> {
  let built = 0;
  try {
    built = statSync(BUILD_STAMP).mtimeMs;
  } catch {}
  if (built > Math.max(...BUILD_INPUTS.map((p) => newestMtime(join(ROOT, p))))) return;
  const fresh = join(ROOT, `dist.building-${process.pid}`);
  const stale = join(ROOT, `dist.old-${process.pid}`);
  const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
  try {
    const child = spawn(process.execPath, [tsc, '-p', 'tsconfig.build.json', '--outDir', fresh], {
      cwd: ROOT,
      stdio: 'pipe',
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => {
      output += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      output += d.toString();
    });
    const code = await new Promise<number | null>((resolve) => child.once('close', resolve));
    if (code !== 0) throw new Error(`npm run build failed:\n${output}`);
    if (existsSync(join(ROOT, 'dist'))) renameSync(join(ROOT, 'dist'), stale);
    renameSync(fresh, join(ROOT, 'dist'));
  } finally {
    rmSync(fresh, { recursive: true, force: true });
    rmSync(stale, { recursive: true, force: true });
  }
}

/**
 * The run's DynamoDB Local and build check, started once however many projects ask: the
 * integration tier is two projects (shared modules and isolated, vitest.config.ts), and Vitest
 * calls each project's global setup. Kept on globalThis because each project may load this file
 * as a module of its own; the last teardown stops it.
 */
interface SharedEngine {
  readonly started: Promise<DynamoDbLocal>;
  users: number;
}
const SHARED = Symbol.for('coffer.test.dynamodbLocal');
const shared = globalThis as { [SHARED]?: SharedEngine };

/** Java starts while the build runs; a failed build stops it. */
async function start(): Promise<DynamoDbLocal> {
  const [db, build] = await Promise.allSettled([startDynamoDbLocal(), ensureBuilt()]);
  if (db.status === 'rejected') throw db.reason;
  if (build.status === 'rejected') {
    await db.value.stop();
    throw build.reason;
  }
  return db.value;
}

/** One DynamoDB Local (in memory) per test run; each test file uses its own table names. */
export async function setup(project: TestProject): Promise<void> {
  shared[SHARED] ??= { started: start(), users: 0 };
  const engine = shared[SHARED];
  engine.users++;
  project.provide('dynamodbEndpoint', (await engine.started).endpoint);
}

export async function teardown(): Promise<void> {
  const engine = shared[SHARED];
  if (!engine || --engine.users > 0) return;
  delete shared[SHARED];
  await (await engine.started.catch(() => undefined))?.stop();
}
