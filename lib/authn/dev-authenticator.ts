import type { KeyObject } from 'node:crypto';
import { jwtVerify } from 'jose';
import type { Logger } from '../log.js';
import { CofferAuthenticator } from './authenticator.js';
import { AuthRefusal } from './bearer.js';
import { isUsableClaimString } from './claims.js';
import { DEV_AUDIENCE, DEV_ISSUER, DEV_ISSUER_ALIAS } from './dev-issuer.js';
import { checkProtectedHeader } from './oidc.js';
import type { Principal } from './principal.js';
import type { TokenVerifier } from './verifier.js';

const GROUP = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Verifies tokens of the local dev issuer: EdDSA only, exact issuer and audience, 60 s skew.
 * Groups map one to one (it is the operator's own issuer); its `iss`, `urn:coffer:dev`, does not
 * depend on the port.
 */
export class DevTokenVerifier implements TokenVerifier {
  readonly issuer = DEV_ISSUER;
  readonly alias = DEV_ISSUER_ALIAS;

  constructor(private readonly publicKey: KeyObject) {}

  async verify(token: string): Promise<Principal> {
    checkProtectedHeader(token, ['EdDSA']);
    const { payload } = await jwtVerify(token, this.publicKey, {
      algorithms: ['EdDSA'],
      issuer: DEV_ISSUER,
      audience: DEV_AUDIENCE,
      clockTolerance: 60,
      requiredClaims: ['sub', 'exp', 'iat'],
    });
    if (!isUsableClaimString(payload.sub)) throw new AuthRefusal('unusable_id_claim');
    const groups = Array.isArray(payload.groups)
      ? payload.groups.filter((g): g is string => typeof g === 'string' && GROUP.test(g))
      : [];
    return {
      type: 'User',
      id: `${DEV_ISSUER_ALIAS}:${payload.sub}`,
      groups: [...new Set(groups)].sort(),
      attributes: {},
      authMethod: 'dev',
      issuer: DEV_ISSUER_ALIAS,
      ...(typeof payload.iat === 'number' ? { issuedAt: payload.iat } : {}),
    };
  }
}

/** The authenticator of a server that trusts the dev issuer alone (tests, local server without config). */
export class DevAuthenticator extends CofferAuthenticator {
  constructor(publicKey: KeyObject, logger?: Logger) {
    super({ verifiers: [new DevTokenVerifier(publicKey)], ...(logger ? { logger } : {}) });
  }
}
