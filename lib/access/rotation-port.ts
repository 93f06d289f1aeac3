import type { Caller, SecretService } from '../secrets/service.js';
import type { RotationScheduler } from './offboard.js';

/**
 * Offboarding's rotation port over the secret service (docs/rotation.md). Each change is made as
 * the offboarding admin with a scratch audit context, so that it writes its own audited record
 * (same request id) and leaves the offboarding request's own record as it was.
 *
 * @example const rotation = rotationScheduler(() => coffer.service);
 */
export function rotationScheduler(service: () => SecretService): RotationScheduler {
  const scratch = (caller: Caller): Caller => ({ ...caller, audit: { ...caller.audit, written: false } });
  return {
    isConfigured: (path) => service().hasRotationPolicy(path),
    markDue: async (caller, path, reason) => {
      await service().markRotationDue(scratch(caller), path, reason);
    },
    rotateNow: async (caller, path) => {
      await service().rotate(scratch(caller), path);
    },
  };
}
