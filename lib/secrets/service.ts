import { createHash, randomBytes, randomUUID } from 'node:crypto';
import {
  BATCH_GET_MAX_PATHS,
  type BatchGetItem,
  type GenerateRequest,
  type GenerateResult,
  type LifecycleItem,
  type LifecyclePage,
  type ListPage,
  MAX_VERSIONS,
  type MetadataPatch,
  ownRecord,
  type PutRequest,
  type PutResult,
  RECOVERY_DAYS,
  type RotationInfo,
  type RotationPolicyRequest,
  type RotationResult,
  type SecretMetadata,
  type SecretType,
  type SecretValue,
  VALUE_MAX_BYTES,
} from '../../packages/client/src/contract.js';
import type { ErrorCode } from '../../packages/client/src/error-registry.js';
import { retry } from '../../packages/client/src/retry.js';
import type { AuditContext, AuditTrail } from '../audit/trail.js';
import type { Principal } from '../authn/principal.js';
import type {
  Action,
  Authorizer,
  Decision,
  RequestContext,
  Resource,
  SecretResource,
} from '../authz/authorizer.js';
import { canonicalJson } from '../crypto/canonical.js';
import type { Envelope } from '../crypto/envelope.js';
import {
  CaNotAllowedError,
  CasConflictError,
  CofferError,
  ForbiddenError,
  IdempotencyKeyReusedError,
  InvalidRequestError,
  NameNotAllowedError,
  NotACaError,
  NotFoundError,
  RotationStepFailedError,
  SecretDeletedError,
  ValidityTooLongError,
  ValueTooLargeError,
  WriteContentionError,
} from '../errors.js';
import { HmacStorageMacKey } from '../keys/storage-mac.js';
import { validatePath, validatePrefix } from '../paths.js';
import { type CursorBinding, CursorSealer } from '../store/cursor.js';
import type {
  ListEntry,
  RotationState,
  SecretHead,
  Stage,
  StoredVersion,
  VersionMeta,
} from '../store/records.js';
import {
  ChangeConditionFailed,
  type SealedVersion,
  type SecretsStore,
  versionId,
} from '../store/secrets-store.js';
import {
  checkIssuerConstraints,
  type ResolvedCertificateRequest,
} from '../values/generate/certificate-spec.js';
import {
  describeValue,
  generateValue,
  type IssuerMaterial,
  issuerConstraints,
  readIssuer,
  resolveGenerator,
} from '../values/generate/index.js';
import {
  decodeIndexCursor,
  encodeIndexCursor,
  type LifecycleIndex,
  type LifecycleQuery,
  lifecycleBound,
  lifecycleItemOf,
} from './lifecycle.js';
import { Purger } from './purger.js';
import { nextAtAfterWrite, nextRotationAt, parseRenewBefore } from './renewal.js';
import { ExternalRotation, policyOf, progressOf, type RotationOps } from './rotators/external.js';
import { RotationGrants } from './rotators/grants.js';
import { checkRotator, type RotatorSettings } from './rotators/invoker.js';
import {
  currentOf,
  formatDuration,
  keptFrom,
  labelsAfterRotation,
  labelsAfterWrite,
  labelsOf,
  MAX_ROTATION_SECONDS,
  MIN_ROTATION_SECONDS,
  parseDuration,
  versionOfStage,
} from './stages.js';
import { checkValue } from './value-types.js';

// The limits of the wire contract (packages/client/src/contract.ts), under the service's names.
export const MAX_VALUE_BYTES: number = VALUE_MAX_BYTES;
export const DEFAULT_MAX_VERSIONS: number = MAX_VERSIONS.default;
export const MAX_MAX_VERSIONS: number = MAX_VERSIONS.max;
export const DEFAULT_RECOVERY_DAYS: number = RECOVERY_DAYS.default;
export const MIN_RECOVERY_DAYS: number = RECOVERY_DAYS.min;
export const MAX_RECOVERY_DAYS: number = RECOVERY_DAYS.max;
export const IDEMPOTENCY_WINDOW_SECONDS = 24 * 3600;
/**
 * A listing reads the store in pages of what it still needs, doubling (up to LIST_SCAN_PAGE
 * entries) while it skips entries the caller may not list. A folder's content is read from
 * FOLDER_FIRST_SCAN entries on, the same way.
 */
const LIST_SCAN_PAGE = 1000;
const FOLDER_FIRST_SCAN = 10;
/**
 * A write without `cas` that loses a race is tried again: up to 12 attempts in all, full-jitter
 * waits from 10 ms doubling to at most 400 ms (about 2 s in all at worst), enough for dozens of
 * concurrent writers to one secret to all land.
 */
const PLAIN_WRITE_RETRY = { attempts: 12, baseDelayMs: 10, maxDelayMs: 400 } as const;
/** Index entries a lifecycle listing or count reads per Query at most. */
const LIFECYCLE_SCAN = 1000;

/** Pruned versions deleted inside the write's own transaction; more are deleted right after. */
const PRUNE_IN_TRANSACTION = 50;

/** Who is asking and the request's audit record, passed to every service call. */
export interface Caller {
  readonly principal: Principal;
  readonly context: RequestContext;
  readonly audit: AuditContext;
}

export const MAX_BATCH_PATHS: number = BATCH_GET_MAX_PATHS;
/**
 * Failures a batch answers per path: what a single read would have answered with a 4xx. Anything
 * else fails the whole batch, so that a damaged stored value (integrity_error) or an unavailable
 * store or key service is answered and logged exactly as for a single read.
 */
const BATCH_ITEM_ERRORS: ReadonlySet<string> = new Set<ErrorCode>(['not_found', 'forbidden', 'invalid_path']);

export interface ListOptions {
  readonly prefix: string;
  readonly delimiter?: string;
  readonly limit: number;
  readonly cursor?: string;
}

export type ListResult = ListPage;

/** The body of a PUT (the wire contract's). */
export type PutInput = Readonly<PutRequest>;

/**
 * One write of a new version, as PUT and generation share it. `value` is called only after the
 * write was authorized, and at most once however many times a plain write is tried again (a
 * generated value is made once). `sameValue` decides whether a replayed Idempotency-Key's first
 * value is this request's (a PUT compares values; a generation asks for a new random value each
 * time, so only its parameters, in `fingerprint`, can tell two requests apart).
 */
interface WriteSpec {
  readonly cas?: number;
  readonly description?: string;
  readonly tags?: Readonly<Record<string, string>>;
  readonly type?: SecretType;
  readonly generator?: Readonly<Record<string, unknown>>;
  /** Written as bytes (`valueBase64`): a new secret without a type is then `binary`. */
  readonly asBytes?: boolean;
  readonly value: () => Promise<Buffer>;
  readonly fingerprint: string;
  /** Whether a replayed request sent the bytes the first one stored (absent: not checked). */
  readonly sameValue?: (first: Buffer) => boolean;
}

/** A committed write, with the value when this call wrote it (absent when it was a replay). */
interface WriteOutcome {
  readonly result: PutResult;
  readonly value?: Buffer;
}

export type { BatchGetItem, MetadataPatch, PutResult, SecretMetadata, SecretValue };

export interface SecretServiceDeps {
  readonly store: SecretsStore;
  readonly envelope: Envelope;
  readonly authorizer: Authorizer;
  readonly audit: AuditTrail;
  /** Injected for tests of time-dependent behaviour (purge, idempotency windows). */
  readonly now?: () => Date;
  /**
   * Decides when a soft-deleted secret's recovery window has ended and purges it. Default: a
   * purger over `store` with the same clock (the composition root passes the one the periodic
   * purge uses).
   */
  readonly purger?: Purger;
  /**
   * Seals list cursors for clients (see CursorSealer). Default: a random key of this process, so
   * cursors do not outlive it; the composition root passes one derived from the audit HMAC key.
   */
  readonly cursors?: CursorSealer;
  /** The external rotators this installation calls (docs/rotation.md). Default: none. */
  readonly rotators?: RotatorSettings;
  /**
   * Makes the grants handed to external rotators. Default: grants under a random key of this
   * process (only this process verifies them); the composition root passes the installation's.
   */
  readonly grants?: RotationGrants;
}

const secretResource = (
  path: string,
  tags: Readonly<Record<string, string>>,
  owner?: string,
): SecretResource => ({
  kind: 'Secret',
  path,
  tags,
  ...(owner ? { owner } : {}),
});

const resourceOf = (head: SecretHead): SecretResource => secretResource(head.path, head.tags, head.owner);

/**
 * The secret service: versions, check-and-set, idempotent writes, soft delete and restore,
 * destroy, metadata, list and purge. Every call is authorized here, before any value is read, so
 * that every entry point (HTTP routes, batch reads) decides the same way.
 */
export class SecretService {
  private readonly store: SecretsStore;
  private readonly envelope: Envelope;
  private readonly authorizer: Authorizer;
  private readonly audit: AuditTrail;
  private readonly now: () => Date;
  private readonly purger: Purger;
  private readonly cursors: CursorSealer;
  private readonly plainWrites = new PathQueue();
  private readonly rotators: RotatorSettings;
  private readonly external: ExternalRotation;

  constructor(deps: SecretServiceDeps) {
    this.store = deps.store;
    this.envelope = deps.envelope;
    this.authorizer = deps.authorizer;
    this.audit = deps.audit;
    this.now = deps.now ?? (() => new Date());
    this.purger = deps.purger ?? new Purger({ store: deps.store, now: this.now });
    this.cursors = deps.cursors ?? new CursorSealer(randomBytes(32));
    this.rotators = deps.rotators ?? {};
    const grants =
      deps.grants ??
      new RotationGrants({
        key: new HmacStorageMacKey([{ id: 'process', key: randomBytes(32) }]),
        binding: deps.store.binding,
        now: this.now,
      });
    this.external = new ExternalRotation(this.rotators, grants, this.now);
  }

  /**
   * Writes a new version. `cas: 0` means "only if absent", `cas: n` "only if latest is n"; a lost
   * race is then 409 `cas_conflict`. Without `cas` the caller asked for no check, so a concurrent
   * change is not its failure: the write is tried again (bounded, full jitter), each attempt
   * re-reading the head and deciding again, so that a concurrent retag that forbids the write
   * does. Past the bound it is 503 `write_contention` (retryable), never 409.
   */
  async put(caller: Caller, rawPath: string, input: PutInput, idempotencyKey?: string): Promise<PutResult> {
    const path = validatePath(rawPath);
    this.note(caller, 'write', path);
    const bytes = valueBytes(input);
    const spec: WriteSpec = {
      ...(input.cas !== undefined ? { cas: input.cas } : {}),
      ...(input.description !== undefined ? { description: input.description } : {}),
      ...(input.tags !== undefined ? { tags: input.tags } : {}),
      ...(input.type !== undefined ? { type: input.type } : {}),
      asBytes: input.valueBase64 !== undefined,
      value: async () => bytes,
      fingerprint: this.fingerprint(path, input),
      sameValue: (first) => first.equals(bytes),
    };
    return (await this.write(caller, path, spec, idempotencyKey)).result;
  }

  /**
   * Generates a value on the server and writes it as a new version (`POST /v1/generate`), with the
   * same `cas`, Idempotency-Key and authorization (`write`) as a PUT. The type and the generator's
   * parameters go into the head. A certificate with an `issuer` also needs `issue` on that CA
   * secret: its limits (allowed names, maximum validity) are checked, and only then, once the
   * write is allowed too, is the CA's key decrypted, in this process, to sign. The answer holds
   * what may be said about the value, never the value.
   */
  async generate(
    caller: Caller,
    rawPath: string,
    input: GenerateRequest,
    idempotencyKey?: string,
  ): Promise<GenerateResult> {
    const path = validatePath(rawPath);
    this.note(caller, 'write', path);
    const { cas, description, tags, ...params } = input;
    const generator = resolveGenerator(params);
    // As plain JSON data: what the head keeps, the fingerprint hashes and the answer shows.
    const parameters = JSON.parse(JSON.stringify(generator)) as Record<string, unknown>;
    const issuer =
      generator.type === 'certificate' && generator.issuer !== undefined
        ? await this.issuerFor(caller, path, generator)
        : undefined;
    let made: Promise<Buffer> | undefined;
    const spec: WriteSpec = {
      ...(cas !== undefined ? { cas } : {}),
      ...(description !== undefined ? { description } : {}),
      ...(tags !== undefined ? { tags } : {}),
      type: generator.type,
      generator: parameters,
      value: () => {
        made ??= (async () =>
          Buffer.from(
            await generateValue(generator, issuer ? await issuer() : undefined, this.now()),
            'utf8',
          ))();
        return made;
      },
      fingerprint: this.generateFingerprint(path, input, parameters),
    };
    const { result, value } = await this.write(caller, path, spec, idempotencyKey);
    // A replay describes the version the first request wrote.
    const written = value ? value.toString('utf8') : await this.openVersion(path, result.version);
    return {
      ...result,
      type: generator.type,
      generator: parameters,
      ...describeValue(generator.type, written),
    };
  }

  /**
   * The CA that is to sign a certificate: `issue` on it is required (a caller who may not even see
   * it gets the answer of a missing issuer), its head must say it is a certificate, and its limits
   * must allow the request. Returns how to read its key, called only once the write is allowed.
   */
  private async issuerFor(
    caller: Caller,
    path: string,
    request: ResolvedCertificateRequest,
  ): Promise<() => Promise<IssuerMaterial>> {
    const issuerPath = validatePath(request.issuer as string);
    if (issuerPath === path) throw new InvalidRequestError('a certificate cannot be issued by itself');
    const head = await this.store.getHead(issuerPath);
    const missing = () => new NotFoundError('issuer not found');
    if (!head || head.deletedAt || this.expired(head)) throw missing();
    if (!this.allowed(caller, 'issue', resourceOf(head))) {
      if (this.allowed(caller, 'readMetadata', resourceOf(head))) throw new ForbiddenError();
      throw missing();
    }
    return this.caIssuer(head, request);
  }

  /**
   * The CA of a certificate being renewed by a rotation, read again now: no caller's decision here
   * (a caller's `rotate` has checked its `issue`; the schedule renews under the `issue` checked when
   * the policy or the generator was set), but every limit of the CA as it stands now, and the key
   * opened only in this process to sign.
   */
  private async renewalIssuer(path: string, request: ResolvedCertificateRequest): Promise<IssuerMaterial> {
    const issuerPath = validatePath(request.issuer as string);
    if (issuerPath === path) throw new InvalidRequestError('a certificate cannot be issued by itself');
    const head = await this.store.getHead(issuerPath);
    if (!head || head.deletedAt || this.expired(head)) throw new NotFoundError('issuer not found');
    return (await this.caIssuer(head, request))();
  }

  /** A CA's checks that do not depend on who asks; returns how to read its key. */
  private async caIssuer(
    head: SecretHead,
    request: ResolvedCertificateRequest,
  ): Promise<() => Promise<IssuerMaterial>> {
    const issuerPath = head.path;
    if (head.type !== 'certificate' || head.generator?.ca === false) throw new NotACaError();
    const limits = issuerConstraints(head.generator);
    if (request.ca && (limits.allowedNames !== undefined || limits.maxValidityDays !== undefined)) {
      throw new CaNotAllowedError();
    }
    const now = this.now();
    // The limits in the head first: a request they refuse never gets near the key.
    this.enforce(checkIssuerConstraints(request, limits, now, new Date(8.64e15)));
    return async () => {
      let value: string;
      try {
        value = await this.openVersion(issuerPath, currentOf(head));
      } catch (err) {
        if (err instanceof NotFoundError) throw new NotACaError();
        throw err;
      }
      const material = readIssuer(value);
      // Nothing outlives the CA that signed it.
      this.enforce(checkIssuerConstraints(request, limits, now, material.notAfter));
      return material;
    };
  }

  private enforce(violation: ReturnType<typeof checkIssuerConstraints>): void {
    if (violation?.kind === 'name') throw new NameNotAllowedError(violation.name);
    if (violation?.kind === 'validity') throw new ValidityTooLongError(violation.maxValidityDays);
  }

  /** A stored version's value, for the server's own use (never handed to a caller by this). */
  private async openVersion(path: string, version: number): Promise<string> {
    return this.openSealed(await this.sealedVersion(path, version));
  }

  /** A stored version that still has its value (404 when it is gone or destroyed). */
  private async sealedVersion(path: string, version: number): Promise<SealedVersion> {
    const stored = await this.store.getVersion(path, version);
    if (!stored?.sealed) throw new NotFoundError('secret version not found');
    return { ...stored, sealed: stored.sealed };
  }

  private async openSealed(stored: SealedVersion): Promise<string> {
    const bytes = await this.envelope.openBytes(stored.sealed, {
      table: this.store.binding,
      path: stored.path,
      version: stored.version,
      valueType: stored.valueType ?? 'text',
    });
    return bytes.toString('utf8');
  }

  /**
   * `cas: n` is tried once; without `cas` a lost race is tried again (bounded, full jitter), each
   * attempt re-reading the head and deciding again, so that a concurrent retag that forbids the
   * write does. Past the bound it is 503 `write_contention` (retryable), never 409.
   */
  private async write(
    caller: Caller,
    path: string,
    spec: WriteSpec,
    idempotencyKey: string | undefined,
  ): Promise<WriteOutcome> {
    if (spec.cas !== undefined) return this.putOnce(caller, path, spec, idempotencyKey);
    // Plain writes to one path from this process go one at a time: they would only make each
    // other lose. The retries are for writers elsewhere (other Lambda instances, cas writers).
    return this.plainWrites.run(path, async () => {
      try {
        return await retry(() => this.putOnce(caller, path, spec, idempotencyKey), {
          ...PLAIN_WRITE_RETRY,
          // Without cas the only conflict is a lost race (a head that changed since it was read).
          isRetryable: (err) => err instanceof CasConflictError,
        });
      } catch (err) {
        if (err instanceof CasConflictError) throw new WriteContentionError();
        throw err;
      }
    });
  }

  /** One attempt of a write: read the head, decide, seal, commit. */
  private async putOnce(
    caller: Caller,
    path: string,
    input: WriteSpec,
    idempotencyKey: string | undefined,
  ): Promise<WriteOutcome> {
    let previous = await this.store.getHead(path);
    if (previous && (await this.purger.purgeIfExpired(previous))) {
      // Past its recovery window the secret is gone, whether or not the purge routine has run: the
      // write purges it first and creates a new secret at the path.
      previous = await this.store.getHead(path);
    }
    const nextTags = input.tags ?? previous?.tags ?? ownRecord([]);
    // A write is authorized against the secret as it is and as it would be, so that changing tags
    // cannot step out from under a tag-based forbid. A secret being created is checked with its
    // path, folders and tags but no owner: ownership follows from creating, it never grants it
    // (else "owners manage their secrets" would let anyone create, and so own, any free path).
    if (previous) this.require(caller, 'write', resourceOf(previous));
    this.require(caller, 'write', secretResource(path, nextTags, previous?.owner));

    // A retry is answered only after the same decisions as a first attempt: replaying reads the
    // version the first attempt wrote, and a caller revoked since then gets nothing from it.
    const scope = idempotencyKey ? this.idempotencyScope(caller.principal, path, idempotencyKey) : undefined;
    if (scope) {
      const replay = await this.replay(scope, path, input);
      if (replay) return { result: replay };
    }

    if (previous?.deletedAt) throw new SecretDeletedError('the secret is deleted; restore it before writing');
    if (input.cas !== undefined && input.cas !== (previous?.latest ?? 0)) {
      throw new CasConflictError('the secret changed since it was read', { latest: previous?.latest ?? 0 });
    }
    // Left out, the type stays the secret's; a new secret is binary when written as bytes.
    const type: SecretType =
      input.type ?? (previous ? (previous.type ?? 'text') : input.asBytes ? 'binary' : 'text');
    // Made only now, once the write is allowed (a generated value, a certificate signed by a CA).
    // A given value was measured when the request came in; a generated one is measured here.
    const bytes = withinValueLimit(await input.value());
    const typeInfo = checkValue(type, bytes);

    const now = this.now();
    const createdAt = now.toISOString();
    const version = (previous?.latest ?? 0) + 1;
    const maxVersions = previous?.maxVersions ?? DEFAULT_MAX_VERSIONS;
    // A plain write is current at once; the old current becomes previous (see stages.ts).
    const labels = labelsAfterWrite(previous, version);
    const floor = previous?.minVersion ?? 1;
    const minVersion = keptFrom(version - maxVersions + 1, labels, floor);
    const pruned = range(floor, minVersion);
    const head: SecretHead = {
      labels,
      // The rotation policy stays; the next rotation is due when it was, or sooner when the
      // certificate written needs renewing sooner.
      ...(previous?.rotation
        ? {
            rotation: {
              ...previous.rotation,
              nextAt: nextAtAfterWrite(previous.rotation, typeInfo.certificate, now),
            },
          }
        : {}),
      path,
      latest: version,
      minVersion,
      createdAt: previous?.createdAt ?? createdAt,
      updatedAt: createdAt,
      tags: nextTags,
      maxVersions,
      owner: previous?.owner ?? caller.principal.id,
      type,
      ...(typeInfo.keypair || typeInfo.certificate ? { typeInfo } : {}),
      ...(input.description !== undefined
        ? { description: input.description }
        : previous?.description !== undefined
          ? { description: previous.description }
          : {}),
      // A value written by hand keeps the secret's type but no generator of an earlier generated one.
      ...(input.generator !== undefined ? { generator: input.generator } : {}),
    };
    const sealed = await this.envelope.seal(bytes, {
      table: this.store.binding,
      path,
      version,
      valueType: type,
    });
    const stored: SealedVersion = {
      path,
      version,
      createdAt,
      createdBy: caller.principal.id,
      destroyed: false,
      valueType: type,
      sealed,
    };
    // The new version is current: the head names its copy, which the transaction writes.
    const written: SecretHead = { ...head, current: this.store.currentRef(path, stored) };
    const result: PutResult = { path, version, createdAt };
    caller.audit.version = version;
    this.noteHead(caller, written, previous);
    try {
      await this.audit.withChange(caller.audit, (extra) =>
        this.store.putVersion({
          path,
          previous,
          head: written,
          version: stored,
          prune: pruned.slice(0, PRUNE_IN_TRANSACTION),
          extra,
          ...(scope
            ? {
                idempotency: {
                  scope,
                  fingerprint: input.fingerprint,
                  result: { ...result },
                  expiresAt: Math.floor(now.getTime() / 1000) + IDEMPOTENCY_WINDOW_SECONDS,
                },
              }
            : {}),
        }),
      );
    } catch (err) {
      if (err instanceof ChangeConditionFailed && scope) {
        // A concurrent retry with the same key may have won the race: answer as it did.
        const replay = await this.replay(scope, path, input);
        if (replay) return { result: replay };
      }
      if (err instanceof ChangeConditionFailed) {
        throw new CasConflictError('the secret changed since it was read');
      }
      throw err;
    }
    if (pruned.length > PRUNE_IN_TRANSACTION)
      await this.store.deleteVersions(path, pruned.slice(PRUNE_IN_TRANSACTION));
    return { result, value: bytes };
  }

  /**
   * Reads the `current` version, or `version`, or the version with staging label `stage`. The head
   * and the current item come in one BatchGetItem; the version item is read only when the copy
   * may not serve the read (a staged or older version, a head without a copy, a copy that does
   * not match the head: lib/store/current-copy.ts).
   */
  async get(caller: Caller, rawPath: string, version?: number, stage?: Stage): Promise<SecretValue> {
    const path = validatePath(rawPath);
    this.note(caller, 'read', path);
    if (version !== undefined && stage !== undefined) {
      throw new InvalidRequestError('give at most one of version and stage');
    }
    const read = await this.store.getWithCurrent(path);
    const { head, wanted } = this.readable(caller, read.head, version, stage);
    const stored =
      this.store.versionFromCopy(head, read.copy, wanted) ?? (await this.store.getVersion(path, wanted));
    return this.valueOf(path, wanted, stored);
  }

  /**
   * What a read of `path` may return, decided on its verified head: a secret the caller may not
   * see is 404 like a missing one, one it may not read 403, a version outside the kept range 404.
   */
  private readable(
    caller: Caller,
    head: SecretHead | undefined,
    version: number | undefined,
    stage: Stage | undefined,
  ): { head: SecretHead; wanted: number } {
    if (!head || head.deletedAt || !this.allowed(caller, 'readMetadata', resourceOf(head))) {
      throw new NotFoundError();
    }
    this.require(caller, 'read', resourceOf(head));
    const staged = stage === undefined ? currentOf(head) : versionOfStage(head, stage);
    if (staged === undefined) throw new NotFoundError(`no version has stage ${stage}`);
    const wanted = version ?? staged;
    caller.audit.version = wanted;
    if (!Number.isInteger(wanted) || wanted < head.minVersion || wanted > head.latest) {
      throw new NotFoundError('secret version not found');
    }
    return { head, wanted };
  }

  /** Opens a stored version for a caller already allowed to read it. */
  private async valueOf(
    path: string,
    wanted: number,
    stored: StoredVersion | undefined,
  ): Promise<SecretValue> {
    if (!stored) throw new NotFoundError('secret version not found');
    if (!stored.sealed) throw new NotFoundError('secret version was destroyed');
    const type = stored.valueType ?? 'text';
    const bytes = await this.envelope.openBytes(stored.sealed, {
      table: this.store.binding,
      path,
      version: wanted,
      valueType: type,
    });
    return {
      path,
      version: wanted,
      type,
      ...(type === 'binary' ? { valueBase64: bytes.toString('base64') } : { value: bytes.toString('utf8') }),
      createdAt: stored.createdAt,
    };
  }

  /**
   * Reads the current version of up to MAX_BATCH_PATHS secrets. Each path gets the decisions of a
   * single read, so a batch never reveals more than single reads would: a path the caller may not
   * see answers `not_found` exactly like a missing one. Per-path failures are answered in place; a
   * failure of the service itself (storage, keys) fails the whole batch. The request's one audit
   * record names every path and keeps a denying decision if any path was denied.
   *
   * Storage: one BatchGetItem for every head and current item, then one for the version items of
   * the paths whose copy could not serve the read (none when every secret has its copy).
   */
  async batchGet(caller: Caller, rawPaths: readonly string[]): Promise<BatchGetItem[]> {
    if (rawPaths.length < 1 || rawPaths.length > MAX_BATCH_PATHS) {
      throw new InvalidRequestError(`a batch reads from 1 to ${MAX_BATCH_PATHS} paths`);
    }
    caller.audit.action = 'read';
    caller.audit.policySetHash = this.authorizer.policySetHash;
    const unique = [...new Set(rawPaths)];
    // Paths are [A-Za-z0-9._/-]: a comma-joined list is unambiguous for reviewers.
    caller.audit.path = unique.join(',');
    const decisions: Decision[] = [];
    const byPath = new Map<string, BatchGetItem>();
    /** Answers a path's failure in place when a single read would have answered it with a 4xx. */
    const settle = (path: string, err: unknown) => {
      if (!(err instanceof CofferError) || !BATCH_ITEM_ERRORS.has(err.code)) throw err;
      byPath.set(path, { path, error: { code: err.code, message: err.message } });
    };
    const valid: string[] = [];
    for (const path of unique) {
      try {
        valid.push(validatePath(path));
      } catch (err) {
        settle(path, err);
      }
    }
    const reads = valid.length > 0 ? await this.store.getManyWithCurrent(valid) : new Map();
    const planned: { path: string; wanted: number; stored?: StoredVersion }[] = [];
    for (const path of valid) {
      // A scratch record per path: the decisions note their path, version and outcome there.
      const audit: AuditContext = { ...caller.audit };
      const one: Caller = { ...caller, audit };
      try {
        this.note(one, 'read', path);
        const read = reads.get(path) ?? {};
        const { head, wanted } = this.readable(one, read.head, undefined, undefined);
        const stored = this.store.versionFromCopy(head, read.copy, wanted);
        planned.push({ path, wanted, ...(stored ? { stored } : {}) });
      } catch (err) {
        settle(path, err);
      } finally {
        if (audit.decision) decisions.push(audit.decision);
      }
    }
    const missing = planned.filter((p) => !p.stored).map((p) => ({ path: p.path, version: p.wanted }));
    const fetched = missing.length > 0 ? await this.store.getVersions(missing) : new Map();
    await Promise.all(
      planned.map(async ({ path, wanted, stored }) => {
        try {
          byPath.set(path, await this.valueOf(path, wanted, stored ?? fetched.get(versionId(path, wanted))));
        } catch (err) {
          settle(path, err);
        }
      }),
    );
    const denied = decisions.filter((d) => !d.allowed);
    const deciding = denied.length > 0 ? denied : decisions;
    if (deciding.length > 0) {
      caller.audit.decision = {
        allowed: denied.length === 0,
        policyIds: [...new Set(deciding.flatMap((d) => d.policyIds))].sort(),
        errors: [...new Set(decisions.flatMap((d) => d.errors))],
      };
    }
    return rawPaths.map((path) => byPath.get(path) as BatchGetItem);
  }

  /** Soft delete: reads give 404 until restored; purged after `recoveryDays`. */
  async delete(
    caller: Caller,
    rawPath: string,
    recoveryDays = DEFAULT_RECOVERY_DAYS,
  ): Promise<{ path: string; deletedAt: string; purgeAt: string }> {
    const path = validatePath(rawPath);
    this.note(caller, 'delete', path);
    if (
      !Number.isInteger(recoveryDays) ||
      recoveryDays < MIN_RECOVERY_DAYS ||
      recoveryDays > MAX_RECOVERY_DAYS
    ) {
      throw new InvalidRequestError(
        `recoveryDays must be an integer from ${MIN_RECOVERY_DAYS} to ${MAX_RECOVERY_DAYS}`,
      );
    }
    const head = await this.visibleHead(caller, path);
    this.require(caller, 'delete', resourceOf(head));
    const now = this.now();
    const deletedAt = now.toISOString();
    const purgeAt = new Date(now.getTime() + recoveryDays * 86_400_000).toISOString();
    const deleted: SecretHead = { ...head, updatedAt: deletedAt, deletedAt, purgeAt };
    this.noteHead(caller, deleted, head);
    await this.change(caller, () =>
      this.audit.withChange(caller.audit, (extra) => this.store.replaceHead(head, deleted, { extra })),
    );
    return { path, deletedAt, purgeAt };
  }

  /** Undoes a soft delete within its recovery window. */
  async restore(caller: Caller, rawPath: string): Promise<{ path: string; version: number }> {
    const path = validatePath(rawPath);
    this.note(caller, 'restore', path);
    const head = await this.store.getHead(path);
    if (!head || !this.allowed(caller, 'readMetadata', resourceOf(head))) throw new NotFoundError();
    if (!head.deletedAt || this.expired(head))
      throw new NotFoundError('no deleted secret to restore at this path');
    this.require(caller, 'restore', resourceOf(head));
    const { deletedAt: _d, purgeAt: _p, ...rest } = head;
    const restored: SecretHead = { ...rest, updatedAt: this.now().toISOString() };
    this.noteHead(caller, restored, head);
    await this.change(caller, () =>
      this.audit.withChange(caller.audit, (extra) => this.store.replaceHead(head, restored, { extra })),
    );
    return { path, version: head.latest };
  }

  /**
   * Removes a soft-deleted secret at once (Cedar `admin` on it), so that its path is free before
   * the recovery window ends. As for restore, a caller who may not see the secret, or a secret that
   * is not deleted (or already past its window), is 404; one it may see but not administer, 403.
   * The purge is the store's (versions first, then the head, conditioned on the same `purgeAt`): a
   * concurrent restore wins and the purge is 409 `cas_conflict`.
   */
  async purge(caller: Caller, rawPath: string): Promise<{ path: string; purged: true }> {
    const path = validatePath(rawPath);
    this.note(caller, 'admin', path);
    const head = await this.store.getHead(path);
    if (!head || !this.allowed(caller, 'readMetadata', resourceOf(head))) throw new NotFoundError();
    if (!head.deletedAt || !head.purgeAt || this.expired(head)) {
      throw new NotFoundError('no deleted secret to purge at this path');
    }
    this.require(caller, 'admin', resourceOf(head));
    if (!(await this.store.purge(path, head.purgeAt))) {
      throw new CasConflictError('the secret changed since it was read');
    }
    return { path, purged: true };
  }

  /** Erases the given versions' ciphertext and wrapped keys. Irreversible through the API. */
  async destroy(
    caller: Caller,
    rawPath: string,
    versions: readonly number[],
  ): Promise<{ path: string; destroyed: number[] }> {
    const path = validatePath(rawPath);
    this.note(caller, 'destroy', path);
    const head = await this.store.getHead(path);
    if (!head || this.expired(head) || !this.allowed(caller, 'readMetadata', resourceOf(head))) {
      throw new NotFoundError();
    }
    this.require(caller, 'destroy', resourceOf(head));
    const unique = [...new Set(versions)].sort((a, b) => a - b);
    for (const v of unique) {
      if (v < head.minVersion || v > head.latest) throw new NotFoundError(`version ${v} not found`);
    }
    const { current, ...rest } = head;
    // A destroyed current version keeps no copy: the head drops it and the store deletes it.
    const keepsCopy = current !== undefined && !unique.includes(current.version);
    const next: SecretHead = {
      ...rest,
      ...(keepsCopy ? { current } : {}),
      updatedAt: this.now().toISOString(),
    };
    this.noteHead(caller, next, head);
    await this.change(caller, () =>
      this.audit.withChange(caller.audit, (extra) => this.store.destroyVersions(head, next, unique, extra)),
    );
    return { path, destroyed: unique };
  }

  async getMetadata(caller: Caller, rawPath: string): Promise<SecretMetadata> {
    const path = validatePath(rawPath);
    this.note(caller, 'readMetadata', path);
    const head = await this.store.getHead(path);
    if (!head || this.expired(head) || !this.allowed(caller, 'readMetadata', resourceOf(head))) {
      throw new NotFoundError();
    }
    const versions = (await this.store.listVersions(path)).filter(
      (v) => v.version >= head.minVersion && v.version <= head.latest,
    );
    return this.metadataOf(head, versions);
  }

  async patchMetadata(caller: Caller, rawPath: string, patch: MetadataPatch): Promise<SecretMetadata> {
    const path = validatePath(rawPath);
    this.note(caller, 'writeMetadata', path);
    const head = await this.visibleHead(caller, path);
    const next: SecretHead = {
      ...head,
      ...(patch.description !== undefined ? { description: patch.description } : {}),
      ...(patch.tags !== undefined ? { tags: patch.tags } : {}),
      ...(patch.maxVersions !== undefined ? { maxVersions: patch.maxVersions } : {}),
      updatedAt: this.now().toISOString(),
    };
    this.require(caller, 'writeMetadata', resourceOf(head));
    this.require(caller, 'writeMetadata', resourceOf(next));
    const minVersion = keptFrom(head.latest - next.maxVersions + 1, labelsOf(head), head.minVersion);
    const pruned = range(head.minVersion, minVersion);
    const updated = { ...next, minVersion };
    this.noteHead(caller, updated, head);
    await this.change(caller, () =>
      this.audit.withChange(caller.audit, (extra) =>
        this.store.replaceHead(head, updated, { prune: pruned.slice(0, PRUNE_IN_TRANSACTION), extra }),
      ),
    );
    if (pruned.length > PRUNE_IN_TRANSACTION)
      await this.store.deleteVersions(path, pruned.slice(PRUNE_IN_TRANSACTION));
    const versions = (await this.store.listVersions(path)).filter((v) => v.version >= minVersion);
    return this.metadataOf(updated, versions);
  }

  /**
   * Lists secrets (and, with a delimiter, folders) under a prefix that the caller may `list`.
   * Soft-deleted secrets are left out. Pages are full until the last, which has no cursor.
   */
  async list(caller: Caller, options: ListOptions): Promise<ListResult> {
    const prefix = validatePrefix(options.prefix);
    // A prefix may say as much as a path ("payroll/layoffs-"): the record keeps it only as a keyed
    // HMAC (`hmac.prefix`), never in `path` (docs/audit.md).
    this.note(caller, 'list', undefined);
    caller.audit.sensitive = { ...caller.audit.sensitive, prefix };
    if (options.delimiter !== undefined && options.delimiter !== '/') {
      throw new InvalidRequestError('delimiter must be "/"');
    }
    // The page is what the caller would get if the store held only what it may list: up to
    // `limit` visible entries, and a cursor only when another visible entry follows. Entries it
    // may not list are skipped here, however many there are, and the cursor the caller gets is
    // made from the last entry it was shown, so neither a cursor nor a page's length reveals a
    // path it may not see.
    const limit = options.limit;
    const shown: ListEntry[] = [];
    // A cursor is good only for the listing and the caller it was made for.
    const binding: CursorBinding = {
      prefix,
      ...(options.delimiter !== undefined ? { delimiter: options.delimiter } : {}),
      caller: `${caller.principal.type}:${caller.principal.id}`,
    };
    let storeCursor = options.cursor ? this.cursors.open(options.cursor, binding) : undefined;
    let more = false;
    // One more than wanted tells whether another visible entry follows.
    let scan = Math.min(LIST_SCAN_PAGE, limit + 1);
    while (!more) {
      const page = await this.store.list(prefix, {
        limit: scan,
        ...(options.delimiter ? { delimiter: options.delimiter } : {}),
        ...(storeCursor ? { cursor: storeCursor } : {}),
      });
      for (const entry of page.entries) {
        if (!(await this.listable(caller, entry))) continue;
        if (shown.length === limit) {
          more = true;
          break;
        }
        shown.push(entry);
      }
      if (!page.cursor) break;
      storeCursor = page.cursor;
      scan = Math.min(LIST_SCAN_PAGE, Math.max(limit + 1 - shown.length, scan * 2));
    }
    const items: ListResult['items'] = [];
    const folders: string[] = [];
    for (const entry of shown) {
      if (entry.kind === 'folder') folders.push(entry.path);
      else items.push({ path: entry.head.path, version: entry.head.latest, updatedAt: entry.head.updatedAt });
    }
    const last = shown[shown.length - 1];
    return {
      items,
      ...(options.delimiter ? { folders } : {}),
      ...(more && last ? { cursor: this.cursors.seal(this.store.cursorAfter(prefix, last), binding) } : {}),
    };
  }

  /**
   * A listed entry the caller may see: a live secret it may `list`, or a folder it may `list` that
   * holds at least one such secret (so a folder's name never tells of secrets the caller may not
   * see, nor of deleted ones).
   */
  private async listable(caller: Caller, entry: ListEntry): Promise<boolean> {
    if (entry.kind === 'head') {
      return !entry.head.deletedAt && this.allowed(caller, 'list', resourceOf(entry.head));
    }
    if (!this.allowed(caller, 'list', { kind: 'Folder', path: entry.path })) return false;
    let cursor: string | undefined;
    let scan = FOLDER_FIRST_SCAN;
    do {
      const page = await this.store.list(entry.path, { limit: scan, ...(cursor ? { cursor } : {}) });
      // Without a delimiter every entry is a head.
      for (const e of page.entries) {
        if (e.kind === 'head' && (await this.listable(caller, e))) return true;
      }
      cursor = page.cursor;
      scan = Math.min(LIST_SCAN_PAGE, scan * 2);
    } while (cursor);
    return false;
  }

  /**
   * The readiness check: one cheap read of the secrets table. No policy decides it (any
   * authenticated caller may ask whether the service can serve); its audit record, written after,
   * shows that the audit table takes writes too.
   */
  async ready(): Promise<{ status: 'ready' }> {
    await this.store.ping();
    return { status: 'ready' };
  }

  /**
   * Sets a rotation policy with the built-in generator (Cedar `writeMetadata`): the secret is
   * rotated every `every` with its own generator, so it must have one (written by `generate`).
   * The policy lives in the authenticated head; the due index follows it in the same transaction.
   * Naming an external rotator (`webhook`, `lambdaArn`), or replacing a policy that names one, is
   * Cedar `admin`: the rotator is handed grants to read each new value.
   */
  async setRotation(caller: Caller, rawPath: string, input: RotationPolicyRequest): Promise<SecretMetadata> {
    const path = validatePath(rawPath);
    const naming = input.webhook !== undefined || input.lambdaArn !== undefined;
    this.note(caller, naming ? 'admin' : 'writeMetadata', path);
    const everySeconds = parseDuration(input.every);
    if (
      everySeconds === undefined ||
      everySeconds < MIN_ROTATION_SECONDS ||
      everySeconds > MAX_ROTATION_SECONDS
    ) {
      throw new InvalidRequestError('every must be a duration from 1m to 3650d, such as 30d, 12h or 90m');
    }
    const head = await this.visibleHead(caller, path);
    const admin = naming || head.rotation?.rotator !== undefined;
    if (admin) this.note(caller, 'admin', path);
    this.require(caller, admin ? 'admin' : 'writeMetadata', resourceOf(head));
    const rotator = checkRotator(input, this.rotators);
    const generator = rotationGenerator(head);
    const renewBeforeSeconds = parseRenewBefore(
      input.renewBefore,
      generator.type,
      generator.type === 'certificate' ? generator.validityDays : undefined,
    );
    // Scheduling renewals by a CA is issuing from it: the same `issue` the first issuance needed,
    // and the CA's limits as they stand now (docs/rotation.md, "Certificates issued by a CA").
    if (generator.type === 'certificate' && generator.issuer !== undefined)
      await this.issuerFor(caller, path, generator);
    const now = this.now();
    // A rotation under way keeps its progress only while it goes on with the same rotator.
    const sameRotator = JSON.stringify(rotator) === JSON.stringify(head.rotation?.rotator);
    const policy = { everySeconds, ...(renewBeforeSeconds !== undefined ? { renewBeforeSeconds } : {}) };
    const nextAt = input.rotateImmediately
      ? now.toISOString()
      : nextRotationAt(now, policy, head.typeInfo?.certificate);
    const rotation: RotationState = {
      ...policy,
      nextAt,
      ...(head.rotation?.lastRotatedAt ? { lastRotatedAt: head.rotation.lastRotatedAt } : {}),
      ...(rotator ? { rotator } : {}),
      ...(rotator && sameRotator && head.rotation?.progress ? { progress: head.rotation.progress } : {}),
    };
    const next: SecretHead = { ...head, rotation, updatedAt: now.toISOString() };
    this.noteHead(caller, next, head);
    await this.change(caller, () =>
      this.audit.withChange(caller.audit, (extra) => this.store.replaceHead(head, next, { extra })),
    );
    return this.getMetadataOf(next);
  }

  /**
   * Removes the rotation policy (Cedar `writeMetadata`, or `admin` when it names an external
   * rotator); labels and versions stay.
   */
  async clearRotation(caller: Caller, rawPath: string): Promise<SecretMetadata> {
    const path = validatePath(rawPath);
    this.note(caller, 'writeMetadata', path);
    const head = await this.visibleHead(caller, path);
    const action = head.rotation?.rotator ? 'admin' : 'writeMetadata';
    this.note(caller, action, path);
    this.require(caller, action, resourceOf(head));
    if (!head.rotation) return this.getMetadataOf(head);
    const { rotation: _r, ...rest } = head;
    const next: SecretHead = { ...rest, updatedAt: this.now().toISOString() };
    this.noteHead(caller, next, head);
    await this.change(caller, () =>
      this.audit.withChange(caller.audit, (extra) => this.store.replaceHead(head, next, { extra })),
    );
    return this.getMetadataOf(next);
  }

  /**
   * Rotates a secret now with its own generator (Cedar `write`): a pending version is generated
   * and written, then promoted (pending → current, current → previous) in one head write. A
   * pending version left by an interrupted rotation is finished rather than made again, and a
   * rotation that loses the race to a concurrent one answers with the version that one made, so
   * concurrent rotations of a secret make one new version.
   */
  async rotate(caller: Caller, rawPath: string): Promise<RotationResult> {
    const path = validatePath(rawPath);
    this.note(caller, 'write', path);
    const head = await this.visibleHead(caller, path);
    this.require(caller, 'write', resourceOf(head));
    const generator = rotationGenerator(head);
    // Re-issuing from a CA needs the caller's `issue` on it, as the first issuance did.
    if (generator.type === 'certificate' && generator.issuer !== undefined)
      await this.issuerFor(caller, path, generator);
    try {
      return await this.rotateHead(caller.audit, head);
    } catch (err) {
      if (err instanceof RotationStepFailedError) await this.recordStepFailure(caller.audit, path, err);
      throw err;
    }
  }

  /** Whether a live secret has a rotation policy (for offboarding, after its own decision). */
  async hasRotationPolicy(rawPath: string): Promise<boolean> {
    const head = await this.store.getHead(validatePath(rawPath));
    return head?.rotation !== undefined && !head.deletedAt;
  }

  /**
   * Makes a secret's rotation due now (Cedar `writeMetadata`): with a rotation policy its next
   * scheduled run rotates it; without one it is marked to be replaced by hand (`reason`, kept in
   * the authenticated head and listed with the overdue rotations until a new version is current).
   */
  async markRotationDue(caller: Caller, rawPath: string, reason = 'marked due'): Promise<void> {
    const path = validatePath(rawPath);
    this.note(caller, 'writeMetadata', path);
    const head = await this.visibleHead(caller, path);
    this.require(caller, 'writeMetadata', resourceOf(head));
    const now = this.now().toISOString();
    let next: SecretHead;
    if (head.rotation) {
      if (Date.parse(head.rotation.nextAt) <= Date.parse(now)) return;
      next = { ...head, rotation: { ...head.rotation, nextAt: now }, updatedAt: now };
    } else {
      // The first request stands: its time says how long the value has been waiting.
      if (head.rotationRequested) return;
      if (reason.length === 0 || reason.length > 200)
        throw new InvalidRequestError('a reason is 1 to 200 characters');
      next = { ...head, rotationRequested: { at: now, reason }, updatedAt: now };
    }
    this.noteHead(caller, next, head);
    await this.change(caller, () =>
      this.audit.withChange(caller.audit, (extra) => this.store.replaceHead(head, next, { extra })),
    );
  }

  /**
   * Undoes the last change of `current` (Cedar `write`): `previous` becomes `current` again and
   * the old current `previous`, in one conditional head write; a pending rotation is abandoned.
   * No version is written. A secret without a readable `previous` version is 404.
   */
  async revert(caller: Caller, rawPath: string): Promise<RotationResult> {
    const path = validatePath(rawPath);
    this.note(caller, 'write', path);
    const head = await this.visibleHead(caller, path);
    this.require(caller, 'write', resourceOf(head));
    const labels = labelsOf(head);
    const back = labels.previous;
    if (back === undefined || back < head.minVersion)
      throw new NotFoundError('no version has stage previous');
    const stored = await this.store.getVersion(path, back);
    if (!stored?.sealed) throw new NotFoundError('the previous version was destroyed');
    try {
      // The target gets the previous value back first; `current` moves only once it has.
      await this.external.revert(head, back);
    } catch (err) {
      if (err instanceof RotationStepFailedError) await this.recordStepFailure(caller.audit, path, err);
      throw err;
    }
    const type = stored.valueType ?? 'text';
    const bytes = await this.envelope.openBytes(stored.sealed, {
      table: this.store.binding,
      path,
      version: back,
      valueType: type,
    });
    const typeInfo = checkValue(type, bytes);
    const { typeInfo: _old, ...rest } = head;
    const copy: SealedVersion = { ...stored, sealed: stored.sealed };
    const next: SecretHead = {
      ...rest,
      type,
      labels: { current: back, previous: labels.current },
      ...(typeInfo.keypair || typeInfo.certificate ? { typeInfo } : {}),
      current: this.store.currentRef(path, copy),
      updatedAt: this.now().toISOString(),
    };
    caller.audit.version = back;
    this.noteHead(caller, next, head);
    await this.change(caller, () =>
      this.audit.withChange(caller.audit, (extra) => this.store.replaceHead(head, next, { extra, copy })),
    );
    return {
      path,
      state: 'finished',
      stages: { ...(next.labels as NonNullable<SecretHead['labels']>) },
      version: back,
    };
  }

  /**
   * Rotates every secret whose rotation is due (the scheduled job: an interval in the local
   * server, an EventBridge-scheduled function in AWS). It reads the due index (one Query), and
   * acts only on a head whose verified rotation policy says it is due: an index entry written by
   * someone else rotates nothing. Each rotation writes its audit record in its own transactions,
   * decided by the schedule (policy id `rotation-schedule`). A rotation that fails records a fixed
   * message and the time in the head (`lastRotationError`) and is tried again on the next run.
   */
  async rotateDue(limit = 100): Promise<{ rotated: number; failed: number }> {
    const now = this.now();
    const due = await this.store.dueRotations(now.toISOString(), limit);
    let rotated = 0;
    let failed = 0;
    for (const entry of due) {
      let head: SecretHead | undefined;
      try {
        head = await this.store.getHead(entry.path);
      } catch {
        // A head that fails its MAC (or cannot be read) rotates nothing, and holds up no other
        // secret's rotation; the failure counts, so the run fails and its alarm fires.
        failed++;
        continue;
      }
      if (!head?.rotation || head.deletedAt || head.rotation.nextAt !== entry.nextAt) {
        // No head behind the entry (a table writer's, or one a crash left): drop it.
        if (!head || head.rotation?.nextAt !== entry.nextAt || head.deletedAt)
          await this.store.deleteDueEntry(entry);
        continue;
      }
      if (Date.parse(head.rotation.nextAt) > now.getTime()) continue;
      const audit = this.jobAudit(head.path, now);
      try {
        await this.rotateHead(audit, head);
        rotated++;
      } catch (err) {
        failed++;
        await this.recordRotationError(this.jobAudit(head.path, now), head.path, err).catch(() => undefined);
      }
    }
    return { rotated, failed };
  }

  /** The audit record of a scheduled rotation: no caller, decided by the schedule. */
  private jobAudit(path: string, now: Date): AuditContext {
    return {
      requestId: `rotation-${randomUUID()}`,
      time: now.toISOString(),
      method: 'POST',
      route: '/jobs/rotation',
      sourceIp: 'internal',
      userAgent: 'coffer-rotation-job',
      action: 'write',
      path,
      decision: { allowed: true, policyIds: ['rotation-schedule'], errors: [] },
      policySetHash: this.authorizer.policySetHash,
      written: false,
    };
  }

  /** Keeps a failed rotation's fixed message and time in the head; `current` is not touched. */
  private async recordRotationError(audit: AuditContext, path: string, err: unknown): Promise<void> {
    const head = await this.store.getHead(path);
    if (!head?.rotation) return;
    // A fixed message per error code (and rotator step): never a value, never an unknown error's text.
    const at = this.now().toISOString();
    const failedStep = err instanceof RotationStepFailedError ? err : undefined;
    const message = failedStep
      ? `rotation step ${failedStep.step} failed: ${failedStep.reason}`
      : err instanceof CofferError
        ? `rotation failed: ${err.code}`
        : 'rotation failed: internal';
    const pending = labelsOf(head).pending;
    const next: SecretHead = {
      ...head,
      rotation: {
        ...head.rotation,
        lastError: { message, at, ...(failedStep ? { step: failedStep.step } : {}) },
        // The pending version stays, marked failed at its step: the next run resumes there.
        ...(failedStep && failedStep.step !== 'revertSecret' && pending === failedStep.version
          ? { progress: { version: pending, step: failedStep.step, failed: true } }
          : {}),
      },
      updatedAt: at,
    };
    audit.head = headNote(this.store.sealHead(next, head));
    await this.audit.withChange(audit, (extra) => this.store.replaceHead(head, next, { extra }));
  }

  /**
   * A rotator's failed step, recorded in the head by a change record of its own (the request's
   * principal and decision; the request's own record says how it ended).
   */
  private async recordStepFailure(
    audit: AuditContext,
    path: string,
    err: RotationStepFailedError,
  ): Promise<void> {
    const own: AuditContext = { ...audit, requestId: `${audit.requestId}-step`, written: false };
    await this.recordRotationError(own, path, err).catch(() => undefined);
  }

  /** Creates the pending version unless there is one, then finishes; see `rotate`. */
  private async rotateHead(audit: AuditContext, start: SecretHead): Promise<RotationResult> {
    if (start.rotation?.rotator) return this.external.run(audit, start, this.rotationOps());
    const startCurrent = currentOf(start);
    let head = start;
    for (let attempt = 0; ; attempt++) {
      try {
        if (labelsOf(head).pending === undefined) head = await this.createPending(audit, head);
        return await this.finishRotation(audit, head);
      } catch (err) {
        if (!(err instanceof CasConflictError) || attempt >= 5) throw err;
        const reread = await this.store.getHead(head.path);
        if (!reread || reread.deletedAt) throw new NotFoundError();
        const labels = labelsOf(reread);
        // Another rotation (or a write) moved current since this one began: it made the version.
        if (labels.pending === undefined && labels.current !== startCurrent) {
          return { path: reread.path, state: 'finished', stages: { ...labels }, version: labels.current };
        }
        head = reread;
      }
    }
  }

  /** The service's own head writes, for the external rotation runner. */
  private rotationOps(): RotationOps {
    return {
      createPending: (audit, head) => this.createPending(audit, head),
      finish: (audit, head) => this.finishRotation(audit, head),
      replace: async (audit, head, next) => {
        audit.head = headNote(this.store.sealHead(next, head));
        try {
          await this.audit.withChange(audit, (extra) => this.store.replaceHead(head, next, { extra }));
        } catch (err) {
          if (err instanceof ChangeConditionFailed)
            throw new CasConflictError('the secret changed since it was read');
          throw err;
        }
        return { ...next, rev: (head.rev ?? 0) + 1 };
      },
    };
  }

  /** Generates a value with the head's generator and writes it as the `pending` version. */
  private async createPending(audit: AuditContext, head: SecretHead): Promise<SecretHead> {
    const generator = rotationGenerator(head);
    const now = this.now();
    const issuer =
      generator.type === 'certificate' && generator.issuer !== undefined
        ? await this.renewalIssuer(head.path, generator)
        : undefined;
    const bytes = Buffer.from(await generateValue(generator, issuer, now), 'utf8');
    checkValue(generator.type, bytes);
    const version = head.latest + 1;
    const labels = { ...labelsOf(head), pending: version };
    const minVersion = keptFrom(version - head.maxVersions + 1, labels, head.minVersion);
    const pruned = range(head.minVersion, minVersion);
    const createdAt = now.toISOString();
    const next: SecretHead = { ...head, latest: version, minVersion, labels, updatedAt: createdAt };
    const sealed = await this.envelope.seal(bytes, {
      table: this.store.binding,
      path: head.path,
      version,
      valueType: generator.type,
    });
    audit.version = version;
    const item = this.store.sealHead(next, head);
    audit.head = headNote(item);
    try {
      await this.audit.withChange(audit, (extra) =>
        this.store.putVersion({
          path: head.path,
          previous: head,
          head: next,
          version: {
            path: head.path,
            version,
            createdAt,
            createdBy: audit.principal?.id ?? 'coffer-rotation',
            destroyed: false,
            valueType: generator.type,
            sealed,
          },
          prune: pruned.slice(0, PRUNE_IN_TRANSACTION),
          extra,
        }),
      );
    } catch (err) {
      if (err instanceof ChangeConditionFailed)
        throw new CasConflictError('the secret changed since it was read');
      throw err;
    }
    return { ...next, rev: (head.rev ?? 0) + 1 };
  }

  /** Moves the labels (pending → current, current → previous) in one conditional head write. */
  private async finishRotation(audit: AuditContext, head: SecretHead): Promise<RotationResult> {
    const pending = labelsOf(head).pending as number;
    const type = head.type ?? 'text';
    const promoted = await this.sealedVersion(head.path, pending);
    const typeInfo = checkValue(type, Buffer.from(await this.openSealed(promoted), 'utf8'));
    const labels = labelsAfterRotation(head, pending);
    const minVersion = keptFrom(head.latest - head.maxVersions + 1, labels, head.minVersion);
    const pruned = range(head.minVersion, minVersion);
    const now = this.now();
    // A new current value answers a request to replace it by hand too.
    const { typeInfo: _old, rotationRequested: _answered, ...rest } = head;
    const next: SecretHead = {
      ...rest,
      labels,
      minVersion,
      ...(typeInfo.keypair || typeInfo.certificate ? { typeInfo } : {}),
      ...(head.rotation
        ? {
            rotation: {
              ...policyOf(head.rotation),
              nextAt: nextRotationAt(now, head.rotation, typeInfo.certificate),
              lastRotatedAt: now.toISOString(),
            },
          }
        : {}),
      // The promoted version's copy is written with the head: reads stay on the fast path.
      current: this.store.currentRef(head.path, promoted),
      updatedAt: now.toISOString(),
    };
    audit.version = pending;
    audit.head = headNote(this.store.sealHead(next, head));
    try {
      await this.audit.withChange(audit, (extra) =>
        this.store.replaceHead(head, next, {
          prune: pruned.slice(0, PRUNE_IN_TRANSACTION),
          extra,
          copy: promoted,
        }),
      );
    } catch (err) {
      if (err instanceof ChangeConditionFailed)
        throw new CasConflictError('the secret changed since it was read');
      throw err;
    }
    if (pruned.length > PRUNE_IN_TRANSACTION)
      await this.store.deleteVersions(head.path, pruned.slice(PRUNE_IN_TRANSACTION));
    return { path: head.path, state: 'finished', stages: { ...labels }, version: pending };
  }

  /**
   * Secrets under `prefix` that the caller may `list` and whose rotation is overdue (`nextAt`
   * passed) or whose certificate expires within `withinSeconds` (or has expired), soonest first,
   * in pages like `list`: up to `limit` items, and a cursor (sealed, bound to the listing and the
   * caller) only when another item follows. Queries of its index only, never a Scan; each entry is
   * checked against the secret's verified head (lib/secrets/lifecycle.ts).
   */
  async lifecycle(
    caller: Caller,
    query: LifecycleQuery,
    options: { prefix?: string; limit: number; cursor?: string },
  ): Promise<LifecyclePage> {
    const prefix = validatePrefix(options.prefix ?? '');
    this.note(caller, 'list', undefined);
    caller.audit.sensitive = { ...caller.audit.sensitive, prefix };
    const { indexes, boundIso } = lifecycleBound(query, this.now());
    const binding: CursorBinding = {
      prefix,
      delimiter:
        query.kind === 'expiring' ? `lifecycle:expiring:${query.withinSeconds}` : 'lifecycle:overdue',
      caller: `${caller.principal.type}:${caller.principal.id}`,
    };
    const from = options.cursor
      ? decodeIndexCursor(this.cursors.open(options.cursor, binding), indexes.length)
      : { phase: 0, sk: undefined };
    const shown: { item: LifecycleItem; phase: number; sk: string }[] = [];
    let more = false;
    // Each index in turn (overdue rotations, then requests to replace by hand), from the cursor.
    for (let phase = from.phase; phase < indexes.length && !more; phase++) {
      const index = indexes[phase] as LifecycleIndex;
      let after = phase === from.phase ? from.sk : undefined;
      let scan = Math.min(LIFECYCLE_SCAN, options.limit + 1);
      while (!more) {
        const page = await this.store.lifecycleIndexPage(index, boundIso, {
          limit: scan,
          ...(after !== undefined ? { after } : {}),
        });
        for (const entry of page.entries) {
          if (!entry.path.startsWith(prefix)) continue;
          const head = await this.store.getHead(entry.path);
          const item = lifecycleItemOf(head, index, entry.at, boundIso);
          if (!item || !head || !this.allowed(caller, 'list', resourceOf(head))) continue;
          if (shown.length === options.limit) {
            more = true;
            break;
          }
          shown.push({ item, phase, sk: entry.sk });
        }
        if (!page.last) break;
        after = page.last;
        scan = Math.min(LIFECYCLE_SCAN, scan * 2);
      }
    }
    const last = shown[shown.length - 1];
    return {
      items: shown.map((s) => s.item),
      ...(more && last ? { cursor: this.cursors.seal(encodeIndexCursor(last.phase, last.sk), binding) } : {}),
    };
  }

  /**
   * How many certificates expire within `withinSeconds` (or have expired) and how many rotations
   * are overdue (secrets waiting to be replaced by hand included), for the scheduled job's
   * metrics: every page of the indexes, each entry counted only when its verified head agrees (a
   * head that fails verification is not counted here; reading it fails elsewhere, loudly). No
   * caller: the counts name no secret.
   */
  async lifecycleCounts(withinSeconds: number): Promise<{ expiring: number; overdue: number }> {
    const now = this.now();
    const count = async (query: LifecycleQuery): Promise<number> => {
      const { indexes, boundIso } = lifecycleBound(query, now);
      let n = 0;
      for (const index of indexes) {
        let after: string | undefined;
        do {
          const page = await this.store.lifecycleIndexPage(index, boundIso, {
            limit: LIFECYCLE_SCAN,
            ...(after !== undefined ? { after } : {}),
          });
          for (const entry of page.entries) {
            const head = await this.store.getHead(entry.path).catch(() => undefined);
            if (lifecycleItemOf(head, index, entry.at, boundIso)) n++;
          }
          after = page.last;
        } while (after !== undefined);
      }
      return n;
    };
    return {
      expiring: await count({ kind: 'expiring', withinSeconds }),
      overdue: await count({ kind: 'rotation-overdue' }),
    };
  }

  /** Metadata of a head just written (its versions read again). */
  private async getMetadataOf(head: SecretHead): Promise<SecretMetadata> {
    const versions = (await this.store.listVersions(head.path)).filter(
      (v) => v.version >= head.minVersion && v.version <= head.latest,
    );
    return this.metadataOf(head, versions);
  }

  /** Removes soft-deleted secrets whose recovery window has ended. Returns how many. */
  purgeExpired(): Promise<number> {
    return this.purger.purgeExpired();
  }

  private metadataOf(head: SecretHead, versions: readonly VersionMeta[]): SecretMetadata {
    return {
      path: head.path,
      currentVersion: currentOf(head),
      type: head.type ?? 'text',
      ...(head.typeInfo?.keypair ? { keypair: head.typeInfo.keypair } : {}),
      ...(head.typeInfo?.certificate ? { certificate: head.typeInfo.certificate } : {}),
      createdAt: head.createdAt,
      updatedAt: head.updatedAt,
      ...(head.description !== undefined ? { description: head.description } : {}),
      tags: head.tags,
      maxVersions: head.maxVersions,
      ...(head.owner ? { owner: head.owner } : {}),
      ...(head.deletedAt ? { deletedAt: head.deletedAt, purgeAt: head.purgeAt } : {}),
      ...(head.generator !== undefined ? { generator: { ...head.generator } } : {}),
      stages: { ...labelsOf(head) },
      ...(head.rotation ? { rotation: rotationInfo(head) } : {}),
      ...(head.rotationRequested ? { rotationRequested: { ...head.rotationRequested } } : {}),
      versions: versions.map((v) => ({
        version: v.version,
        type: v.valueType ?? 'text',
        createdAt: v.createdAt,
        ...(v.createdBy ? { createdBy: v.createdBy } : {}),
        destroyed: v.destroyed,
        ...(v.keyId ? { keyId: v.keyId } : {}),
      })),
    };
  }

  /**
   * The live head of a secret the caller may see. A secret the caller may not `readMetadata` gets
   * exactly the answer of a secret that does not exist.
   */
  private async visibleHead(caller: Caller, path: string): Promise<SecretHead> {
    const head = await this.store.getHead(path);
    if (!head || head.deletedAt || !this.allowed(caller, 'readMetadata', resourceOf(head))) {
      throw new NotFoundError();
    }
    return head;
  }

  private expired(head: SecretHead): boolean {
    return this.purger.isExpired(head);
  }

  private note(caller: Caller, action: Action, path: string | undefined): void {
    caller.audit.action = action;
    if (path !== undefined) caller.audit.path = path;
    caller.audit.policySetHash = this.authorizer.policySetHash;
  }

  private allowed(caller: Caller, action: Action, resource: Resource): boolean {
    const decision = this.authorizer.authorize({
      principal: caller.principal,
      action,
      resource,
      context: caller.context,
    });
    // A policy set reloaded since `note` decided this: the record names the set that decided.
    if (decision.policySetHash !== undefined) caller.audit.policySetHash = decision.policySetHash;
    // The record keeps the decision for the request's own action (the last one taken for it).
    if (action === caller.audit.action || !decision.allowed) caller.audit.decision = decision;
    return decision.allowed;
  }

  private require(caller: Caller, action: Action, resource: Resource): void {
    if (!this.allowed(caller, action, resource)) throw new ForbiddenError();
  }

  /**
   * Puts the revision and MAC of the head a change is about to write in its audit record. The
   * store seals the same head the same way (HMAC is deterministic), so the two always agree.
   */
  private noteHead(caller: Caller, next: SecretHead, previous: SecretHead | undefined): void {
    caller.audit.head = headNote(this.store.sealHead(next, previous));
  }

  /** Runs a head change; a lost race is a CAS conflict for the caller to retry. */
  private async change(_caller: Caller, run: () => Promise<void>): Promise<void> {
    try {
      await run();
    } catch (err) {
      if (err instanceof ChangeConditionFailed)
        throw new CasConflictError('the secret changed since it was read');
      throw err;
    }
  }

  private idempotencyScope(principal: Principal, path: string, key: string): string {
    // Hashed so that client-chosen keys never shape the table's keys.
    return createHash('sha256')
      .update(canonicalJson([principal.type, principal.id, path, key]))
      .digest('hex');
  }

  /**
   * Fingerprint of the request for Idempotency-Key reuse detection. The value is not part of it
   * (a hash of a low-entropy secret would invite guessing); it is compared by decrypting the
   * version the first request wrote.
   */
  private fingerprint(path: string, input: PutInput): string {
    return createHash('sha256')
      .update(
        canonicalJson({
          path,
          cas: input.cas ?? null,
          description: input.description ?? null,
          tags: input.tags ?? null,
          // Only when given, so that fingerprints of requests without a type stay as they were.
          ...(input.type !== undefined ? { type: input.type } : {}),
        }),
      )
      .digest('hex');
  }

  /**
   * Fingerprint of a generation request: its parameters, defaults filled in. Marked apart from a
   * PUT's, so that an Idempotency-Key first used for a PUT is refused for a generation.
   */
  private generateFingerprint(
    path: string,
    input: GenerateRequest,
    generator: Readonly<Record<string, unknown>>,
  ): string {
    return createHash('sha256')
      .update(
        canonicalJson({
          kind: 'generate',
          path,
          cas: input.cas ?? null,
          description: input.description ?? null,
          tags: input.tags ?? null,
          generator,
        }),
      )
      .digest('hex');
  }

  private async replay(scope: string, path: string, input: WriteSpec): Promise<PutResult | undefined> {
    const nowSeconds = Math.floor(this.now().getTime() / 1000);
    const record = await this.store.getIdempotency(scope, nowSeconds);
    if (!record) return undefined;
    const result = record.result as unknown as PutResult;
    if (record.fingerprint !== input.fingerprint) {
      throw new IdempotencyKeyReusedError('this Idempotency-Key was used with a different request');
    }
    const stored = input.sameValue ? await this.store.getVersion(path, result.version) : undefined;
    if (stored?.sealed && input.sameValue) {
      const first = await this.envelope.openBytes(stored.sealed, {
        table: this.store.binding,
        path,
        version: result.version,
        valueType: stored.valueType ?? 'text',
      });
      if (!input.sameValue(first)) {
        throw new IdempotencyKeyReusedError('this Idempotency-Key was used with a different request');
      }
    }
    return { path: result.path, version: Number(result.version), createdAt: result.createdAt };
  }
}

/** Runs tasks for the same key one after another, in arrival order; other keys are not held up. */
class PathQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  async run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const before = this.tails.get(key) ?? Promise.resolve();
    const mine = before.then(task, task);
    // The tail settles either way, so one failed write never blocks the next.
    const tail = mine.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    try {
      return await mine;
    } finally {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    }
  }
}

/**
 * The bytes a write stores: `valueBase64` decoded, or `value` as UTF-8. The limit is on these
 * bytes, whichever way they came.
 */
function valueBytes(input: PutInput): Buffer {
  if ((input.value === undefined) === (input.valueBase64 === undefined)) {
    throw new InvalidRequestError('give exactly one of value and valueBase64');
  }
  return withinValueLimit(
    input.valueBase64 !== undefined
      ? Buffer.from(input.valueBase64, 'base64')
      : Buffer.from(input.value as string, 'utf8'),
  );
}

/** The bytes, if they fit the value limit (the one wire contract's); else 413 value_too_large. */
function withinValueLimit(bytes: Buffer): Buffer {
  if (bytes.length > MAX_VALUE_BYTES) {
    throw new ValueTooLargeError(`secret values are limited to ${MAX_VALUE_BYTES} bytes`);
  }
  return bytes;
}

function range(from: number, to: number): number[] {
  const out: number[] = [];
  for (let v = from; v < to; v++) out.push(v);
  return out;
}

/** The revision and MAC of a sealed head, as its change's audit record names them. */
function headNote(item: ReturnType<SecretsStore['sealHead']>): { rev: number; mac: string } {
  return { rev: Number(item.rev?.N), mac: Buffer.from(item.mac?.B as Uint8Array).toString('base64') };
}

/**
 * The generator a rotation makes the next value with: the head's own (a certificate issued by a
 * CA is issued again by that CA, see `renewalIssuer`). A secret written by hand has none.
 */
function rotationGenerator(head: SecretHead): ReturnType<typeof resolveGenerator> {
  if (!head.generator) {
    throw new InvalidRequestError('the secret has no generator to rotate with; write it with generate first');
  }
  return resolveGenerator(head.generator as unknown as Parameters<typeof resolveGenerator>[0]);
}

function rotationInfo(head: SecretHead): RotationInfo {
  const rotation = head.rotation as RotationState;
  const progress = rotation.rotator ? progressOf(head) : undefined;
  return {
    every: formatDuration(rotation.everySeconds),
    everySeconds: rotation.everySeconds,
    nextAt: rotation.nextAt,
    ...(rotation.lastRotatedAt ? { lastRotatedAt: rotation.lastRotatedAt } : {}),
    ...(rotation.lastError ? { lastRotationError: { ...rotation.lastError } } : {}),
    ...(rotation.renewBeforeSeconds !== undefined
      ? { renewBefore: formatDuration(rotation.renewBeforeSeconds) }
      : {}),
    ...(rotation.rotator ? { rotator: { ...rotation.rotator } } : {}),
    ...(progress ? { progress: { version: labelsOf(head).pending as number, ...progress } } : {}),
  };
}
