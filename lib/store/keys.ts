/*
 * Key design of the secrets table (pk/sk strings):
 *
 *   head      pk = P#<first segment>   sk = H#<path>           one per secret: latest, tags, deletion
 *   version   pk = S#<path>            sk = V#<10-digit n>     immutable; ciphertext + wrapped key
 *   current   pk = S#<path>            sk = C                  a copy of the current version's item
 *   root      pk = ROOTS               sk = R#<first segment>  one per first segment, for prefix lists
 *   deletion  pk = DEL                 sk = <purgeAt>#<path>   soft-deleted secrets, by purge time
 *   idem      pk = I#<scope>           sk = I                  remembered Idempotency-Key results
 *   rotation  pk = ROT                 sk = <nextAt>#<path>    secrets with a rotation policy, by due time
 *   requested pk = ROTREQ              sk = <at>#<path>        secrets waiting to be replaced by hand
 *   expiry    pk = EXP                 sk = <notAfter>#<path>  certificates, by the end of their validity
 *
 * A list of a prefix that contains `/` is one Query on one head partition (begins_with). A prefix
 * inside the first segment (or empty) first Queries ROOTS for the matching first segments, then
 * each of their partitions in order. Nothing scans.
 */

export const ROOTS_PK = 'ROOTS';
export const DELETION_PK = 'DEL';
export const ROTATION_PK = 'ROT';
export const EXPIRY_PK = 'EXP';
export const ROTATION_REQUEST_PK = 'ROTREQ';
/** Sorts after every character a path may contain, so `prefix + HIGH` bounds a begins_with range. */
export const HIGH = '~';

export interface ItemKey {
  readonly pk: string;
  readonly sk: string;
}

export function firstSegment(path: string): string {
  const i = path.indexOf('/');
  return i === -1 ? path : path.slice(0, i);
}

/** The head partition of a first segment. */
export const headPartition = (segment: string): string => `P#${segment}`;
/** A head's sort key; for a prefix, the lower bound of the heads under it. */
export const headSortKey = (path: string): string => `H#${path}`;
/** The path a head sort key names. */
export const pathOfHeadSortKey = (sk: string): string => sk.slice(2);
export const isHeadSortKey = (sk: string): boolean => sk.startsWith('H#');

export const headKey = (path: string): ItemKey => ({
  pk: headPartition(firstSegment(path)),
  sk: headSortKey(path),
});

/** The partition that holds every version of a secret. */
export const versionPartition = (path: string): string => `S#${path}`;
export const VERSION_SK_PREFIX = 'V#';
export const versionKey = (path: string, version: number): ItemKey => ({
  pk: versionPartition(path),
  sk: `${VERSION_SK_PREFIX}${String(version).padStart(10, '0')}`,
});

/**
 * The current item: a copy of the version item that the head's `current` label names, written in
 * the same transaction as the head and read with it in one BatchGetItem, so that a plain read
 * needs no second round trip. The head names its version and a digest of its content (`cv`, `cd`,
 * under the head MAC); a copy that does not match is never used. Its sort key sorts outside `V#`,
 * so version queries never see it.
 */
export const CURRENT_SK = 'C';
export const currentKey = (path: string): ItemKey => ({ pk: versionPartition(path), sk: CURRENT_SK });

/** A root marker's sort key; for a prefix, the lower bound of the first segments it matches. */
export const rootSortKey = (segment: string): string => `R#${segment}`;
/** The first segment a root marker names. */
export const segmentOfRootSortKey = (sk: string): string => sk.slice(2);
export const rootKey = (path: string): ItemKey => ({ pk: ROOTS_PK, sk: rootSortKey(firstSegment(path)) });

/** Deletion index entries sort by purge time, so expired ones are one range query. */
export const deletionKey = (path: string, purgeAt: string): ItemKey => ({
  pk: DELETION_PK,
  sk: `${purgeAt}#${path}`,
});

export const idempotencyKey = (scope: string): ItemKey => ({ pk: `I#${scope}`, sk: 'I' });

/**
 * Rotation due index entries sort by due time, so what is due is one range query. An entry is a
 * hint only: the job acts on the secret's verified head, never on the entry.
 */
export const rotationDueKey = (path: string, nextAt: string): ItemKey => ({
  pk: ROTATION_PK,
  sk: `${nextAt}#${path}`,
});

/** Kept apart from the due index: the scheduled job never reads what only a person can do. */
export const rotationRequestKey = (path: string, at: string): ItemKey => ({
  pk: ROTATION_REQUEST_PK,
  sk: `${at}#${path}`,
});

/** Expiry index entries sort by a certificate's notAfter: what expires before a time is one range. */
export const expiryKey = (path: string, notAfter: string): ItemKey => ({
  pk: EXPIRY_PK,
  sk: `${notAfter}#${path}`,
});
