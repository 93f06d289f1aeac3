import { fileURLToPath } from 'node:url';
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

export const handler = lambdaHandler(
  async () => createApiApp({ settings: lambdaSettings(process.env), policyDir, logger }),
  logger,
);
