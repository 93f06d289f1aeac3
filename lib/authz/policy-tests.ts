import { readdir, readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import type { Principal } from '../authn/principal.js';
import { silentLogger } from '../log.js';
import { ACTIONS, type Action, type RequestContext, type Resource } from './authorizer.js';
import { CedarAuthorizer } from './cedar.js';
import { loadPolicyDir, PolicySetError } from './policy-set.js';

/** Test tables live here, relative to the policy directory. */
export const TESTS_DIR = 'tests';

const DEFAULT_CONTEXT = { sourceIp: '10.0.0.1', time: '2025-01-01T00:00:00Z' } as const;

const stringMap = z.record(z.string(), z.string());

const principalSchema = z
  .object({
    type: z.enum(['User', 'Role', 'Workload']).default('User'),
    id: z.string().min(1),
    groups: z.array(z.string()).default([]),
    attributes: stringMap.default({}),
    authMethod: z.enum(['oidc', 'iam', 'dev', 'mtls']).optional(),
    issuer: z.string().optional(),
    /** Workloads: `oidc` (the default) or `certificate`. */
    kind: z.enum(['oidc', 'certificate']).optional(),
  })
  .strict()
  .refine((p) => p.kind === undefined || p.type === 'Workload', {
    message: 'only a Workload principal has a kind',
  });

const resourceSchema = z
  .object({
    /** Folder when the path ends with "/", else Secret. */
    path: z.string(),
    tags: stringMap.default({}),
    owner: z.string().optional(),
  })
  .strict();

const contextSchema = z
  .object({
    authMethod: z.enum(['oidc', 'iam', 'dev', 'mtls']).optional(),
    sourceIp: z.string().optional(),
    /** RFC 3339 (`2025-01-01T09:00:00Z`) or seconds since the epoch. */
    time: z.union([z.string(), z.number()]).optional(),
  })
  .strict();

const caseSchema = z
  .object({
    name: z.string().optional(),
    principal: principalSchema,
    action: z.enum(ACTIONS as [Action, ...Action[]]),
    resource: resourceSchema,
    context: contextSchema.optional(),
    expect: z.enum(['allow', 'deny']),
  })
  .strict();

const tableSchema = z
  .object({
    description: z.string().optional(),
    /** Policy files loaded on top of the directory's own, relative to the policy directory. */
    policies: z.array(z.string()).default([]),
    cases: z.array(caseSchema).min(1),
  })
  .strict();

export type PolicyTestCase = z.infer<typeof caseSchema>;

export interface PolicyTestResult {
  readonly table: string;
  readonly index: number;
  readonly name: string;
  readonly principal: string;
  readonly action: Action;
  readonly resource: string;
  readonly expected: 'allow' | 'deny';
  readonly actual: 'allow' | 'deny';
  readonly policyIds: readonly string[];
  readonly errors: readonly string[];
  readonly passed: boolean;
}

export interface PolicyTestReport {
  readonly results: readonly PolicyTestResult[];
  /** Tables that could not be run (unreadable, malformed, or their policy set is invalid). */
  readonly problems: readonly string[];
  readonly passed: boolean;
}

function toSeconds(time: string | number): number {
  if (typeof time === 'number') return time;
  const ms = Date.parse(time);
  if (Number.isNaN(ms)) throw new Error(`time "${time}" is not an RFC 3339 date`);
  return Math.floor(ms / 1000);
}

/** The request one test case describes, with the defaults filled in. */
export function caseRequest(c: PolicyTestCase): {
  principal: Principal;
  action: Action;
  resource: Resource;
  context: RequestContext;
} {
  const kind = c.principal.type === 'Workload' ? (c.principal.kind ?? 'oidc') : undefined;
  const authMethod =
    c.principal.authMethod ?? c.context?.authMethod ?? (kind === 'certificate' ? 'mtls' : 'oidc');
  const principal: Principal = {
    type: c.principal.type,
    id: c.principal.id,
    groups: c.principal.groups,
    attributes: c.principal.attributes,
    authMethod,
    ...(c.principal.issuer !== undefined ? { issuer: c.principal.issuer } : {}),
    ...(kind !== undefined ? { kind } : {}),
  };
  const resource: Resource = c.resource.path.endsWith('/')
    ? { kind: 'Folder', path: c.resource.path }
    : {
        kind: 'Secret',
        path: c.resource.path,
        tags: c.resource.tags,
        ...(c.resource.owner !== undefined ? { owner: c.resource.owner } : {}),
      };
  const context: RequestContext = {
    authMethod: c.context?.authMethod ?? authMethod,
    sourceIp: c.context?.sourceIp ?? DEFAULT_CONTEXT.sourceIp,
    time: toSeconds(c.context?.time ?? DEFAULT_CONTEXT.time),
  };
  return { principal, action: c.action, resource, context };
}

function parseTable(name: string, text: string): z.infer<typeof tableSchema> {
  const raw: unknown = name.endsWith('.json') ? JSON.parse(text) : parseYaml(text);
  const parsed = tableSchema.safeParse(raw);
  if (parsed.success) return parsed.data;
  const issue = parsed.error.issues[0];
  throw new Error(`${issue?.path.join('.') || '(root)'}: ${issue?.message ?? 'malformed'}`);
}

/**
 * Runs every table in `<dir>/tests/*.{yaml,yml,json}`: each case is one request (principal,
 * action, resource, context) and the decision it must get from the directory's policies plus the
 * table's `policies`. Nothing is skipped: a table that cannot be read or run is a problem, and a
 * directory with no tables fails too (a test run that tests nothing must not pass).
 */
export async function runPolicyTests(dir: string): Promise<PolicyTestReport> {
  const root = resolve(dir);
  const testsDir = join(root, TESTS_DIR);
  let names: string[] = [];
  const problems: string[] = [];
  try {
    names = (await readdir(testsDir)).filter((n) => /\.(ya?ml|json)$/.test(n)).sort();
  } catch {
    problems.push(`${TESTS_DIR}/: not found in ${root}`);
  }
  if (names.length === 0 && problems.length === 0) problems.push(`${TESTS_DIR}/: no test tables`);

  const results: PolicyTestResult[] = [];
  for (const name of names) {
    const table = `${TESTS_DIR}/${name}`;
    let spec: z.infer<typeof tableSchema>;
    try {
      spec = parseTable(name, await readFile(join(testsDir, name), 'utf8'));
    } catch (err) {
      problems.push(`${table}: ${(err as Error).message}`);
      continue;
    }
    let authorizer: CedarAuthorizer;
    try {
      authorizer = new CedarAuthorizer(await loadPolicyDir(root, { extraFiles: spec.policies }), {
        logger: silentLogger,
      });
    } catch (err) {
      problems.push(
        `${table}: ${err instanceof PolicySetError ? `invalid policy set: ${err.problems.join('; ')}` : `cannot load its policies (${(err as Error).message})`}`,
      );
      continue;
    }
    spec.cases.forEach((c, index) => {
      let request: ReturnType<typeof caseRequest>;
      try {
        request = caseRequest(c);
      } catch (err) {
        problems.push(`${table} case ${index + 1}: ${(err as Error).message}`);
        return;
      }
      const decision = authorizer.authorize(request);
      const actual = decision.allowed ? 'allow' : 'deny';
      results.push({
        table,
        index: index + 1,
        name: c.name ?? '',
        principal: `${c.principal.type}::"${c.principal.id}"${c.principal.groups.length > 0 ? ` [${c.principal.groups.join(',')}]` : ''}`,
        action: c.action,
        resource: c.resource.path,
        expected: c.expect,
        actual,
        policyIds: decision.policyIds,
        errors: decision.errors,
        passed: actual === c.expect,
      });
    });
  }
  return { results, problems, passed: problems.length === 0 && results.every((r) => r.passed) };
}

/** A plain-text table of the results, failures marked. */
export function formatPolicyTestReport(report: PolicyTestReport): string {
  const header = ['', 'TABLE', '#', 'PRINCIPAL', 'ACTION', 'RESOURCE', 'EXPECT', 'GOT', 'POLICIES'];
  const rows = report.results.map((r) => [
    r.passed ? 'ok' : 'FAIL',
    r.table,
    String(r.index),
    r.principal,
    r.action,
    r.resource,
    r.expected,
    r.actual,
    r.policyIds.join(',') || '-',
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const failed = report.results.filter((r) => !r.passed).length;
  const out = [line(header), ...rows.map(line)];
  for (const r of report.results.filter((x) => !x.passed && x.name)) {
    out.push(
      `FAIL ${r.table} #${r.index}: ${r.name}${r.errors.length > 0 ? ` (errors: ${r.errors.join('; ')})` : ''}`,
    );
  }
  for (const p of report.problems) out.push(`ERROR ${p}`);
  out.push(
    `${report.results.length - failed} passed, ${failed} failed, ${report.problems.length} problem(s) in ${new Set(report.results.map((r) => r.table)).size} table(s)`,
  );
  return `${out.join('\n')}\n`;
}
