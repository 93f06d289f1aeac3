import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { defineConfig } from 'vitest/config';
import SlowFirstSequencer from './test/support/sequencer.js';

/**
 * Test files that change what other files in the same worker would see: module mocks, spies and
 * stubbed SDK clients (aws-sdk-client-mock patches a client class for the whole process), fake
 * timers, globals, the process environment or process-wide handlers. They run isolated, each with
 * a fresh module graph. Every other file shares its worker's modules with the files before it
 * (`isolate: false`), so the SDK, Cedar's wasm and the app are loaded once per worker rather than
 * once per file: that loading was 214 s of a run's time (docs/benchmarks.md, "Test suite time").
 */
const SHARED_STATE =
  /mockClient|vi\.mock|vi\.spyOn|vi\.stubEnv|vi\.stubGlobal|vi\.useFakeTimers|process\.env\.[A-Za-z_]+\s*(\?\?|\|\||&&)?=[^=]|process\.env\[[^\]]+\]\s*(\?\?|\|\||&&)?=[^=]|delete process\.env|globalThis\.|process\.on\(|process\.once\(|process\.chdir/;

function testFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? testFiles(join(dir, e.name)) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : [],
  );
}

const ROOT = import.meta.dirname;
const ISOLATED = testFiles(join(ROOT, 'test'))
  .filter((file) => SHARED_STATE.test(readFileSync(file, 'utf8')))
  .map((file) => relative(ROOT, file).replaceAll('\\', '/'));

// The SDK's Node 22 notice would otherwise print once per run from the global setup.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';

/*
 * Two tiers, each in two projects (shared modules, and isolated: see ISOLATED). `unit` (test/unit)
 * needs no JVM and no network: `npm run test:quick` runs its two projects alone, and then DynamoDB
 * Local is never started, because Vitest calls a project's global setup only when that project has
 * a test queued. `integration` is every other test folder (integration, e2e, infra and any added
 * later), with one DynamoDB Local per run that both its projects share (test/support/
 * global-setup.ts). `npm test` runs all four.
 */
export default defineConfig({
  test: {
    env: { AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true' },
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    // Workers without TurboFan (Maglev at most). Node 22.22.3's V8 dies with a deoptimizer fault
    // ("unreachable code" in Deoptimizer::DoComputeBuiltinContinuation) under sustained load:
    // access-reports.test.ts's worker in 2 of 5 CI runs, the HTTP benchmark's server in most runs.
    // With --max-opt=2 the benchmark ran clean 3 times in 3 (docs/benchmarks.md). A test run that
    // loses a worker proves nothing, so the tests run on the tiers that do not fault.
    execArgv: ['--max-opt=2'],
    // Three on CI's two cores: most files wait on DynamoDB Local, child processes (the CLI, npm,
    // Java) or sockets, and a third worker fills that time (docs/benchmarks.md, "Test suite time").
    maxWorkers: 3,
    // The slowest files first, also in a fresh clone with no cached durations (see the file).
    sequence: { sequencer: SlowFirstSequencer },
    projects: [
      {
        extends: true,
        test: { name: 'unit', include: ['test/unit/**/*.test.ts'], exclude: ISOLATED, isolate: false },
      },
      {
        extends: true,
        test: {
          name: 'unit-isolated',
          include: ISOLATED.filter((f) => f.startsWith('test/unit/')),
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: ['test/unit/**', ...ISOLATED],
          isolate: false,
          globalSetup: ['test/support/global-setup.ts'],
        },
      },
      {
        extends: true,
        test: {
          name: 'integration-isolated',
          include: ISOLATED.filter((f) => !f.startsWith('test/unit/')),
          globalSetup: ['test/support/global-setup.ts'],
        },
      },
    ],
  },
});
