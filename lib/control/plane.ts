import type { Principal } from '../authn/principal.js';
import type { AuthorizationRequest, Authorizer, Decision } from '../authz/authorizer.js';
import { CedarAuthorizer } from '../authz/cedar.js';
import type { Uid } from '../authz/entity-uid.js';
import { type PolicySet, PolicySetError } from '../authz/policy-set.js';
import { CofferError, IntegrityError, ThrottledError } from '../errors.js';
import { describeError, type Logger } from '../log.js';
import type { ControlRecords } from '../store/control-records.js';
import { StorageUnavailableError } from '../store/storage-errors.js';
import {
  type ActivePolicy,
  checkPointer,
  checkVersion,
  compilePushed,
  forbidsOf,
  POLICY_POINTER_ID,
  POLICY_POINTER_KIND,
  POLICY_VERSION_KIND,
  type PolicyFile,
  type PushedSeal,
  versionId,
} from './policies.js';
import {
  checkRevocationList,
  EMPTY_REVOCATIONS,
  REVOCATION_ID,
  REVOCATION_KIND,
  type RevocationEntry,
  type RevocationList,
  revocationFor,
} from './revocations.js';

/** How stale the active policy set may be on any instance (issue 17: 30 s). */
export const DEFAULT_POLICY_FRESHNESS_MS = 30_000;
/** How stale the revocation list may be on any instance (issue 17: 10 s). */
export const DEFAULT_REVOCATION_FRESHNESS_MS = 10_000;

export interface ControlPlaneOptions {
  readonly control: ControlRecords;
  /**
   * The authorizer of the bundled (or local) policies: in force while no set was pushed, and its
   * forbid policies are the floor of every pushed set. Only a CedarAuthorizer has a schema to
   * validate pushed sets against; with any other, a pushed set fails closed.
   */
  readonly base: Authorizer;
  readonly logger: Logger;
  /** Bound on the policy set's staleness. Default 30 s. */
  readonly policyFreshnessMs?: number;
  /** Bound on the revocation list's staleness. Default 10 s. */
  readonly revocationFreshnessMs?: number;
  /** Milliseconds since the epoch. Default: Date.now. */
  readonly now?: () => number;
  /**
   * The generations a verified audit checkpoint signed (signed-generations.ts), read once before
   * the first refresh: the floor below which this process refuses a record even if it never saw
   * it. Default: none (tests with a given audit trail).
   */
  readonly signedGenerations?: () => Promise<Readonly<Record<string, number>>>;
}

/** A pushed set in force: the pointer generation it came from and its compiled authorizer. */
interface Pushed {
  readonly generation: number;
  readonly pointer: ActivePolicy;
  readonly files: readonly PolicyFile[];
  readonly authorizer: CedarAuthorizer;
}

const BROKEN: Decision = Object.freeze({
  allowed: false,
  policyIds: [],
  errors: ['the active policy set could not be verified; denied'],
});

/**
 * The policy set and revocation list in force on this instance, kept fresh from their
 * authenticated control records.
 *
 * Freshness is checked on each request (`ensureFresh`), never by a timer alone: a Lambda
 * environment is frozen between requests, so a timer would let a thawed instance decide on a set
 * of any age. Timeline of one instance, bound B (10 s revocations, 30 s policies):
 *
 *   age < B/2      decide with what is held (no storage call)
 *   B/2 ≤ age < B  read the records first; if storage is down, still decide with what is held
 *   age ≥ B        read the records first; if that fails, 503 (never decide on a stale set)
 *
 * A record that fails its MAC, goes back a generation or disappears after it was seen is never
 * used, and nothing falls back to an older or bundled set: every request of the instance fails
 * (500 `integrity_error`, and `authorize` denies) until a record that verifies is back.
 */
export class ControlPlane implements Authorizer {
  private base: Authorizer;
  private pushed: Pushed | undefined;
  private revocations: RevocationList = EMPTY_REVOCATIONS;
  private revocationGeneration = 0;
  private brokenPolicy = false;
  private brokenRevocations = false;
  private checkedAt = Number.NEGATIVE_INFINITY;
  private refreshing: Promise<void> | undefined;
  private seeded = false;
  private readonly now: () => number;
  private readonly boundMs: number;
  private readonly policyBoundMs: number;

  constructor(private readonly options: ControlPlaneOptions) {
    this.base = options.base;
    this.now = options.now ?? Date.now;
    this.policyBoundMs = options.policyFreshnessMs ?? DEFAULT_POLICY_FRESHNESS_MS;
    // One read of both records per refresh: the tighter bound decides when.
    this.boundMs = Math.min(
      this.policyBoundMs,
      options.revocationFreshnessMs ?? DEFAULT_REVOCATION_FRESHNESS_MS,
    );
  }

  /** The hash of the policy set deciding now (the pushed one, else the bundled one). */
  get policySetHash(): string {
    return (this.pushed?.authorizer ?? this.base).policySetHash;
  }

  /** The bundled (or local) set, when it is a Cedar one: pushed sets are validated against it. */
  get baseSet(): PolicySet | undefined {
    return this.base instanceof CedarAuthorizer ? this.base.policySet : undefined;
  }

  /** The pushed set in force, if any. */
  get active(): { readonly generation: number; readonly pointer: ActivePolicy } | undefined {
    return this.pushed ? { generation: this.pushed.generation, pointer: this.pushed.pointer } : undefined;
  }

  authorize(request: AuthorizationRequest): Decision {
    if (this.brokenPolicy) return { ...BROKEN, policySetHash: this.policySetHash };
    const authorizer = this.pushed?.authorizer ?? this.base;
    return { ...authorizer.authorize(request), policySetHash: authorizer.policySetHash };
  }

  /** The live entry that revokes this principal, or undefined. Call after `ensureFresh`. */
  /** The entities the policy set in force names (for access reports). */
  namedEntities(): readonly Uid[] {
    return (this.pushed?.authorizer ?? this.base).namedEntities?.() ?? [];
  }

  revocationFor(principal: Principal): RevocationEntry | undefined {
    return revocationFor(this.revocations, principal, this.now());
  }

  /**
   * Makes sure the policy set and the revocation list are within their bounds before a request is
   * decided (see the class comment). Throws IntegrityError for a record that does not verify,
   * StorageUnavailableError (503) when a stale instance cannot read them.
   */
  async ensureFresh(): Promise<void> {
    const age = this.now() - this.checkedAt;
    const broken = this.brokenPolicy || this.brokenRevocations;
    if (!broken && age < this.boundMs / 2) return;
    try {
      this.refreshing ??= this.refresh().finally(() => {
        this.refreshing = undefined;
      });
      await this.refreshing;
    } catch (err) {
      if (this.brokenPolicy || this.brokenRevocations) throw new IntegrityError();
      const storage = err instanceof StorageUnavailableError || err instanceof ThrottledError;
      if (storage && age < this.boundMs) {
        this.options.logger.warn('control records not refreshed; still within their bound', {
          ageMs: Math.round(age),
          ...describeError(err),
        });
        return;
      }
      if (err instanceof CofferError) throw err;
      throw new StorageUnavailableError();
    }
  }

  /**
   * Replaces the bundled (local) set: the local server's policy directory changed. A pushed set
   * in force is compiled again over the new schema and floor; if it no longer validates, the
   * instance fails closed rather than keep a set the new floor would forbid.
   */
  replaceBase(base: Authorizer): void {
    this.base = base;
    if (this.pushed) {
      try {
        this.pushed = { ...this.pushed, authorizer: this.compile(this.pushed.files) };
      } catch (err) {
        this.failPolicy('the pushed policy set does not validate against the new local set', err);
      }
    }
  }

  /** Compiles pushed files over the base's schema, with its forbids as the floor. */
  compileSet(files: readonly PolicyFile[], validated?: PushedSeal): PolicySet {
    const base = this.baseSet;
    if (!base) throw new PolicySetError(['this server has no Cedar schema to validate a pushed set against']);
    return compilePushed(base.schema, files, forbidsOf(base), validated);
  }

  /** What this instance just wrote itself: applied at once, without waiting for a refresh. */
  adoptPolicy(generation: number, pointer: ActivePolicy, files: readonly PolicyFile[], set: PolicySet): void {
    if (this.pushed && this.pushed.generation >= generation) return;
    this.pushed = { generation, pointer, files, authorizer: this.authorizerFor(set) };
    this.brokenPolicy = false;
  }

  adoptRevocations(generation: number, list: RevocationList): void {
    if (generation <= this.revocationGeneration) return;
    this.revocations = list;
    this.revocationGeneration = generation;
  }

  /** Forces a read of the records before the next decision (tests; after a failed write). */
  invalidate(): void {
    this.checkedAt = Number.NEGATIVE_INFINITY;
  }

  private async refresh(): Promise<void> {
    const started = this.now();
    if (!this.seeded && this.options.signedGenerations) {
      this.options.control.noteSigned(await this.options.signedGenerations());
    }
    this.seeded = true;
    await Promise.all([this.refreshRevocations(), this.refreshPolicy()]);
    this.checkedAt = started;
  }

  private async refreshRevocations(): Promise<void> {
    try {
      const record = await this.options.control.get<unknown>(REVOCATION_KIND, REVOCATION_ID);
      const list = record ? checkRevocationList(record.payload) : EMPTY_REVOCATIONS;
      // A write of this instance (adoptRevocations) may have landed while this read was in flight.
      if ((record?.generation ?? 0) >= this.revocationGeneration) {
        this.revocations = list;
        this.revocationGeneration = record?.generation ?? 0;
      }
      if (this.brokenRevocations) this.options.logger.info('revocation list verified again');
      this.brokenRevocations = false;
    } catch (err) {
      if (err instanceof IntegrityError) {
        if (!this.brokenRevocations) {
          this.options.logger.error('revocation list refused: it failed verification; failing closed', {
            code: err.code,
          });
        }
        this.brokenRevocations = true;
      }
      throw err;
    }
  }

  private async refreshPolicy(): Promise<void> {
    try {
      const before = this.pushed;
      const record = await this.options.control.get<unknown>(POLICY_POINTER_KIND, POLICY_POINTER_ID);
      if (this.pushed !== before) {
        // This instance's own push (adoptPolicy) landed while the read was in flight: it is newer.
      } else if (!record) {
        this.pushed = undefined;
      } else if (record.generation !== this.pushed?.generation) {
        const pointer = checkPointer(record.payload);
        const stored = await this.options.control.get<unknown>(
          POLICY_VERSION_KIND,
          versionId(pointer.version),
        );
        if (!stored) throw new IntegrityError();
        const version = checkVersion(stored.payload, pointer.version);
        if (version.hash !== pointer.hash) throw new IntegrityError();
        // The version record passed its MAC: its hash and schema hash say what was validated at push.
        const authorizer = this.compile(
          version.files,
          version.schemaHash
            ? {
                hash: version.hash,
                schemaHash: version.schemaHash,
                ...(version.validator ? { validator: version.validator } : {}),
              }
            : undefined,
        );
        if (this.pushed !== before) return;
        this.pushed = { generation: record.generation, pointer, files: version.files, authorizer };
        this.options.logger.info('policy set applied', {
          version: pointer.version,
          generation: record.generation,
          hash: this.pushed.authorizer.policySetHash,
        });
      }
      if (this.brokenPolicy) this.options.logger.info('policy set verified again');
      this.brokenPolicy = false;
    } catch (err) {
      if (err instanceof IntegrityError || err instanceof PolicySetError) {
        this.failPolicy('active policy set refused; failing closed', err);
        throw new IntegrityError();
      }
      throw err;
    }
  }

  private failPolicy(message: string, err: unknown): void {
    if (!this.brokenPolicy) this.options.logger.error(message, describeError(err));
    this.brokenPolicy = true;
  }

  private compile(files: readonly PolicyFile[], validated?: PushedSeal): CedarAuthorizer {
    return this.authorizerFor(this.compileSet(files, validated));
  }

  private authorizerFor(set: PolicySet): CedarAuthorizer {
    return new CedarAuthorizer(set, { logger: this.options.logger });
  }
}
