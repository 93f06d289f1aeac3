import type { PolicyJson } from './cedar-engine.js';
import { type Uid, uidKey } from './entity-uid.js';

/**
 * Policy slicing: which policies could apply to a request, judged from their scope alone.
 *
 * Cedar evaluates a policy as `scope && when && !unless`, left to right with short-circuit `&&`,
 * so a policy whose scope (`principal ...`, `action ...`, `resource ...`) is false for a request is
 * not satisfied and cannot error. Leaving such policies out of the set Cedar evaluates therefore
 * changes neither the decision, nor the deciding policies, nor the errors. The matchers below only
 * ever answer `false` when the scope is certainly false for the entities Coffer sends; anything
 * they do not recognise counts as "may apply".
 */

/** The facts about a request that policy scopes can test. */
export interface RequestScope {
  readonly principal: string;
  readonly principalType: string;
  /** The principal's groups (`uidKey`). */
  readonly principalIn: ReadonlySet<string>;
  readonly action: string;
  readonly actionIn: ReadonlySet<string>;
  readonly resource: string;
  readonly resourceType: string;
  /** The resource's folders (`uidKey`). */
  readonly resourceIn: ReadonlySet<string>;
}

export type ScopeMatcher = (scope: RequestScope) => boolean;

const always = (): boolean => true;

function entityOf(value: unknown): Uid | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = (value as { __entity?: unknown }).__entity ?? value;
  const { type, id } = v as { type?: unknown; id?: unknown };
  return typeof type === 'string' && typeof id === 'string' ? { type, id } : undefined;
}

type Side = (uid: string, type: string, ancestors: ReadonlySet<string>) => boolean;

/** `principal`/`resource` constraint: All, `== E`, `in E`, `is T`, `is T in E`. */
function sideMatcher(constraint: unknown): Side {
  const c = constraint as { op?: unknown; entity?: unknown; entity_type?: unknown; in?: unknown };
  switch (c?.op) {
    case 'All':
      return always;
    case '==': {
      const e = entityOf(c.entity);
      if (!e) return always;
      const key = uidKey(e);
      return (uid) => uid === key;
    }
    case 'in': {
      const e = entityOf(c.entity);
      if (!e) return always;
      const key = uidKey(e);
      return (uid, _type, ancestors) => uid === key || ancestors.has(key);
    }
    case 'is': {
      if (typeof c.entity_type !== 'string') return always;
      const wanted = c.entity_type;
      const inner = c.in as { entity?: unknown } | undefined;
      const e = inner ? entityOf(inner.entity) : undefined;
      // `is T` alone, or `is T in ?slot` (templates are refused at load; the type test still holds).
      if (!e) return (_uid, type) => type === wanted;
      const key = uidKey(e);
      return (uid, type, ancestors) => type === wanted && (uid === key || ancestors.has(key));
    }
    default:
      return always;
  }
}

/** `action` constraint: All, `== A`, `in A`, `in [A, B]`. */
function actionMatcher(constraint: unknown): (action: string, ancestors: ReadonlySet<string>) => boolean {
  const c = constraint as { op?: unknown; entity?: unknown; entities?: unknown };
  switch (c?.op) {
    case 'All':
      return always;
    case '==': {
      const e = entityOf(c.entity);
      if (!e) return always;
      const key = uidKey(e);
      return (action) => action === key;
    }
    case 'in': {
      const list = Array.isArray(c.entities) ? c.entities : c.entity !== undefined ? [c.entity] : undefined;
      if (!list) return always;
      const keys: string[] = [];
      for (const item of list) {
        const e = entityOf(item);
        if (!e) return always;
        keys.push(uidKey(e));
      }
      return (action, ancestors) => keys.some((k) => k === action || ancestors.has(k));
    }
    default:
      return always;
  }
}

/** A predicate that is false only when the policy's scope is certainly false for the request. */
export function scopeMatcher(policy: PolicyJson): ScopeMatcher {
  const principal = sideMatcher(policy.principal);
  const action = actionMatcher(policy.action);
  const resource = sideMatcher(policy.resource);
  return (s) =>
    action(s.action, s.actionIn) &&
    principal(s.principal, s.principalType, s.principalIn) &&
    resource(s.resource, s.resourceType, s.resourceIn);
}

/**
 * What a set of policies can read from a request, so that Coffer sends Cedar only that (turning
 * the request into Cedar's form is most of a decision's cost). Cedar reaches entity data only
 * through `e.attr`, `e has attr`, `e.getTag(k)`, `e.hasTag(k)` (attributes and tags) and `in`
 * (ancestors). When every such access is made directly on `principal`, `resource` or `context`,
 * leaving out the attributes, tags and context fields no policy names changes nothing; and since
 * Coffer's entities hold only strings, an `in` can only meet ancestors that the policies name as
 * entity literals, so other groups and folders can be left out too. Anything else (an attribute
 * read on another expression, `context` used as a whole) asks for everything.
 */
export interface RequestNeeds {
  /** Send everything: the policies use a form this analysis does not follow. */
  readonly full: boolean;
  readonly principalAttrs: ReadonlySet<string>;
  readonly principalTags: boolean;
  readonly resourceAttrs: ReadonlySet<string>;
  readonly resourceTags: boolean;
  readonly contextAttrs: ReadonlySet<string>;
  /** Every entity literal in the policies (`uidKey`): the only ancestors an `in` can test. */
  readonly entities: ReadonlySet<string>;
}

export const FULL_NEEDS: RequestNeeds = Object.freeze({
  full: true,
  principalAttrs: new Set<string>(),
  principalTags: true,
  resourceAttrs: new Set<string>(),
  resourceTags: true,
  contextAttrs: new Set<string>(),
  entities: new Set<string>(),
});

interface MutableNeeds {
  full: boolean;
  principalAttrs: Set<string>;
  principalTags: boolean;
  resourceAttrs: Set<string>;
  resourceTags: boolean;
  contextAttrs: Set<string>;
  entities: Set<string>;
}

const emptyNeeds = (): MutableNeeds => ({
  full: false,
  principalAttrs: new Set(),
  principalTags: false,
  resourceAttrs: new Set(),
  resourceTags: false,
  contextAttrs: new Set(),
  entities: new Set(),
});

/** Collects entity literals anywhere in a JSON value (`{"__entity": ...}` or scope `{type,id}`). */
function collectEntities(value: unknown, into: Set<string>): void {
  if (Array.isArray(value)) {
    for (const v of value) collectEntities(v, into);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const e = entityOf(value);
  if (e) into.add(uidKey(e));
  for (const v of Object.values(value)) collectEntities(v, into);
}

function varOf(expr: unknown): string | undefined {
  const v = (expr as { Var?: unknown } | null)?.Var;
  return typeof v === 'string' ? v : undefined;
}

function walk(expr: unknown, needs: MutableNeeds): void {
  if (needs.full) return;
  if (Array.isArray(expr)) {
    for (const e of expr) walk(e, needs);
    return;
  }
  if (typeof expr !== 'object' || expr === null) return;
  const entries = Object.entries(expr);
  if (entries.length !== 1) {
    needs.full = true;
    return;
  }
  const [op, arg] = entries[0] as [string, unknown];
  const a = arg as { left?: unknown; right?: unknown; attr?: unknown };
  switch (op) {
    case 'Value':
      collectEntities(arg, needs.entities);
      return;
    case 'Var':
      // `context` as a whole (compared, put in a set) would see fields that were left out.
      if (arg === 'context') needs.full = true;
      return;
    case 'Slot':
      needs.full = true;
      return;
    case '.':
    case 'has': {
      const attr = Array.isArray(a.attr) ? a.attr[0] : a.attr;
      const on = varOf(a.left);
      if (typeof attr !== 'string' || on === undefined || on === 'action') {
        needs.full = true;
        return;
      }
      if (on === 'principal') needs.principalAttrs.add(attr);
      else if (on === 'resource') needs.resourceAttrs.add(attr);
      else if (on === 'context') needs.contextAttrs.add(attr);
      return;
    }
    case 'getTag':
    case 'hasTag': {
      const on = varOf(a.left);
      if (on === 'principal') needs.principalTags = true;
      else if (on === 'resource') needs.resourceTags = true;
      else {
        needs.full = true;
        return;
      }
      walk(a.right, needs);
      return;
    }
    case 'like':
      // The pattern is literal text; only the left side is an expression.
      walk(a.left, needs);
      return;
    default:
      // Every other operator and extension call: its operands are expressions.
      for (const v of Object.values(typeof arg === 'object' && arg !== null ? arg : {})) walk(v, needs);
      if (typeof arg !== 'object' || arg === null) needs.full = true;
  }
}

/** What one policy can read (scope and conditions). */
export function needsOf(policy: PolicyJson): RequestNeeds {
  const needs = emptyNeeds();
  collectEntities([policy.principal, policy.action, policy.resource], needs.entities);
  for (const clause of policy.conditions ?? []) walk(clause.body, needs);
  return needs;
}

export function mergeNeeds(list: readonly RequestNeeds[]): RequestNeeds {
  const out = emptyNeeds();
  for (const n of list) {
    if (n.full) return FULL_NEEDS;
    for (const x of n.principalAttrs) out.principalAttrs.add(x);
    for (const x of n.resourceAttrs) out.resourceAttrs.add(x);
    for (const x of n.contextAttrs) out.contextAttrs.add(x);
    for (const x of n.entities) out.entities.add(x);
    out.principalTags ||= n.principalTags;
    out.resourceTags ||= n.resourceTags;
  }
  return out;
}
