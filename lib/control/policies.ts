import {
  compilePolicySet,
  compileSealedPolicySet,
  type LoadedPolicy,
  type PolicySet,
  PolicySetError,
  type PolicySource,
  policySetHash,
  schemaHash,
  validatorFingerprint,
} from '../authz/policy-set.js';
import { canonicalJson } from '../crypto/canonical.js';
import { IntegrityError } from '../errors.js';

/*
 * Pushed policy sets. Each pushed set is its own control record, written once
 * (`policy-version/v<N>`, generation 1), holding the policy files and who pushed them; the active
 * one is named by a pointer record (`policy-set/active`) whose generation rises with every push,
 * rollback and approval. A refresh reads the small pointer and fetches a version only when the
 * pointer moved. Both are MAC'd: a table writer can neither edit a set nor point at another one.
 *
 * Size: a set travels in one request body (≤ 128 KiB, the API's limit), so a version item stays
 * well under DynamoDB's 400 KB item limit.
 */

export const POLICY_POINTER_KIND = 'policy-set';
export const POLICY_POINTER_ID = 'active';
export const POLICY_VERSION_KIND = 'policy-version';
export const POLICY_PENDING_KIND = 'policy-pending';
export const POLICY_PENDING_ID = 'next';

export const versionId = (version: number): string => `v${version}`;

/** One `.cedar` file of a pushed set. */
export interface PolicyFile {
  readonly name: string;
  readonly text: string;
}

/** A pushed set, as stored (never changed after it is written). */
export interface PolicyVersion {
  readonly version: number;
  /** policySetHash(schema, files) with the schema the pushing instance validated it against. */
  readonly hash: string;
  readonly files: readonly PolicyFile[];
  /**
   * schemaHash() of the schema it was validated against. With `hash`, and under the record's MAC,
   * it is the set's seal: an instance with the same schema loads it without validating it again
   * (compilePushed's `validated`). Absent on versions pushed before seals: validated at load.
   */
  readonly schemaHash?: string;
  /** validatorFingerprint() of the code that validated it; with another, it is validated again. */
  readonly validator?: string;
  /** The admin who pushed it (`Type::"id"`), when, and an optional comment. */
  readonly by: string;
  readonly at: string;
  readonly comment?: string;
}

/** The pointer to the active pushed set. */
export interface ActivePolicy {
  readonly version: number;
  readonly hash: string;
  /** `push`, or `rollback` (reactivating `from`'s files as a new version). */
  readonly action: 'push' | 'rollback';
  readonly from?: number;
  readonly by: string;
  readonly at: string;
  /** The second admin, when approvals are required. */
  readonly approvedBy?: string;
}

/** A push or rollback waiting for a second admin (approvals required). */
export interface PendingPolicy {
  readonly pending: {
    readonly version: number;
    readonly hash: string;
    readonly action: 'push' | 'rollback';
    readonly from?: number;
    readonly by: string;
    readonly at: string;
  } | null;
}

/** A policy file's name: a plain `.cedar` file name (it only labels messages and the hash). */
export const POLICY_FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,120}\.cedar$/;
export const MAX_POLICY_FILES = 200;

/** The same policy whatever its id, comments and layout: its Cedar JSON without annotations. */
function semantic(p: LoadedPolicy): string {
  const { annotations: _a, ...rest } = p.json as typeof p.json & { annotations?: unknown };
  return canonicalJson(rest);
}

/** Label of the floor's pseudo-file in the hash of a set that needed the floor added. */
export const FLOOR_SOURCE = '(bundled forbid floor)';

/**
 * A pushed set compiled against the bundled schema, with the bundle's forbid policies as a floor:
 * every bundled forbid that the pushed set does not contain (same policy, whatever its id) is
 * added under the id `floor:<id>`, so no push can remove one. The hash is then that of the files
 * plus the added forbids, so decisions name what really decided them.
 *
 * Throws PolicySetError when the files do not validate.
 */
export function compilePushed(
  schema: PolicySource,
  files: readonly PolicyFile[],
  floor: readonly LoadedPolicy[],
  validated?: PushedSeal,
): PolicySet {
  const problems: string[] = [];
  const names = new Set<string>();
  for (const f of files) {
    if (!POLICY_FILE_NAME.test(f.name))
      problems.push(`${f.name.slice(0, 130)}: not a plain .cedar file name`);
    if (names.has(f.name)) problems.push(`${f.name}: the file is named twice`);
    names.add(f.name);
  }
  if (files.length === 0) problems.push('the pushed set has no policy file');
  if (files.length > MAX_POLICY_FILES) problems.push(`a set has at most ${MAX_POLICY_FILES} files`);
  if (problems.length > 0) throw new PolicySetError(problems);
  if (validated?.schemaHash === schemaHash(schema) && validated.validator === validatorFingerprint()) {
    // The same files over the same floor hash the same: then exactly this set was validated.
    const sealed = withFloor(schema, files, compileSealedPolicySet(schema, files), floor);
    if (sealed.hash === validated.hash) return sealed;
  }
  return withFloor(schema, files, compilePolicySet(schema, files), floor);
}

/**
 * What a stored version says was validated: its hash (floor included) and the schema's hash.
 * Only ever read from a version record that passed its MAC.
 */
export interface PushedSeal {
  readonly hash: string;
  readonly schemaHash: string;
  readonly validator?: string;
}

function withFloor(
  schema: PolicySource,
  files: readonly PolicyFile[],
  set: PolicySet,
  floor: readonly LoadedPolicy[],
): PolicySet {
  const have = new Set(set.policies.map(semantic));
  const missing = floor.filter((p) => p.effect === 'forbid' && !have.has(semantic(p)));
  if (missing.length === 0) return set;
  const floorText = missing.map((p) => p.text.trim()).join('\n');
  return {
    ...set,
    policies: [...set.policies, ...missing.map((p) => ({ ...p, id: `floor:${p.id}` }))],
    hash: policySetHash(schema, [...files, { name: FLOOR_SOURCE, text: floorText }]),
  };
}

/** The forbid policies of a set: the floor a pushed set cannot go below. */
export const forbidsOf = (set: PolicySet): LoadedPolicy[] =>
  set.policies.filter((p) => p.effect === 'forbid');

/** Checks a stored pointer's shape (it passed its MAC: a shape we cannot read still fails closed). */
export function checkPointer(payload: unknown): ActivePolicy {
  const p = payload as Partial<ActivePolicy> | null;
  if (
    !p ||
    !Number.isInteger(p.version) ||
    typeof p.hash !== 'string' ||
    (p.action !== 'push' && p.action !== 'rollback')
  ) {
    throw new IntegrityError();
  }
  return p as ActivePolicy;
}

export function checkVersion(payload: unknown, version: number): PolicyVersion {
  const v = payload as Partial<PolicyVersion> | null;
  if (
    !v ||
    v.version !== version ||
    typeof v.hash !== 'string' ||
    (v.schemaHash !== undefined && typeof v.schemaHash !== 'string') ||
    (v.validator !== undefined && typeof v.validator !== 'string') ||
    !Array.isArray(v.files) ||
    !v.files.every((f) => typeof f?.name === 'string' && typeof f?.text === 'string')
  ) {
    throw new IntegrityError();
  }
  return v as PolicyVersion;
}
