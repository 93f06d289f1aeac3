/**
 * The API Lambda's cold start, on this machine: the bundle the stack deploys (built by the stack's
 * own CofferFunction construct: local esbuild, minified ESM, the Cedar wasm and the policies beside
 * it), imported and invoked in fresh processes, with DynamoDB Local and a KMS stub on KMS's wire
 * protocol that adds 10–20 ms to every call (in-region KMS latency; the stub itself answers in
 * well under a millisecond).
 *
 *   npm run bench -- coldstart
 *   BENCH_STARTS=5 npm run bench -- coldstart
 *
 * For each fresh process (bench/support/coldstart-driver.mjs) it reports the module import (the
 * init phase), the first request after it and a second one, and the KMS calls each made. Two
 * kinds of start: `now` invokes at once after the import, as Lambda does on an on-demand cold
 * start; `idle` waits 3 s first, so that work begun during init is done and the first request
 * shows only what is left on its own path. A separate fresh process times the Cedar engine's
 * import and the policy set's validation (bench/support/cedar-load.ts).
 */
import { execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { App, Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { exportJWK, generateKeyPair, SignJWT } from 'jose';
import { CofferFunction } from '../infra/constructs/coffer-function.js';
import { pinnedFeatureFlags } from '../infra/feature-flags.js';
import { startDynamoDbLocal } from '../lib/local/dynamodb-local.js';
import { localDynamoClient } from '../lib/store/dynamo-client.js';
import { ensureTables } from '../lib/store/tables.js';
import {
  AUDIT_KEY_ARN,
  DATA_KEY_ARN,
  HMAC_KEY_ARN,
  kmsEngine,
  REGION,
} from '../test/infra/support/fake-kms.js';
import { type FakeKmsServer, startFakeKmsServer } from '../test/infra/support/fake-kms-server.js';

export interface ColdStartRow {
  readonly start: string;
  readonly bundleKB?: number;
  readonly importMs?: number;
  readonly firstRequestMs?: number;
  readonly secondRequestMs?: number;
  readonly kmsCallsFirst?: string;
  readonly kmsCallsSecond?: number;
}

const HERE = fileURLToPath(new URL('.', import.meta.url));
const round1 = (x: number) => Math.round(x * 10) / 10;
const median = (xs: readonly number[]) => [...xs].sort((a, b) => a - b)[Math.floor((xs.length - 1) / 2)] ?? 0;

/** The API function's asset directory, built exactly as the stack builds it. */
function buildBundle(outdir: string): string {
  const app = new App({ outdir, context: pinnedFeatureFlags() });
  const stack = new Stack(app, 'ColdStart');
  new CofferFunction(stack, 'Api', {
    entry: 'functions/api.ts',
    description: 'Coffer API (cold start bench)',
    logRetention: RetentionDays.ONE_DAY,
    shipsPolicies: true,
  });
  app.synth();
  const fn = Object.values(Template.fromStack(stack).findResources('AWS::Lambda::Function'))[0];
  return join(outdir, `asset.${String(fn?.Properties.Code.S3Key).replace(/\.zip$/, '')}`);
}

interface DriverResult {
  readonly importMs: number;
  readonly firstMs?: number;
  readonly secondMs?: number;
  /** KMS operations the stub received during init, the first and the second request. */
  readonly kms: { init: string[]; first: string[]; second: string[] };
}

/** One fresh process through the driver; KMS calls are split at the marks it writes. */
function drive(kms: FakeKmsServer, bundle: string, mode: string, token: string, env: NodeJS.ProcessEnv) {
  return new Promise<DriverResult>((resolve, reject) => {
    const from = kms.requests.length;
    const marks: Record<string, number> = {};
    const child = spawn(process.execPath, [join(HERE, 'support/coldstart-driver.mjs'), bundle, mode, token], {
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (c: Buffer) => {
      out += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      err += c.toString();
      for (const line of c.toString().split('\n')) {
        if (!line.startsWith('{"bench":"mark"')) continue;
        marks[(JSON.parse(line) as { label: string }).label] = kms.requests.length;
      }
    });
    child.once('exit', (code) => {
      if (code !== 0) return reject(new Error(`driver (${mode}) exited ${code}: ${err.slice(-600)}`));
      const ops = (a: number, b: number) => kms.requests.slice(a, b).map((r) => r.operation);
      const first = marks.first ?? kms.requests.length;
      const second = marks.second ?? kms.requests.length;
      const r = JSON.parse(out.trim().split('\n').pop() ?? '{}') as Omit<DriverResult, 'kms'>;
      resolve({
        ...r,
        kms: { init: ops(from, first), first: ops(first, second), second: ops(second, kms.requests.length) },
      });
    });
  });
}

function countOps(ops: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const o of ops) counts.set(o, (counts.get(o) ?? 0) + 1);
  return [...counts].map(([o, n]) => `${o} ${n}`).join(', ') || 'none';
}

export async function run(): Promise<ColdStartRow[]> {
  const starts = Number(process.env.BENCH_STARTS ?? 3);
  const outdir = mkdtempSync(join(tmpdir(), 'coffer-bench-coldstart-'));
  const ddb = await startDynamoDbLocal();
  const kms = await startFakeKmsServer(kmsEngine([DATA_KEY_ARN]), { delayMs: () => 10 + Math.random() * 10 });
  try {
    const assetDir = buildBundle(outdir);
    const bundle = join(assetDir, 'index.mjs');
    const bundleKB = Math.round(statSync(bundle).size / 1024);
    const client = localDynamoClient(ddb.endpoint);
    const tables = { secrets: 'coldstart-secrets', audit: 'coldstart-audit' };
    await ensureTables(client, tables);
    client.destroy();

    const issuer = `${kms.endpoint}/`;
    const pair = await generateKeyPair('ES256');
    kms.serveJson('/jwks', {
      keys: [{ ...(await exportJWK(pair.publicKey)), kid: 'k1', alg: 'ES256', use: 'sig' }],
    });
    const token = await new SignJWT({ groups: ['coffer-admins'] })
      .setProtectedHeader({ alg: 'ES256', kid: 'k1', typ: 'JWT' })
      .setIssuer(issuer)
      .setAudience('coffer')
      .setSubject('bench')
      .setIssuedAt()
      .setExpirationTime('30m')
      .sign(pair.privateKey);
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '',
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      COFFER_SECRETS_TABLE: tables.secrets,
      COFFER_AUDIT_TABLE: tables.audit,
      COFFER_SECRETS_KEY_ARN: DATA_KEY_ARN,
      COFFER_AUDIT_KEY_ARN: AUDIT_KEY_ARN,
      COFFER_FIELD_HMAC_KEY_ARN: HMAC_KEY_ARN,
      COFFER_KEY_STORE: 'kms',
      COFFER_CONFIG_JSON: JSON.stringify({
        issuers: [
          {
            alias: 'corp',
            issuer,
            audiences: ['coffer'],
            algorithms: ['ES256'],
            jwksUri: `${kms.endpoint}/jwks`,
            allowHttpLoopback: true,
            groupMapping: { 'coffer-admins': ['admins'] },
          },
        ],
      }),
      AWS_REGION: REGION,
      AWS_ACCESS_KEY_ID: 'cofferlocal',
      AWS_SECRET_ACCESS_KEY: 'cofferlocal',
      AWS_ENDPOINT_URL_KMS: kms.endpoint,
      AWS_ENDPOINT_URL_DYNAMODB: ddb.endpoint,
    };

    await drive(kms, bundle, 'seed', token, env);
    const rows: ColdStartRow[] = [];
    for (const mode of ['now', 'idle'] as const) {
      const runs: DriverResult[] = [];
      for (let i = 0; i < starts; i++) runs.push(await drive(kms, bundle, mode, token, env));
      const last = runs[runs.length - 1] as DriverResult;
      rows.push({
        start: `${mode} (median of ${starts})`,
        bundleKB,
        importMs: round1(median(runs.map((r) => r.importMs))),
        firstRequestMs: round1(median(runs.map((r) => r.firstMs ?? 0))),
        secondRequestMs: round1(median(runs.map((r) => r.secondMs ?? 0))),
        kmsCallsFirst: `${last.kms.first.length} (${countOps(last.kms.first)}; init: ${last.kms.init.length})`,
        kmsCallsSecond: last.kms.second.length,
      });
    }

    // The Cedar share, in a fresh process of its own, on the policies the bundle ships: validated
    // (the first start of a set) and sealed (every later start: parsed, not validated).
    type CedarRun = { engineImportMs: number; loadAndValidateMs: number; authorizerMs: number };
    const cedarRuns: { validated: CedarRun[]; sealed: CedarRun[] } = { validated: [], sealed: [] };
    for (let i = 0; i < starts; i++) {
      for (const mode of ['validated', 'sealed'] as const) {
        const { stdout } = await promisify(execFile)(
          process.execPath,
          ['--import', 'tsx', join(HERE, 'support/cedar-load.ts'), join(assetDir, 'policies'), mode],
          { env: process.env },
        );
        cedarRuns[mode].push(JSON.parse(stdout.trim()));
      }
    }
    rows.push({
      start: 'Cedar alone: engine import (wasm compile)',
      importMs: round1(median(cedarRuns.validated.map((r) => r.engineImportMs))),
    });
    rows.push({
      start: 'Cedar alone: read, parse and validate the shipped set, build the authorizer',
      importMs: round1(median(cedarRuns.validated.map((r) => r.loadAndValidateMs + r.authorizerMs))),
    });
    rows.push({
      start: 'Cedar alone: read and parse the sealed set (no validator), build the authorizer',
      importMs: round1(median(cedarRuns.sealed.map((r) => r.loadAndValidateMs + r.authorizerMs))),
    });
    return rows;
  } finally {
    await kms.close();
    await ddb.stop();
    rmSync(outdir, { recursive: true, force: true });
  }
}

export function markdown(rows: readonly ColdStartRow[]): string {
  const lines = [
    '| start | bundle KB | import ms (Cedar rows: time) | first request ms | second request ms | KMS calls, first request | KMS calls, second |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const r of rows) {
    lines.push(
      `| ${r.start} | ${r.bundleKB ?? ''} | ${r.importMs ?? ''} | ${r.firstRequestMs ?? ''} | ${r.secondRequestMs ?? ''} | ${r.kmsCallsFirst ?? ''} | ${r.kmsCallsSecond ?? ''} |`,
    );
  }
  return lines.join('\n');
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await run();
  process.stdout.write(`${markdown(rows)}\n`);
}
