import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Match, Template } from 'aws-cdk-lib/assertions';
import { AwsSolutionsChecks } from 'cdk-nag';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CofferApp, createCofferApp } from '../../infra/coffer-app.js';
import { readSettings, SettingsError } from '../../infra/settings.js';

/*
 * The lifecycle metrics' alarms and the rotation job's right to publish them, synthesized with a
 * non-default warning window (the real app with cdk-nag as a validation plugin). Without bundling:
 * these tests read the template only, and the window changes no bundle (stack.test.ts checks them).
 */

let outdir: string;
let coffer: CofferApp;
let template: Template;

beforeAll(() => {
  outdir = mkdtempSync(join(tmpdir(), 'coffer-cdk-lifecycle-'));
  coffer = createCofferApp({ outdir, context: { expiryWarningDays: '14', 'aws:cdk:bundling-stacks': [] } });
  coffer.app.synth();
  template = Template.fromStack(coffer.stack);
}, 300_000);
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

describe('lifecycle alarms', () => {
  it('when expiryWarningDays is given, the rotation function counts expiring certificates over that window', () => {
    const rotation = coffer.stack.rotation.handler.function;
    const logicalId = Stack.of(coffer.stack).getLogicalId(rotation.node.defaultChild as never);
    const fn = template.toJSON().Resources[logicalId];
    expect(fn.Properties.Environment.Variables.COFFER_EXPIRY_WARNING_SECONDS).toBe(String(14 * 86_400));
  });

  it('alarms on CertificatesExpiring and RotationsOverdue, hourly, missing data breaching, to the alarm topic', () => {
    for (const name of ['CertificatesExpiring', 'RotationsOverdue']) {
      template.hasResourceProperties('AWS::CloudWatch::Alarm', {
        Namespace: 'Coffer/Lifecycle',
        MetricName: name,
        Statistic: 'Maximum',
        Period: 3600,
        Threshold: 1,
        EvaluationPeriods: 1,
        ComparisonOperator: 'GreaterThanOrEqualToThreshold',
        TreatMissingData: 'breaching',
        AlarmActions: [{ Ref: Match.stringLikeRegexp('^AlarmsTopic') }],
      });
    }
    const expiring = Object.values(template.findResources('AWS::CloudWatch::Alarm')).find(
      (a) => a.Properties.MetricName === 'CertificatesExpiring',
    );
    expect(expiring?.Properties.AlarmDescription).toContain('within 14 days');
  });

  it('lets only the rotation role publish, and only to the Coffer/Lifecycle namespace', () => {
    const policies = Object.values(template.findResources('AWS::IAM::Policy'));
    const publishing = policies.filter((p) =>
      JSON.stringify(p.Properties.PolicyDocument).includes('Coffer/Lifecycle'),
    );
    expect(publishing).toHaveLength(1);
    const role = Stack.of(coffer.stack).resolve(coffer.stack.rotation.handler.role.roleName);
    expect(publishing[0]?.Properties.Roles).toEqual([role]);
    const statements = (publishing[0]?.Properties.PolicyDocument.Statement ?? []) as {
      Action: unknown;
      Condition?: unknown;
    }[];
    const statement = statements.find((s) => s.Action === 'cloudwatch:PutMetricData');
    expect(statement?.Condition).toEqual({ StringEquals: { 'cloudwatch:namespace': 'Coffer/Lifecycle' } });
  });

  it('passes cdk-nag AwsSolutionsChecks with no unacknowledged finding', () => {
    const report = new AwsSolutionsChecks().validateScope(coffer.app);
    expect(report.violations.map((v) => `${v.ruleName} ${v.violatingResources[0]?.constructPath}`)).toEqual(
      [],
    );
  });
});

describe('the expiryWarningDays setting', () => {
  const ctx = (values: Record<string, unknown>) => (key: string) => values[key];
  it('when it is left out it is 30 days; outside 1 to 365 it is refused', () => {
    expect(readSettings(ctx({})).expiryWarningDays).toBe(30);
    expect(readSettings(ctx({ expiryWarningDays: '7' })).expiryWarningDays).toBe(7);
    expect(() => readSettings(ctx({ expiryWarningDays: '0' }))).toThrow(SettingsError);
    expect(() => readSettings(ctx({ expiryWarningDays: '400' }))).toThrow(
      'context expiryWarningDays must be a whole number from 1 to 365, got "400"',
    );
  });
});
