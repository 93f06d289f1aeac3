import { createPublicKey, type KeyObject } from 'node:crypto';
import {
  OFFBOARD_DAYS,
  type OffboardRead,
  type OffboardReport,
  type OffboardRotation,
} from '../../packages/client/src/contract.js';
import { ChainVerifier } from '../audit/chain-verifier.js';
import type { AuditReader } from '../audit/reader.js';
import type { RequestRecord } from '../audit/record.js';
import type { PrincipalType } from '../authn/principal.js';
import type { ControlAdmin } from '../control/admin.js';
import { CofferError, InvalidRequestError } from '../errors.js';
import type { Caller } from '../secrets/service.js';
import { type AccessReports, parsePrincipalRef } from './reports.js';

/*
 * Offboarding (docs/access.md): revoke first, then report.
 *
 * 1. The revocation is ControlAdmin.revoke, the same record and audit as `coffer revoke`: the
 *    offboard request's audit record is the revocation's (route /v1/admin/offboard). A live
 *    revocation of exactly this principal (no `until`, no token cutoff) is reused, so a second run
 *    after a failed report adds nothing.
 * 2. What it read: request records of the window, found through the chain index (chains whose
 *    `notAfter` is in the window; each chain one paginated Query, never a Scan). A read counts
 *    when the record is the principal's, action `read`, decision `allow` and status 200; a failed,
 *    denied or missing read does not. A batch-get record names its paths comma-joined and says 200
 *    even when some path failed: with an `allow` decision every path was allowed (a missing one
 *    could still have answered not_found), with a `deny` its paths are listed as possibly read.
 * 3. What it could read: AccessReports.what with the directory's last-seen groups, deciding as if
 *    it were not revoked (after the revocation it may read nothing).
 * 4. Rotation: the RotationScheduler port (lib/access/rotation-port.ts in a composed server):
 *    every read secret is marked due; without a port the report says rotation is not configured.
 */

/**
 * The rotation port offboarding uses (implemented by the rotation work). Each call is made as the
 * offboarding admin, and each change it makes is its own audited change.
 */
export interface RotationScheduler {
  /** Whether the secret has a rotation policy. */
  isConfigured(path: string): Promise<boolean>;
  /** Marks a secret due for rotation (its next scheduled run rotates it). */
  markDue(caller: Caller, path: string, reason: string): Promise<void>;
  /** Rotates a secret now (only called where `isConfigured`). */
  rotateNow(caller: Caller, path: string): Promise<void>;
}

export interface OffboardInput {
  /** `Type::"id"` (with or without `Coffer::`) or a bare id (any principal type). */
  readonly principal: string;
  /** The read window in days (default 90); or `since`, not both. */
  readonly days?: number;
  readonly since?: string;
  readonly reason?: string;
  /** Rotate now the read secrets whose rotation is configured (else they are only marked due). */
  readonly rotate?: boolean;
}

export interface OffboardingDeps {
  readonly admin: ControlAdmin;
  readonly reports: AccessReports;
  /** The audit table's reader. */
  readonly audit: AuditReader;
  /**
   * The root audit public key(s) (SPKI PEM), from the server's own root key, never from the
   * table: each chain read is verified (certificate, signatures, links) as it is read, and a chain
   * that fails is named in the report's warnings. Default: none (records are read unverified, and
   * the report says so).
   */
  readonly auditRootKeys?: () => Promise<readonly string[]>;
  /** Absent until rotation is configured: the report says so and nothing is marked. */
  readonly rotation?: RotationScheduler;
  readonly now?: () => Date;
}

const DAY_MS = 86_400_000;
const MAX_RECORDED_ID = 512;
/** Pages of `what` followed per offboarding (500 secrets each). */
const MAX_WHAT_PAGES = 200;

interface ReadStats {
  reads: number;
  firstRead: string;
  lastRead: string;
  via: Set<'get' | 'batch-get'>;
}

const isBatch = (r: RequestRecord) => r.method === 'POST' && /\/v1\/batch-get$/.test(r.route);

/** Offboarding: revoke, then report what was read, what could be, and mark rotation. */
export class Offboarding {
  private readonly now: () => Date;

  constructor(private readonly deps: OffboardingDeps) {
    this.now = deps.now ?? (() => new Date());
  }

  async offboard(caller: Caller, input: OffboardInput): Promise<OffboardReport> {
    // Every check of the input comes before the revocation: a bad request changes nothing.
    const ref = parsePrincipalRef(input.principal);
    const window = this.window(input, this.now());

    const { entry, alreadyRevoked } = await this.revoke(caller, ref, input.reason);
    // Up to now, after the revocation: every read this instance served before it is in the log.
    const until = this.now();

    const warnings: string[] = [];
    const { read, possiblyRead } = await this.readsOf(ref, window.since, until.toISOString(), warnings);
    const couldRead = await this.couldRead(caller, input.principal, warnings);
    const could = couldRead ? new Set(couldRead.paths) : undefined;

    const rotation = {
      configured: this.deps.rotation !== undefined,
      markedDue: [] as string[],
      rotated: [] as string[],
    };
    const items: OffboardRead[] = [];
    for (const [path, s] of [...read].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      items.push({
        path,
        reads: s.reads,
        firstRead: s.firstRead,
        lastRead: s.lastRead,
        via: [...s.via].sort(),
        couldRead: could ? could.has(path) : null,
        rotation: await this.rotate(caller, path, input.rotate === true, entry.id, rotation),
      });
    }
    if (!this.deps.rotation) {
      warnings.push('rotation is not configured on this server: no secret was marked due for rotation');
    }
    return {
      principal: { ...(ref.type ? { type: ref.type } : {}), id: ref.id },
      revocation: {
        id: entry.id,
        ...(entry.principal ? { principal: entry.principal } : {}),
        ...(entry.reason !== undefined ? { reason: entry.reason } : {}),
        by: entry.by,
        at: entry.at,
      },
      alreadyRevoked,
      window: { ...window, until: until.toISOString() },
      read: items,
      possiblyRead: [...possiblyRead].filter((p) => !read.has(p)).sort(),
      couldRead,
      rotation,
      warnings,
    };
  }

  private window(input: OffboardInput, until: Date): { since: string; days: number | null } {
    if (input.days !== undefined && input.since !== undefined) {
      throw new InvalidRequestError('give days or since, not both');
    }
    if (input.since !== undefined) {
      const ms = Date.parse(input.since);
      if (Number.isNaN(ms)) throw new InvalidRequestError('since must be an ISO 8601 time');
      if (ms > until.getTime()) throw new InvalidRequestError('since must not be in the future');
      return { since: new Date(ms).toISOString(), days: null };
    }
    const days = input.days ?? OFFBOARD_DAYS.default;
    if (!Number.isInteger(days) || days < OFFBOARD_DAYS.min || days > OFFBOARD_DAYS.max) {
      throw new InvalidRequestError(
        `days must be an integer from ${OFFBOARD_DAYS.min} to ${OFFBOARD_DAYS.max}`,
      );
    }
    return { since: new Date(until.getTime() - days * DAY_MS).toISOString(), days };
  }

  private async revoke(
    caller: Caller,
    ref: { type?: PrincipalType; id: string },
    reason: string | undefined,
  ) {
    // Also Cedar `admin` on the root folder, decided and noted in the request's audit record.
    const live = (await this.deps.admin.revocations(caller)).find(
      (e) =>
        e.live &&
        e.principal !== undefined &&
        e.principal.id === ref.id &&
        e.principal.type === ref.type &&
        e.until === undefined &&
        e.tokensIssuedBefore === undefined,
    );
    if (live) return { entry: live, alreadyRevoked: true };
    const entry = await this.deps.admin.revoke(caller, {
      principal: { ...(ref.type ? { type: ref.type } : {}), id: ref.id },
      reason: reason ?? 'offboarded',
    });
    return { entry, alreadyRevoked: false };
  }

  /**
   * The principal's successful reads in [since, until], from the audit table, each chain verified
   * as it is read when the root key is known. Reads in a chain that fails verification still count
   * (over-reporting only rotates more); the chain is named in a warning.
   */
  private async readsOf(
    ref: { type?: PrincipalType; id: string },
    since: string,
    until: string,
    warnings: string[],
  ): Promise<{ read: Map<string, ReadStats>; possiblyRead: Set<string> }> {
    const read = new Map<string, ReadStats>();
    const possiblyRead = new Set<string>();
    const note = (path: string, time: string, via: 'get' | 'batch-get') => {
      const s = read.get(path);
      if (!s) {
        read.set(path, { reads: 1, firstRead: time, lastRead: time, via: new Set([via]) });
        return;
      }
      s.reads++;
      if (time < s.firstRead) s.firstRead = time;
      if (time > s.lastRead) s.lastRead = time;
      s.via.add(via);
    };
    const rootKeys = await this.rootKeys(warnings);
    // Records keep at most 512 characters of a principal id (record.ts).
    const id = ref.id.slice(0, MAX_RECORDED_ID);
    const failed: string[] = [];
    // A chain takes no record after its notAfter: chains that ended before `since` hold none.
    for await (const chain of this.deps.audit.chainIndex(since)) {
      let problem: string | undefined;
      const verifier = rootKeys
        ? new ChainVerifier(chain.chain, {
            rootKeys,
            report: (p) => {
              problem ??= `${p.kind}${p.seq !== undefined ? ` at seq ${p.seq}` : ''}`;
            },
            signedHeads: () => undefined,
          })
        : undefined;
      for await (const { item, keySeq } of this.deps.audit.records(chain.chain, verifier ? 0 : 1)) {
        verifier?.add(item, keySeq);
        if (item.type !== 'request') continue;
        const r = item as unknown as RequestRecord;
        if (typeof r.time !== 'string' || r.time < since || r.time > until) continue;
        if (r.principal?.id !== id || (ref.type !== undefined && r.principal.type !== ref.type)) continue;
        if (r.action !== 'read' || r.status !== 200 || typeof r.path !== 'string' || r.path === '') continue;
        if (isBatch(r)) {
          const paths = r.path.split(',').filter((p) => p !== '');
          if (r.decision === 'allow') for (const p of paths) note(p, r.time, 'batch-get');
          else if (r.decision === 'deny') for (const p of paths) possiblyRead.add(p);
          continue;
        }
        if (r.decision === 'allow') note(r.path, r.time, 'get');
      }
      if (problem) failed.push(`${chain.chain} (${problem})`);
    }
    if (failed.length > 0) {
      warnings.push(
        `${failed.length} audit chain(s) failed verification, their records were read as stored: ${failed.slice(0, 5).join(', ')}; run \`coffer audit verify\``,
      );
    }
    return { read, possiblyRead };
  }

  private async rootKeys(warnings: string[]): Promise<KeyObject[] | undefined> {
    const pems = this.deps.auditRootKeys ? await this.deps.auditRootKeys() : [];
    if (pems.length === 0) {
      warnings.push('the audit records were read without verification (no audit root key on this server)');
      return undefined;
    }
    return pems.map((pem) => createPublicKey(pem));
  }

  /** Every path it could read before the revocation; null (with a warning) when that is unknown. */
  private async couldRead(
    caller: Caller,
    principal: string,
    warnings: string[],
  ): Promise<OffboardReport['couldRead']> {
    const paths: string[] = [];
    const withRotationPolicy: string[] = [];
    let cursor: string | undefined;
    let first:
      | { principal: NonNullable<OffboardReport['couldRead']>['principal']; policySetHash: string }
      | undefined;
    try {
      for (let page = 0; page < MAX_WHAT_PAGES; page++) {
        const out = await this.deps.reports.what(
          caller,
          { principal, ...(cursor ? { cursor } : {}) },
          { asIfNotRevoked: true },
        );
        first ??= { principal: out.principal, policySetHash: out.policySetHash };
        for (const item of out.items) {
          if (!item.read) continue;
          paths.push(item.path);
          if (item.rotationPolicy) withRotationPolicy.push(item.path);
        }
        cursor = out.cursor;
        if (!cursor) break;
      }
    } catch (err) {
      // The revocation stands; the report says what it could not tell.
      if (
        !(err instanceof CofferError) ||
        !['not_found', 'invalid_request', 'integrity_error'].includes(err.code)
      ) {
        throw err;
      }
      warnings.push(
        err.code === 'not_found'
          ? 'the principal is not in the directory (never seen): what it could read is unknown; run `coffer access what` with its groups'
          : err.code === 'integrity_error'
            ? "the principal's directory entry failed verification: what it could read is unknown"
            : `what it could read is unknown: ${err.message}`,
      );
      return null;
    }
    if (cursor)
      warnings.push(`what it could read is cut at ${MAX_WHAT_PAGES} pages: run \`coffer access what\``);
    return first ? { ...first, paths: paths.sort(), withRotationPolicy: withRotationPolicy.sort() } : null;
  }

  private async rotate(
    caller: Caller,
    path: string,
    now: boolean,
    revocationId: string,
    summary: { markedDue: string[]; rotated: string[] },
  ): Promise<OffboardRotation | null> {
    const scheduler = this.deps.rotation;
    if (!scheduler) return null;
    const configured = await scheduler.isConfigured(path);
    const state: { configured: boolean; markedDue: boolean; rotated: boolean; error?: string } = {
      configured,
      markedDue: false,
      rotated: false,
    };
    try {
      await scheduler.markDue(caller, path, `offboarding (${revocationId})`);
      state.markedDue = true;
      summary.markedDue.push(path);
      if (now && configured) {
        await scheduler.rotateNow(caller, path);
        state.rotated = true;
        summary.rotated.push(path);
      }
    } catch (err) {
      // One secret's rotation failing leaves the others to do: the report names it.
      state.error = err instanceof CofferError ? err.code : 'internal';
    }
    return state;
  }
}
