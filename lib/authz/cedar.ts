import { describeError, type Logger } from '../log.js';
import type { AuthorizationRequest, Authorizer, Decision } from './authorizer.js';
import { type AuthorizationAnswer, cedar } from './cedar-engine.js';
import {
  actionUid,
  cedarRequest,
  groupUid,
  principalUid,
  resourceAncestors,
  resourceUid,
} from './entities.js';
import { type Uid, uidKey } from './entity-uid.js';
import { namedEntities } from './named-entities.js';
import { loadPolicyDir, type PolicySet } from './policy-set.js';
import {
  mergeNeeds,
  needsOf,
  type RequestNeeds,
  type RequestScope,
  type ScopeMatcher,
  scopeMatcher,
} from './slicing.js';

/** How many pre-parsed slices one authorizer keeps (least recently used are replaced). */
export const DEFAULT_SLICE_CACHE_SIZE = 512;
/** How many decisions one authorizer keeps (least recently used are replaced). */
export const DEFAULT_DECISION_CACHE_SIZE = 4096;
/** Cedar error messages are cut to this length in decisions and logs. */
const MAX_ERROR_CHARS = 300;

export interface CedarAuthorizerOptions {
  /** Where evaluation errors and engine failures are reported (policy ids, never secret data). */
  readonly logger: Logger;
  /** Pre-parsed slices kept per process; default 512. */
  readonly sliceCacheSize?: number;
  /**
   * Decisions kept, keyed by the slice and the exact request Cedar would be sent; default 4096,
   * 0 turns the cache off (the benchmark measures the engine that way).
   */
  readonly decisionCacheSize?: number;
  /**
   * `false` evaluates the whole policy set on every request instead of the slice that can apply.
   * Decisions are identical (see lib/authz/slicing.ts); only the cost differs. For tests and the
   * benchmark.
   */
  readonly slicing?: boolean;
}

interface CompiledPolicy {
  readonly index: number;
  readonly id: string;
  readonly effect: 'permit' | 'forbid';
  readonly text: string;
  readonly matches: ScopeMatcher;
  readonly needs: RequestNeeds;
}

/** A pre-parsed slice: its policies, its id in Cedar's cache and what its policies can read. */
interface Slice {
  /** The indices of its policies: what its decisions depend on (setIds are reused). */
  readonly key: string;
  readonly setId: string;
  readonly needs: RequestNeeds;
}

const DENY_NO_POLICY: Decision = Object.freeze({ allowed: false, policyIds: [], errors: [] });

let instances = 0;

/**
 * The Cedar authorizer: every decision is made by the real Cedar engine (cedar-wasm) over the
 * loaded policy set. Deny by default, forbid wins, and, stricter than Cedar alone, a forbid policy
 * whose evaluation errors denies the request (Cedar would skip it, and a skipped forbid silently
 * stops protecting). A permit that errors grants nothing. Any failure of the engine denies.
 *
 * The policy set is parsed and validated once, at construction. Each request is then decided over
 * the slice of policies whose scope can match it, sending Cedar only the attributes, tags and
 * context fields those policies can read (exactly the same decision as the whole set with the
 * whole request, see slicing.ts; it is most of the cost saved). Each distinct slice is pre-parsed
 * once into Cedar's cache (`preparsePolicySet`) and reused by `statefulIsAuthorized`; nothing is
 * parsed per request.
 *
 * @example
 * const authorizer = await CedarAuthorizer.fromDir(settings.policyDir, { logger });
 * authorizer.authorize({ principal, action: 'read', resource, context }).allowed;
 */
export class CedarAuthorizer implements Authorizer {
  readonly policySetHash: string;
  readonly policySet: PolicySet;
  private readonly logger: Logger;
  private readonly policies: readonly CompiledPolicy[];
  private readonly byId: ReadonlyMap<string, CompiledPolicy>;
  private readonly actionParents: ReadonlyMap<string, readonly Uid[]>;
  private readonly prefix: string;
  private readonly slicing: boolean;
  private readonly cacheSize: number;
  /** Slice key (policy indices) -> slice; Map order is least recently used first. */
  private readonly slices = new Map<string, Slice>();
  private readonly fullSetId: string;
  /** Cache key -> a decision Cedar made without error; Map order is least recently used first. */
  private readonly decisions = new Map<string, Decision>();
  private readonly decisionCacheSize: number;
  private nextSlot = 0;
  private prepared = 0;
  private engineCalls = 0;
  private named: readonly Uid[] | undefined;

  constructor(policySet: PolicySet, options: CedarAuthorizerOptions) {
    this.policySet = policySet;
    this.policySetHash = policySet.hash;
    this.logger = options.logger;
    this.slicing = options.slicing ?? true;
    this.cacheSize = Math.max(1, options.sliceCacheSize ?? DEFAULT_SLICE_CACHE_SIZE);
    this.decisionCacheSize = Math.max(0, options.decisionCacheSize ?? DEFAULT_DECISION_CACHE_SIZE);
    this.policies = policySet.policies.map((p, index) => ({
      index,
      id: p.id,
      effect: p.effect,
      text: p.text,
      matches: scopeMatcher(p.json),
      needs: needsOf(p.json),
    }));
    this.byId = new Map(this.policies.map((p) => [p.id, p]));
    this.actionParents = new Map([...policySet.actions].map(([name, info]) => [name, info.parents]));
    // Cedar's cache is per process and keyed by name: each authorizer gets its own names.
    this.prefix = `coffer-${++instances}-${policySet.hash.slice(0, 12)}`;
    this.fullSetId = `${this.prefix}-all`;
    this.preparse(this.fullSetId, this.policies);
    for (const w of policySet.warnings) this.logger.warn('policy validation warning', { warning: w });
  }

  /**
   * How many policy sets were handed to Cedar's parser (the full set at construction, then each
   * distinct slice once), and how many slices are cached. It grows with distinct request shapes,
   * never with the number of requests. `engineCalls` counts decisions that needed Cedar (the
   * others had no policy that could apply, denied by default, or were answered from the decision
   * cache, `cachedDecisions` of them kept).
   */
  get stats(): {
    readonly parsedSets: number;
    readonly cachedSlices: number;
    readonly engineCalls: number;
    readonly cachedDecisions: number;
  } {
    return {
      parsedSets: this.prepared,
      cachedSlices: this.slices.size,
      engineCalls: this.engineCalls,
      cachedDecisions: this.decisions.size,
    };
  }

  /** Every entity the policies name (computed once). */
  namedEntities(): readonly Uid[] {
    this.named ??= namedEntities(this.policySet.policies.map((p) => p.json));
    return this.named;
  }

  /** Loads and validates the policy directory (throws PolicySetError naming file and line). */
  static async fromDir(dir: string, options: CedarAuthorizerOptions): Promise<CedarAuthorizer> {
    return new CedarAuthorizer(await loadPolicyDir(dir), options);
  }

  authorize(request: AuthorizationRequest): Decision {
    try {
      return this.decide(request);
    } catch (err) {
      // Fail closed: whatever went wrong, the answer is no.
      this.logger.error('authorization failed; denied', {
        action: request.action,
        ...describeError(err),
      });
      return { allowed: false, policyIds: [], errors: ['authorization engine failure'] };
    }
  }

  private decide(request: AuthorizationRequest): Decision {
    const info = this.policySet.actions.get(request.action);
    const principal = principalUid(request.principal);
    const resource = resourceUid(request.resource);
    if (!info?.principalTypes.has(principal.type) || !info.resourceTypes.has(resource.type)) {
      // The schema says this action does not apply to this kind of principal or resource: a
      // caller bug, never a grant.
      return {
        allowed: false,
        policyIds: [],
        errors: [`action "${request.action}" does not apply to ${principal.type} on ${resource.type}`],
      };
    }

    // Whole-set mode sends everything (no `needs`): it is the reference the sliced mode must match.
    const slice = this.slicing ? this.sliceFor(request, principal, resource) : { setId: this.fullSetId };
    if (slice === undefined) return DENY_NO_POLICY;

    const call = cedarRequest(request, this.actionParents, 'needs' in slice ? slice.needs : undefined);
    // Cedar's answer is a pure function of the policies and of what it is sent, and `call` is all
    // it is sent (trimmed to what the slice's policies read, the time included only when one reads
    // it). Anything that changes a decision (a group, an attribute, a tag, the policy set, which is
    // a new authorizer) changes the key; revocations are checked before any decision is asked
    // for (lib/http/app.ts). Only clean decisions are kept, so evaluation errors are logged every
    // time.
    const key =
      'key' in slice && this.decisionCacheSize > 0 ? `${slice.key}\n${JSON.stringify(call)}` : undefined;
    if (key !== undefined) {
      const hit = this.decisions.get(key);
      if (hit !== undefined) {
        this.decisions.delete(key);
        this.decisions.set(key, hit);
        return { allowed: hit.allowed, policyIds: [...hit.policyIds], errors: [] };
      }
    }
    this.engineCalls++;
    const answer: AuthorizationAnswer = cedar.statefulIsAuthorized({
      principal: call.principal,
      action: call.action,
      resource: call.resource,
      context: call.context as never,
      entities: call.entities,
      preparsedPolicySetId: slice.setId,
    });
    if (answer.type === 'failure') {
      const errors = answer.errors.map((e) => clip(e.message));
      this.logger.error('authorization request rejected by Cedar; denied', {
        action: request.action,
        path: request.resource.path,
        errors,
      });
      return { allowed: false, policyIds: [], errors };
    }

    const { decision, diagnostics } = answer.response;
    const errors = diagnostics.errors
      .map((e) => ({
        policyId: e.policyId,
        // An error from a policy we cannot place is treated as a forbid's: deny.
        effect: this.byId.get(e.policyId)?.effect ?? 'forbid',
        message: clip(e.error.message),
      }))
      // Cedar reports a set: sort it so the same request always gets the same decision value.
      .sort((x, y) => (x.policyId < y.policyId ? -1 : x.policyId > y.policyId ? 1 : 0));
    const errorStrings = errors.map((e) => `${e.policyId}: ${e.message}`);
    const failedForbids = errors.filter((e) => e.effect === 'forbid').map((e) => e.policyId);
    if (errors.length > 0) {
      this.logger.warn('policy evaluation error', {
        action: request.action,
        principal: uidKey(principal),
        path: request.resource.path,
        errors,
        ...(failedForbids.length > 0 ? { outcome: 'denied: a forbid policy failed to evaluate' } : {}),
      });
    }
    const reason = [...diagnostics.reason].sort();
    if (failedForbids.length > 0) {
      const satisfiedForbids = reason.filter((id) => this.byId.get(id)?.effect !== 'permit');
      return {
        allowed: false,
        policyIds: [...new Set([...failedForbids.sort(), ...satisfiedForbids])],
        errors: errorStrings,
      };
    }
    const made: Decision = { allowed: decision === 'allow', policyIds: reason, errors: errorStrings };
    if (key !== undefined && errors.length === 0) this.keep(key, made);
    return made;
  }

  private keep(key: string, decision: Decision): void {
    if (this.decisions.size >= this.decisionCacheSize) {
      const oldest = this.decisions.keys().next().value as string;
      this.decisions.delete(oldest);
    }
    this.decisions.set(key, { allowed: decision.allowed, policyIds: [...decision.policyIds], errors: [] });
  }

  /** The pre-parsed slice of the policies that can apply, or undefined when none can. */
  private sliceFor(request: AuthorizationRequest, principal: Uid, resource: Uid): Slice | undefined {
    const scope: RequestScope = {
      principal: uidKey(principal),
      principalType: principal.type,
      principalIn: new Set(request.principal.groups.map((g) => uidKey(groupUid(g)))),
      action: uidKey(actionUid(request.action)),
      actionIn: new Set((this.actionParents.get(request.action) ?? []).map(uidKey)),
      resource: uidKey(resource),
      resourceType: resource.type,
      resourceIn: new Set(resourceAncestors(request.resource).map(uidKey)),
    };
    const slice = this.policies.filter((p) => p.matches(scope));
    if (slice.length === 0) return undefined;
    const key = slice.map((p) => p.index).join(',');
    const cached = this.slices.get(key);
    if (cached !== undefined) {
      this.slices.delete(key);
      this.slices.set(key, cached);
      return cached;
    }
    let setId: string;
    if (this.slices.size >= this.cacheSize) {
      const [oldestKey, oldest] = this.slices.entries().next().value as [string, Slice];
      this.slices.delete(oldestKey);
      setId = oldest.setId;
    } else {
      setId = `${this.prefix}-slice-${this.nextSlot++}`;
    }
    this.preparse(setId, slice);
    const prepared: Slice = { key, setId, needs: mergeNeeds(slice.map((p) => p.needs)) };
    this.slices.set(key, prepared);
    return prepared;
  }

  private preparse(setId: string, policies: readonly CompiledPolicy[]): void {
    const answer = cedar.preparsePolicySet(setId, {
      // The policies' own text, not their JSON form: JSON numbers would round Cedar's 64-bit
      // integer literals.
      staticPolicies: Object.fromEntries(policies.map((p) => [p.id, p.text])),
    });
    this.prepared++;
    if (answer.type === 'failure') {
      throw new Error(
        `Cedar refused a validated policy set: ${answer.errors[0]?.message ?? 'unknown error'}`,
      );
    }
  }
}

function clip(message: string): string {
  return message.length > MAX_ERROR_CHARS ? `${message.slice(0, MAX_ERROR_CHARS)}…` : message;
}
