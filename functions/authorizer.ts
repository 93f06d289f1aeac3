import type { Authorizer, Decision } from '../lib/authz/authorizer.js';

/**
 * Refuses everything. For functions that serve no request (the purge), which the secret service
 * still needs an authorizer for: nothing is ever allowed by accident.
 */
export class DenyAllAuthorizer implements Authorizer {
  readonly policySetHash = 'deny-all';
  authorize(): Decision {
    return { allowed: false, policyIds: [], errors: [] };
  }
}
