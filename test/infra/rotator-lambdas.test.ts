import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Stack } from 'aws-cdk-lib';
import { Template } from 'aws-cdk-lib/assertions';
import { afterAll, describe, expect, it } from 'vitest';
import { ENV } from '../../functions/env.js';
import { createCofferApp } from '../../infra/coffer-app.js';
import { readSettings, SettingsError } from '../../infra/settings.js';

/* The allow-list of Lambda rotators (CDK context `rotatorLambdaArns`, docs/rotation.md). */

const ROTATOR = 'arn:aws:lambda:eu-west-1:111122223333:function:rotate-db';
const ROTATOR_ALIAS = 'arn:aws:lambda:eu-west-1:111122223333:function:rotate-api:live';
const outdir = mkdtempSync(join(tmpdir(), 'coffer-cdk-rotators-'));
afterAll(() => rmSync(outdir, { recursive: true, force: true }));

type Statement = { Action: string | string[]; Resource: unknown };

describe('rotatorLambdaArns', () => {
  const ctx = (values: Record<string, unknown>) => (key: string) => values[key];

  it('when the context lists something that is not a Lambda function ARN, synthesis stops naming it', () => {
    expect(readSettings(ctx({})).rotatorLambdaArns).toEqual([]);
    expect(
      readSettings(ctx({ rotatorLambdaArns: `${ROTATOR}, ${ROTATOR_ALIAS}` })).rotatorLambdaArns,
    ).toEqual([ROTATOR, ROTATOR_ALIAS]);
    for (const bad of ['arn:aws:iam::111122223333:role/x', 'rotate-db', `${ROTATOR}*`]) {
      expect(() => readSettings(ctx({ rotatorLambdaArns: bad })), bad).toThrow(SettingsError);
    }
  });

  it('when ARNs are listed, the API and rotation functions may invoke exactly those, and no other function any', () => {
    // Without bundling: this reads the template only; stack.test.ts checks the bundles.
    const coffer = createCofferApp({
      outdir,
      context: { rotatorLambdaArns: `${ROTATOR},${ROTATOR_ALIAS}`, 'aws:cdk:bundling-stacks': [] },
    });
    coffer.app.synth();
    const stack = coffer.stack;
    const template = Template.fromStack(stack);
    const json = template.toJSON() as {
      Resources: Record<string, { Type: string; Properties?: Record<string, unknown> }>;
    };
    const roleOf = (fn: { role: unknown }) =>
      Stack.of(stack).resolve((fn.role as { roleName: string }).roleName);
    const invokers: unknown[] = [];
    for (const r of Object.values(json.Resources)) {
      if (r.Type !== 'AWS::IAM::Policy') continue;
      const statements = (
        (r.Properties?.PolicyDocument as { Statement?: Statement[] } | undefined)?.Statement ?? []
      ).filter((st) =>
        (Array.isArray(st.Action) ? st.Action : [st.Action]).some((a) => a.startsWith('lambda:Invoke')),
      );
      for (const st of statements) {
        expect(st.Action).toBe('lambda:InvokeFunction');
        expect([...(st.Resource as string[])].sort()).toEqual([ROTATOR, ROTATOR_ALIAS].sort());
        invokers.push(...((r.Properties?.Roles ?? []) as unknown[]));
      }
    }
    expect(invokers.map((x) => JSON.stringify(x)).sort()).toEqual(
      [roleOf(stack.apiFunction), roleOf(stack.rotation.handler)].map((x) => JSON.stringify(x)).sort(),
    );
    for (const fn of [stack.apiFunction.function, stack.rotation.handler.function]) {
      const env = Stack.of(stack).resolve(
        (fn.node.defaultChild as { environment?: { variables?: Record<string, unknown> } }).environment,
      ) as { variables: Record<string, unknown> };
      expect(env.variables[ENV.rotatorLambdaArns]).toBe(`${ROTATOR},${ROTATOR_ALIAS}`);
    }
  }, 300_000);
});
