import { isIPv4, isIPv6 } from 'node:net';
import { ownRecord } from '../../packages/client/src/contract.js';
import type { Principal } from '../authn/principal.js';
import { foldersOf } from '../paths.js';
import type { Action, AuthorizationRequest, RequestContext, Resource } from './authorizer.js';
import type { EntityJson } from './cedar-engine.js';
import { type Uid, uidKey } from './entity-uid.js';
import type { RequestNeeds } from './slicing.js';

/** The namespace every Coffer entity and action lives in. */
export const NAMESPACE = 'Coffer';

export const TYPES = {
  user: `${NAMESPACE}::User`,
  role: `${NAMESPACE}::Role`,
  workload: `${NAMESPACE}::Workload`,
  group: `${NAMESPACE}::Group`,
  folder: `${NAMESPACE}::Folder`,
  secret: `${NAMESPACE}::Secret`,
  action: `${NAMESPACE}::Action`,
} as const;

const PRINCIPAL_TYPES = { User: TYPES.user, Role: TYPES.role, Workload: TYPES.workload } as const;

export const principalUid = (p: Principal): Uid => ({ type: PRINCIPAL_TYPES[p.type], id: p.id });

export const groupUid = (group: string): Uid => ({ type: TYPES.group, id: group });

export const actionUid = (action: Action | string): Uid => ({ type: TYPES.action, id: action });

export const resourceUid = (r: Resource): Uid => ({
  type: r.kind === 'Folder' ? TYPES.folder : TYPES.secret,
  id: r.path,
});

/**
 * The folders that contain a resource, innermost last. A secret `team-a/db/password` is in
 * `team-a/` and `team-a/db/`; a folder `team-a/db/` is in `team-a/` (and, as Cedar's `in` is
 * reflexive, in itself). Matching is on whole segments, so `team-ab/x` is never in `team-a/`.
 */
export function resourceAncestors(r: Resource): Uid[] {
  const path = r.kind === 'Folder' ? r.path.replace(/\/$/, '') : r.path;
  if (path === '') return [];
  return foldersOf(path).map((f) => ({ type: TYPES.folder, id: f }));
}

/**
 * The caller's address as a Cedar `ipaddr`, or undefined when it is not an address Cedar accepts
 * (an adapter that cannot tell says "unknown"). IPv4-mapped IPv6 (`::ffff:10.0.0.1`, as a
 * dual-stack socket reports IPv4 callers) becomes plain IPv4: Cedar refuses the embedded form,
 * and policies written for `10.0.0.0/8` must match those callers.
 */
export function cedarIp(sourceIp: string): string | undefined {
  const mapped = /^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(sourceIp);
  const ip = mapped?.[1] ?? sourceIp;
  if (isIPv4(ip)) return ip;
  if (isIPv6(ip) && !ip.includes('.') && !ip.includes('%')) return ip;
  return undefined;
}

/** RFC 3339 UTC, whole seconds: the form Cedar's `datetime()` parses. */
export function cedarTime(seconds: number): string {
  if (!Number.isFinite(seconds)) throw new RangeError('request time is not a number');
  return new Date(Math.floor(seconds) * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

export function contextJson(ctx: RequestContext): Record<string, unknown> {
  const ip = cedarIp(ctx.sourceIp);
  return {
    authMethod: ctx.authMethod,
    ...(ip !== undefined ? { sourceIp: { __extn: { fn: 'ip', arg: ip } } } : {}),
    time: { __extn: { fn: 'datetime', arg: cedarTime(ctx.time) } },
  };
}

/** The attributes the schema declares for each principal type, and no others. */
function principalAttrs(p: Principal): EntityJson['attrs'] {
  switch (p.type) {
    case 'User':
      return { id: p.id, ...(p.issuer !== undefined ? { issuer: p.issuer } : {}) };
    case 'Role':
      return { id: p.id };
    case 'Workload':
      // A workload without a kind cannot be described to policies that tell the two apart.
      if (p.kind === undefined) throw new RangeError('a workload principal needs its kind');
      return { id: p.id, kind: p.kind, ...(p.issuer !== undefined ? { issuer: p.issuer } : {}) };
  }
}

export function principalEntity(p: Principal): EntityJson {
  return {
    uid: principalUid(p),
    attrs: principalAttrs(p),
    parents: p.groups.map(groupUid),
    tags: ownRecord(Object.entries(p.attributes)),
  };
}

export function resourceEntity(r: Resource): EntityJson {
  const parents = resourceAncestors(r);
  if (r.kind === 'Folder') {
    return { uid: resourceUid(r), attrs: { path: r.path }, parents };
  }
  return {
    uid: resourceUid(r),
    attrs: { path: r.path, ...(r.owner !== undefined ? { owner: r.owner } : {}) },
    parents,
    tags: ownRecord(Object.entries(r.tags)),
  };
}

/** What Cedar's authorizer is given for one request (the policy set is pre-parsed elsewhere). */
export interface CedarRequest {
  readonly principal: Uid;
  readonly action: Uid;
  readonly resource: Uid;
  readonly context: Record<string, unknown>;
  readonly entities: EntityJson[];
}

function pick(attrs: EntityJson['attrs'], keys: ReadonlySet<string>): EntityJson['attrs'] {
  const out: EntityJson['attrs'] = {};
  for (const k of keys) if (attrs[k] !== undefined) out[k] = attrs[k];
  return out;
}

/** Leaves out of an entity what `needs` says no policy can read (see RequestNeeds). */
function trim(
  entity: EntityJson,
  attrs: ReadonlySet<string>,
  tags: boolean,
  ancestors: ReadonlySet<string>,
): EntityJson {
  return {
    uid: entity.uid,
    attrs: pick(entity.attrs, attrs),
    parents: entity.parents.filter((p) => ancestors.has(uidKey(p as Uid))),
    ...(tags && entity.tags ? { tags: entity.tags } : {}),
  };
}

/**
 * Builds the principal, resource and context for Cedar. Only the principal and the resource are
 * sent as entities: the groups and folders they are `in` are listed, transitively, as their
 * parents, which is all `in` needs. An action that belongs to action groups (a schema may declare
 * them) is sent with those groups as its parents, so `action in Coffer::Action::"group"` holds.
 * With `needs`, only what the policies to evaluate can read is sent; without, everything.
 */
export function cedarRequest(
  request: AuthorizationRequest,
  actionParents: ReadonlyMap<string, readonly Uid[]>,
  needs?: RequestNeeds,
): CedarRequest {
  // Checked whether or not a policy reads the time: a request that cannot be described is refused.
  if (!Number.isFinite(request.context.time)) throw new RangeError('request time is not a number');
  const action = actionUid(request.action);
  let principal = principalEntity(request.principal);
  let resource = resourceEntity(request.resource);
  let context: Record<string, unknown>;
  if (needs && !needs.full) {
    principal = trim(principal, needs.principalAttrs, needs.principalTags, needs.entities);
    resource = trim(resource, needs.resourceAttrs, needs.resourceTags, needs.entities);
    const ctx = request.context;
    const ip = needs.contextAttrs.has('sourceIp') ? cedarIp(ctx.sourceIp) : undefined;
    context = {
      ...(needs.contextAttrs.has('authMethod') ? { authMethod: ctx.authMethod } : {}),
      ...(ip !== undefined ? { sourceIp: { __extn: { fn: 'ip', arg: ip } } } : {}),
      ...(needs.contextAttrs.has('time')
        ? { time: { __extn: { fn: 'datetime', arg: cedarTime(ctx.time) } } }
        : {}),
    };
  } else {
    context = contextJson(request.context);
  }
  const entities: EntityJson[] = [principal, resource];
  const parents = actionParents.get(request.action);
  if (parents && parents.length > 0) entities.push({ uid: action, attrs: {}, parents: [...parents] });
  return {
    principal: principalUid(request.principal),
    action,
    resource: resourceUid(request.resource),
    context,
    entities,
  };
}
