import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { KMSClient } from '@aws-sdk/client-kms';
import { InvokeCommand, LambdaClient } from '@aws-sdk/client-lambda';
import { mockClient } from 'aws-sdk-client-mock';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { kmsKeys, lambdaRotators } from '../../functions/aws.js';
import type { LambdaSettings } from '../../functions/env.js';
import { rotationHandler } from '../../functions/rotation-handler.js';
import type { AuditContext } from '../../lib/audit/trail.js';
import { AllowAllAuthorizer } from '../../lib/authz/authorizer.js';
import { composeCoffer } from '../../lib/compose.js';
import { silentLogger } from '../../lib/log.js';
import type { RotatorSettings } from '../../lib/secrets/rotators/invoker.js';
import { WebhookInvoker } from '../../lib/secrets/rotators/webhook.js';
import type { Caller } from '../../lib/secrets/service.js';
import {
  AUDIT_KEY_ARN,
  DATA_KEY_ARN,
  fakeKms,
  HMAC_KEY_ARN,
  kmsEngine,
  REGION,
} from '../infra/support/fake-kms.js';
import { freshTables, scanAll } from '../support/dynamo.js';
import { TestRotator } from '../support/webhook-rotator.js';

/*
 * The scheduled rotation function (functions/rotation-handler.ts), driven by its EventBridge
 * event, over DynamoDB Local with KMS mocked: it rotates what is due, with the KMS keys the API
 * writes with, and writes signed audit records.
 */

const kms = mockClient(KMSClient);
const cloudwatch = mockClient(CloudWatchClient);
const kmsClient = new KMSClient({ region: REGION });
let settings: LambdaSettings;
let client: Awaited<ReturnType<typeof freshTables>>['client'];
let clock = Date.parse('2026-03-01T00:00:00Z');

const context = (n: number): AuditContext => ({
  requestId: `req-${n}`,
  time: new Date(clock).toISOString(),
  method: 'POST',
  route: '/v1/generate/apps/db',
  sourceIp: '198.51.100.1',
  userAgent: 'test',
  written: false,
});

beforeAll(async () => {
  const fresh = await freshTables('rotjob');
  client = fresh.client;
  settings = {
    tables: fresh.tables,
    secretsKeyArn: DATA_KEY_ARN,
    previousSecretsKeyArns: [],
    auditKeyArn: AUDIT_KEY_ARN,
    fieldHmacKeyArn: HMAC_KEY_ARN,
    config: { issuers: [] },
  };
  fakeKms(kms, [DATA_KEY_ARN], kmsEngine());
});
afterAll(() => {
  kms.reset();
  cloudwatch.reset();
});

/**
 * A Coffer composed as the API composes it (the same KMS keys and installation, a signed audit
 * trail), for writing what the function then rotates.
 */
function apiCoffer(
  lambdaSettings: LambdaSettings,
  dynamo: typeof client,
  rotators?: RotatorSettings,
): ReturnType<typeof composeCoffer> {
  return composeCoffer({
    dynamo,
    tables: lambdaSettings.tables,
    keys: kmsKeys(lambdaSettings, kmsClient),
    audit: { kind: 'dynamo', writer: 'lambda', chains: 1, sink: () => {} },
    policy: { authorizer: new AllowAllAuthorizer() },
    authn: { config: { issuers: [] } },
    connection: () => ({ sourceIp: '198.51.100.1' }),
    logger: silentLogger,
    now: () => new Date(clock),
    ...(rotators ? { rotators } : {}),
  });
}

/** An EventBridge scheduled event, as the rule delivers it (the handler reads nothing of it). */
const scheduledEvent = {
  version: '0',
  id: '53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa',
  'detail-type': 'Scheduled Event',
  source: 'aws.events',
  account: '111122223333',
  time: '2026-03-03T00:00:00Z',
  region: REGION,
  resources: ['arn:aws:events:eu-west-1:111122223333:rule/Coffer-RotationSchedule'],
  detail: {},
};

describe('the rotation function', () => {
  it('when its scheduled event arrives, it rotates the secrets that are due with their generator', async () => {
    // Written as the API would write it: the same KMS keys and installation.
    const api = await apiCoffer(settings, client);
    const caller = (n: number): Caller => ({
      principal: { type: 'User', id: 'corp:alice', groups: ['admins'], attributes: {}, authMethod: 'oidc' },
      context: { authMethod: 'oidc', sourceIp: '198.51.100.1', time: Math.floor(clock / 1000) },
      audit: context(n),
    });
    await api.service.generate(caller(1), 'apps/db', { type: 'password', length: 24 });
    await api.service.generate(caller(2), 'apps/later', { type: 'password', length: 24 });
    await api.service.setRotation(caller(3), 'apps/db', { every: '1d' });
    await api.service.setRotation(caller(4), 'apps/later', { every: '30d' });
    const old = await api.service.get(caller(5), 'apps/db');

    const handler = rotationHandler(settings, {
      dynamo: client,
      kms: kmsClient,
      logger: silentLogger,
      now: () => new Date(clock),
      auditSink: () => {},
    }) as (event: unknown) => Promise<{ rotated: number; failed: number }>;
    expect(await handler(scheduledEvent)).toEqual({ rotated: 0, failed: 0 });
    clock += 2 * 86_400_000;
    expect(await handler(scheduledEvent)).toEqual({ rotated: 1, failed: 0 });

    const current = await api.service.get(caller(6), 'apps/db');
    expect(current.version).toBe(2);
    expect(current.value).not.toBe(old.value);
    expect((await api.service.get(caller(7), 'apps/db', undefined, 'previous')).value).toBe(old.value);
    expect((await api.service.get(caller(8), 'apps/later')).version).toBe(1);
    // Each step wrote its signed record in its own transaction, by the rotation job's writer.
    const records = (await scanAll(client, settings.tables.audit)).filter(
      (r) => r.route === '/jobs/rotation',
    );
    expect(records.length).toBe(2);
    expect(records.every((r) => r.path === 'apps/db' && r.decision === 'allow')).toBe(true);
  });

  it('when a due secret names an external rotator, the function runs its steps, fails the run on a failed step and resumes it next time', async () => {
    const rotator = await new TestRotator().start();
    try {
      const api = await apiCoffer(settings, client, { webhooks: new WebhookInvoker() });
      const caller = (n: number): Caller => ({
        principal: { type: 'User', id: 'corp:alice', groups: ['admins'], attributes: {}, authMethod: 'oidc' },
        context: { authMethod: 'oidc', sourceIp: '198.51.100.1', time: Math.floor(clock / 1000) },
        audit: context(n),
      });
      await api.service.generate(caller(11), 'apps/hooked', { type: 'password', length: 24 });
      await api.service.setRotation(caller(12), 'apps/hooked', { every: '1d', webhook: rotator.url });
      const old = await api.service.get(caller(13), 'apps/hooked');
      // The rotator reads the pending value from the API with the grant the job made.
      const reads: { step: string; status: number; version?: number }[] = [];
      let failAt: string | undefined = 'testSecret';
      rotator.behave = async (call) => {
        const res = await api.app.request(`/v1/secrets/${call.path}?stage=${call.stage}`, {
          headers: { authorization: `Bearer ${call.grant}` },
        });
        const body = (await res.json()) as { version?: number };
        reads.push({
          step: call.step,
          status: res.status,
          ...(body.version ? { version: body.version } : {}),
        });
        return { status: call.step === failAt ? 500 : 200 };
      };
      const handler = rotationHandler(settings, {
        dynamo: client,
        kms: kmsClient,
        logger: silentLogger,
        now: () => new Date(clock),
        auditSink: () => {},
        rotators: { webhooks: new WebhookInvoker() },
      }) as (event: unknown) => Promise<{ rotated: number; failed: number }>;
      clock += 2 * 86_400_000;
      await expect(handler(scheduledEvent)).rejects.toThrow('1 rotation(s) failed');
      let meta = await api.service.getMetadata(caller(14), 'apps/hooked');
      expect(meta.stages).toEqual({ current: 1, pending: 2 });
      expect(meta.rotation?.progress).toEqual({ version: 2, step: 'testSecret', failed: true });
      expect((await api.service.get(caller(15), 'apps/hooked')).value).toBe(old.value);

      failAt = undefined;
      expect(await handler(scheduledEvent)).toEqual({ rotated: 1, failed: 0 });
      expect(reads).toEqual([
        { step: 'setSecret', status: 200, version: 2 },
        { step: 'testSecret', status: 200, version: 2 },
        { step: 'testSecret', status: 200, version: 2 },
      ]);
      meta = await api.service.getMetadata(caller(16), 'apps/hooked');
      expect(meta.stages).toEqual({ current: 2, previous: 1 });
      expect(meta.versions.map((v) => v.version)).toEqual([1, 2]);
      // Done: its policy goes, so later tests' clocks do not make it due again with no rotator.
      await api.service.clearRotation(caller(17), 'apps/hooked');
    } finally {
      await rotator.stop();
    }
  });
});

describe('the rotation function with a Lambda rotator', () => {
  const ARN = 'arn:aws:lambda:eu-west-1:111122223333:function:coffer-db-rotator';
  const lambda = mockClient(LambdaClient);
  afterAll(() => lambda.restore());

  it('when a due secret names an allow-listed Lambda, it invokes it per step with a grant, fails on a function error and resumes', async () => {
    const withLambda: LambdaSettings = { ...settings, rotatorLambdaArns: [ARN] };
    const api = await apiCoffer(withLambda, client, lambdaRotators(withLambda.rotatorLambdaArns));
    const caller = (n: number): Caller => ({
      principal: { type: 'User', id: 'corp:alice', groups: ['admins'], attributes: {}, authMethod: 'oidc' },
      context: { authMethod: 'oidc', sourceIp: '198.51.100.1', time: Math.floor(clock / 1000) },
      audit: context(n),
    });
    await api.service.generate(caller(21), 'apps/lambda', { type: 'password', length: 24 });
    // Only an allow-listed function may be named.
    await expect(
      api.service.setRotation(caller(22), 'apps/lambda', {
        every: '1d',
        lambdaArn: 'arn:aws:lambda:eu-west-1:111122223333:function:other',
      }),
    ).rejects.toMatchObject({ code: 'rotator_not_allowed' });
    await api.service.setRotation(caller(23), 'apps/lambda', { every: '1d', lambdaArn: ARN });
    const old = await api.service.get(caller(24), 'apps/lambda');

    // The function reads the pending value with its grant, through the API; it fails testSecret once.
    const seen: { step: string; status: number; current: number }[] = [];
    let failTest = true;
    lambda.on(InvokeCommand).callsFake(async (input: { FunctionName?: string; Payload?: Uint8Array }) => {
      const call = JSON.parse(new TextDecoder().decode(input.Payload)) as {
        step: string;
        path: string;
        stage: string;
        grant: string;
      };
      const read = await api.app.request(`/v1/secrets/${call.path}?stage=${call.stage}`, {
        headers: { authorization: `Bearer ${call.grant}` },
      });
      const current = await api.app.request(`/v1/secrets/${call.path}`, {
        headers: { authorization: `Bearer ${call.grant}` },
      });
      seen.push({ step: call.step, status: read.status, current: current.status });
      if (call.step === 'testSecret' && failTest) return { StatusCode: 200, FunctionError: 'Unhandled' };
      return { StatusCode: 200 };
    });
    const handler = rotationHandler(withLambda, {
      dynamo: client,
      kms: kmsClient,
      logger: silentLogger,
      now: () => new Date(clock),
      auditSink: () => {},
    }) as (event: unknown) => Promise<{ rotated: number; failed: number }>;
    clock += 2 * 86_400_000;
    await expect(handler(scheduledEvent)).rejects.toThrow('rotation(s) failed');
    let meta = await api.service.getMetadata(caller(25), 'apps/lambda');
    expect(meta.rotation?.progress).toEqual({ version: 2, step: 'testSecret', failed: true });
    expect(meta.rotation?.lastRotationError?.message).toContain('function_error');
    expect((await api.service.get(caller(26), 'apps/lambda')).value).toBe(old.value);

    failTest = false;
    await handler(scheduledEvent);
    meta = await api.service.getMetadata(caller(27), 'apps/lambda');
    expect(meta.stages).toEqual({ current: 2, previous: 1 });
    // Each step: the named function, a synchronous call; the grant reads pending and never current.
    const invocations = lambda.commandCalls(InvokeCommand).map((c) => c.args[0].input);
    expect(invocations.map((i) => [i.FunctionName, i.InvocationType])).toEqual(
      Array(3).fill([ARN, 'RequestResponse']),
    );
    expect(seen).toEqual([
      { step: 'setSecret', status: 200, current: 403 },
      { step: 'testSecret', status: 200, current: 403 },
      { step: 'testSecret', status: 200, current: 403 },
    ]);
    // Done: its policy goes, so later tests' clocks do not make it due again.
    await api.service.clearRotation(caller(28), 'apps/lambda');
  });
});

describe('the rotation function and certificates', () => {
  const DAY = 86_400_000;
  let api: Awaited<ReturnType<typeof composeCoffer>>;
  let n = 100;
  const caller = (): Caller => ({
    principal: { type: 'User', id: 'corp:carol', groups: ['admins'], attributes: {}, authMethod: 'oidc' },
    context: { authMethod: 'oidc', sourceIp: '198.51.100.1', time: Math.floor(clock / 1000) },
    audit: context(n++),
  });
  const handler = () =>
    rotationHandler(certSettings, {
      dynamo: certClient,
      kms: kmsClient,
      cloudwatch: new CloudWatchClient({ region: REGION }),
      logger: silentLogger,
      now: () => new Date(clock),
      auditSink: () => {},
    }) as (event: unknown) => Promise<{ rotated: number; failed: number }>;
  /** The metrics of the last PutMetricData, by name. */
  const lastMetrics = () => {
    const calls = cloudwatch.commandCalls(PutMetricDataCommand);
    const input = calls[calls.length - 1]?.args[0].input;
    expect(input?.Namespace).toBe('Coffer/Lifecycle');
    return Object.fromEntries((input?.MetricData ?? []).map((m) => [m.MetricName, m.Value]));
  };
  const caBody = {
    type: 'certificate' as const,
    commonName: 'Jobs CA',
    validityDays: 365,
    ca: true,
    allowedNames: ['*.jobs.example'],
    maxValidityDays: 60,
  };

  // Tables of its own: the secrets of the tests above would come due as the clock moves on.
  let certSettings: LambdaSettings;
  let certClient: typeof client;

  beforeAll(async () => {
    const fresh = await freshTables('rotcert');
    certClient = fresh.client;
    certSettings = { ...settings, tables: fresh.tables };
    api = await apiCoffer(certSettings, certClient);
    cloudwatch.on(PutMetricDataCommand).resolves({});
    await api.service.generate(caller(), 'pki/jobs-ca', caBody);
    await api.service.generate(caller(), 'certs/svc', {
      type: 'certificate',
      commonName: 'svc.jobs.example',
      sans: { dns: ['svc.jobs.example'] },
      validityDays: 40,
      issuer: 'pki/jobs-ca',
    });
    await api.service.setRotation(caller(), 'certs/svc', { every: '365d', renewBefore: '10d' });
    // Without a rotation policy: it only counts as expiring.
    await api.service.generate(caller(), 'certs/manual', {
      type: 'certificate',
      commonName: 'manual.example',
      validityDays: 20,
    });
  });

  it('when its event arrives close to the notAfter of a CA-issued certificate, it renews it from the CA, and publishes the lifecycle metrics', async () => {
    const before = await api.service.getMetadata(caller(), 'certs/svc');
    expect(await handler()(scheduledEvent)).toMatchObject({ failed: 0 });
    expect(lastMetrics()).toEqual({ CertificatesExpiring: 1, RotationsOverdue: 0, RotationsFailed: 0 });
    clock = Date.parse(before.certificate?.notAfter as string) - 9 * DAY;
    expect(await handler()(scheduledEvent)).toMatchObject({ failed: 0 });
    const after = await api.service.getMetadata(caller(), 'certs/svc');
    expect(after.currentVersion).toBe(before.currentVersion + 1);
    expect(after.certificate?.subject).toBe(before.certificate?.subject);
    expect(after.certificate?.serial).not.toBe(before.certificate?.serial);
    // The manual certificate has expired by now; the renewed one is not within 30 days.
    expect(lastMetrics()).toEqual({ CertificatesExpiring: 1, RotationsOverdue: 0, RotationsFailed: 0 });
    const ca = JSON.parse((await api.service.get(caller(), 'pki/jobs-ca')).value as string).certificate;
    const leaf = JSON.parse((await api.service.get(caller(), 'certs/svc')).value as string).certificate;
    const dir = await mkdtemp(join(tmpdir(), 'coffer-rotjob-'));
    try {
      await writeFile(join(dir, 'ca.pem'), ca);
      await writeFile(join(dir, 'leaf.pem'), leaf);
      const out = await promisify(execFile)('openssl', [
        'verify',
        '-attime',
        String(Math.floor(clock / 1000)),
        '-CAfile',
        join(dir, 'ca.pem'),
        join(dir, 'leaf.pem'),
      ]);
      expect(out.stdout).toMatch(/leaf\.pem: OK/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('when the CA no longer allows the renewal, the run fails, lastRotationError is kept and the metrics count it', async () => {
    await api.service.generate(caller(), 'pki/jobs-ca', { ...caBody, maxValidityDays: 30 });
    const meta = await api.service.getMetadata(caller(), 'certs/svc');
    clock = Date.parse(meta.rotation?.nextAt as string) + 1000;
    await expect(handler()(scheduledEvent)).rejects.toThrow('1 rotation(s) failed');
    const after = await api.service.getMetadata(caller(), 'certs/svc');
    expect(after.currentVersion).toBe(meta.currentVersion);
    expect(after.rotation?.lastRotationError?.message).toBe('rotation failed: validity_too_long');
    expect(lastMetrics()).toMatchObject({ RotationsOverdue: 1, RotationsFailed: 1 });
  });

  it('when CloudWatch refuses the metrics, the run still finishes (the alarms treat the missing data as breaching)', async () => {
    await api.service.clearRotation(caller(), 'certs/svc');
    cloudwatch.on(PutMetricDataCommand).rejects(new Error('throttled'));
    expect(await handler()(scheduledEvent)).toEqual({ rotated: 0, failed: 0 });
    cloudwatch.on(PutMetricDataCommand).resolves({});
  });
});
