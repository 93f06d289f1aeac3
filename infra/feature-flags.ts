import { readFileSync } from 'node:fs';
import { SETTING_KEYS } from './settings.js';

/**
 * The CDK feature flags pinned under `context` in cdk.json: every flag the installed aws-cdk-lib
 * knows, each with an explicit value. The stack holds retained keys and tables, so a flag whose
 * default an aws-cdk-lib upgrade would bring in must never change it unnoticed; a new flag stays
 * unset (its old behaviour) until someone pins it, and test/infra/feature-flags.test.ts fails
 * until they do.
 *
 * `cdk synth` gets these from cdk.json itself; the app reads them too so that the tests, which
 * build the app without the CDK CLI, synthesize the very same template.
 */
export const CDK_JSON = new URL('../cdk.json', import.meta.url);

export function pinnedFeatureFlags(): Record<string, unknown> {
  const json = JSON.parse(readFileSync(CDK_JSON, 'utf8')) as { context?: Record<string, unknown> };
  const settings = new Set<string>(SETTING_KEYS);
  return Object.fromEntries(Object.entries(json.context ?? {}).filter(([key]) => !settings.has(key)));
}
