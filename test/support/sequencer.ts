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
  'test/infra/stack.test.ts',
  'test/e2e/local-server.test.ts',
  'test/e2e/lambda-bundle.test.ts',
  'test/e2e/mtls-local.test.ts',
  'test/integration/http-properties.test.ts',
  'test/e2e/cli-run.test.ts',
  'test/e2e/dynamodb-supervisor.test.ts',
  'test/e2e/lambda-api.test.ts',
  'test/infra/restored-table.test.ts',
];

/** Known-slow files first (in SLOW_FIRST's order), then Vitest's own order for the rest. */
export default class SlowFirstSequencer extends BaseSequencer {
  override async sort(files: TestSpecification[]): Promise<TestSpecification[]> {
    const sorted = await super.sort(files);
    const rank = (spec: TestSpecification): number => {
      const at = SLOW_FIRST.indexOf(relative(spec.project.config.root, spec.moduleId).replaceAll('\\', '/'));
      return at === -1 ? SLOW_FIRST.length : at;
    };
    // Projects keep Vitest's order, and within a project the rest keep its order too (cached
    // duration, else size).
    const projects = [...new Set(sorted.map((spec) => spec.project.name))];
    const key = (spec: TestSpecification, i: number): [number, number, number] => [
      projects.indexOf(spec.project.name),
      rank(spec),
      i,
    ];
    return sorted
      .map((spec, i) => ({ spec, key: key(spec, i) }))
      .sort((a, b) => a.key[0] - b.key[0] || a.key[1] - b.key[1] || a.key[2] - b.key[2])
      .map(({ spec }) => spec);
  }
}
