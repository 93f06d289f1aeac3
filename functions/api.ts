import { fileURLToPath } from 'node:url';
import { jsonLogger } from '../lib/log.js';
import { type CofferApp, createApiApp, lambdaHandler } from './api-app.js';
import { lambdaSettings } from './env.js';

/**
 * The API function: `hono/aws-lambda` around the Coffer app. The Cedar policies and the engine's
 * wasm are shipped beside the bundle (infra/constructs/coffer-function.ts).
 *
 * The app is built during the execution environment's init (top-level await): the settings, the
 * KMS key derivations, the policy set (sealed: validated by the first start of this set and
 * checked by its MAC at every later one, lib/control/policy-seal.ts) and the audit chain's
 * certificate, so that the first request finds them done. A failed build never fails the init: it
 * is kept for the first request to report (a missing or invalid variable answers with a bare 500
 * in Coffer's error shape and logs one line naming it; KMS or storage down answers 503), and that
 * request builds again.
 */
const policyDir = fileURLToPath(new URL('./policies/', import.meta.url));
const logger = jsonLogger();

/** Async, so that an invalid setting rejects (for the first request to report) instead of throwing at import. */
const build = async (): Promise<CofferApp> =>
  createApiApp({
    settings: lambdaSettings(process.env),
    policyDir,
    sealedPolicies: true,
    warm: true,
    logger,
  });

let started: Promise<CofferApp> | undefined = build();
started.catch(() => {});
/**
 * Init waits for the build, but not past INIT_WAIT_MS: a KMS call that hangs must not use up the
 * init phase (10 s); the first request then awaits the same build.
 */
const INIT_WAIT_MS = 5_000;
await Promise.race([
  started.then(
    () => {},
    () => {},
  ),
  new Promise<void>((resolve) => setTimeout(resolve, INIT_WAIT_MS).unref()),
]);

export const handler = lambdaHandler(() => {
  const ready = started ?? build();
  started = undefined;
  return ready;
}, logger);
