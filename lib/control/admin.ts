import type { AuditControlChange, AuditTrail } from '../audit/trail.js';
import type { Principal } from '../authn/principal.js';
import type { FolderResource } from '../authz/authorizer.js';
import { type PolicySet, PolicySetError, schemaHash, validatorFingerprint } from '../authz/policy-set.js';
import { ForbiddenError, InvalidRequestError, NotFoundError } from '../errors.js';
import type { Caller } from '../secrets/service.js';
import type { ControlRecord, ControlRecords } from '../store/control-records.js';
import type { ControlPlane } from './plane.js';
import {
  type ActivePolicy,
  checkPointer,
  checkVersion,
  type PendingPolicy,
  POLICY_PENDING_ID,
  POLICY_PENDING_KIND,
  POLICY_POINTER_ID,
  POLICY_POINTER_KIND,
  POLICY_VERSION_KIND,
  type PolicyFile,
  type PolicyVersion,
  versionId,
} from './policies.js';
import {
  checkRevocationList,
  describeTarget,
  EMPTY_REVOCATIONS,
  isLive,
  MAX_REVOCATIONS,
  newRevocationId,
  REVOCATION_ID,
  REVOCATION_KIND,
  type RevocationEntry,
  type RevocationList,
  type RevocationTarget,
  revocationListHash,
} from './revocations.js';

/** Installation-wide admin operations are Cedar `admin` on the root folder. */
export const ROOT_FOLDER: FolderResource = { kind: 'Folder', path: '' };

/** A pushed set that does not validate: 400, with every problem (file:line:col) for the pusher. */
export class InvalidPushedPolicySetError extends InvalidRequestError {
  constructor(problems: readonly string[]) {
    super(`invalid policy set: ${problems.slice(0, 20).join('; ')}`.slice(0, 4000), {
      problems: problems.slice(0, 50),
    });
  }
}

export interface ControlAdminOptions {
  readonly plane: ControlPlane;
  readonly control: ControlRecords;
  readonly audit: AuditTrail;
  /** A push or rollback takes effect only once a second admin approves it. Default false. */
  readonly requireApproval?: boolean;
  readonly now?: () => Date;
}

export interface PushResult {
  readonly version: number;
  readonly hash: string;
  /** `active`, or `pending` until a second admin approves (approvals required). */
  readonly status: 'active' | 'pending';
  readonly generation?: number;
}

export interface PolicyHistory {
  /** The set in force on this instance when no set was pushed: the bundled one. */
  readonly bundledHash: string;
  readonly activeHash: string;
  readonly active: (ActivePolicy & { readonly generation: number }) | null;
  readonly pending: PendingPolicy['pending'];
  readonly versions: readonly (Omit<PolicyVersion, 'files'> & { readonly files: readonly string[] })[];
}

export type RevokeInput = RevocationTarget & {
  readonly reason?: string;
  readonly until?: string;
  readonly tokensIssuedBefore?: string;
};

const entityOf = (p: Principal) => `${p.type}::${JSON.stringify(p.id)}`;

/**
 * The admin operations on control records: policy push, history, rollback and approval, and the
 * revocation list. Each is Cedar `admin` on the root folder, and each change commits its control
 * record and its audit record in one transaction (old and new hash in the record), then applies
 * on this instance at once; other instances follow within their freshness bound.
 */
export class ControlAdmin {
  private readonly now: () => Date;

  constructor(private readonly options: ControlAdminOptions) {
    this.now = options.now ?? (() => new Date());
  }

  get requireApproval(): boolean {
    return this.options.requireApproval === true;
  }

  /** Validates a set against the bundled schema and stores it as a new version; activates it unless approvals are required. */
  async push(caller: Caller, files: readonly PolicyFile[], comment?: string): Promise<PushResult> {
    this.requireAdmin(caller);
    const set = this.compile(files);
    const version = (await this.latestVersion()) + 1;
    await this.writeVersion({
      version,
      hash: set.hash,
      schemaHash: schemaHash(set.schema),
      validator: validatorFingerprint(),
      files,
      by: entityOf(caller.principal),
      at: this.now().toISOString(),
      ...(comment ? { comment } : {}),
    });
    return this.activateOrPend(caller, { version, set, files, action: 'push' });
  }

  /** Reactivates version `from`'s files as a new version (validated again against today's schema). */
  async rollback(caller: Caller, from: number): Promise<PushResult> {
    this.requireAdmin(caller);
    const source = await this.readVersion(from);
    const set = this.compile(source.files);
    const version = (await this.latestVersion()) + 1;
    await this.writeVersion({
      version,
      hash: set.hash,
      schemaHash: schemaHash(set.schema),
      validator: validatorFingerprint(),
      files: source.files,
      by: entityOf(caller.principal),
      at: this.now().toISOString(),
      comment: `rollback to v${from}`,
    });
    return this.activateOrPend(caller, { version, set, files: source.files, action: 'rollback', from });
  }

  /** A second admin activates the pending push or rollback `version`. */
  async approve(caller: Caller, version: number): Promise<PushResult> {
    this.requireAdmin(caller);
    const pendingRecord = await this.options.control.get<PendingPolicy>(
      POLICY_PENDING_KIND,
      POLICY_PENDING_ID,
    );
    const pending = pendingRecord?.payload.pending;
    if (!pending || pending.version !== version)
      throw new NotFoundError('no pending policy change with this version');
    if (pending.by === entityOf(caller.principal)) {
      throw new InvalidRequestError(
        'a second admin must approve: the admin who proposed a change cannot approve it',
      );
    }
    const stored = await this.readVersion(version);
    const set = this.compile(stored.files);
    const result = await this.activate(caller, {
      version,
      set,
      files: stored.files,
      action: pending.action,
      ...(pending.from !== undefined ? { from: pending.from } : {}),
      by: pending.by,
      approvedBy: entityOf(caller.principal),
    });
    // Cleared after the activation: a pending entry left behind names a version that is no longer
    // newer than the active one, and approving it again is refused as stale.
    await this.options.control.put<PendingPolicy>(
      POLICY_PENDING_KIND,
      POLICY_PENDING_ID,
      { pending: null },
      pendingRecord?.generation ?? 0,
    );
    return result;
  }

  async history(caller: Caller): Promise<PolicyHistory> {
    this.requireAdmin(caller);
    const [pointer, pending, versions] = await Promise.all([
      this.options.control.get<unknown>(POLICY_POINTER_KIND, POLICY_POINTER_ID),
      this.options.control.get<PendingPolicy>(POLICY_PENDING_KIND, POLICY_PENDING_ID),
      this.options.control.list<unknown>(POLICY_VERSION_KIND),
    ]);
    const list = versions
      .map((r) => checkVersion(r.payload, Number(r.id.slice(1))))
      .sort((a, b) => b.version - a.version)
      .map(({ files, ...v }) => ({ ...v, files: files.map((f) => f.name) }));
    return {
      bundledHash: this.options.plane.baseSet?.hash ?? 'none',
      activeHash: this.options.plane.policySetHash,
      active: pointer ? { ...checkPointer(pointer.payload), generation: pointer.generation } : null,
      pending: pending?.payload.pending ?? null,
      versions: list,
    };
  }

  async revocations(caller: Caller): Promise<readonly (RevocationEntry & { readonly live: boolean })[]> {
    this.requireAdmin(caller);
    const { list } = await this.readRevocations();
    const now = this.now().getTime();
    return list.entries.map((e) => ({ ...e, live: isLive(e, now) }));
  }

  async revoke(caller: Caller, input: RevokeInput): Promise<RevocationEntry> {
    this.requireAdmin(caller);
    const now = this.now();
    for (const [name, value] of [
      ['until', input.until],
      ['tokensIssuedBefore', input.tokensIssuedBefore],
    ] as const) {
      if (value !== undefined && Number.isNaN(Date.parse(value))) {
        throw new InvalidRequestError(`${name} must be an ISO 8601 time`);
      }
    }
    if (input.until !== undefined && Date.parse(input.until) <= now.getTime()) {
      throw new InvalidRequestError('until must be in the future');
    }
    const { list, generation } = await this.readRevocations();
    // Expired entries are dropped on every write: the list only holds what still applies.
    const kept = list.entries.filter((e) => isLive(e, now.getTime()));
    if (kept.length >= MAX_REVOCATIONS) {
      throw new InvalidRequestError(`the revocation list holds at most ${MAX_REVOCATIONS} entries`);
    }
    const target: RevocationTarget =
      input.group !== undefined ? { group: input.group } : { principal: input.principal };
    const entry = {
      id: newRevocationId(),
      ...target,
      ...(input.reason !== undefined ? { reason: input.reason } : {}),
      ...(input.until !== undefined ? { until: new Date(input.until).toISOString() } : {}),
      ...(input.tokensIssuedBefore !== undefined
        ? { tokensIssuedBefore: new Date(input.tokensIssuedBefore).toISOString() }
        : {}),
      by: entityOf(caller.principal),
      at: now.toISOString(),
    } as RevocationEntry;
    const what =
      input.tokensIssuedBefore !== undefined ? ` tokens issued before ${entry.tokensIssuedBefore}` : '';
    await this.writeRevocations(
      caller,
      list,
      { entries: [...kept, entry] },
      generation,
      `revoke ${describeTarget(entry)}${what} (${entry.id})`,
    );
    return entry;
  }

  async unrevoke(caller: Caller, id: string): Promise<void> {
    this.requireAdmin(caller);
    const { list, generation } = await this.readRevocations();
    const entry = list.entries.find((e) => e.id === id);
    if (!entry) throw new NotFoundError('no revocation with this id');
    const now = this.now().getTime();
    const entries = list.entries.filter((e) => e.id !== id && isLive(e, now));
    await this.writeRevocations(
      caller,
      list,
      { entries },
      generation,
      `unrevoke ${describeTarget(entry)} (${id})`,
    );
  }

  private async readRevocations(): Promise<{ list: RevocationList; generation: number }> {
    const record = await this.options.control.get<unknown>(REVOCATION_KIND, REVOCATION_ID);
    return {
      list: record ? checkRevocationList(record.payload) : EMPTY_REVOCATIONS,
      generation: record?.generation ?? 0,
    };
  }

  private async writeRevocations(
    caller: Caller,
    before: RevocationList,
    after: RevocationList,
    expected: number,
    change: string,
  ): Promise<void> {
    const record = await this.putAudited(caller, REVOCATION_KIND, REVOCATION_ID, after, expected, {
      change,
      previousHash: revocationListHash(before),
      hash: revocationListHash(after),
    });
    this.options.plane.adoptRevocations(record.generation, after);
  }

  private compile(files: readonly PolicyFile[]): PolicySet {
    try {
      return this.options.plane.compileSet(files);
    } catch (err) {
      if (err instanceof PolicySetError) throw new InvalidPushedPolicySetError(err.problems);
      throw err;
    }
  }

  private async latestVersion(): Promise<number> {
    const versions = await this.options.control.list<unknown>(POLICY_VERSION_KIND);
    return versions.reduce((max, r) => Math.max(max, Number(r.id.slice(1)) || 0), 0);
  }

  private async readVersion(version: number): Promise<PolicyVersion> {
    const record = await this.options.control.get<unknown>(POLICY_VERSION_KIND, versionId(version));
    if (!record) throw new NotFoundError('no such policy version');
    return checkVersion(record.payload, version);
  }

  private async writeVersion(version: PolicyVersion): Promise<void> {
    // Written once (generation 1): a version is never changed, a second writer of the same number
    // loses with 409 and pushes again.
    await this.options.control.put(POLICY_VERSION_KIND, versionId(version.version), version, 0);
  }

  private async activateOrPend(
    caller: Caller,
    change: {
      version: number;
      set: PolicySet;
      files: readonly PolicyFile[];
      action: 'push' | 'rollback';
      from?: number;
    },
  ): Promise<PushResult> {
    if (!this.requireApproval) {
      return this.activate(caller, { ...change, by: entityOf(caller.principal) });
    }
    const current = await this.options.control.get<PendingPolicy>(POLICY_PENDING_KIND, POLICY_PENDING_ID);
    const pending: PendingPolicy = {
      pending: {
        version: change.version,
        hash: change.set.hash,
        action: change.action,
        ...(change.from !== undefined ? { from: change.from } : {}),
        by: entityOf(caller.principal),
        at: this.now().toISOString(),
      },
    };
    await this.putAudited(caller, POLICY_PENDING_KIND, POLICY_PENDING_ID, pending, current?.generation ?? 0, {
      change: `propose ${change.action} v${change.version}${change.from !== undefined ? ` (from v${change.from})` : ''}`,
      previousHash: this.options.plane.policySetHash,
      hash: change.set.hash,
    });
    return { version: change.version, hash: change.set.hash, status: 'pending' };
  }

  private async activate(
    caller: Caller,
    change: {
      version: number;
      set: PolicySet;
      files: readonly PolicyFile[];
      action: 'push' | 'rollback';
      from?: number;
      by: string;
      approvedBy?: string;
    },
  ): Promise<PushResult> {
    const current = await this.options.control.get<unknown>(POLICY_POINTER_KIND, POLICY_POINTER_ID);
    if (current && checkPointer(current.payload).version >= change.version) {
      throw new InvalidRequestError('a newer policy version is already active');
    }
    const pointer: ActivePolicy = {
      version: change.version,
      hash: change.set.hash,
      action: change.action,
      ...(change.from !== undefined ? { from: change.from } : {}),
      by: change.by,
      at: this.now().toISOString(),
      ...(change.approvedBy ? { approvedBy: change.approvedBy } : {}),
    };
    const { generation } = await this.putAudited(
      caller,
      POLICY_POINTER_KIND,
      POLICY_POINTER_ID,
      pointer,
      current?.generation ?? 0,
      {
        change: `${change.approvedBy ? 'approve ' : ''}${change.action} v${change.version}${change.from !== undefined ? ` (from v${change.from})` : ''}`,
        previousHash: this.options.plane.policySetHash,
        hash: change.set.hash,
      },
    );
    this.options.plane.adoptPolicy(generation, pointer, change.files, change.set);
    return { version: change.version, hash: change.set.hash, status: 'active', generation };
  }

  /** Cedar `admin` on the root folder; the decision goes in the request's audit record. */
  private requireAdmin(caller: Caller): void {
    caller.audit.action = 'admin';
    const decision = this.options.plane.authorize({
      principal: caller.principal,
      action: 'admin',
      resource: ROOT_FOLDER,
      context: caller.context,
    });
    caller.audit.decision = decision;
    caller.audit.policySetHash = decision.policySetHash ?? this.options.plane.policySetHash;
    if (!decision.allowed) throw new ForbiddenError();
  }

  /**
   * Writes the next generation of a control record in the same transaction as the request's
   * audit record, which names the change and the hashes before and after it.
   */
  private putAudited<T>(
    caller: Caller,
    kind: string,
    id: string,
    payload: T,
    expected: number,
    change: Pick<AuditControlChange, 'change' | 'previousHash' | 'hash'>,
  ): Promise<ControlRecord<T>> {
    caller.audit.control = { kind, id, generation: expected + 1, ...change };
    return this.options.audit.withChange(caller.audit, (items) =>
      this.options.control.put(kind, id, payload, expected, items),
    );
  }
}
