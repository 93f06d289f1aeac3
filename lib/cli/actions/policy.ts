import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { loadPolicyDir, SCHEMA_FILE } from '../../authz/policy-set.js';
import { formatPolicyTestReport, runPolicyTests } from '../../authz/policy-tests.js';
import { CofferError } from '../../errors.js';
import type { CliIo } from '../io.js';

/** `coffer policy test` had failing cases or tables it could not run. */
export class PolicyTestsFailed extends CofferError {
  static override readonly code = 'policy_tests_failed';
}

/** The example policies, validated with the set when they exist (they are documentation). */
const EXAMPLES_DIR = 'examples';

async function exampleFiles(dir: string): Promise<string[]> {
  try {
    return (await readdir(join(dir, EXAMPLES_DIR)))
      .filter((n) => n.endsWith('.cedar'))
      .sort()
      .map((n) => `${EXAMPLES_DIR}/${n}`);
  } catch {
    return [];
  }
}

/** `coffer policy validate`: parses the schema and policies (and examples/) and validates them. */
export async function validatePolicies(io: CliIo, dir: string, json: boolean): Promise<void> {
  // Throws PolicySetError naming each file and line:column; the CLI prints it and exits 1.
  const set = await loadPolicyDir(dir);
  const examples = await exampleFiles(dir);
  if (examples.length > 0) await loadPolicyDir(dir, { extraFiles: examples });
  if (json) {
    const policies = set.policies.map((p) => ({ id: p.id, effect: p.effect, location: p.location }));
    const report = { dir, valid: true, hash: set.hash, policies, examples, warnings: set.warnings };
    io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    return;
  }
  const lines = [
    `${dir}: ${set.policies.length} policies in ${set.files.length} file(s) valid against ${SCHEMA_FILE}`,
    ...set.policies.map(
      (p) => `  ${p.effect.padEnd(6)} ${p.id}${p.id === p.location ? '' : `  (${p.location})`}`,
    ),
    ...(examples.length > 0 ? [`examples valid too: ${examples.join(', ')}`] : []),
    ...set.warnings.map((w) => `warning: ${w}`),
    `policy set hash: ${set.hash}`,
  ];
  io.stdout.write(`${lines.join('\n')}\n`);
}

/** `coffer policy test`: runs the decision tables in <dir>/tests; fails on any failed case. */
export async function testPolicies(io: CliIo, dir: string, json: boolean): Promise<void> {
  const report = await runPolicyTests(dir);
  if (json) io.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else io.stdout.write(formatPolicyTestReport(report));
  if (!report.passed) {
    const failed = report.results.filter((r) => !r.passed).length;
    throw new PolicyTestsFailed(
      `policy tests failed: ${failed} case(s) failed, ${report.problems.length} problem(s)`,
    );
  }
}
