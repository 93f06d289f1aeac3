import type { SecretValue } from '../../../packages/client/src/contract.js';
import { bearerToken } from '../../authn/bearer.js';
import { isIamPath } from '../../authn/iam.js';
import type { Authenticator, AuthRequest, GrantScope, Principal } from '../../authn/principal.js';
import type { AuthorizationRequest, Authorizer, Decision } from '../../authz/authorizer.js';
import { ForbiddenError, NotFoundError, UnauthenticatedError } from '../../errors.js';
import type { Logger } from '../../log.js';
import type { SecretsStore } from '../../store/secrets-store.js';
import type { Caller, SecretService } from '../service.js';
import { labelsOf } from '../stages.js';
import { GRANT_PREFIX, type RotationGrants } from './grants.js';

/*
 * What a rotation grant lets its bearer do, decided in three places, each enough alone to keep it
 * to one read (docs/rotation.md, "Grants"):
 * - the authenticator turns a valid grant into a principal that carries its scope (`grant`);
 * - the HTTP gate answers such a principal on one route only, `GET /v1/secrets/{its path}?stage=
 *   {its stage}`, and only while the secret's verified head still has that version at that stage
 *   and, for a rotation step, the rotation at that step;
 * - the authorizer the service decides with allows such a principal `readMetadata` and `read` of
 *   its own path, and nothing else, without asking Cedar: no policy can widen a grant.
 */

/** Whether a principal is a rotation grant's. */
export function grantOf(principal: Principal): GrantScope | undefined {
  return principal.authMethod === 'grant' ? principal.grant : undefined;
}

/** The principal a grant stands for: no groups, no attributes, its scope in `grant`. */
function grantPrincipal(scope: GrantScope): Principal {
  return {
    type: 'Workload',
    id: `rotator:${scope.path}@${scope.version}:${scope.step}`,
    groups: [],
    attributes: {},
    authMethod: 'grant',
    grant: scope,
  };
}

/**
 * Tries a bearer that looks like a grant against the grant key, and hands every other request to
 * the authenticator it wraps. A grant that does not verify (edited, expired, of another
 * installation) is 401 like any bad credential. The IAM prefix never takes grants.
 */
export class GrantAuthenticator implements Authenticator {
  constructor(
    private readonly inner: Authenticator,
    private readonly grants: RotationGrants,
    private readonly logger?: Logger,
  ) {}

  async authenticate(request: AuthRequest): Promise<Principal> {
    if (isIamPath(request.path) || request.authorization.length !== 1)
      return this.inner.authenticate(request);
    let token: string;
    try {
      token = bearerToken(request.authorization);
    } catch {
      return this.inner.authenticate(request);
    }
    if (!token.startsWith(GRANT_PREFIX)) return this.inner.authenticate(request);
    const scope = this.grants.verify(token);
    if (!scope) {
      this.logger?.warn('authentication refused', {
        ...(request.requestId !== undefined ? { requestId: request.requestId } : {}),
        method: 'grant',
        reason: 'invalid_grant',
      });
      throw new UnauthenticatedError();
    }
    return grantPrincipal(scope);
  }
}

const GRANT_DECISION_ALLOW: Decision = { allowed: true, policyIds: ['rotation-grant'], errors: [] };
const GRANT_DECISION_DENY: Decision = { allowed: false, policyIds: ['rotation-grant'], errors: [] };

/**
 * The authorizer the service decides with: a grant's principal gets `readMetadata` and `read` on
 * its own secret and nothing else, decided here; every other principal is decided by `inner`.
 */
export function grantScopedAuthorizer(inner: Authorizer): Authorizer {
  return {
    get policySetHash() {
      return inner.policySetHash;
    },
    authorize(request: AuthorizationRequest): Decision {
      const scope = grantOf(request.principal);
      if (request.principal.authMethod !== 'grant') return inner.authorize(request);
      if (!scope) return GRANT_DECISION_DENY;
      const { action, resource } = request;
      const own = resource.kind === 'Secret' && resource.path === scope.path;
      return own && (action === 'read' || action === 'readMetadata')
        ? GRANT_DECISION_ALLOW
        : GRANT_DECISION_DENY;
    },
    ...(inner.namedEntities ? { namedEntities: () => inner.namedEntities?.() ?? [] } : {}),
  };
}

/** The request a grant's principal made, as the HTTP gate sees it. */
export interface GrantRequest {
  readonly method: string;
  /** The decoded URL path (`/v1/secrets/team/db/password`). */
  readonly path: string;
  /** Every query parameter, with all its values. */
  readonly query: Readonly<Record<string, readonly string[]>>;
}

/**
 * Answers a grant's principal: the one read its grant allows, or 403. The head is read (and its
 * MAC verified) first, so that a grant whose version no longer has its stage, or whose step is no
 * longer the rotation's, reads nothing; the read itself goes through the service (audited, and
 * decided by `grantScopedAuthorizer`), and what it returns is checked against the grant again
 * before it leaves, so that a label moved in between cannot hand out another version.
 */
export class GrantReader {
  constructor(
    private readonly store: SecretsStore,
    private readonly service: Pick<SecretService, 'get'>,
  ) {}

  async answer(caller: Caller, scope: GrantScope, request: GrantRequest): Promise<SecretValue> {
    const keys = Object.keys(request.query);
    const stage = request.query.stage;
    if (
      request.method !== 'GET' ||
      request.path !== `/v1/secrets/${scope.path}` ||
      keys.length !== 1 ||
      stage?.length !== 1 ||
      stage[0] !== scope.stage
    ) {
      throw new ForbiddenError();
    }
    const head = await this.store.getHead(scope.path);
    if (!head || head.deletedAt || !this.current(scope, head)) throw new ForbiddenError();
    const value = await this.service.get(caller, scope.path, undefined, scope.stage);
    if (value.version !== scope.version) throw new NotFoundError('no version has this stage');
    return value;
  }

  private current(
    scope: GrantScope,
    head: NonNullable<Awaited<ReturnType<SecretsStore['getHead']>>>,
  ): boolean {
    const rotation = head.rotation;
    if (!rotation?.rotator) return false;
    const labels = labelsOf(head);
    if (scope.step === 'revertSecret') return labels.previous === scope.version;
    if (labels.pending !== scope.version) return false;
    const progress = rotation.progress?.version === scope.version ? rotation.progress : undefined;
    const step = progress?.step ?? 'setSecret';
    return step === scope.step && progress?.failed !== true;
  }
}
