import { fileURLToPath } from 'node:url';
import type { Authorizer } from '../lib/authz/authorizer.js';
import { loadAuthorizer } from '../lib/compose.js';
import { jsonLogger } from '../lib/log.js';
import { createApiApp, lambdaHandler } from './api-app.js';
import { lambdaSettings } from './env.js';

/**
 * The API function: `hono/aws-lambda` around the Coffer app. The settings are read from the
 * environment and the app is built on the first request (and again after a failed start), so that
 * a missing or invalid variable answers every request with a bare 500 in Coffer's error shape and
 * logs one line naming the variable, instead of an init crash. The Cedar policies and the engine's
 * wasm are shipped beside the bundle (infra/constructs/coffer-function.ts).
 */
const policyDir = fileURLToPath(new URL('./policies/', import.meta.url));
const logger = jsonLogger();

/**
 * Loading and validating the policies is most of a cold start's work, and it needs no setting:
 * it starts here, during the execution environment's init, and the first request awaits it. A
 * failure is kept for that request to report (marked handled, so it cannot crash the init), and
 * the next build loads again.
 */
function loadPolicies(): Promise<Authorizer> {
  const loading = loadAuthorizer({ dir: policyDir }, logger);
  loading.catch(() => {});
  return loading;
}
let policies: Promise<Authorizer> | undefined = loadPolicies();

export const handler = lambdaHandler(async () => {
  const settings = lambdaSettings(process.env);
  const loading = policies ?? loadPolicies();
  policies = loading;
  let authorizer: Authorizer;
  try {
    authorizer = await loading;
  } catch (err) {
    policies = undefined;
    throw err;
  }
  return createApiApp({ settings, authorizer, logger });
}, logger);
