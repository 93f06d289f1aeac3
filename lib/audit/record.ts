import { createHash, createHmac, type KeyObject, sign, verify } from 'node:crypto';
import type { Principal } from '../authn/principal.js';
import { canonicalJson, encodeFields } from '../crypto/canonical.js';
import type { AuditContext, AuditControlChange, AuditOutcome } from './trail.js';

/**
 * The audit record format, version 1.
 *
 * A chain is a sequence of records written by one process (one Lambda execution environment, one
 * slot of the local server's pool). Its record 0 (`chain-start`) carries a certificate: the
 * chain's ephemeral Ed25519 public key signed by the root audit key. Every later record names the
 * hash of the record before it (`prev`) and is signed by the chain's key. Checkpoints
 * (checkpoint.ts) sign every chain head with the root key.
 *
 * Every field is always present (null when it does not apply) so that the field set is stable for
 * readers, CloudWatch Logs Insights queries and the verifier alike.
 */
export const RECORD_VERSION = 1;

/** Domain tags: bytes signed or hashed for one purpose never verify for another. */
const HASH_DOMAIN = 'coffer/audit/v1/record-hash';
const RECORD_SIG_DOMAIN = 'coffer/audit/v1/record-signature';
const CERT_DOMAIN = 'coffer/audit/v1/certificate';
const CHECKPOINT_DOMAIN = 'coffer/audit/v1/checkpoint';
const HMAC_DOMAIN = 'coffer/audit/v1/hmac';

/** A request record: one per request that reached the app. */
export interface RequestRecord {
  readonly v: number;
  readonly type: 'request';
  readonly chain: string;
  readonly seq: number;
  readonly prev: string;
  /** When the request arrived (ISO 8601). */
  readonly time: string;
  readonly requestId: string;
  readonly principal: { readonly type: string; readonly id: string } | null;
  readonly authMethod: string | null;
  /** How the principal proved itself (see RecordIdentity); `null` if authentication failed. */
  readonly identity: RecordIdentity | null;
  readonly action: string | null;
  readonly method: string;
  /** The URL path (without the query string, which is only kept as an HMAC). */
  readonly route: string;
  readonly path: string | null;
  readonly version: number | null;
  readonly decision: 'allow' | 'deny' | null;
  readonly policyIds: readonly string[];
  readonly policyErrors: readonly string[];
  readonly policySetHash: string | null;
  /** The HTTP status. A change's record, written inside its transaction, says 200: it committed. */
  readonly status: number;
  readonly error: string | null;
  readonly sourceIp: string;
  readonly userAgent: string;
  /** Keyed HMAC-SHA256 (hex) of fields that may be sensitive: `query`, `idempotencyKey`. */
  readonly hmac: Readonly<Record<string, string>>;
  /**
   * The head a change wrote: its revision and MAC (base64); null for other requests and in records
   * written before heads were authenticated (absent there).
   */
  readonly head: { readonly rev: number; readonly mac: string } | null;
  /** The key ids a key operation involved (`coffer keys …`); absent for every other request. */
  readonly keyIds?: readonly string[];
  /**
   * The control record an admin change wrote (policy push or rollback, revocation), with the
   * hashes of what was in force before and after; null for other requests and absent in records
   * written before control changes were recorded.
   */
  readonly control: AuditControlChange | null;
  readonly hmacKeyId: string | null;
  readonly hash: string;
  readonly sig: string;
}

/**
 * The identity behind a request's principal, so that a reviewer can tell a person from a workload
 * and trace a credential without the principal's id having to say it:
 * - `kind`: `person` (an OIDC or dev token of a person), `iam` (an IAM role or user through API
 *   Gateway), `workload-oidc` (a CI or Kubernetes token through a workload mapping),
 *   `workload-certificate` (a client certificate), `rotation-grant` (an external rotator reading
 *   one stage with its step's grant, docs/rotation.md);
 * - `issuer`: the token issuer's alias, or the certificate's issuer DN; `null` for IAM;
 * - `fingerprint`: the certificate's SHA-256 fingerprint; `null` for tokens and IAM.
 * Public facts only: never a token, a signature or a certificate's key.
 */
export interface RecordIdentity {
  readonly kind: 'person' | 'iam' | 'workload-oidc' | 'workload-certificate' | 'rotation-grant';
  readonly issuer: string | null;
  readonly fingerprint: string | null;
}

/** The record's identity for a principal. */
export function recordIdentity(p: Principal): RecordIdentity {
  const kind =
    p.authMethod === 'grant'
      ? 'rotation-grant'
      : p.type === 'Workload'
        ? p.kind === 'certificate'
          ? 'workload-certificate'
          : 'workload-oidc'
        : p.authMethod === 'iam'
          ? 'iam'
          : 'person';
  return {
    kind,
    issuer: p.issuer !== undefined ? clip(p.issuer) : null,
    fingerprint: p.fingerprint !== undefined ? clip(p.fingerprint, 128) : null,
  };
}

/** Record 0 of a chain: the certificate of the chain's signing key. */
export interface ChainStartRecord {
  readonly v: number;
  readonly type: 'chain-start';
  readonly chain: string;
  readonly seq: 0;
  readonly prev: '';
  readonly time: string;
  /** The writer never appends to the chain after this time; a fresh chain takes over. */
  readonly notAfter: string;
  /** What kind of process wrote the chain (`local-server`, `lambda`…); never a secret. */
  readonly writer: string;
  /** The chain's Ed25519 public key, SPKI DER, base64. */
  readonly writerKey: string;
  readonly writerAlg: 'Ed25519';
  readonly rootKeyId: string;
  readonly rootAlg: string;
  /** The root key's signature (base64) over the certificate fields. */
  readonly certSig: string;
  readonly hash: string;
  readonly sig: string;
}

export type AuditRecord = RequestRecord | ChainStartRecord;

export interface CheckpointHead {
  readonly chain: string;
  readonly seq: number;
  readonly hash: string;
}

/** A root-signed statement of every recently active chain's head, linked to the checkpoint before. */
export interface Checkpoint {
  readonly v: number;
  readonly type: 'checkpoint';
  readonly seq: number;
  readonly time: string;
  /** The previous checkpoint's signature ('' for the first). */
  readonly prevSig: string;
  readonly heads: readonly CheckpointHead[];
  readonly rootKeyId: string;
  readonly rootAlg: string;
  /**
   * The generation of every authenticated control record (`<kind>/<id>` → generation) when the
   * checkpoint was written, signed with the rest, so a control record later put back to a lower
   * generation is caught. Absent in checkpoints written before, and by writers without the store
   * (they still verify: the signature covers the fields a checkpoint has).
   */
  readonly generations?: Readonly<Record<string, number>>;
  readonly sig: string;
}

/** A sequence number as records and checkpoints carry it: a non-negative safe integer. */
export const isSequenceNumber = (v: unknown): v is number =>
  typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

type Unsealed<T> = Omit<T, 'hash' | 'sig'>;

/** The SHA-256 (hex) of a record: every field but `hash` and `sig`, as canonical JSON. */
export function recordHash(record: Record<string, unknown>): string {
  const { hash: _h, sig: _s, ...body } = record;
  return createHash('sha256')
    .update(encodeFields(HASH_DOMAIN, [canonicalJson(body)]))
    .digest('hex');
}

export function recordSignatureMessage(hash: string): Buffer {
  return encodeFields(RECORD_SIG_DOMAIN, [hash]);
}

/** Hashes a record and signs the hash with the chain's key. */
export function sealRecord<T extends AuditRecord>(body: Unsealed<T>, chainKey: KeyObject): T {
  const hash = recordHash(body as Record<string, unknown>);
  const sig = sign(null, recordSignatureMessage(hash), chainKey).toString('base64');
  return { ...body, hash, sig } as T;
}

export function verifyRecordSignature(hash: string, sig: string, chainPublicKey: KeyObject): boolean {
  try {
    return verify(null, recordSignatureMessage(hash), chainPublicKey, Buffer.from(sig, 'base64'));
  } catch {
    return false;
  }
}

/** The bytes the root key signs to certify a chain's key. */
export function certificateMessage(
  cert: Pick<
    ChainStartRecord,
    'chain' | 'time' | 'notAfter' | 'writer' | 'writerKey' | 'writerAlg' | 'rootKeyId'
  >,
): Buffer {
  return encodeFields(CERT_DOMAIN, [
    canonicalJson({
      chain: cert.chain,
      time: cert.time,
      notAfter: cert.notAfter,
      writer: cert.writer,
      writerKey: cert.writerKey,
      writerAlg: cert.writerAlg,
      rootKeyId: cert.rootKeyId,
    }),
  ]);
}

/** The bytes the root key signs for a checkpoint: every field but `sig`. */
export function checkpointMessage(checkpoint: Omit<Checkpoint, 'sig'> | Record<string, unknown>): Buffer {
  const { sig: _s, ...body } = checkpoint as Record<string, unknown>;
  return encodeFields(CHECKPOINT_DOMAIN, [canonicalJson(body)]);
}

/**
 * Verifies a root signature with a public key given out of band. The algorithm follows the key's
 * type, never a field of the record: Ed25519 for the local root key, ECDSA P-256 over SHA-256 with
 * a DER signature for the KMS key (which signs the message's SHA-256 digest).
 */
export function verifyRootSignature(keys: readonly KeyObject[], message: Buffer, sigBase64: string): boolean {
  const sig = Buffer.from(sigBase64, 'base64');
  for (const key of keys) {
    try {
      if (key.asymmetricKeyType === 'ed25519') {
        if (verify(null, message, key, sig)) return true;
      } else if (key.asymmetricKeyType === 'ec') {
        if (verify('sha256', message, { key, dsaEncoding: 'der' }, sig)) return true;
      }
    } catch {
      // A malformed signature is a failed one.
    }
  }
  return false;
}

/** The key that keeps sensitive fields (query strings, client metadata) out of records in clear. */
export interface FieldHasher {
  readonly keyId: string;
  hash(field: string, value: string): string;
}

/** HMAC-SHA256 under a secret key: reviewers holding the key can test a guess, nobody else can. */
export function hmacFieldHasher(key: Uint8Array): FieldHasher {
  if (key.length < 32) throw new Error('the audit HMAC key must be at least 32 bytes');
  const material = Buffer.from(key);
  const keyId = `hmac:${createHash('sha256').update('coffer/audit-hmac-key-id').update(material).digest('hex').slice(0, 16)}`;
  return {
    keyId,
    hash: (field, value) =>
      createHmac('sha256', material)
        .update(encodeFields(HMAC_DOMAIN, [field, value]))
        .digest('hex'),
  };
}

const MAX_POLICY_IDS = 32;
const MAX_POLICY_ERRORS = 8;
const MAX_TEXT = 512;

const clip = (s: string, n = MAX_TEXT) => (s.length > n ? s.slice(0, n) : s);

/**
 * The fields of a request record that come from the request, before it joins a chain. Built only
 * from the AuditContext, which by contract never holds a value, a token or a request signature;
 * sensitive extras are HMAC'd here and never copied.
 */
export function requestFields(
  ctx: AuditContext,
  outcome: AuditOutcome,
  hasher: FieldHasher | undefined,
): Omit<Unsealed<RequestRecord>, 'v' | 'type' | 'chain' | 'seq' | 'prev'> {
  const hmac: Record<string, string> = {};
  if (hasher) {
    for (const [field, value] of Object.entries(ctx.sensitive ?? {})) {
      if (value !== '') hmac[field] = hasher.hash(field, value);
    }
  }
  const decision = ctx.decision;
  return {
    time: ctx.time,
    requestId: ctx.requestId,
    principal: ctx.principal ? { type: ctx.principal.type, id: clip(ctx.principal.id) } : null,
    authMethod: ctx.authMethod ?? null,
    identity: ctx.principal ? recordIdentity(ctx.principal) : null,
    action: ctx.action ?? null,
    method: clip(ctx.method, 16),
    route: clip(ctx.route, 600),
    path: ctx.path ?? null,
    version: ctx.version ?? null,
    decision: decision ? (decision.allowed ? 'allow' : 'deny') : null,
    policyIds: decision ? decision.policyIds.slice(0, MAX_POLICY_IDS).map((p) => clip(p, 256)) : [],
    policyErrors: decision ? decision.errors.slice(0, MAX_POLICY_ERRORS).map((e) => clip(e, 256)) : [],
    policySetHash: ctx.policySetHash ?? null,
    status: outcome.status,
    error: outcome.code ?? null,
    sourceIp: clip(ctx.sourceIp, 64),
    userAgent: clip(ctx.userAgent, 256),
    hmac,
    hmacKeyId: hasher && Object.keys(hmac).length > 0 ? hasher.keyId : null,
    // Only a committed change names the head it wrote (a failure record's head was never written).
    head: ctx.head && outcome.status === 200 ? { rev: ctx.head.rev, mac: ctx.head.mac } : null,
    ...(ctx.keyIds && ctx.keyIds.length > 0
      ? { keyIds: ctx.keyIds.slice(0, 64).map((k) => clip(k, 256)) }
      : {}),
    control: ctx.control && outcome.status === 200 ? controlFields(ctx.control) : null,
  };
}

function controlFields(c: AuditControlChange): AuditControlChange {
  return {
    kind: clip(c.kind, 64),
    id: clip(c.id, 64),
    generation: c.generation,
    change: clip(c.change),
    previousHash: c.previousHash === null ? null : clip(c.previousHash, 128),
    hash: c.hash === null ? null : clip(c.hash, 128),
  };
}

/**
 * The CloudWatch copy: one flat JSON object per record with always the same keys, so that Logs
 * Insights can `filter decision = "deny"` or `stats count(*) by principalId` without parsing.
 */
export function logLine(record: AuditRecord | Checkpoint): Record<string, unknown> {
  if (record.type === 'checkpoint') {
    return {
      audit: 'coffer.v1',
      type: 'checkpoint',
      time: record.time,
      checkpointSeq: record.seq,
      heads: record.heads.length,
      rootKeyId: record.rootKeyId,
      sig: record.sig,
    };
  }
  if (record.type === 'chain-start') {
    return {
      audit: 'coffer.v1',
      type: 'chain-start',
      time: record.time,
      chain: record.chain,
      seq: record.seq,
      notAfter: record.notAfter,
      writer: record.writer,
      rootKeyId: record.rootKeyId,
      hash: record.hash,
    };
  }
  return {
    audit: 'coffer.v1',
    type: 'request',
    time: record.time,
    requestId: record.requestId,
    principalType: record.principal?.type ?? null,
    principalId: record.principal?.id ?? null,
    authMethod: record.authMethod,
    identityKind: record.identity?.kind ?? null,
    identityIssuer: record.identity?.issuer ?? null,
    fingerprint: record.identity?.fingerprint ?? null,
    action: record.action,
    method: record.method,
    route: record.route,
    path: record.path,
    version: record.version,
    decision: record.decision,
    policyIds: record.policyIds,
    policySetHash: record.policySetHash,
    control: record.control ?? null,
    status: record.status,
    error: record.error,
    sourceIp: record.sourceIp,
    userAgent: record.userAgent,
    hmac: record.hmac,
    keyIds: record.keyIds ?? null,
    chain: record.chain,
    seq: record.seq,
    prev: record.prev,
    hash: record.hash,
    sig: record.sig,
  };
}
