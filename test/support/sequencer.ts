import { relative } from 'node:path';
import { BaseSequencer, type TestSpecification } from 'vitest/node';

/**
 * The files that take longest, longest first (seconds on an idle 2-core machine, docs/benchmarks.md
 * "Test suite time"). Vitest orders by the durations it cached from the last run, but a fresh clone
 * (CI) has no cache and then it starts the largest files first, which put the npm installs of
 * packaging.test.ts at the very end, running alone while the other worker sat idle. Starting these
 * first lets the short files fill in beside them. A slow file added later belongs here too.
 */
export const SLOW_FIRST: readonly string[] = [
  'test/e2e/packaging.test.ts',
  'test/integration/access-reports.test.ts',
  'test/e2e/local-server.test.ts',
  'test/e2e/dynamodb-supervisor.test.ts',
  'test/infra/stack.test.ts',
  'test/integration/concurrency.test.ts',
  'test/integration/control-plane.test.ts',
  'test/e2e/mtls-local.test.ts',
  'test/integration/faults.test.ts',
  'test/e2e/lambda-bundle.test.ts',
  'test/e2e/audit-local.test.ts',
  'test/integration/audit-verify.test.ts',
  'test/e2e/local-start.test.ts',
  'test/infra/restored-table.test.ts',
  'test/infra/mtls-and-signing.test.ts',
  'test/e2e/restore-local.test.ts',
];

/** Known-slow files first (in SLOW_FIRST's order), then Vitest's own order for the rest. */
export default class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (spec: TestSpecification): number => {
      const at = SLOW_FIRST.indexOf(relative(spec.project.config.root, spec.moduleId).replaceAll('\\', '/'));
      return at === -1 ? SLOW_FIRST.length : at;
    };
    // Known-slow files first whatever their project (a slow file of the isolated project must
    // not wait for the shared project's short files); the rest keep their project's order, then
    // Vitest's (cached duration, else size), so that a shared worker runs one project's files in
    // a row and keeps its modules.
    const projects = [...new Set(sorted.map((spec) => spec.project.name))];
    const key = (spec: TestSpecification, i: number): [number, number, number] => {
      const r = rank(spec);
      return r < SLOW_FIRST.length ? [r, 0, i] : [SLOW_FIRST.length, projects.indexOf(spec.project.name), i];
    };
    return sorted
      .map((spec, i) => ({ spec, key: key(spec, i) }))
      .sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1] || a.key[2] - b.key[2])
      .map(({ spec }) => spec);
  }
}
