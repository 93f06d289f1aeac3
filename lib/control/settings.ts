import type { ControlSettings } from '../compose.js';
import { ConfigError } from '../errors.js';

/** The environment variables of the control settings (local server and Lambda alike). */
export const CONTROL_ENV = {
  policyFreshness: 'COFFER_POLICY_FRESHNESS_SECONDS',
  revocationFreshness: 'COFFER_REVOCATION_FRESHNESS_SECONDS',
  approval: 'COFFER_POLICY_APPROVAL',
} as const;

function seconds(env: NodeJS.ProcessEnv, name: string, max: number): number | undefined {
  const raw = env[name];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d{1,6}(\.\d{1,3})?$/.test(raw) || Number(raw) <= 0 || Number(raw) > max) {
    throw new ConfigError(`${name} must be a number of seconds from 0.001 to ${max}`);
  }
  return Math.round(Number(raw) * 1000);
}

/**
 * Freshness bounds and approvals from the environment, validated once at start. The bounds can
 * only be made shorter than the defaults (30 s policies, 10 s revocations): a longer one would
 * break the promise that a revocation applies everywhere within 10 s.
 */
export function controlSettings(env: NodeJS.ProcessEnv): ControlSettings {
  const policy = seconds(env, CONTROL_ENV.policyFreshness, 30);
  const revocation = seconds(env, CONTROL_ENV.revocationFreshness, 10);
  const approval = env[CONTROL_ENV.approval];
  if (approval !== undefined && approval !== '' && approval !== 'required' && approval !== 'none') {
    throw new ConfigError(`${CONTROL_ENV.approval} must be "required" or "none"`);
  }
  return {
    ...(policy !== undefined ? { policyFreshnessMs: policy } : {}),
    ...(revocation !== undefined ? { revocationFreshnessMs: revocation } : {}),
    ...(approval === 'required' ? { requireApproval: true } : {}),
  };
}
