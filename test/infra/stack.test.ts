import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duration, Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { Provider } from 'aws-cdk-lib/custom-resources';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { type CofferApp, createCofferApp } from '../../infra/coffer-app.js';
import { AUDIT_TABLE_DENIED, type CofferStack, SECRETS_TABLE_ACTIONS } from '../../infra/coffer-stack.js';
import { CloudHsmKeyStore } from '../../infra/constructs/cloudhsm-key-store.js';
import type { CofferFunction } from '../../infra/constructs/coffer-function.js';
import { BRANCH_CONTEXT_KEYS, ENCRYPTION_CONTEXT_KEYS } from '../../infra/constructs/keys.js';
import { FILTER_PATTERNS } from '../../infra/constructs/monitoring.js';
import { encryptionContextFor } from '../../lib/crypto/envelope.js';

/*
 * Synthesizes the real app (bundling with the local esbuild, cdk-nag as a validation plugin, which
 * throws on any unacknowledged finding) once per key store mode, then asserts on the templates.
 */

const PREVIOUS_KEY = 'arn:aws:kms:eu-west-1:111122223333:key/5a7c1e0e-1111-4d6a-9c1e-00000000000a';
const CLOUDHSM_CONTEXT = {
  keyStore: 'cloudhsm',
  cloudHsmClusterId: 'cluster-abcdefghijk',
  cloudHsmKmsUserSecret: 'coffer/kmsuser',
  cloudHsmTrustAnchor: 'test/infra/fixtures/customerCA.crt',
  // A deployment that moved from keyStore=kms keeps unwrapping what the old key wrapped.
  previousSecretsKeyArns: PREVIOUS_KEY,
};

interface Synth {
  readonly coffer: CofferApp;
  readonly template: Template;
  readonly outdir: string;
  readonly json: { Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }> };
}

const dirs: string[] = [];
/** Synthesizes into `outdir`; the template is read at once, before another app writes there. */
function synth(context: Record<string, unknown>, outdir: string): Synth {
  const coffer = createCofferApp({ outdir, context });
  coffer.app.synth();
  const template = Template.fromStack(coffer.stack);
  return { coffer, template, outdir, json: template.toJSON() as Synth['json'] };
}

let kms: Synth;
let hsm: Synth;
beforeAll(() => {
  /*
   * One output directory for both modes: CDK keeps the bundles it staged in a directory for the
   * rest of the process, so the five functions both modes share (same entry, same options) are
   * bundled once, not twice. CloudHSM mode goes first because its resource types include all of
   * KMS mode's: CDK's template validator builds its engine for the types it has seen, and so builds
   * it once instead of once per mode.
   */
  const outdir = mkdtempSync(join(tmpdir(), 'coffer-cdk-'));
  dirs.push(outdir);
  hsm = synth(CLOUDHSM_CONTEXT, outdir);
  kms = synth({}, outdir);
}, 300_000);
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

const resolve = (stack: CofferStack, value: unknown) => Stack.of(stack).resolve(value);

type Statement = { Effect: string; Action: string | string[]; Resource: unknown; Condition?: unknown };

/** Every statement of the identity policies attached to `role` (inline and default policy). */
function statementsOf(s: Synth, role: unknown): Statement[] {
  const out: Statement[] = [];
  for (const r of Object.values(s.json.Resources)) {
    if (r.Type !== 'AWS::IAM::Policy') continue;
    const roles = (r.Properties?.Roles ?? []) as unknown[];
    if (!roles.some((x) => JSON.stringify(x) === JSON.stringify(role))) continue;
    const document = r.Properties?.PolicyDocument as { Statement?: Statement[] } | undefined;
    out.push(...(document?.Statement ?? []));
  }
  return out;
}
const actionsOf = (st: Statement) => (Array.isArray(st.Action) ? st.Action : [st.Action]);

describe('the Coffer stack (keyStore=kms)', () => {
  it('has two DynamoDB tables with PITR, deletion protection, encryption, on-demand billing and RETAIN', () => {
    kms.template.resourceCountIs('AWS::DynamoDB::Table', 2);
    kms.template.allResources('AWS::DynamoDB::Table', {
      DeletionPolicy: 'Retain',
      UpdateReplacePolicy: 'Retain',
      Properties: Match.objectLike({
        BillingMode: 'PAY_PER_REQUEST',
        DeletionProtectionEnabled: true,
        PointInTimeRecoverySpecification: { PointInTimeRecoveryEnabled: true, RecoveryPeriodInDays: 35 },
        SSESpecification: { SSEEnabled: true },
        KeySchema: [
          { AttributeName: 'pk', KeyType: 'HASH' },
          { AttributeName: 'sk', KeyType: 'RANGE' },
        ],
      }),
    });
  });

  it('has a rotating symmetric secrets key, an ECC_NIST_P256 SIGN_VERIFY audit key and an HMAC key, all retained', () => {
    const keys = (spec: Record<string, unknown>) => kms.template.findResources('AWS::KMS::Key', spec);
    const retained = { DeletionPolicy: 'Retain' };
    const secrets = keys({
      ...retained,
      Properties: Match.objectLike({
        Description: Match.stringLikeRegexp('wraps the data keys'),
        EnableKeyRotation: true,
      }),
    });
    expect(Object.keys(secrets)).toHaveLength(1);
    expect(Object.values(secrets)[0]?.Properties.KeySpec ?? 'SYMMETRIC_DEFAULT').toBe('SYMMETRIC_DEFAULT');
    expect(
      Object.keys(
        keys({
          ...retained,
          Properties: Match.objectLike({ KeySpec: 'ECC_NIST_P256', KeyUsage: 'SIGN_VERIFY' }),
        }),
      ),
    ).toHaveLength(1);
    expect(
      Object.keys(
        keys({
          ...retained,
          Properties: Match.objectLike({ KeySpec: 'HMAC_256', KeyUsage: 'GENERATE_VERIFY_MAC' }),
        }),
      ),
    ).toHaveLength(1);
    kms.template.resourceCountIs('Custom::CofferCloudHsmKey', 0);
  });

  it('runs every Coffer function on Node.js 22 / arm64, with a retained log group of the configured retention', () => {
    const functions = kms.template.findResources('AWS::Lambda::Function');
    expect(Object.keys(functions)).toHaveLength(5);
    for (const fn of Object.values(functions)) {
      expect(fn.Properties.Runtime).toBe('nodejs22.x');
      expect(fn.Properties.Architectures).toEqual(['arm64']);
      expect(fn.Properties.Environment.Variables.NODE_OPTIONS).toBe('--enable-source-maps');
      expect(fn.Properties.LoggingConfig.LogGroup).toBeDefined();
    }
    const logGroups = kms.template.findResources('AWS::Logs::LogGroup');
    expect(Object.keys(logGroups).length).toBeGreaterThanOrEqual(4);
    for (const group of Object.values(logGroups)) {
      expect(group.Properties.RetentionInDays).toBe(365);
      expect(group.DeletionPolicy).toBe('Retain');
    }
  });

  it('ships the API bundle as minified ESM with a source map and the Cedar wasm beside it', () => {
    const fn = kms.template.findResources('AWS::Lambda::Function', {
      Properties: Match.objectLike({ Description: Match.stringLikeRegexp('Coffer API') }),
    });
    const props = Object.values(fn)[0]?.Properties;
    expect(props.Handler).toBe('index.handler');
    const asset = join(kms.outdir, `asset.${String(props.Code.S3Key).replace(/\.zip$/, '')}`);
    const code = readFileSync(join(asset, 'index.mjs'), 'utf8');
    expect(code.startsWith("import { createRequire as __cofferRequire } from 'node:module';")).toBe(true);
    expect(code.split('\n').length).toBeLessThan(400);
    expect(existsSync(join(asset, 'index.mjs.map'))).toBe(true);
    expect(existsSync(join(asset, 'cedar_wasm_bg.wasm'))).toBe(true);
    // The policy set travels with the code; policy tests and examples do not.
    expect(existsSync(join(asset, 'policies', 'schema.cedarschema'))).toBe(true);
    expect(existsSync(join(asset, 'policies', 'admins.cedar'))).toBe(true);
    expect(existsSync(join(asset, 'policies', 'tests'))).toBe(false);
    expect(existsSync(join(asset, 'policies', 'examples'))).toBe(false);
  });

  // Loads the real bundle: the ESM shim, the Cedar wasm beside it and the shipped policies must all
  // work for the start to get as far as KMS (the policy set is loaded first).
  it('when the bundled API starts without reachable KMS, it answers an HTTP API event with 503 key_store_unavailable', async () => {
    const fn = Object.values(
      kms.template.findResources('AWS::Lambda::Function', {
        Properties: Match.objectLike({ Description: Match.stringLikeRegexp('Coffer API') }),
      }),
    )[0]?.Properties;
    const asset = join(kms.outdir, `asset.${String(fn.Code.S3Key).replace(/\.zip$/, '')}`);
    const saved = { ...process.env };
    const stderr = process.stderr.write;
    try {
      Object.assign(process.env, {
        COFFER_SECRETS_TABLE: 'secrets',
        COFFER_AUDIT_TABLE: 'audit',
        COFFER_SECRETS_KEY_ARN: 'arn:aws:kms:eu-west-1:111122223333:key/a',
        COFFER_AUDIT_KEY_ARN: 'arn:aws:kms:eu-west-1:111122223333:key/b',
        COFFER_FIELD_HMAC_KEY_ARN: 'arn:aws:kms:eu-west-1:111122223333:key/c',
        AWS_REGION: 'eu-west-1',
        AWS_ACCESS_KEY_ID: 'test',
        AWS_SECRET_ACCESS_KEY: 'test',
        // Nothing listens there: every KMS call fails fast, like an unreachable key store.
        AWS_ENDPOINT_URL: 'http://127.0.0.1:9',
      });
      process.stderr.write = (() => true) as typeof process.stderr.write;
      const bundle = (await import(join(asset, 'index.mjs'))) as {
        handler: (event: unknown, context: unknown) => Promise<{ statusCode: number; body: string }>;
      };
      const out = await bundle.handler(
        {
          version: '2.0',
          routeKey: 'ANY /v1/{proxy+}',
          rawPath: '/v1/health',
          rawQueryString: '',
          headers: { host: 'api.example.com' },
          requestContext: {
            domainName: 'api.example.com',
            http: { method: 'GET', path: '/v1/health', sourceIp: '203.0.113.9' },
          },
          isBase64Encoded: false,
        },
        { awsRequestId: 'req-1' },
      );
      expect(out.statusCode).toBe(503);
      expect(JSON.parse(out.body)).toEqual({
        error: { code: 'key_store_unavailable', message: 'key store unavailable', requestId: 'req-1' },
      });
    } finally {
      process.stderr.write = stderr;
      for (const key of Object.keys(process.env)) if (!(key in saved)) delete process.env[key];
      Object.assign(process.env, saved);
    }
    // Importing the 1 MB bundle is slow on a loaded machine.
  }, 120_000);

  it('routes /v1/{proxy+} without a gateway authorizer and /iam/v1/{proxy+} with the IAM authorizer, to the same handler', () => {
    const routes = kms.template.findResources('AWS::ApiGatewayV2::Route');
    const byKey = Object.fromEntries(Object.values(routes).map((r) => [r.Properties.RouteKey, r.Properties]));
    expect(Object.keys(byKey).sort()).toEqual(['ANY /iam/v1/{proxy+}', 'ANY /v1/{proxy+}']);
    expect(byKey['ANY /v1/{proxy+}'].AuthorizationType).toBe('NONE');
    expect(byKey['ANY /iam/v1/{proxy+}'].AuthorizationType).toBe('AWS_IAM');
    expect(byKey['ANY /v1/{proxy+}'].Target).toEqual(byKey['ANY /iam/v1/{proxy+}'].Target);
    kms.template.hasResourceProperties('AWS::ApiGatewayV2::Integration', {
      IntegrationType: 'AWS_PROXY',
      PayloadFormatVersion: '2.0',
    });
  });

  it('throttles the stage and writes JSON access logs to a log group', () => {
    kms.template.hasResourceProperties('AWS::ApiGatewayV2::Stage', {
      StageName: '$default',
      AutoDeploy: true,
      DefaultRouteSettings: { ThrottlingRateLimit: 50, ThrottlingBurstLimit: 100 },
      AccessLogSettings: {
        DestinationArn: { 'Fn::GetAtt': [Match.stringLikeRegexp('^HttpAccessLogs'), 'Arn'] },
        Format: Match.stringLikeRegexp('"requestId":"\\$context.requestId"'),
      },
    });
    const stage = Object.values(kms.template.findResources('AWS::ApiGatewayV2::Stage'))[0]?.Properties;
    const format = JSON.parse(stage.AccessLogSettings.Format);
    expect(format).toMatchObject({ status: '$context.status', iamCaller: '$context.identity.userArn' });
    expect(JSON.stringify(format)).not.toMatch(/querystring|authorization/i);
  });

  it('never lets the API role update or delete audit records, and denies it explicitly', () => {
    const stack = kms.coffer.stack;
    const audit = resolve(stack, stack.tables.audit.tableArn);
    const secrets = resolve(stack, stack.tables.secrets.tableArn);
    const statements = statementsOf(kms, resolve(stack, stack.apiFunction.role.roleName));
    const onAudit = statements.filter((st) => JSON.stringify(st.Resource).includes(JSON.stringify(audit)));
    const allowed = onAudit.filter((st) => st.Effect === 'Allow').flatMap(actionsOf);
    expect(allowed.sort()).toEqual(
      ['dynamodb:ConditionCheckItem', 'dynamodb:GetItem', 'dynamodb:PutItem', 'dynamodb:Query'].sort(),
    );
    const denied = onAudit.filter((st) => st.Effect === 'Deny').flatMap(actionsOf);
    for (const action of ['dynamodb:UpdateItem', 'dynamodb:DeleteItem', 'dynamodb:BatchWriteItem']) {
      expect(denied).toContain(action);
    }
    expect(denied.sort()).toEqual([...AUDIT_TABLE_DENIED].sort());
    // The secrets table gets exactly the actions test/e2e/lambda-api.test.ts checks the code needs.
    const onSecrets = statements.filter(
      (st) => st.Effect === 'Allow' && JSON.stringify(st.Resource) === JSON.stringify(secrets),
    );
    // Plus Scan, for key administration alone (docs/keys.md): re-wrap slices and retire's rescan.
    expect(onSecrets.flatMap(actionsOf).sort()).toEqual([...SECRETS_TABLE_ACTIONS, 'dynamodb:Scan'].sort());
    // No wildcard actions, no Scan of any other table, and the secrets table is the only other table.
    const all = statements.flatMap(actionsOf);
    expect(all.some((a) => a.endsWith('*'))).toBe(false);
    const tables = statements
      .filter((st) => actionsOf(st).some((a) => a.startsWith('dynamodb:')))
      .map((st) => JSON.stringify(st.Resource));
    expect(new Set(tables)).toEqual(new Set([JSON.stringify(audit), JSON.stringify(secrets)]));
  });

  it('re-wraps hourly with a 15-minute limit, and grants branch keys only with their own encryption context', () => {
    const stack = kms.coffer.stack;
    const fn = kms.template.findResources('AWS::Lambda::Function', {
      Properties: Match.objectLike({ Description: Match.stringLikeRegexp('re-wraps data keys') }),
    });
    const props = Object.values(fn)[0]?.Properties;
    expect(props.Timeout).toBe(900);
    expect(props.Environment.Variables.COFFER_REWRAP_EVERY_SECONDS).toBe(String(7 * 86_400));
    for (const role of [stack.apiFunction.role, stack.rewrap.handler.role]) {
      const statements = statementsOf(kms, resolve(stack, role.roleName));
      const branch = statements.find((st) =>
        JSON.stringify(st.Condition ?? {}).includes('kms:EncryptionContext:coffer:purpose'),
      );
      expect(branch?.Condition).toEqual({
        StringEquals: {
          'kms:EncryptionContext:coffer:table': resolve(stack, stack.tables.secrets.tableName),
          'kms:EncryptionContext:coffer:purpose': ['branch-key', 'root-key-test'],
        },
        'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...BRANCH_CONTEXT_KEYS] },
        Null: {
          'kms:EncryptionContext:coffer:table': 'false',
          'kms:EncryptionContext:coffer:purpose': 'false',
          'kms:EncryptionContext:coffer:folder': 'false',
          'kms:EncryptionContext:coffer:branch-version': 'false',
        },
      });
    }
  });

  it('sends a branch-key Decrypt by any principal but the Coffer function roles to the alarm topic', () => {
    const stack = kms.coffer.stack;
    const rules = Object.values(kms.template.findResources('AWS::Events::Rule'))
      .map((r) => r.Properties)
      .filter((p) => /branch key was unwrapped/.test(p.Description ?? ''));
    expect(rules).toHaveLength(1);
    const detail = rules[0].EventPattern.detail;
    expect(detail.eventName).toEqual(['Decrypt', 'ReEncrypt']);
    expect(detail.requestParameters.encryptionContext['coffer:purpose']).toEqual(['branch-key']);
    expect(detail.userIdentity.sessionContext.sessionIssuer.arn).toEqual([
      {
        'anything-but': [
          resolve(stack, stack.apiFunction.role.roleArn),
          resolve(stack, stack.rewrap.handler.role.roleArn),
        ],
      },
    ]);
  });

  it("lets the API use the secrets key only with Coffer's encryption context for its own table", () => {
    const stack = kms.coffer.stack;
    const statements = statementsOf(kms, resolve(stack, stack.apiFunction.role.roleName));
    const dataKeys = statements.find((st) => actionsOf(st).includes('kms:GenerateDataKey'));
    expect(dataKeys?.Resource).toEqual(resolve(stack, stack.keys.secretsKeyArn));
    expect(dataKeys?.Condition).toEqual({
      StringEquals: { 'kms:EncryptionContext:coffer:table': resolve(stack, stack.tables.secrets.tableName) },
      'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...ENCRYPTION_CONTEXT_KEYS] },
      Null: {
        'kms:EncryptionContext:coffer:table': 'false',
        'kms:EncryptionContext:coffer:path': 'false',
        'kms:EncryptionContext:coffer:version': 'false',
      },
    });
    // The keys are exactly those the envelope sends.
    expect(Object.keys(encryptionContextFor({ table: 't', path: 'p', version: 1 })).sort()).toEqual(
      [...ENCRYPTION_CONTEXT_KEYS].sort(),
    );
    const sign = statements.find((st) => actionsOf(st).includes('kms:Sign'));
    expect(sign?.Resource).toEqual(resolve(stack, stack.keys.auditKey.keyArn));
    expect(sign?.Condition).toEqual({
      StringEquals: { 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'DIGEST' },
    });
    // Every KMS permission names one key: none is granted on `*`.
    for (const st of statements.filter((s) => actionsOf(s).some((a) => a.startsWith('kms:')))) {
      expect(st.Resource).not.toBe('*');
    }
  });

  it('keeps the purge and checkpoint roles to their own tables and keys', () => {
    const stack = kms.coffer.stack;
    const purge = statementsOf(kms, resolve(stack, stack.purge.handler.role.roleName));
    expect(purge.flatMap(actionsOf).every((a) => a.startsWith('dynamodb:'))).toBe(true);
    expect(JSON.stringify(purge)).not.toContain(JSON.stringify(resolve(stack, stack.tables.audit.tableArn)));
    const checkpoint = statementsOf(kms, resolve(stack, stack.checkpoint.handler.role.roleName));
    const denied = checkpoint.filter((st) => st.Effect === 'Deny').flatMap(actionsOf);
    expect(denied).toContain('dynamodb:UpdateItem');
    expect(denied).toContain('dynamodb:DeleteItem');
    const metrics = checkpoint.find((st) => actionsOf(st).includes('cloudwatch:PutMetricData'));
    expect(metrics?.Condition).toEqual({ StringEquals: { 'cloudwatch:namespace': 'Coffer/Audit' } });
  });

  it('alarms on denied spikes, audit write and verification failures, key store trouble and KMS key events, to the topic', () => {
    const alarms = Object.values(kms.template.findResources('AWS::CloudWatch::Alarm')).map(
      (a) => a.Properties,
    );
    const metricNames = alarms.map((a) => a.MetricName);
    for (const name of [
      'DeniedRequests',
      'AuditWriteFailures',
      'VerificationProblems',
      'CheckpointsWritten',
      'KeyStoreUnavailable',
      'IntegrityFailures',
      'TriggeredRules',
      '5xx',
    ]) {
      expect(metricNames).toContain(name);
    }
    for (const alarm of alarms) {
      expect(alarm.AlarmActions).toHaveLength(1);
      expect(alarm.AlarmActions[0]).toMatchObject({ Ref: expect.stringMatching(/^AlarmsTopic/) });
    }
    const filters = Object.values(kms.template.findResources('AWS::Logs::MetricFilter')).map(
      (f) => f.Properties,
    );
    expect(filters.map((f) => f.FilterPattern).sort()).toEqual(
      [
        FILTER_PATTERNS.denied,
        FILTER_PATTERNS.auditWriteFailures,
        FILTER_PATTERNS.keyStoreUnavailable,
        FILTER_PATTERNS.integrityFailures,
      ].sort(),
    );
    kms.template.hasResourceProperties('AWS::SNS::Topic', { KmsMasterKeyId: Match.anyValue() });
    // The topic policy replaces SNS's default: alarms and EventBridge are allowed by name.
    kms.template.hasResourceProperties('AWS::SNS::TopicPolicy', {
      PolicyDocument: {
        Statement: Match.arrayWith([
          Match.objectLike({
            Effect: 'Allow',
            Action: 'sns:Publish',
            Principal: { Service: 'cloudwatch.amazonaws.com' },
          }),
          Match.objectLike({
            Effect: 'Allow',
            Action: 'sns:Publish',
            Principal: { Service: 'events.amazonaws.com' },
          }),
        ]),
      },
    });
  });

  it('has an EventBridge rule on CloudTrail KMS events that disable or delete its keys, sent to the alarm topic', () => {
    const stack = kms.coffer.stack;
    kms.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: {
        source: ['aws.kms'],
        'detail-type': ['AWS API Call via CloudTrail'],
        detail: {
          eventSource: ['kms.amazonaws.com'],
          eventName: Match.arrayWith(['DisableKey', 'ScheduleKeyDeletion']),
          resources: {
            ARN: [
              resolve(stack, stack.keys.secretsKeyArn),
              resolve(stack, stack.keys.auditKey.keyArn),
              resolve(stack, stack.keys.fieldHmacKey.keyArn),
            ],
          },
        },
      },
      Targets: [Match.objectLike({ Arn: { Ref: Match.stringLikeRegexp('^AlarmsTopic') } })],
    });
  });

  it('has Logs Insights queries by principal, by path, for denials and gateway refusals, and a dashboard', () => {
    const names = Object.values(kms.template.findResources('AWS::Logs::QueryDefinition')).map(
      (q) => q.Properties.Name,
    );
    expect(names.sort()).toEqual(
      [
        'Coffer/audit/by-path',
        'Coffer/audit/by-principal',
        'Coffer/audit/denials',
        'Coffer/gateway/refused',
      ].sort(),
    );
    kms.template.hasResourceProperties('AWS::Logs::QueryDefinition', {
      Name: 'Coffer/audit/denials',
      QueryString: Match.stringLikeRegexp('decision = "deny"'),
    });
    kms.template.resourceCountIs('AWS::CloudWatch::Dashboard', 1);
  });

  it('schedules the audit checkpoint every 5 minutes (the unsealed tail docs/audit.md states), the purge and the re-wrap hourly and due rotations every 15 minutes', () => {
    const rules = Object.values(kms.template.findResources('AWS::Events::Rule')).map((r) => r.Properties);
    const scheduled = rules.filter((r) => r.ScheduleExpression);
    expect(scheduled.map((r) => r.ScheduleExpression)).toEqual([
      'rate(5 minutes)',
      'rate(1 hour)',
      'rate(15 minutes)',
      'rate(1 hour)',
    ]);
    const stack = kms.coffer.stack;
    const targets = scheduled.map((r) => JSON.stringify(r.Targets[0].Arn));
    expect(targets.sort()).toEqual(
      [
        JSON.stringify(resolve(stack, stack.checkpoint.handler.function.functionArn)),
        JSON.stringify(resolve(stack, stack.purge.handler.function.functionArn)),
        JSON.stringify(resolve(stack, stack.rotation.handler.function.functionArn)),
        JSON.stringify(resolve(stack, stack.rewrap.handler.function.functionArn)),
      ].sort(),
    );
  });

  it('lets the rotation job write secrets and append audit records, never Scan the secrets table', () => {
    const stack = kms.coffer.stack;
    const rotation = statementsOf(kms, resolve(stack, stack.rotation.handler.role.roleName));
    const allowed = rotation.filter((st) => st.Effect === 'Allow').flatMap(actionsOf);
    expect(allowed).toContain('dynamodb:Query');
    expect(allowed).not.toContain('dynamodb:Scan');
    expect(allowed).toContain('kms:GenerateDataKey');
    const alarms = Object.values(kms.template.findResources('AWS::CloudWatch::Alarm')).map(
      (a) => a.Properties,
    );
    const failures = alarms.find((a) =>
      String(a.AlarmDescription ?? '').includes('scheduled rotation failed'),
    );
    expect(failures?.MetricName).toBe('Errors');
  });

  it("names the API function's log group in an output, for coffer audit verify --against-logs", () => {
    const stack = kms.coffer.stack;
    const out = kms.template.findOutputs('ApiLogGroupName').ApiLogGroupName;
    expect(out?.Value).toEqual(resolve(stack, stack.apiFunction.logGroup.logGroupName));
  });

  it('has, by default, no mutual TLS domain, truststore bucket or code signing config', () => {
    kms.template.resourceCountIs('AWS::ApiGatewayV2::Api', 1);
    kms.template.resourceCountIs('AWS::ApiGatewayV2::DomainName', 0);
    kms.template.resourceCountIs('AWS::S3::Bucket', 0);
    kms.template.resourceCountIs('AWS::Lambda::CodeSigningConfig', 0);
    kms.template.resourceCountIs('AWS::Signer::SigningProfile', 0);
    for (const fn of Object.values(kms.template.findResources('AWS::Lambda::Function'))) {
      expect(fn.Properties.CodeSigningConfigArn).toBeUndefined();
      expect(fn.Properties.Environment.Variables.COFFER_MTLS_API_ID).toBeUndefined();
    }
  });

  it('passes cdk-nag AwsSolutionsChecks with no unacknowledged error or warning', () => {
    const report = new AwsSolutionsChecks().validateScope(kms.coffer.app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual(
      [],
    );
  });
});

describe('the cdk-nag acknowledgments', () => {
  /** Every acknowledgment in the app: the construct it sits on, the rule and the reason. */
  function acknowledgments(s: Synth) {
    return s.coffer.app.node.findAll().flatMap((node) =>
      node.node.metadata
        .filter((m) => m.type === 'aws:cdk:acknowledged-rules')
        .flatMap((m) =>
          Object.entries(m.data as Record<string, string>).map(([rule, reason]) => ({
            path: node.node.path,
            node,
            rule,
            reason,
          })),
        ),
    );
  }

  it('sit on the one function, role or provider they are about, never on the app, the stack or a whole construct of several', () => {
    for (const s of [kms, hsm]) {
      const all = acknowledgments(s);
      expect(all.length).toBeGreaterThan(0);
      for (const ack of all) {
        expect(ack.node).not.toBe(s.coffer.app);
        expect(ack.node).not.toBe(s.coffer.stack);
        // A role, a function, a route, or the Provider framework (whose functions CDK makes).
        const kind = ack.node.node.defaultChild
          ? (ack.node.node.defaultChild as { cfnResourceType?: string }).cfnResourceType
          : (ack.node as { cfnResourceType?: string }).cfnResourceType;
        const isProvider = ack.node instanceof Provider;
        expect(
          isProvider ||
            ['AWS::IAM::Role', 'AWS::Lambda::Function', 'AWS::ApiGatewayV2::Route'].includes(kind ?? ''),
          `${ack.rule} on ${ack.path}`,
        ).toBe(true);
        expect(ack.reason.length, `${ack.rule} on ${ack.path}`).toBeGreaterThan(60);
      }
    }
    const l1 = acknowledgments(kms).filter((a) => a.rule.endsWith('AwsSolutions-L1'));
    expect(l1.map((a) => a.path).sort()).toEqual(
      [
        'Coffer/ApiFunction/Function',
        'Coffer/Checkpoint/Handler/Function',
        'Coffer/Purge/Handler/Function',
        'Coffer/Rotation/Handler/Function',
        'Coffer/Rewrap/Handler/Function',
      ].sort(),
    );
  });

  it('when a function is added without the Coffer construct, cdk-nag still reports its runtime', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'coffer-cdk-'));
    dirs.push(outdir);
    // Without CDK's built-in template validation: cdk-nag alone is what must fail the synthesis.
    const coffer = createCofferApp({
      outdir,
      context: { 'aws:cdk:bundling-stacks': [] },
      builtinCloudFormationValidation: false,
    });
    new lambda.Function(coffer.stack, 'Extra', {
      runtime: lambda.Runtime.NODEJS_20_X,
      handler: 'index.handler',
      code: lambda.Code.fromInline('exports.handler = async () => {};'),
    });
    const report = new AwsSolutionsChecks().validateScope(coffer.app);
    const extra = report.violations.filter((v) =>
      v.violatingResources.some((r) => r.constructPath?.startsWith('Coffer/Extra')),
    );
    expect(extra.map((v) => v.ruleName)).toContain('AwsSolutions-L1');
    // And the finding fails synthesis itself (what `npm run synth` and `cdk deploy` run).
    const quiet = [
      vi.spyOn(process.stderr, 'write').mockImplementation(() => true),
      vi.spyOn(console, 'error').mockImplementation(() => {}),
      vi.spyOn(console, 'log').mockImplementation(() => {}),
    ];
    try {
      expect(() => coffer.app.synth()).toThrow(/Validation failed|^ERROR /);
    } finally {
      for (const spy of quiet) spy.mockRestore();
    }
  }, 120_000);
});

describe('the Coffer stack (keyStore=cloudhsm)', () => {
  it('makes the secrets key with the CloudHSM custom resource, retained, with the secret name and never a password', () => {
    hsm.template.hasResource('Custom::CofferCloudHsmKey', {
      DeletionPolicy: 'Retain',
      Properties: Match.objectLike({
        ClusterId: 'cluster-abcdefghijk',
        KmsUserSecretId: 'coffer/kmsuser',
        CustomKeyStoreName: 'coffer-Coffer',
        KeyAlias: 'alias/coffer/Coffer/secrets',
        TrustAnchorCertificate: Match.stringLikeRegexp('-----BEGIN CERTIFICATE-----'),
      }),
    });
    const props = Object.values(hsm.template.findResources('Custom::CofferCloudHsmKey'))[0]?.Properties;
    expect(Object.keys(props).some((k) => /password/i.test(k))).toBe(false);
    // No standard secrets key; the audit key is still a standard ECC key.
    expect(
      Object.keys(
        hsm.template.findResources('AWS::KMS::Key', {
          Properties: Match.objectLike({ Description: Match.stringLikeRegexp('wraps the data keys') }),
        }),
      ),
    ).toHaveLength(0);
    hsm.template.hasResourceProperties('AWS::KMS::Key', {
      KeySpec: 'ECC_NIST_P256',
      KeyUsage: 'SIGN_VERIFY',
    });
  });

  it("pins the API to the custom resource key and scopes its grant to Coffer's encryption context", () => {
    const stack = hsm.coffer.stack;
    const keyArn = { 'Fn::GetAtt': [Match.stringLikeRegexp('^KeysCloudHsm'), 'KeyArn'] };
    hsm.template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('Coffer API'),
      Environment: {
        Variables: Match.objectLike({ COFFER_SECRETS_KEY_ARN: keyArn, COFFER_KEY_STORE: 'cloudhsm' }),
      },
    });
    const statements = statementsOf(hsm, resolve(stack, stack.apiFunction.role.roleName));
    const dataKeys = statements.find((st) => actionsOf(st).includes('kms:GenerateDataKey'));
    expect(dataKeys?.Resource).toEqual(resolve(stack, stack.keys.secretsKeyArn));
    expect(JSON.stringify(dataKeys?.Condition)).toContain('kms:EncryptionContext:coffer:table');
  });

  it('may still unwrap (never wrap) under the previous key, with the same encryption context conditions', () => {
    const stack = hsm.coffer.stack;
    hsm.template.hasResourceProperties('AWS::Lambda::Function', {
      Description: Match.stringLikeRegexp('Coffer API'),
      Environment: { Variables: Match.objectLike({ COFFER_PREVIOUS_SECRETS_KEY_ARNS: PREVIOUS_KEY }) },
    });
    const statements = statementsOf(hsm, resolve(stack, stack.apiFunction.role.roleName));
    const previous = statements.filter((st) => JSON.stringify(st.Resource).includes(PREVIOUS_KEY));
    expect(previous.flatMap(actionsOf).sort()).toEqual(['kms:Decrypt', 'kms:ReEncryptFrom']);
    expect(JSON.stringify(previous[0]?.Condition)).toContain('kms:EncryptionContext:coffer:table');
  });

  it('waits with an isComplete handler and a total timeout, on Node.js 22 / arm64 handlers', () => {
    const handlers = Object.values(hsm.template.findResources('AWS::Lambda::Function'))
      .map((f) => f.Properties)
      .filter((p) => /CloudHSM key store/.test(p.Description ?? ''));
    expect(handlers.map((p) => p.Handler).sort()).toEqual(['index.isComplete', 'index.onEvent']);
    for (const p of handlers) {
      expect(p.Runtime).toBe('nodejs22.x');
      expect(p.Architectures).toEqual(['arm64']);
    }
    // The provider's waiter: 30 s polls for 50 minutes (100 attempts), which ends (and reports
    // why) inside CloudFormation's own one-hour limit for the custom resource.
    const machine = Object.values(hsm.template.findResources('AWS::StepFunctions::StateMachine'))[0]
      ?.Properties;
    expect(JSON.stringify(machine.DefinitionString)).toMatch(/\\"IntervalSeconds\\":30/);
    expect(JSON.stringify(machine.DefinitionString)).toMatch(/\\"MaxAttempts\\":100/);
    hsm.template.hasResourceProperties('Custom::CofferCloudHsmKey', { ServiceTimeout: '3600' });
    const stack = new Stack();
    expect(
      () =>
        new CloudHsmKeyStore(stack, 'TooLong', {
          clusterId: 'cluster-abcdefghijk',
          kmsUserSecretName: 'coffer/kmsuser',
          trustAnchorPem: '-----BEGIN CERTIFICATE-----',
          keyStoreName: 'coffer-x',
          keyAlias: 'alias/coffer/x/secrets',
          logRetention: RetentionDays.ONE_DAY,
          totalTimeout: Duration.hours(2),
        }),
    ).toThrow(/at most 55 minutes/);
  });

  it('bundles the custom resource (with the pinned CloudHSM client) so that it loads and retains on Delete', async () => {
    const fn = Object.values(hsm.template.findResources('AWS::Lambda::Function'))
      .map((f) => f.Properties)
      .find((p) => p.Handler === 'index.onEvent');
    const asset = join(hsm.outdir, `asset.${String(fn.Code.S3Key).replace(/\.zip$/, '')}`);
    const code = readFileSync(join(asset, 'index.mjs'), 'utf8');
    expect(code).toContain('"3.332.0"');
    const stdout = process.stdout.write;
    process.stdout.write = (() => true) as typeof process.stdout.write;
    try {
      const bundle = (await import(join(asset, 'index.mjs'))) as {
        onEvent: (e: unknown) => Promise<unknown>;
        isComplete: (e: unknown) => Promise<unknown>;
      };
      const del = { RequestType: 'Delete', PhysicalResourceId: 'cks-1234567890', ResourceProperties: {} };
      expect(await bundle.onEvent(del)).toEqual({ PhysicalResourceId: 'cks-1234567890' });
      expect(await bundle.isComplete(del)).toEqual({ IsComplete: true });
    } finally {
      process.stdout.write = stdout;
    }
  });

  it('lets only the key store handlers read the kmsuser secret, and set it on the store', () => {
    const stack = hsm.coffer.stack;
    const store = stack.keys.cloudHsmKeyStore as CloudHsmKeyStore;
    const handlerRoles = ['OnEvent', 'IsComplete'].map((id) =>
      JSON.stringify(resolve(stack, (store.node.findChild(id) as CofferFunction).role.roleName)),
    );
    const readers = Object.values(hsm.template.findResources('AWS::IAM::Policy')).filter((p) =>
      JSON.stringify(p.Properties.PolicyDocument).includes('secretsmanager:GetSecretValue'),
    );
    expect(readers.map((p) => JSON.stringify(p.Properties.Roles[0])).sort()).toEqual(handlerRoles.sort());
    for (const reader of readers) {
      expect(JSON.stringify(reader.Properties.PolicyDocument)).toContain('secret:coffer/kmsuser-??????');
      expect(JSON.stringify(reader.Properties.PolicyDocument)).toContain('kms:UpdateCustomKeyStore');
    }
    expect(JSON.stringify(statementsOf(hsm, resolve(stack, stack.apiFunction.role.roleName)))).not.toContain(
      'secretsmanager',
    );
  });

  it('watches its custom key store for disconnection in the KMS event rule', () => {
    hsm.template.hasResourceProperties('AWS::Events::Rule', {
      EventPattern: Match.objectLike({
        detail: {
          $or: [
            Match.objectLike({ eventName: Match.arrayWith(['DisableKey']) }),
            Match.objectLike({
              eventName: Match.arrayWith(['DisconnectCustomKeyStore', 'DeleteCustomKeyStore']),
              requestParameters: { customKeyStoreId: [Match.anyValue()] },
            }),
          ],
        },
      }),
    });
  });

  it('passes cdk-nag AwsSolutionsChecks with no unacknowledged error or warning', () => {
    const report = new AwsSolutionsChecks().validateScope(hsm.coffer.app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual(
      [],
    );
  });
});
