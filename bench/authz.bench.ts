/**
 * Cost of one authorization decision with 200 Cedar policies, against baselines measured in the
 * same run:
 *   - allow-all: the trivial authorizer (what a decision costs without Cedar);
 *   - cedar, 1 policy: building the request and calling the engine, almost nothing to evaluate;
 *   - cedar, 200 policies, whole set: Cedar evaluating every policy on every request;
 *   - cedar, 200 policies, sliced: what the servers run (only policies whose scope can match,
 *     same decisions; see lib/authz/slicing.ts), with its slices already pre-parsed;
 *   - slice preparation: the one-time cost when a request shape needs a new slice.
 *
 *   npx tsx bench/authz.bench.ts          (or `npm run bench -- authz`)
 *   BENCH_DECISIONS=50000 npx tsx bench/authz.bench.ts
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Principal } from '../lib/authn/principal.js';
import {
  ACTIONS,
  AllowAllAuthorizer,
  type AuthorizationRequest,
  type Authorizer,
} from '../lib/authz/authorizer.js';
import { CedarAuthorizer } from '../lib/authz/cedar.js';
import { compilePolicySet, type PolicySource } from '../lib/authz/policy-set.js';
import { silentLogger } from '../lib/log.js';

export interface AuthzBenchRow {
  readonly case: string;
  readonly policies: number;
  readonly decisions: number;
  readonly medianUs: number;
  readonly p99Us: number;
  readonly meanUs: number;
}

const TEAMS = 60;
const SCHEMA: PolicySource = {
  name: 'schema.cedarschema',
  text: readFileSync(fileURLToPath(new URL('../policies/schema.cedarschema', import.meta.url)), 'utf8'),
};

/**
 * 200 policies shaped like a real installation: the admins baseline, per team a folder grant, a
 * workload role and a read-only group; prod forbids, break-glass with its guard, and revocations.
 */
export function policies200(): string[] {
  const out = ['@id("admins") permit (principal in Coffer::Group::"admins", action, resource);'];
  const owner =
    'action in [Coffer::Action::"read", Coffer::Action::"write", Coffer::Action::"list", Coffer::Action::"readMetadata", Coffer::Action::"writeMetadata", Coffer::Action::"delete", Coffer::Action::"restore"]';
  const reader = 'action in [Coffer::Action::"read", Coffer::Action::"readMetadata", Coffer::Action::"list"]';
  for (let t = 0; t < TEAMS; t++) {
    out.push(
      `@id("team-${t}-owns") permit (principal in Coffer::Group::"team-${t}", ${owner}, resource in Coffer::Folder::"team-${t}/");`,
      `@id("team-${t}-workload") permit (principal == Coffer::Role::"arn:aws:iam::111122223333:role/svc-${t}", ${reader}, resource in Coffer::Folder::"team-${t}/prod/");`,
      `@id("team-${t}-readers") permit (principal in Coffer::Group::"team-${t}-ro", ${reader}, resource in Coffer::Folder::"team-${t}/") when { context.authMethod == "oidc" };`,
    );
  }
  out.push(
    '@id("prod-read") forbid (principal, action == Coffer::Action::"read", resource) when { resource.hasTag("env") && resource.getTag("env") == "prod" } unless { principal in Coffer::Group::"prod-readers" };',
    '@id("prod-change") forbid (principal, action in [Coffer::Action::"write", Coffer::Action::"writeMetadata"], resource) when { resource.hasTag("env") && resource.getTag("env") == "prod" } unless { principal in Coffer::Group::"prod-readers" };',
    '@id("auditors") permit (principal in Coffer::Group::"auditors", action in [Coffer::Action::"list", Coffer::Action::"readMetadata"], resource);',
    '@id("break-glass") permit (principal in Coffer::Group::"break-glass", action, resource);',
    '@id("break-glass-guard") forbid (principal in Coffer::Group::"break-glass", action, resource) unless { context.authMethod == "oidc" && context has sourceIp && context.sourceIp.isInRange(ip("10.20.0.0/16")) };',
  );
  for (let i = 0; out.length < 200; i++) {
    out.push(`@id("revoke-${i}") forbid (principal == Coffer::User::"corp:leaver-${i}", action, resource);`);
  }
  return out;
}

/** A mix of requests: people in teams, workloads, auditors, admins; secrets across teams. */
export function requestMix(count: number): AuthorizationRequest[] {
  const requests: AuthorizationRequest[] = [];
  for (let n = 0; n < count; n++) {
    const team = n % TEAMS;
    const other = (n * 7) % TEAMS;
    const kind = n % 5;
    const principal: Principal =
      kind === 0
        ? {
            type: 'Role',
            id: `arn:aws:iam::111122223333:role/svc-${team}`,
            groups: [],
            attributes: {},
            authMethod: 'iam',
          }
        : {
            type: 'User',
            id: `corp:user-${n % 500}`,
            groups:
              kind === 1 ? ['admins'] : kind === 2 ? [`team-${team}`, 'prod-readers'] : [`team-${team}`],
            attributes: { department: `d${team}` },
            authMethod: 'oidc',
            issuer: 'corp',
          };
    const folder = n % 3 === 0 ? `team-${other}` : `team-${team}`;
    requests.push({
      principal,
      action: ACTIONS[n % 8] ?? 'read',
      resource: {
        kind: 'Secret',
        path: `${folder}/${n % 2 === 0 ? 'prod' : 'dev'}/db/password-${n % 10}`,
        tags: { env: n % 2 === 0 ? 'prod' : 'dev', owner: 'team' },
        owner: `corp:user-${(n + 1) % 500}`,
      },
      context: {
        authMethod: principal.authMethod,
        sourceIp: `10.${n % 30}.1.${n % 250}`,
        time: 1_740_830_400 + n,
      },
    });
  }
  return requests;
}

function measure(
  name: string,
  authorizer: Authorizer,
  policies: number,
  requests: AuthorizationRequest[],
  decisions: number,
) {
  // Warm-up: JIT, and the sliced authorizer's cache (its steady state).
  for (let i = 0; i < Math.min(decisions, 5000); i++)
    authorizer.authorize(requests[i % requests.length] as AuthorizationRequest);
  const samples = new Float64Array(decisions);
  for (let i = 0; i < decisions; i++) {
    const request = requests[i % requests.length] as AuthorizationRequest;
    const start = process.hrtime.bigint();
    authorizer.authorize(request);
    samples[i] = Number(process.hrtime.bigint() - start) / 1000;
  }
  samples.sort();
  const mean = samples.reduce((a, b) => a + b, 0) / decisions;
  const at = (p: number) => samples[Math.min(decisions - 1, Math.floor((decisions - 1) * p))] ?? 0;
  const round = (x: number) => Math.round(x * 10) / 10;
  return {
    case: name,
    policies,
    decisions,
    medianUs: round(at(0.5)),
    p99Us: round(at(0.99)),
    meanUs: round(mean),
  };
}

export async function run(): Promise<AuthzBenchRow[]> {
  const decisions = Number(process.env.BENCH_DECISIONS ?? 20_000);
  const texts = policies200();
  const big = compilePolicySet(SCHEMA, [{ name: 'bench.cedar', text: texts.join('\n') }]);
  const one = compilePolicySet(SCHEMA, [{ name: 'one.cedar', text: texts[0] as string }]);
  if (big.policies.length !== 200) throw new Error(`expected 200 policies, got ${big.policies.length}`);
  const requests = requestMix(1000);

  const sliced = new CedarAuthorizer(big, { logger: silentLogger, decisionCacheSize: 0 });
  const whole = new CedarAuthorizer(big, { logger: silentLogger, slicing: false, decisionCacheSize: 0 });
  // The benchmark is only meaningful if both give the same answers.
  let allowed = 0;
  for (const r of requests) {
    const a = sliced.authorize(r);
    const b = whole.authorize(r);
    if (JSON.stringify(a) !== JSON.stringify(b)) throw new Error('sliced and whole decisions differ');
    if (a.errors.length > 0) throw new Error(`evaluation errors: ${a.errors.join('; ')}`);
    if (a.allowed) allowed++;
  }
  if (allowed === 0 || allowed === requests.length) throw new Error('the request mix should be mixed');

  // One-time cost of preparing a slice: a fresh authorizer meets every shape for the first time.
  const cold = new CedarAuthorizer(big, { logger: silentLogger, decisionCacheSize: 0 });
  const before = cold.stats.parsedSets;
  const coldStart = process.hrtime.bigint();
  for (const r of requests) cold.authorize(r);
  const coldUs = Number(process.hrtime.bigint() - coldStart) / 1000;
  const preparedSlices = cold.stats.parsedSets - before;

  // The requests of the mix for which some policy applies (the others are denied without Cedar).
  const probe = new CedarAuthorizer(big, { logger: silentLogger, decisionCacheSize: 0 });
  const engaged = requests.filter((r) => {
    const before = probe.stats.engineCalls;
    probe.authorize(r);
    return probe.stats.engineCalls > before;
  });

  const rows: AuthzBenchRow[] = [
    measure('allow-all (baseline)', new AllowAllAuthorizer(), 0, requests, decisions),
    measure(
      'cedar, 1 policy, whole request sent (engine baseline)',
      new CedarAuthorizer(one, { logger: silentLogger, slicing: false, decisionCacheSize: 0 }),
      1,
      requests,
      decisions,
    ),
    measure(
      'cedar, 1 policy, sliced, requests it applies to (engine floor)',
      new CedarAuthorizer(one, { logger: silentLogger, decisionCacheSize: 0 }),
      1,
      requests.filter((r) => r.principal.groups.includes('admins')),
      decisions,
    ),
    measure(
      'cedar, 200 policies, whole set and request (naive)',
      whole,
      200,
      requests,
      Math.min(decisions, 5000),
    ),
    measure('cedar, 200 policies, sliced, no decision cache', sliced, 200, requests, decisions),
    measure(
      `cedar, 200 policies, sliced, only the ${engaged.length} requests a policy applies to`,
      sliced,
      200,
      engaged,
      decisions,
    ),
    // The servers' authorizer keeps decisions (lib/authz/cedar.ts): the mix's 1000 requests
    // repeat, as a workload's reads of its own secrets do.
    measure(
      'cedar, 200 policies, sliced, decision cache on (what the servers run)',
      new CedarAuthorizer(big, { logger: silentLogger }),
      200,
      requests,
      decisions,
    ),
  ];
  rows.push({
    case: `first sight of a request shape (${preparedSlices} slices prepared, 1000 requests)`,
    policies: 200,
    decisions: requests.length,
    medianUs: Number.NaN,
    p99Us: Number.NaN,
    meanUs: Math.round((coldUs / requests.length) * 10) / 10,
  });
  return rows;
}

export function markdown(rows: readonly AuthzBenchRow[]): string {
  const fmt = (x: number) => (Number.isNaN(x) ? '–' : String(x));
  return [
    '| case | policies | decisions | median µs | p99 µs | mean µs |',
    '|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.case} | ${r.policies} | ${r.decisions} | ${fmt(r.medianUs)} | ${fmt(r.p99Us)} | ${fmt(r.meanUs)} |`,
    ),
  ].join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  process.stdout.write(`${markdown(await run())}\n`);
}
