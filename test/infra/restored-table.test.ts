import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CofferApp, createCofferApp } from '../../infra/coffer-app.js';
import { SECRETS_TABLE_ACTIONS } from '../../infra/coffer-stack.js';
import { readSettings } from '../../infra/settings.js';

/*
 * `-c secretsTableName=<restored table> -c installationId=<original id>`: the restore runbook's
 * step that points the stack at the table a point-in-time restore made (docs/operations.md).
 */

const RESTORED = 'Coffer-TablesSecrets-restored';
const ORIGINAL = 'Coffer-TablesSecretsA1B2C3D4-XYZ';
const ctx = (values: Record<string, unknown>) => (key: string) => values[key];

describe('context secretsTableName', () => {
  it('needs installationId beside it, and a table name', () => {
    expect(() => readSettings(ctx({ secretsTableName: RESTORED }))).toThrow(
      "context secretsTableName needs installationId: the original installation's id (its first secrets table's name)",
    );
    expect(() => readSettings(ctx({ secretsTableName: 'no/slashes', installationId: ORIGINAL }))).toThrow(
      'context secretsTableName must be a DynamoDB table name',
    );
    expect(readSettings(ctx({ secretsTableName: RESTORED, installationId: ORIGINAL }))).toMatchObject({
      secretsTableName: RESTORED,
      installationId: ORIGINAL,
    });
  });

  describe('the synthesized stack', () => {
    let coffer: CofferApp;
    let template: Template;
    const dirs: string[] = [];
    beforeAll(() => {
      const outdir = mkdtempSync(join(tmpdir(), 'coffer-cdk-restored-'));
      dirs.push(outdir);
      // Without bundling: these tests read the template only, and stack.test.ts checks the bundles.
      coffer = createCofferApp({
        outdir,
        context: { secretsTableName: RESTORED, installationId: ORIGINAL, 'aws:cdk:bundling-stacks': [] },
      });
      coffer.app.synth();
      template = Template.fromStack(coffer.stack);
    }, 300_000);
    afterAll(() => {
      for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
    });

    it('imports the restored table instead of creating one: only the audit table is a resource', () => {
      const tables = Object.keys(template.findResources('AWS::DynamoDB::Table'));
      expect(tables).toHaveLength(1);
      expect(tables[0]).toMatch(/^TablesAudit/);
      expect(template.findOutputs('SecretsTableName').SecretsTableName?.Value).toBe(RESTORED);
    });

    it('gives every function the restored table and the original installation id', () => {
      const functions = Object.values(template.findResources('AWS::Lambda::Function'))
        .map((f) => f.Properties?.Environment?.Variables)
        .filter((v) => v?.COFFER_SECRETS_TABLE !== undefined);
      expect(functions.length).toBeGreaterThanOrEqual(3); // API, checkpoint, purge
      for (const env of functions) {
        expect(env.COFFER_SECRETS_TABLE).toBe(RESTORED);
        expect(env.COFFER_INSTALLATION_ID).toBe(ORIGINAL);
      }
    });

    it('grants the API role its table actions on the restored table, and data keys bound to the original id', () => {
      const stack = coffer.stack;
      const role = JSON.stringify(Stack.of(stack).resolve(stack.apiFunction.role.roleName));
      const statements = Object.values(template.findResources('AWS::IAM::Policy'))
        .filter((p) => (p.Properties?.Roles ?? []).some((r: unknown) => JSON.stringify(r) === role))
        .flatMap(
          (p) =>
            p.Properties.PolicyDocument.Statement as {
              Action: unknown;
              Resource: unknown;
              Condition?: unknown;
            }[],
        );
      const onSecrets = statements.find(
        (st) =>
          Array.isArray(st.Action) && SECRETS_TABLE_ACTIONS.every((a) => (st.Action as string[]).includes(a)),
      );
      expect(JSON.stringify(onSecrets?.Resource)).toContain(`:table/${RESTORED}`);
      const dataKeys = statements.filter((st) => JSON.stringify(st.Condition ?? {}).includes('coffer:table'));
      expect(dataKeys.length).toBeGreaterThan(0);
      for (const st of dataKeys) expect(JSON.stringify(st.Condition)).toContain(ORIGINAL);
    });
  });
});
