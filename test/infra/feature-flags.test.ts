import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CURRENT_VERSION_EXPIRED_FLAGS, FLAGS } from 'aws-cdk-lib/cx-api';
import { afterAll, describe, expect, it } from 'vitest';
import { createCofferApp } from '../../infra/coffer-app.js';
import { CDK_JSON, pinnedFeatureFlags } from '../../infra/feature-flags.js';
import { SETTING_KEYS } from '../../infra/settings.js';

/*
 * The stack holds retained tables and keys. A feature flag left unset takes whatever value the
 * installed aws-cdk-lib gives it, so an upgrade that brings a flag must fail here until someone
 * reads what it does and pins it in cdk.json (docs/deploy.md, "CDK feature flags").
 */

// Flags that existed in CDK v1 only: v2 always behaves as if they were on, and refuses them set.
const expired = new Set(CURRENT_VERSION_EXPIRED_FLAGS);
const known = Object.keys(FLAGS).filter((flag) => !expired.has(flag));
const context = (JSON.parse(readFileSync(CDK_JSON, 'utf8')) as { context: Record<string, unknown> }).context;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

describe('the CDK feature flags in cdk.json', () => {
  it('pin every flag the installed aws-cdk-lib knows', () => {
    const unpinned = known.filter((flag) => !(flag in context));
    expect(
      unpinned,
      'aws-cdk-lib knows feature flags that cdk.json does not pin: read what each one changes in ' +
        'node_modules/aws-cdk-lib/cx-api/FEATURE_FLAGS.md, diff `npx cdk synth` with it on and off, ' +
        'and pin the value you chose under "context" in cdk.json',
    ).toEqual([]);
  });

  it('pin nothing else: no unknown or expired flag beside the Coffer settings', () => {
    const settings = new Set<string>(SETTING_KEYS);
    const knownSet = new Set(known);
    const stray = Object.keys(context).filter((key) => !settings.has(key) && !knownSet.has(key));
    expect(stray).toEqual([]);
  });

  it('pin a value of the flag type (a boolean, or what the flag documents)', () => {
    for (const flag of known) {
      const recommended: unknown = (FLAGS as Record<string, { recommendedValue: unknown }>)[flag]
        ?.recommendedValue;
      expect(typeof context[flag], flag).toBe(typeof recommended);
    }
  });

  it('are the context the app synthesizes with, also when built without the CDK CLI (as in tests)', () => {
    const outdir = mkdtempSync(join(tmpdir(), 'coffer-flags-'));
    dirs.push(outdir);
    // No bundling: only the context matters here.
    const { app } = createCofferApp({ outdir, context: { 'aws:cdk:bundling-stacks': [] } });
    const pinned = pinnedFeatureFlags();
    expect(Object.keys(pinned).sort()).toEqual([...known].sort());
    for (const [flag, value] of Object.entries(pinned)) {
      expect(app.node.tryGetContext(flag), flag).toEqual(value);
    }
  });
});
