import type { PolicyJson } from './cedar-engine.js';
import { type Uid, uidKey } from './entity-uid.js';

function entityOf(value: object): Uid | undefined {
  const v = (value as { __entity?: unknown }).__entity ?? value;
  const { type, id } = v as { type?: unknown; id?: unknown };
  return typeof type === 'string' && typeof id === 'string' ? { type, id } : undefined;
}

function collect(value: unknown, into: Map<string, Uid>): void {
  if (Array.isArray(value)) {
    for (const v of value) collect(v, into);
    return;
  }
  if (typeof value !== 'object' || value === null) return;
  const e = entityOf(value);
  if (e) into.set(uidKey(e), e);
  for (const v of Object.values(value)) collect(v, into);
}

/**
 * Every entity literal the policies name, in their scopes or conditions (`Coffer::User::"corp:
 * alice"`, `Coffer::Group::"admins"`), sorted and without repeats: the principals and groups an
 * access report asks about besides those in the principal directory.
 */
export function namedEntities(policies: readonly PolicyJson[]): Uid[] {
  const found = new Map<string, Uid>();
  for (const p of policies) {
    collect([p.principal, p.action, p.resource], found);
    for (const clause of p.conditions ?? []) collect(clause.body, found);
  }
  return [...found.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, uid]) => uid);
}
