/**
 * The CDK entry (`cdk.json`: `npx tsx infra/app.ts`). Choices come from context: see
 * infra/settings.ts and docs/deploy.md.
 */

import { createCofferApp } from './coffer-app.js';
import { SettingsError } from './settings.js';

try {
  createCofferApp();
} catch (err) {
  if (err instanceof SettingsError) {
    process.stderr.write(`coffer: ${err.message}\n`);
    process.exit(1);
  }
  throw err;
}
