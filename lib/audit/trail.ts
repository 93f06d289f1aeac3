import type { TransactWriteItem } from '@aws-sdk/client-dynamodb';
import type { AuthMethod, Principal } from '../authn/principal.js';
import type { Action, Decision } from '../authz/authorizer.js';

/**
 * What the audit record of one request says. The HTTP layer creates it when the request arrives
 * and fills in who called; the service adds what was done and how it was decided. It never holds a
 * secret value, a token or a data key.
 */
export interface AuditContext {
  readonly requestId: string;
  readonly time: string;
  readonly method: string;
  readonly route: string;
  readonly sourceIp: string;
  readonly userAgent: string;
  principal?: Principal;
  authMethod?: AuthMethod;
  action?: Action;
  path?: string;
  version?: number;
  decision?: Decision;
  policySetHash?: string;
  /**
   * Request fields that may be sensitive beyond the path (the query string, client-supplied
   * metadata such as an Idempotency-Key). The record keeps only their keyed HMAC-SHA256.
   */
  sensitive?: Record<string, string>;
  /**
   * The head a change leaves behind: its revision and MAC (base64). The log then names the exact
   * head each change wrote, so an older head put back in the table is caught (`audit verify
   * --storage`).
   */
  head?: { readonly rev: number; readonly mac: string };
  /** The key ids a key operation involved (never key material). */
  keyIds?: readonly string[];
  /** The control record an admin change wrote (policy set, revocation list). */
  control?: AuditControlChange;
  /** Set once the record was written inside a change's transaction. */
  written: boolean;
}

/**
 * What an admin change did to a control record: which one, the generation it wrote, and a hash of
 * what was in force before and after (for the policy set, the policy-set hashes decisions name).
 */
export interface AuditControlChange {
  readonly kind: string;
  readonly id: string;
  readonly generation: number;
  /** e.g. `push v3`, `rollback v1 as v4`, `revoke User::"corp:alice"`; never a secret or a token. */
  readonly change: string;
  readonly previousHash: string | null;
  readonly hash: string | null;
}

export interface AuditOutcome {
  readonly status: number;
  readonly code?: string;
}

/**
 * The audit port. A change's record is written in the change's own transaction (`withChange`),
 * any other request's record by `finish`, which resolves only once the record is durable: a read
 * returns its value only after that, and fails with 503 `audit_unavailable` if it cannot.
 */
export interface AuditTrail {
  withChange<T>(ctx: AuditContext, run: (items: TransactWriteItem[]) => Promise<T>): Promise<T>;
  finish(ctx: AuditContext, outcome: AuditOutcome): Promise<void>;
}

/** Records nothing: for unit tests of the layers above and tools that only read. */
export class NoAuditTrail implements AuditTrail {
  withChange<T>(_ctx: AuditContext, run: (items: TransactWriteItem[]) => Promise<T>): Promise<T> {
    return run([]);
  }
  async finish(): Promise<void> {}
}
