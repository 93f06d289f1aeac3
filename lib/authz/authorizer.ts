import type { AuthMethod, Principal } from '../authn/principal.js';
import type { Uid } from './entity-uid.js';

/** The Cedar actions (namespace `Coffer`). */
export type Action =
  | 'read'
  | 'write'
  | 'list'
  | 'readMetadata'
  | 'writeMetadata'
  | 'delete'
  | 'restore'
  | 'destroy'
  | 'admin'
  /** Sign a certificate with a CA secret's key: never a read of that key (issue 16). */
  | 'issue';

export const ACTIONS: readonly Action[] = [
  'read',
  'write',
  'list',
  'readMetadata',
  'writeMetadata',
  'delete',
  'restore',
  'destroy',
  'admin',
  'issue',
];

/** The resource a decision is about: a secret (id = its path), as it is or as it would be. */
export interface SecretResource {
  readonly kind: 'Secret';
  readonly path: string;
  readonly tags: Readonly<Record<string, string>>;
  readonly owner?: string;
}

/** A folder (id ends with `/`), used by `list` on a prefix. */
export interface FolderResource {
  readonly kind: 'Folder';
  readonly path: string;
}

export type Resource = SecretResource | FolderResource;

export interface RequestContext {
  readonly authMethod: AuthMethod;
  readonly sourceIp: string;
  /** Seconds since the epoch. */
  readonly time: number;
}

/** A decision as a value: the HTTP layer turns a deny into 403 or 404. */
export interface Decision {
  readonly allowed: boolean;
  /** Ids of the policies that decided (the permits that allowed, or the forbids that denied). */
  readonly policyIds: readonly string[];
  /** Evaluation errors, without secret data; an erroring forbid denies. */
  readonly errors: readonly string[];
  /**
   * The hash of the policy set that made this decision, when the authorizer can change its set
   * while running (lib/control/plane.ts): the audit record names this one.
   */
  readonly policySetHash?: string;
}

export interface AuthorizationRequest {
  readonly principal: Principal;
  readonly action: Action;
  readonly resource: Resource;
  readonly context: RequestContext;
}

/** The authorization port. Must deny on any internal failure (never fall open). */
export interface Authorizer {
  authorize(request: AuthorizationRequest): Decision;
  /** SHA-256 (hex) of the policy set in force, for the audit record. */
  readonly policySetHash: string;
  /**
   * Every entity the policies in force name (principals and groups among them), for access
   * reports. Optional: an authorizer without policies names none.
   */
  namedEntities?(): readonly Uid[];
}

/**
 * Allows every authenticated caller. Only for the foundation stage and unit tests of the layers
 * above; the servers use the Cedar authorizer.
 */
export class AllowAllAuthorizer implements Authorizer {
  readonly policySetHash = 'allow-all';
  authorize(): Decision {
    return { allowed: true, policyIds: ['allow-all'], errors: [] };
  }
}
