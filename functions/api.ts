import { fileURLToPath } from 'node:url';
import { jsonLogger } from '../lib/log.js';
import { createApiApp, lambdaHandler } from './api-app.js';
import { lambdaSettings } from './env.js';

/**
 * The API function: `hono/aws-lambda` around the Coffer app. Settings are read from the
 * environment once, at cold start (a missing variable fails the start loudly); the app itself is
 * built on the first request. The Cedar policies and the engine's wasm are shipped beside the
 * bundle (infra/constructs/coffer-function.ts).
 */
const settings = lambdaSettings(process.env);
const policyDir = fileURLToPath(new URL('./policies/', import.meta.url));
const logger = jsonLogger();

export const handler = lambdaHandler(() => createApiApp({ settings, policyDir, logger }), logger);
