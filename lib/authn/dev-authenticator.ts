import type { KeyObject } from 'node:crypto';
import { jwtVerify } from 'jose';
import { UnauthenticatedError } from '../errors.js';
import { bearerToken } from './bearer.js';
import { DEV_AUDIENCE, DEV_ISSUER, DEV_ISSUER_ALIAS } from './dev-issuer.js';
import type { Authenticator, AuthRequest, Principal } from './principal.js';

/**
 * Verifies tokens of the local dev issuer: EdDSA only, exact issuer and audience, 60 s skew.
 * Groups map one to one (it is the operator's own issuer).
 */
export class DevAuthenticator implements Authenticator {
  constructor(private readonly publicKey: KeyObject) {}

  async authenticate(request: AuthRequest): Promise<Principal> {
    const token = bearerToken(request.authorization);
    try {
      const { payload } = await jwtVerify(token, this.publicKey, {
        algorithms: ['EdDSA'],
        issuer: DEV_ISSUER,
        audience: DEV_AUDIENCE,
        clockTolerance: 60,
        requiredClaims: ['sub', 'exp', 'iat'],
      });
      const sub = payload.sub as string;
      const groups = Array.isArray(payload.groups) ? payload.groups.filter((g) => typeof g === 'string') : [];
      return {
        type: 'User',
        id: `${DEV_ISSUER_ALIAS}:${sub}`,
        groups,
        attributes: {},
        authMethod: 'dev',
        issuer: DEV_ISSUER_ALIAS,
      };
    } catch {
      throw new UnauthenticatedError();
    }
  }
}
