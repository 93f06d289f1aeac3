import {
  ACCESS_WHAT_LIMIT,
  ACCESS_WHO_ACTIONS,
  type AccessPrincipal,
  type AccessWhatItem,
  type AccessWhatPage,
  type AccessWhoAction,
  type AccessWhoPrincipal,
  type AccessWhoReport,
} from '../../packages/client/src/contract.js';
import type { Principal, PrincipalType } from '../authn/principal.js';
import type { Action, Authorizer, RequestContext, SecretResource } from '../authz/authorizer.js';
import { TYPES } from '../authz/entities.js';
import { canonicalJson } from '../crypto/canonical.js';
import { ForbiddenError, InvalidRequestError, NotFoundError } from '../errors.js';
import { foldersOf, validatePath, validatePrefix } from '../paths.js';
import type { Caller } from '../secrets/service.js';
import type { CursorBinding, CursorSealer } from '../store/cursor.js';
import type { SecretHead } from '../store/records.js';
import type { SecretsStore } from '../store/secrets-store.js';
import { type DirectoryEntry, type PrincipalDirectory, principalOfEntry } from './directory.js';

/*
 * Access reports: "what may this principal do" and "who may do this to that secret", answered by
 * the authorizer the request path uses, with the same entities (lib/authz/entities.ts) it builds
 * for a request. Nothing here decides differently from the API: each report right is the
 * conjunction of the decisions the secret service itself takes for that request (EFFECTIVE below,
 * kept in step with lib/secrets/service.ts and checked against real requests by
 * test/integration/access-reports.test.ts).
 */

/** The actions `who` reports on (those a request can take on a live secret). */
export const WHO_ACTIONS: readonly WhoAction[] = ACCESS_WHO_ACTIONS;
export type WhoAction = AccessWhoAction;

/**
 * The decisions the secret service takes, on a live secret as it is stored, before it does what a
 * request asks (service.ts): a read needs `readMetadata` (else 404) and `read`; a write of a new
 * value with the same tags needs `write` on the secret as it is and as it would be (the same
 * resource); a listing shows a secret it may `list`; the metadata and delete routes need
 * `readMetadata` first too.
 */
export const EFFECTIVE: Readonly<Record<WhoAction, readonly Action[]>> = {
  read: ['readMetadata', 'read'],
  write: ['write'],
  list: ['list'],
  readMetadata: ['readMetadata'],
  writeMetadata: ['readMetadata', 'writeMetadata'],
  delete: ['readMetadata', 'delete'],
  destroy: ['readMetadata', 'destroy'],
};

/** Scanned secrets per `what` page, by default and at most. */
export const WHAT_PAGE = ACCESS_WHAT_LIMIT;

export interface WhatQuery {
  /** `Type::"id"` (with or without `Coffer::`) or a bare id, looked up in the directory. */
  readonly principal: string;
  /** Groups to evaluate with instead of the directory's last-seen ones. */
  readonly groups?: readonly string[];
  readonly prefix?: string;
  /** Secrets scanned (not shown) per page. */
  readonly limit?: number;
  readonly cursor?: string;
}

export interface WhoQuery {
  readonly path: string;
  readonly action?: WhoAction;
}

export type ReportPrincipal = AccessPrincipal;
export type WhatItem = AccessWhatItem;
export type WhatReport = AccessWhatPage;
export type WhoPrincipal = AccessWhoPrincipal;
export type WhoReport = AccessWhoReport;

export interface AccessReportsDeps {
  readonly store: SecretsStore;
  /** The authorizer the request path uses (never one loaded for the report). */
  readonly authorizer: Authorizer;
  readonly directory: PrincipalDirectory;
  /** Seals `what` cursors (the service's sealer: the same key, its own binding). */
  readonly cursors: CursorSealer;
  /** Coffer groups the authentication config can give (group and workload mappings). */
  readonly configuredGroups?: readonly string[];
  /**
   * Whether a principal is revoked (the control plane's list): revocations are decided before
   * Cedar, so a revoked principal may do nothing whatever the policies permit.
   */
  readonly revocationFor?: (principal: Principal) => boolean;
  readonly now?: () => Date;
}

const GROUP = /^[A-Za-z0-9._-]{1,64}$/;
const MAX_GROUPS = 50;
const ENTITY_REF = /^(?:Coffer::)?(User|Role|Workload)::("(?:[^"\\]|\\.)*")$/s;
const PRINCIPAL_TYPE_OF: Readonly<Record<string, PrincipalType>> = {
  [TYPES.user]: 'User',
  [TYPES.role]: 'Role',
  [TYPES.workload]: 'Workload',
};

/** The principal types a group's member is tried as, in `who`. */
const MEMBER_KINDS: readonly Pick<Principal, 'type' | 'authMethod' | 'kind'>[] = [
  { type: 'User', authMethod: 'oidc' },
  { type: 'Role', authMethod: 'iam' },
  { type: 'Workload', authMethod: 'oidc', kind: 'oidc' },
];

const entityName = (type: PrincipalType, id: string) => `Coffer::${type}::${JSON.stringify(id)}`;

/** A principal named on the command line: `User::"dev:alice"`, `Coffer::Role::"arn:…"`, or an id. */
export function parsePrincipalRef(raw: string): { type?: PrincipalType; id: string } {
  const ref = raw.trim();
  const m = ENTITY_REF.exec(ref);
  if (m) {
    let id: unknown;
    try {
      id = JSON.parse(m[2] as string);
    } catch {
      id = undefined;
    }
    if (typeof id !== 'string' || id === '') throw new InvalidRequestError('invalid principal reference');
    return { type: m[1] as PrincipalType, id };
  }
  if (ref === '' || ref.length > 2048 || ref.includes('::"')) {
    throw new InvalidRequestError('invalid principal: give an id or Type::"id" (User, Role or Workload)');
  }
  return { id: ref };
}

/** Groups given to a report: Coffer group names, at most 50. */
export function parseGroups(groups: readonly string[]): string[] {
  const unique = [...new Set(groups.map((g) => g.trim()).filter((g) => g !== ''))].sort();
  if (unique.length > MAX_GROUPS) throw new InvalidRequestError(`at most ${MAX_GROUPS} groups`);
  for (const g of unique) {
    if (!GROUP.test(g)) throw new InvalidRequestError('group names are 1-64 characters of A-Z a-z 0-9 . _ -');
  }
  return unique;
}

/** What can be told from an id alone, for a principal the server has never seen. */
function inferred(type: PrincipalType | undefined, id: string): Omit<Principal, 'groups' | 'attributes'> {
  if (/^arn:aws:iam::\d{12}:role\//.test(id)) return { type: type ?? 'Role', id, authMethod: 'iam' };
  if (/^arn:aws:iam::\d{12}:user\//.test(id)) return { type: type ?? 'User', id, authMethod: 'iam' };
  if (type === 'Workload' || (type === undefined && id.startsWith('cert:'))) {
    return id.startsWith('cert:')
      ? { type: 'Workload', id, authMethod: 'mtls', kind: 'certificate' }
      : { type: 'Workload', id, authMethod: 'oidc', kind: 'oidc', issuer: id.split(':', 1)[0] as string };
  }
  const alias = id.includes(':') ? (id.split(':', 1)[0] as string) : undefined;
  return {
    type: type ?? 'User',
    id,
    authMethod: alias === 'dev' ? 'dev' : 'oidc',
    ...(alias ? { issuer: alias } : {}),
  };
}

/** The folder an admin must administer for a report on a prefix or path: the innermost whole one. */
export function reportFolder(prefixOrPath: string): string {
  return prefixOrPath.slice(0, prefixOrPath.lastIndexOf('/') + 1);
}

const resourceOf = (head: SecretHead): SecretResource => ({
  kind: 'Secret',
  path: head.path,
  tags: head.tags,
  ...(head.owner ? { owner: head.owner } : {}),
});

const byKey =
  <T>(key: (t: T) => string) =>
  (a: T, b: T) => {
    const x = key(a);
    const y = key(b);
    return x < y ? -1 : x > y ? 1 : 0;
  };

/**
 * The access reports. Each is an admin operation: Cedar `admin` on the folder the report covers
 * (`what`: the prefix's folder, the root folder `Folder::""` without a prefix; `who`: the secret's
 * folder), decided and audited like any request.
 */
export class AccessReports {
  private readonly now: () => Date;

  constructor(private readonly deps: AccessReportsDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  /**
   * One page of what a principal may read, write or list under a prefix. With `asIfNotRevoked`
   * the revocation list is left out of the decisions: what the principal could do before it was
   * revoked (offboarding reports the exposure after revoking first).
   */
  async what(
    caller: Caller,
    query: WhatQuery,
    options: { asIfNotRevoked?: boolean } = {},
  ): Promise<WhatReport> {
    const ignore = options.asIfNotRevoked === true;
    const prefix = validatePrefix(query.prefix ?? '');
    this.requireAdmin(caller, reportFolder(prefix), undefined);
    const limit = query.limit ?? WHAT_PAGE.default;
    if (!Number.isInteger(limit) || limit < 1 || limit > WHAT_PAGE.max) {
      throw new InvalidRequestError(`limit must be from 1 to ${WHAT_PAGE.max}`);
    }
    const groups = query.groups !== undefined ? parseGroups(query.groups) : undefined;
    const { principal, report: target } = await this.resolve(parsePrincipalRef(query.principal), groups);
    // A cursor is good only for the report (prefix, principal, groups) and the admin it was made for.
    const binding: CursorBinding = {
      prefix,
      caller: canonicalJson([
        'access-what',
        caller.principal.type,
        caller.principal.id,
        target.type,
        target.id,
        groups ?? null,
      ]),
    };
    const storeCursor = query.cursor ? this.deps.cursors.open(query.cursor, binding) : undefined;
    const page = await this.deps.store.list(prefix, {
      limit,
      ...(storeCursor ? { cursor: storeCursor } : {}),
    });
    const context = this.context(principal);
    const items: WhatItem[] = [];
    const folderChecked = new Map<string, boolean>();
    for (const entry of page.entries) {
      if (entry.kind !== 'head' || entry.head.deletedAt) continue;
      const resource = resourceOf(entry.head);
      const item: WhatItem = {
        path: entry.head.path,
        read: this.may(principal, 'read', resource, context, ignore),
        write: this.may(principal, 'write', resource, context, ignore),
        list: this.may(principal, 'list', resource, context, ignore),
        rotationPolicy: entry.head.rotation !== undefined,
      };
      if (!item.read && !item.write && !item.list) continue;
      items.push(item);
      if (!item.list) continue;
      for (const folder of foldersOf(item.path)) {
        if (!folder.startsWith(prefix) || folderChecked.has(folder)) continue;
        folderChecked.set(
          folder,
          this.decide(principal, 'list', { kind: 'Folder', path: folder }, context, ignore),
        );
      }
    }
    return {
      principal: target,
      prefix,
      policySetHash: this.deps.authorizer.policySetHash,
      scanned: page.entries.length,
      items,
      folders: [...folderChecked]
        .filter(([, ok]) => ok)
        .map(([f]) => f)
        .sort(),
      ...(page.cursor ? { cursor: this.deps.cursors.seal(page.cursor, binding) } : {}),
    };
  }

  /**
   * The groups and known principals (the directory's, and those the policies name) who may take
   * `action` on a live secret.
   */
  async who(caller: Caller, query: WhoQuery): Promise<WhoReport> {
    const path = validatePath(query.path);
    const action = query.action ?? 'read';
    this.requireAdmin(caller, reportFolder(path), path);
    const head = await this.deps.store.getHead(path);
    if (!head || head.deletedAt) throw new NotFoundError();
    const resource = resourceOf(head);

    const listing = await this.deps.directory.list();
    const candidates = new Map<
      string,
      { principal: Principal; sources: Set<'directory' | 'policy'>; lastSeen?: string }
    >();
    const groups = new Set(this.deps.configuredGroups ?? []);
    for (const entry of listing.entries) {
      candidates.set(entityName(entry.type, entry.id), {
        principal: principalOfEntry(entry),
        sources: new Set(['directory']),
        lastSeen: entry.lastSeen,
      });
      for (const g of entry.groups) groups.add(g);
    }
    for (const uid of this.deps.authorizer.namedEntities?.() ?? []) {
      if (uid.type === TYPES.group) {
        groups.add(uid.id);
        continue;
      }
      const type = PRINCIPAL_TYPE_OF[uid.type];
      if (!type) continue;
      const name = entityName(type, uid.id);
      const known = candidates.get(name);
      if (known) known.sources.add('policy');
      else {
        candidates.set(name, {
          principal: { ...inferred(type, uid.id), groups: [], attributes: {} },
          sources: new Set(['policy']),
        });
      }
    }

    const principals: WhoPrincipal[] = [];
    for (const [entity, c] of candidates) {
      if (!this.may(c.principal, action, resource, this.context(c.principal))) continue;
      principals.push({
        type: c.principal.type,
        id: c.principal.id,
        entity,
        sources: [...c.sources].sort(),
        ...(c.lastSeen ? { lastSeen: c.lastSeen } : {}),
      });
    }
    // A member with no other identity: no tags, no other group, an id no policy names; of any
    // principal type (a group of CI workloads is granted to `principal is Coffer::Workload`).
    const allowedGroups = [...groups].filter((g) =>
      MEMBER_KINDS.some((kind) => {
        const member: Principal = { ...kind, id: `(member of ${g})`, groups: [g], attributes: {} };
        return this.may(member, action, resource, this.context(member));
      }),
    );
    return {
      path,
      action,
      policySetHash: this.deps.authorizer.policySetHash,
      groups: allowedGroups.sort(),
      principals: principals.sort(byKey((p) => p.entity)),
      warnings:
        listing.unverified > 0
          ? [
              `${listing.unverified} principal directory entr${listing.unverified === 1 ? 'y' : 'ies'} failed verification and ${listing.unverified === 1 ? 'was' : 'were'} left out`,
            ]
          : [],
    };
  }

  /** Finds the principal a report is about: the directory's entry, else the groups given. */
  private async resolve(
    ref: { type?: PrincipalType; id: string },
    groups?: readonly string[],
  ): Promise<{ principal: Principal; report: ReportPrincipal }> {
    let entry: DirectoryEntry | undefined;
    if (ref.type) {
      entry = await this.deps.directory.get(ref.type, ref.id);
    } else {
      const found = (
        await Promise.all(
          (['User', 'Role', 'Workload'] as const).map((t) => this.deps.directory.get(t, ref.id)),
        )
      ).filter((e): e is DirectoryEntry => e !== undefined);
      if (found.length > 1) {
        throw new InvalidRequestError(
          'more than one principal has this id: name its type, e.g. User::"<id>"',
        );
      }
      entry = found[0];
    }
    if (!entry && !groups) {
      throw new NotFoundError('the principal is not in the directory (never seen): give its groups');
    }
    const principal: Principal = entry
      ? { ...principalOfEntry(entry), ...(groups ? { groups } : {}) }
      : { ...inferred(ref.type, ref.id), groups: groups ?? [], attributes: {} };
    const report: ReportPrincipal = {
      type: principal.type,
      id: principal.id,
      entity: entityName(principal.type, principal.id),
      groups: principal.groups,
      tags: principal.attributes,
      authMethod: principal.authMethod,
      ...(principal.issuer !== undefined ? { issuer: principal.issuer } : {}),
      ...(principal.kind !== undefined ? { kind: principal.kind } : {}),
      source: entry && !groups ? 'directory' : 'given',
      ...(entry ? { lastSeen: entry.lastSeen } : {}),
    };
    return { principal, report };
  }

  /**
   * The request context a report decides with: the principal's auth method, no source address (as
   * when the server cannot tell: policies guard it with `has`), and now.
   */
  private context(p: Principal): RequestContext {
    return { authMethod: p.authMethod, sourceIp: 'unknown', time: Math.floor(this.now().getTime() / 1000) };
  }

  private may(
    p: Principal,
    action: WhoAction,
    resource: SecretResource,
    context: RequestContext,
    ignoreRevocations = false,
  ): boolean {
    return EFFECTIVE[action].every((a) => this.decide(p, a, resource, context, ignoreRevocations));
  }

  private decide(
    principal: Principal,
    action: Action,
    resource: SecretResource | { kind: 'Folder'; path: string },
    context: RequestContext,
    ignoreRevocations = false,
  ): boolean {
    if (!ignoreRevocations && this.deps.revocationFor?.(principal)) return false;
    return this.deps.authorizer.authorize({ principal, action, resource, context }).allowed;
  }

  /** Cedar `admin` on the folder the report covers, noted in the request's audit record. */
  private requireAdmin(caller: Caller, folder: string, path: string | undefined): void {
    caller.audit.action = 'admin';
    if (path !== undefined) caller.audit.path = path;
    caller.audit.policySetHash = this.deps.authorizer.policySetHash;
    const decision = this.deps.authorizer.authorize({
      principal: caller.principal,
      action: 'admin',
      resource: { kind: 'Folder', path: folder },
      context: caller.context,
    });
    caller.audit.decision = decision;
    if (!decision.allowed) throw new ForbiddenError();
  }
}
