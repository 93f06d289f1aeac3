import { ConfigError } from '../errors.js';
import { DEFAULT_KEY_CACHE, type KeyCacheSettings } from './key-cache.js';
import { DEFAULT_REWRAP_EVERY_SECONDS } from './rewrap-schedule.js';

/** A whole number from an environment variable, or the default when it is unset. */
function envInteger(env: NodeJS.ProcessEnv, name: string, fallback: number, max: number): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d{1,10}$/.test(raw) || Number(raw) > max) {
    throw new ConfigError(`${name} must be a whole number from 0 to ${max}, got "${raw.slice(0, 20)}"`);
  }
  return Number(raw);
}

/**
 * The branch key cache and re-wrap period from the environment (the local server and the Lambda
 * functions alike): COFFER_KEY_CACHE_SECONDS, COFFER_KEY_CACHE_USES, COFFER_REWRAP_EVERY_SECONDS.
 */
export function keySettings(env: NodeJS.ProcessEnv): {
  keyCache: KeyCacheSettings;
  rewrapEverySeconds: number;
} {
  return {
    keyCache: {
      maxAgeSeconds: envInteger(env, 'COFFER_KEY_CACHE_SECONDS', DEFAULT_KEY_CACHE.maxAgeSeconds, 86_400),
      maxUses: envInteger(env, 'COFFER_KEY_CACHE_USES', DEFAULT_KEY_CACHE.maxUses, 1_000_000_000),
    },
    rewrapEverySeconds: envInteger(
      env,
      'COFFER_REWRAP_EVERY_SECONDS',
      DEFAULT_REWRAP_EVERY_SECONDS,
      366 * 86_400,
    ),
  };
}
