import { createHash, randomBytes } from 'node:crypto';
import {
  BATCH_GET_MAX_PATHS,
  type BatchGetItem,
  type GenerateRequest,
  type GenerateResult,
  type ListPage,
  MAX_VERSIONS,
  type MetadataPatch,
  ownRecord,
  type PutRequest,
  type PutResult,
  RECOVERY_DAYS,
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
  SecretDeletedError,
  ValidityTooLongError,
  ValueTooLargeError,
  WriteContentionError,
} from '../errors.js';
import { validatePath, validatePrefix } from '../paths.js';
import { type CursorBinding, CursorSealer } from '../store/cursor.js';
import type { ListEntry, SecretHead, VersionMeta } from '../store/records.js';
import { ChangeConditionFailed, type SecretsStore } from '../store/secrets-store.js';
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
import { Purger } from './purger.js';
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

  constructor(deps: SecretServiceDeps) {
    this.store = deps.store;
    this.envelope = deps.envelope;
    this.authorizer = deps.authorizer;
    this.audit = deps.audit;
    this.now = deps.now ?? (() => new Date());
    this.purger = deps.purger ?? new Purger({ store: deps.store, now: this.now });
    this.cursors = deps.cursors ?? new CursorSealer(randomBytes(32));
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
        value = await this.openVersion(issuerPath, head.latest);
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
    const stored = await this.store.getVersion(path, version);
    if (!stored?.sealed) throw new NotFoundError('secret version not found');
    const bytes = await this.envelope.openBytes(stored.sealed, {
      table: this.store.binding,
      path,
      version,
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
    const bytes = await input.value();
    if (bytes.length > MAX_VALUE_BYTES) {
      throw new ValueTooLargeError(`secret values are limited to ${MAX_VALUE_BYTES} bytes`);
    }
    const typeInfo = checkValue(type, bytes);

    const now = this.now();
    const createdAt = now.toISOString();
    const version = (previous?.latest ?? 0) + 1;
    const maxVersions = previous?.maxVersions ?? DEFAULT_MAX_VERSIONS;
    const minVersion = Math.max(previous?.minVersion ?? 1, version - maxVersions + 1);
    const pruned = range(previous?.minVersion ?? 1, minVersion);
    const head: SecretHead = {
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
    const result: PutResult = { path, version, createdAt };
    caller.audit.version = version;
    this.noteHead(caller, head, previous);
    try {
      await this.audit.withChange(caller.audit, (extra) =>
        this.store.putVersion({
          path,
          previous,
          head,
          version: {
            path,
            version,
            createdAt,
            createdBy: caller.principal.id,
            destroyed: false,
            valueType: type,
            sealed,
          },
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

  /** Reads the latest version, or `version`. */
  async get(caller: Caller, rawPath: string, version?: number): Promise<SecretValue> {
    const path = validatePath(rawPath);
    this.note(caller, 'read', path);
    const head = await this.visibleHead(caller, path);
    this.require(caller, 'read', resourceOf(head));
    const wanted = version ?? head.latest;
    caller.audit.version = wanted;
    if (!Number.isInteger(wanted) || wanted < head.minVersion || wanted > head.latest) {
      throw new NotFoundError('secret version not found');
    }
    const stored = await this.store.getVersion(path, wanted);
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
   * Reads the latest version of up to MAX_BATCH_PATHS secrets. Each path goes through `get` with
   * its own decisions, so a batch never reveals more than single reads would: a path the caller
   * may not see answers `not_found` exactly like a missing one. Per-path failures are answered in
   * place; a failure of the service itself (storage, keys) fails the whole batch. The request's
   * one audit record names every path and keeps a denying decision if any path was denied.
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
    await Promise.all(
      unique.map(async (path) => {
        // A scratch record per path: `get` notes its path, version and decision there.
        const audit: AuditContext = { ...caller.audit };
        try {
          byPath.set(path, await this.get({ ...caller, audit }, path));
        } catch (err) {
          if (!(err instanceof CofferError) || !BATCH_ITEM_ERRORS.has(err.code)) throw err;
          byPath.set(path, { path, error: { code: err.code, message: err.message } });
        } finally {
          if (audit.decision) decisions.push(audit.decision);
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
    const next: SecretHead = { ...head, updatedAt: this.now().toISOString() };
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
    const minVersion = Math.max(head.minVersion, head.latest - next.maxVersions + 1);
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

  /** Removes soft-deleted secrets whose recovery window has ended. Returns how many. */
  purgeExpired(): Promise<number> {
    return this.purger.purgeExpired();
  }

  private metadataOf(head: SecretHead, versions: readonly VersionMeta[]): SecretMetadata {
    return {
      path: head.path,
      currentVersion: head.latest,
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
    const item = this.store.sealHead(next, previous);
    caller.audit.head = {
      rev: Number(item.rev?.N),
      mac: Buffer.from(item.mac?.B as Uint8Array).toString('base64'),
    };
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
  const bytes =
    input.valueBase64 !== undefined
      ? Buffer.from(input.valueBase64, 'base64')
      : Buffer.from(input.value as string, 'utf8');
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
