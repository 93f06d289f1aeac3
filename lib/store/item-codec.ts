import { isSecretType, ownRecord, ROTATOR_STEPS } from '../../packages/client/src/contract.js';
import { ENVELOPE_ALGORITHM, type SealedValue } from '../crypto/envelope.js';
import { IntegrityError } from '../errors.js';
import { deletionKey, headKey, idempotencyKey, rotationDueKey, versionKey } from './keys.js';
import type {
  IdempotencyClaim,
  IdempotencyRecord,
  RotationRequest,
  RotationState,
  SecretHead,
  StageLabels,
  StoredVersion,
  VersionMeta,
} from './records.js';

/*
 * DynamoDB items (already unmarshalled) ↔ the store's records. Reading checks what a caller
 * relies on (numbers are integers, a sealed value is complete and uses the one algorithm):
 * an item that fails is tampering or corruption, an IntegrityError, never a partial record.
 */

export function headFromItem(item: Record<string, unknown>): SecretHead {
  const head: SecretHead = {
    path: String(item.path),
    latest: Number(item.latest),
    minVersion: Number(item.minVersion ?? 1),
    createdAt: String(item.createdAt),
    updatedAt: String(item.updatedAt),
    tags: tagsFromItem(item.tags),
    maxVersions: Number(item.maxVersions),
    ...(typeof item.description === 'string' ? { description: item.description } : {}),
    ...(typeof item.owner === 'string' ? { owner: item.owner } : {}),
    ...(typeof item.deletedAt === 'string' ? { deletedAt: item.deletedAt } : {}),
    ...(typeof item.purgeAt === 'string' ? { purgeAt: item.purgeAt } : {}),
    ...(item.rev !== undefined ? { rev: Number(item.rev) } : {}),
    ...(item.secretType !== undefined ? { type: secretTypeFromItem(item.secretType) } : {}),
    ...(item.typeInfo !== undefined ? { typeInfo: typeInfoFromItem(item.typeInfo) } : {}),
    ...(item.generator !== undefined ? { generator: generatorFromItem(item.generator) } : {}),
    ...(item.labels !== undefined ? { labels: labelsFromItem(item.labels) } : {}),
    ...(item.rotation !== undefined ? { rotation: rotationFromItem(item.rotation) } : {}),
    ...(item.rotationRequested !== undefined
      ? { rotationRequested: rotationRequestFromItem(item.rotationRequested) }
      : {}),
    ...(item.cv !== undefined || item.cd !== undefined
      ? { current: currentRefFromItem(item.cv, item.cd) }
      : {}),
  };
  if (head.rev !== undefined && !Number.isInteger(head.rev)) throw new IntegrityError();
  if (!Number.isInteger(head.latest) || !Number.isInteger(head.maxVersions)) throw new IntegrityError();
  return head;
}

function currentRefFromItem(version: unknown, digest: unknown): NonNullable<SecretHead['current']> {
  if (!isVersionNumber(version) || !(digest instanceof Uint8Array) || digest.length !== 32) {
    throw new IntegrityError();
  }
  return { version, digest };
}

function secretTypeFromItem(raw: unknown): NonNullable<SecretHead['type']> {
  if (!isSecretType(raw)) throw new IntegrityError();
  return raw;
}

/** The type metadata is under the head's MAC: only its shape is checked here. */
function typeInfoFromItem(raw: unknown): NonNullable<SecretHead['typeInfo']> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new IntegrityError();
  return raw as NonNullable<SecretHead['typeInfo']>;
}

/** A generator's parameters, stored as JSON text (one string attribute, covered by the head MAC). */
function generatorFromItem(raw: unknown): Record<string, unknown> {
  return jsonObjectFromItem(raw);
}

function jsonObjectFromItem(raw: unknown): Record<string, unknown> {
  if (typeof raw !== 'string') throw new IntegrityError();
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw new IntegrityError();
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new IntegrityError();
  return parsed as Record<string, unknown>;
}

const isVersionNumber = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1;

/** Staging labels, JSON text: each a version number; `current` always present. */
function labelsFromItem(raw: unknown): StageLabels {
  const o = jsonObjectFromItem(raw);
  if (!isVersionNumber(o.current)) throw new IntegrityError();
  for (const k of ['previous', 'pending'] as const) {
    if (o[k] !== undefined && !isVersionNumber(o[k])) throw new IntegrityError();
  }
  return {
    current: o.current,
    ...(o.previous !== undefined ? { previous: o.previous as number } : {}),
    ...(o.pending !== undefined ? { pending: o.pending as number } : {}),
  };
}

/** The rotation policy, JSON text: its shape is checked (the head's MAC vouches for the content). */
function rotationFromItem(raw: unknown): RotationState {
  const o = jsonObjectFromItem(raw);
  if (
    typeof o.everySeconds !== 'number' ||
    !Number.isInteger(o.everySeconds) ||
    o.everySeconds < 1 ||
    typeof o.nextAt !== 'string' ||
    Number.isNaN(Date.parse(o.nextAt)) ||
    (o.lastRotatedAt !== undefined && typeof o.lastRotatedAt !== 'string') ||
    (o.rotator !== undefined && !isRotator(o.rotator)) ||
    (o.progress !== undefined && !isProgress(o.progress))
  ) {
    throw new IntegrityError();
  }
  return o as unknown as RotationState;
}

/** A request to replace the value by hand, JSON text: its shape is checked. */
function rotationRequestFromItem(raw: unknown): RotationRequest {
  const o = jsonObjectFromItem(raw);
  if (typeof o.at !== 'string' || Number.isNaN(Date.parse(o.at)) || typeof o.reason !== 'string') {
    throw new IntegrityError();
  }
  return { at: o.at, reason: o.reason };
}

/** Where a rotator is called decides who is handed grants: its shape is checked like the rest. */
function isRotator(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const r = v as Record<string, unknown>;
  return (
    (r.kind === 'webhook' && typeof r.url === 'string') || (r.kind === 'lambda' && typeof r.arn === 'string')
  );
}

function isProgress(v: unknown): boolean {
  if (typeof v !== 'object' || v === null) return false;
  const p = v as Record<string, unknown>;
  return (
    isVersionNumber(p.version) &&
    (ROTATOR_STEPS as readonly unknown[]).includes(p.step) &&
    (p.failed === undefined || typeof p.failed === 'boolean')
  );
}

/**
 * A head's tags: a map of strings, kept in a prototype-less object (unmarshall builds a plain `{}`
 * by assignment, where a stored `__proto__` key would not be a key).
 */
function tagsFromItem(raw: unknown): Record<string, string> {
  if (raw === undefined) return ownRecord([]);
  const entries =
    raw instanceof Map
      ? [...raw.entries()]
      : typeof raw === 'object' && raw !== null
        ? Object.entries(raw)
        : null;
  if (entries === null || entries.some(([k, v]) => typeof k !== 'string' || typeof v !== 'string')) {
    throw new IntegrityError();
  }
  return ownRecord(entries as [string, string][]);
}

/** The head item; marshall it with `removeUndefinedValues` (absent fields are not stored). */
export function headToItem(head: SecretHead): Record<string, unknown> {
  return {
    ...headKey(head.path),
    type: 'head',
    path: head.path,
    latest: head.latest,
    minVersion: head.minVersion,
    createdAt: head.createdAt,
    updatedAt: head.updatedAt,
    description: head.description,
    // A Map, not the object: marshall reads `obj.constructor.name` to pick a type, so a tag named
    // `constructor` would make it refuse the item.
    tags: new Map(Object.entries(head.tags)),
    maxVersions: head.maxVersions,
    owner: head.owner,
    deletedAt: head.deletedAt,
    purgeAt: head.purgeAt,
    // `type` names the item's kind ('head'); the secret's type is `secretType`.
    secretType: head.type,
    typeInfo: head.typeInfo,
    rev: head.rev,
    generator: head.generator === undefined ? undefined : JSON.stringify(head.generator),
    labels: head.labels === undefined ? undefined : JSON.stringify(head.labels),
    rotation: head.rotation === undefined ? undefined : JSON.stringify(head.rotation),
    rotationRequested:
      head.rotationRequested === undefined ? undefined : JSON.stringify(head.rotationRequested),
    cv: head.current?.version,
    cd: head.current?.digest,
  };
}

export function versionFromItem(item: Record<string, unknown>): StoredVersion {
  const meta: VersionMeta = {
    path: String(item.path),
    version: Number(item.version),
    createdAt: String(item.createdAt),
    destroyed: item.destroyed === true,
    ...(typeof item.createdBy === 'string' ? { createdBy: item.createdBy } : {}),
    ...(typeof item.kp === 'string' ? { keyProvider: item.kp } : {}),
    ...(typeof item.kid === 'string' ? { keyId: item.kid } : {}),
    ...(item.vt !== undefined ? { valueType: secretTypeFromItem(item.vt) } : {}),
  };
  if (meta.destroyed || item.ct === undefined) return meta;
  if (
    !(item.ct instanceof Uint8Array) ||
    !(item.iv instanceof Uint8Array) ||
    !(item.wk instanceof Uint8Array) ||
    item.alg !== ENVELOPE_ALGORITHM
  ) {
    throw new IntegrityError();
  }
  return {
    ...meta,
    sealed: {
      algorithm: ENVELOPE_ALGORITHM,
      ciphertext: item.ct,
      iv: item.iv,
      wrappedKey: item.wk,
      keyProvider: String(item.kp),
      keyId: String(item.kid),
    },
  };
}

/** A new version item; marshall it with `removeUndefinedValues` (`createdBy` may be absent). */
export function versionToItem(
  path: string,
  version: StoredVersion & { sealed: SealedValue },
): Record<string, unknown> {
  return {
    ...versionKey(path, version.version),
    type: 'version',
    path,
    version: version.version,
    createdAt: version.createdAt,
    createdBy: version.createdBy,
    alg: version.sealed.algorithm,
    iv: version.sealed.iv,
    ct: version.sealed.ciphertext,
    wk: version.sealed.wrappedKey,
    kp: version.sealed.keyProvider,
    kid: version.sealed.keyId,
    // Absent for text (as for every version written before types); bound into the value's AAD.
    vt: version.valueType === 'text' ? undefined : version.valueType,
  };
}

export function idempotencyFromItem(item: Record<string, unknown>): IdempotencyRecord {
  return { fingerprint: String(item.fingerprint), result: item.result as Record<string, unknown> };
}

export function idempotencyToItem(claim: IdempotencyClaim): Record<string, unknown> {
  return {
    ...idempotencyKey(claim.scope),
    type: 'idempotency',
    fingerprint: claim.fingerprint,
    result: claim.result,
    expiresAt: claim.expiresAt,
    ttl: claim.expiresAt,
  };
}

/** A deletion index entry: which secret to purge, and when. */
export interface DeletionEntry {
  path: string;
  purgeAt: string;
}

export function deletionFromItem(item: Record<string, unknown>): DeletionEntry {
  return { path: String(item.path), purgeAt: String(item.purgeAt) };
}

export function deletionToItem(entry: DeletionEntry): Record<string, unknown> {
  return { ...deletionKey(entry.path, entry.purgeAt), path: entry.path, purgeAt: entry.purgeAt };
}

/** A rotation due index entry: which secret, and when its rotation is due. */
export interface RotationDueEntry {
  path: string;
  nextAt: string;
}

export function rotationDueFromItem(item: Record<string, unknown>): RotationDueEntry {
  return { path: String(item.path), nextAt: String(item.nextAt) };
}

export function rotationDueToItem(entry: RotationDueEntry): Record<string, unknown> {
  return { ...rotationDueKey(entry.path, entry.nextAt), path: entry.path, nextAt: entry.nextAt };
}
