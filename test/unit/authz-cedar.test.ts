import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Principal } from '../../lib/authn/principal.js';
import {
  ACTIONS,
  type AuthorizationRequest,
  type RequestContext,
  type Resource,
} from '../../lib/authz/authorizer.js';
import { CedarAuthorizer } from '../../lib/authz/cedar.js';
import { cedar } from '../../lib/authz/cedar-engine.js';
import {
  cedarIp,
  cedarTime,
  contextJson,
  principalEntity,
  resourceEntity,
  TYPES,
} from '../../lib/authz/entities.js';
import { compilePolicySet, type PolicySet, type PolicySource } from '../../lib/authz/policy-set.js';
import { mergeNeeds, needsOf } from '../../lib/authz/slicing.js';
import { jsonLogger, type Logger } from '../../lib/log.js';

const SCHEMA_TEXT = readFileSync(
  fileURLToPath(new URL('../../policies/schema.cedarschema', import.meta.url)),
  'utf8',
);
const SCHEMA: PolicySource = { name: 'schema.cedarschema', text: SCHEMA_TEXT };
/** The shipped schema with `owner` made required: policies may then read it unguarded. */
const OWNER_REQUIRED: PolicySource = {
  name: 'schema.cedarschema',
  text: SCHEMA_TEXT.replace('owner?: String', 'owner: String'),
};
const ADMINS = '@id("admins") permit (principal in Coffer::Group::"admins", action, resource);';
/** Admins, and a forbid that errors on a secret without an owner (valid with OWNER_REQUIRED). */
const NO_MALLORY_OWNED = `${ADMINS}\n@id("no-mallory-owned") forbid (principal, action == Coffer::Action::"read", resource) when { resource.owner == "corp:mallory" };`;

const CONTEXT: RequestContext = { authMethod: 'oidc', sourceIp: '10.0.0.1', time: 1_740_830_400 };
const user = (id: string, groups: string[] = []): Principal => ({
  type: 'User',
  id,
  groups,
  attributes: {},
  authMethod: 'oidc',
  issuer: 'corp',
});
const ADMIN = user('corp:ada', ['admins']);
const secret = (path: string, extra: { tags?: Record<string, string>; owner?: string } = {}): Resource => ({
  kind: 'Secret',
  path,
  tags: extra.tags ?? {},
  ...(extra.owner ? { owner: extra.owner } : {}),
});

function capture(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  return { logger: jsonLogger((l) => lines.push(JSON.parse(l))), lines };
}

function authorizer(policies: string, schema: PolicySource = SCHEMA, logger?: Logger): CedarAuthorizer {
  const set = compilePolicySet(schema, [{ name: 'test.cedar', text: policies }]);
  return new CedarAuthorizer(set, { logger: logger ?? capture().logger });
}

const ask = (
  a: CedarAuthorizer,
  principal: Principal,
  resource: Resource,
  action: AuthorizationRequest['action'] = 'read',
  context: RequestContext = CONTEXT,
) => a.authorize({ principal, action, resource, context });

describe('the entities and context Coffer sends', () => {
  const principals: Principal[] = [
    ADMIN,
    { ...user('corp:x'), attributes: { department: 'ops', email: 'x@example.com' } },
    { type: 'User', id: 'arn:aws:iam::111122223333:user/ci', groups: [], attributes: {}, authMethod: 'iam' },
    {
      type: 'Role',
      id: 'arn:aws:iam::111122223333:role/api',
      groups: ['workloads'],
      attributes: { account: '111122223333' },
      authMethod: 'iam',
    },
  ];
  const resources: Resource[] = [
    secret('a'),
    secret('team-a/db/password', { tags: { env: 'prod' }, owner: 'corp:ada' }),
    { kind: 'Folder', path: 'team-a/' },
    { kind: 'Folder', path: 'team-a/db/' },
  ];

  it('conform to the shipped schema', () => {
    for (const p of principals) {
      for (const r of resources) {
        const answer = cedar.checkParseEntities({
          entities: [principalEntity(p), resourceEntity(r)],
          schema: SCHEMA_TEXT,
        });
        expect(answer, `${p.id} / ${r.path}`).toEqual({ type: 'success' });
      }
    }
    for (const sourceIp of ['10.0.0.1', '::1', '::ffff:192.168.1.2', 'unknown', '']) {
      for (const action of ACTIONS) {
        const answer = cedar.checkParseContext({
          context: contextJson({ ...CONTEXT, sourceIp }) as never,
          schema: SCHEMA_TEXT,
          action: { type: TYPES.action, id: action },
        });
        expect(answer, `${action} from ${sourceIp}`).toEqual({ type: 'success' });
      }
    }
  });

  it('put a secret in every folder above it, and a folder in its parents', () => {
    expect(resourceEntity(secret('team-a/db/password')).parents).toEqual([
      { type: TYPES.folder, id: 'team-a/' },
      { type: TYPES.folder, id: 'team-a/db/' },
    ]);
    expect(resourceEntity({ kind: 'Folder', path: 'team-a/db/' }).parents).toEqual([
      { type: TYPES.folder, id: 'team-a/' },
    ]);
    expect(resourceEntity(secret('top')).parents).toEqual([]);
  });

  it('send the source address only when Cedar can read it, IPv4-mapped IPv6 as IPv4', () => {
    expect(cedarIp('10.1.2.3')).toBe('10.1.2.3');
    expect(cedarIp('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(cedarIp('2001:db8::1')).toBe('2001:db8::1');
    expect(cedarIp('unknown')).toBeUndefined();
    expect(cedarIp('fe80::1%eth0')).toBeUndefined();
    expect(cedarIp('10.0.0.1, 10.0.0.2')).toBeUndefined();
    expect(contextJson({ ...CONTEXT, sourceIp: 'unknown' })).not.toHaveProperty('sourceIp');
  });

  it('send the time as a Cedar datetime in whole seconds', () => {
    expect(cedarTime(1_740_830_400.9)).toBe('2025-03-01T12:00:00Z');
    expect(() => cedarTime(Number.NaN)).toThrow();
  });
});

describe('slicing and trimming the request', () => {
  // Policies that read a bit of everything, so that sending only what a slice can read is put to
  // the test against sending everything to the whole set.
  const POLICIES = `
    @id("admins") permit (principal in Coffer::Group::"admins", action, resource);
    @id("ops-tag") permit (principal, action == Coffer::Action::"read", resource)
      when { principal.hasTag("department") && principal.getTag("department") == "ops" };
    @id("owner") permit (principal, action in [Coffer::Action::"read", Coffer::Action::"readMetadata"], resource is Coffer::Secret)
      when { resource has owner && resource.owner == principal.id };
    @id("ci-paths") permit (principal in Coffer::Group::"ci", action == Coffer::Action::"read", resource)
      when { resource.path like "team-*/ci/*" };
    @id("set-literal") permit (principal, action == Coffer::Action::"list", resource)
      when { principal in [Coffer::Group::"a", Coffer::Group::"b"] };
    @id("folder-in-condition") permit (principal in Coffer::Group::"x-team", action, resource)
      when { resource in Coffer::Folder::"x/" };
    @id("issuer") forbid (principal is Coffer::User, action == Coffer::Action::"write", resource)
      when { principal has issuer && principal.issuer == "partner" };
    @id("office-hours") forbid (principal in Coffer::Group::"contractors", action, resource)
      unless { context.time >= datetime("2025-03-01T08:00:00Z") && context.time < datetime("2025-03-01T18:00:00Z") };
    @id("network") forbid (principal, action == Coffer::Action::"destroy", resource)
      unless { context has sourceIp && context.sourceIp.isInRange(ip("10.0.0.0/8")) };
    @id("env-dev") permit (principal in Coffer::Group::"devs", action, resource)
      when { if resource.hasTag("env") then resource.getTag("env") == "dev" else false };
    @id("oidc-only") forbid (principal, action == Coffer::Action::"admin", resource) unless { context.authMethod == "oidc" };
    @id("literal-attr") permit (principal, action == Coffer::Action::"restore", resource)
      when { Coffer::User::"corp:x".id == principal.id };
    @id("overflow") forbid (principal in Coffer::Group::"boom", action, resource) when { 9223372036854775807 + 1 > 0 };
  `;
  // Compiled once for the describe block: both tests read the same set.
  let set: PolicySet;
  beforeAll(() => {
    set = compilePolicySet(SCHEMA, [{ name: 'mix.cedar', text: POLICIES }]);
  });

  it('gives exactly the decisions of the whole set with everything sent, on random requests', () => {
    // A small decision cache, so that entries are both hit and replaced; `uncached` counts the
    // decisions that needed Cedar without one.
    const sliced = new CedarAuthorizer(set, {
      logger: capture().logger,
      sliceCacheSize: 8,
      decisionCacheSize: 64,
    });
    const uncached = new CedarAuthorizer(set, { logger: capture().logger, decisionCacheSize: 0 });
    const whole = new CedarAuthorizer(set, { logger: capture().logger, slicing: false });
    // mulberry32: a small seeded generator whose low bits are as random as its high bits.
    let seed = 42;
    const rnd = (n: number) => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return Math.floor((((t ^ (t >>> 14)) >>> 0) / 4_294_967_296) * n);
    };
    const pickOne = <T>(xs: readonly T[]): T => xs[rnd(xs.length)] as T;
    const groups = ['admins', 'a', 'b', 'ci', 'x-team', 'contractors', 'devs', 'boom', 'other'];
    const paths = ['team-a/ci/token', 'team-b/app/db', 'x/y/z', 'x/', 'xy/z', 'top', 'team-a/', 'x/y/'];
    let allowed = 0;
    let errors = 0;
    for (let n = 0; n < 1500; n++) {
      const principal: Principal =
        rnd(4) === 0
          ? {
              type: 'Role',
              id: 'arn:aws:iam::1:role/r',
              groups: [pickOne(groups)],
              attributes: {},
              authMethod: 'iam',
            }
          : {
              type: 'User',
              id: pickOne(['corp:x', 'corp:y', 'partner:z']),
              groups: groups.filter(() => rnd(4) === 0),
              attributes: rnd(2) === 0 ? { department: pickOne(['ops', 'dev']) } : {},
              authMethod: pickOne(['oidc', 'dev', 'iam'] as const),
              ...(rnd(3) > 0 ? { issuer: pickOne(['corp', 'partner']) } : {}),
            };
      const path = pickOne(paths);
      const resource: Resource = path.endsWith('/')
        ? { kind: 'Folder', path }
        : {
            kind: 'Secret',
            path,
            tags: rnd(2) === 0 ? { env: pickOne(['dev', 'prod']) } : {},
            ...(rnd(2) === 0 ? { owner: pickOne(['corp:x', 'corp:y']) } : {}),
          };
      const action = resource.kind === 'Folder' ? pickOne(['list', 'admin'] as const) : pickOne(ACTIONS);
      const context: RequestContext = {
        authMethod: principal.authMethod,
        sourceIp: pickOne(['10.1.2.3', '192.0.2.1', 'unknown', '::ffff:10.9.9.9']),
        time:
          Date.parse(pickOne(['2025-03-01T07:00:00Z', '2025-03-01T12:00:00Z', '2025-03-02T12:00:00Z'])) /
          1000,
      };
      const request = { principal, action, resource, context };
      const a = sliced.authorize(request);
      expect(a, JSON.stringify(request)).toEqual(whole.authorize(request));
      expect(uncached.authorize(request)).toEqual(a);
      if (a.allowed) allowed++;
      if (a.errors.length > 0) errors++;
    }
    // The random requests reach both outcomes and the erroring policy.
    expect(allowed).toBeGreaterThan(100);
    expect(allowed).toBeLessThan(1400);
    expect(errors).toBeGreaterThan(10);
    // And the decision cache answered some of them, within its bound.
    expect(sliced.stats.engineCalls).toBeLessThan(uncached.stats.engineCalls);
    expect(sliced.stats.cachedDecisions).toBeLessThanOrEqual(64);
  });

  it('reads what each policy can read from its JSON', () => {
    const needs = Object.fromEntries(set.policies.map((p) => [p.id, needsOf(p.json)]));
    expect(needs['ops-tag']).toMatchObject({ full: false, principalTags: true, resourceTags: false });
    expect([...(needs.owner?.resourceAttrs ?? [])]).toEqual(['owner']);
    expect([...(needs.owner?.principalAttrs ?? [])]).toEqual(['id']);
    expect([...(needs['ci-paths']?.resourceAttrs ?? [])]).toEqual(['path']);
    expect([...(needs['set-literal']?.entities ?? [])].sort()).toEqual([
      'Coffer::Action::"list"',
      'Coffer::Group::"a"',
      'Coffer::Group::"b"',
    ]);
    expect(needs['folder-in-condition']?.entities.has('Coffer::Folder::"x/"')).toBe(true);
    expect([...(needs['office-hours']?.contextAttrs ?? [])]).toEqual(['time']);
    expect([...(needs.network?.contextAttrs ?? [])]).toEqual(['sourceIp']);
    expect(needs['env-dev']).toMatchObject({ full: false, resourceTags: true });
    // An attribute read on anything but principal/resource/context: send everything.
    expect(needs['literal-attr']?.full).toBe(true);
    expect(mergeNeeds([needs.admins as never, needs['literal-attr'] as never]).full).toBe(true);
  });
});

describe('CedarAuthorizer', () => {
  it('denies by default: no policy, no access, even for admins', () => {
    const a = authorizer('// nothing granted\n');
    expect(ask(a, ADMIN, secret('x'))).toEqual({ allowed: false, policyIds: [], errors: [] });
  });

  it('lets a forbid win over any permit', () => {
    const a = authorizer(
      `${ADMINS}\n@id("no-prod") forbid (principal, action, resource) when { resource.hasTag("env") && resource.getTag("env") == "prod" };`,
    );
    expect(ask(a, ADMIN, secret('x', { tags: { env: 'dev' } }))).toMatchObject({
      allowed: true,
      policyIds: ['admins'],
    });
    expect(ask(a, ADMIN, secret('x', { tags: { env: 'prod' } }))).toMatchObject({
      allowed: false,
      policyIds: ['no-prod'],
    });
  });

  it('when a forbid errors because it reads a missing attribute, it denies (Cedar alone would skip it)', () => {
    const { logger, lines } = capture();
    // With `owner` declared required the policy validates, but a secret written before owners
    // existed (or by another tool) has none: evaluating the forbid errors.
    const a = authorizer(NO_MALLORY_OWNED, OWNER_REQUIRED, logger);
    // The forbid evaluates fine when the attribute is there: admins may read.
    expect(ask(a, ADMIN, secret('x', { owner: 'corp:alice' }))).toEqual({
      allowed: true,
      policyIds: ['admins'],
      errors: [],
    });
    const decision = ask(a, ADMIN, secret('legacy/x'));
    expect(decision.allowed).toBe(false);
    expect(decision.policyIds).toEqual(['no-mallory-owned']);
    expect(decision.errors).toHaveLength(1);
    expect(decision.errors[0]).toMatch(/^no-mallory-owned: .*owner/);
    // Cedar's own decision here would have been allow:
    const raw = cedar.isAuthorized({
      principal: { type: TYPES.user, id: 'corp:ada' },
      action: { type: TYPES.action, id: 'read' },
      resource: { type: TYPES.secret, id: 'legacy/x' },
      context: contextJson(CONTEXT) as never,
      policies: {
        staticPolicies: {
          admins: ADMINS,
          'no-mallory-owned':
            'forbid (principal, action == Coffer::Action::"read", resource) when { resource.owner == "corp:mallory" };',
        },
      },
      entities: [principalEntity(ADMIN), resourceEntity(secret('legacy/x'))],
    });
    expect(raw.type === 'success' && raw.response.decision).toBe('allow');
    // The error is logged with the policy id and what failed.
    const warn = lines.find((l) => l.message === 'policy evaluation error');
    expect(warn).toMatchObject({
      level: 'warn',
      action: 'read',
      path: 'legacy/x',
      errors: [{ policyId: 'no-mallory-owned', effect: 'forbid' }],
    });
  });

  it('when a forbid errors for another reason (overflow), it denies', () => {
    const a = authorizer(
      `${ADMINS}\n@id("overflowing") forbid (principal, action, resource) when { 9223372036854775807 + 1 > 0 };`,
    );
    const decision = ask(a, ADMIN, secret('x'));
    expect(decision.allowed).toBe(false);
    expect(decision.policyIds).toEqual(['overflowing']);
    expect(decision.errors[0]).toMatch(/^overflowing: .*overflow/);
  });

  it('when a permit errors, it grants nothing (and other permits still count)', () => {
    const { logger, lines } = capture();
    const a = authorizer(
      `${ADMINS}\n@id("owners-read") permit (principal, action == Coffer::Action::"read", resource) when { resource.owner == principal.id };`,
      OWNER_REQUIRED,
      logger,
    );
    const alice = user('corp:alice');
    expect(ask(a, alice, secret('x', { owner: 'corp:alice' }))).toEqual({
      allowed: true,
      policyIds: ['owners-read'],
      errors: [],
    });
    const denied = ask(a, alice, secret('legacy/x'));
    expect(denied.allowed).toBe(false);
    expect(denied.policyIds).toEqual([]);
    expect(denied.errors[0]).toMatch(/^owners-read: /);
    expect(lines.some((l) => l.message === 'policy evaluation error')).toBe(true);
    // An admin is still allowed by the admins permit; the error is reported, not fatal.
    const admin = ask(a, ADMIN, secret('legacy/x'));
    expect(admin.allowed).toBe(true);
    expect(admin.policyIds).toEqual(['admins']);
    expect(admin.errors).toHaveLength(1);
  });

  it('denies and logs when the request cannot even be built (fails closed)', () => {
    const { logger, lines } = capture();
    const a = authorizer(ADMINS, SCHEMA, logger);
    const decision = ask(a, ADMIN, secret('x'), 'read', { ...CONTEXT, time: Number.NaN });
    expect(decision).toEqual({ allowed: false, policyIds: [], errors: ['authorization engine failure'] });
    expect(lines.find((l) => l.message === 'authorization failed; denied')).toMatchObject({ level: 'error' });
  });

  it('uses the source address and time in policies; an unknown address never matches a range', () => {
    const a = authorizer(`
      @id("office") permit (principal, action == Coffer::Action::"read", resource)
      when { context has sourceIp && context.sourceIp.isInRange(ip("10.0.0.0/8")) && context.time < datetime("2026-01-01") };`);
    const alice = user('corp:alice');
    expect(ask(a, alice, secret('x')).allowed).toBe(true);
    expect(ask(a, alice, secret('x'), 'read', { ...CONTEXT, sourceIp: '::ffff:10.2.3.4' }).allowed).toBe(
      true,
    );
    expect(ask(a, alice, secret('x'), 'read', { ...CONTEXT, sourceIp: '192.0.2.1' }).allowed).toBe(false);
    expect(ask(a, alice, secret('x'), 'read', { ...CONTEXT, sourceIp: 'unknown' }).allowed).toBe(false);
    expect(ask(a, alice, secret('x'), 'read', { ...CONTEXT, time: 1_767_225_600 }).allowed).toBe(false);
  });

  it('reads principal attributes as tags and the owner as an attribute', () => {
    const a = authorizer(`
      @id("ops") permit (principal, action == Coffer::Action::"read", resource)
      when { principal.hasTag("department") && principal.getTag("department") == "ops" };
      @id("owner") permit (principal, action == Coffer::Action::"readMetadata", resource is Coffer::Secret)
      when { resource has owner && resource.owner == principal.id };`);
    expect(ask(a, { ...user('corp:o'), attributes: { department: 'ops' } }, secret('x')).allowed).toBe(true);
    expect(ask(a, { ...user('corp:o'), attributes: { department: 'dev' } }, secret('x')).allowed).toBe(false);
    expect(ask(a, user('corp:o'), secret('x', { owner: 'corp:o' }), 'readMetadata').allowed).toBe(true);
    expect(ask(a, user('corp:p'), secret('x', { owner: 'corp:o' }), 'readMetadata').allowed).toBe(false);
  });

  it('honours action groups declared in the schema (their parents are sent with the action)', () => {
    const schema: PolicySource = {
      name: 'schema.cedarschema',
      text: SCHEMA_TEXT.replace(
        'action read, write,',
        'action reading;\n  action read in [reading] appliesTo { principal: [User, Role], resource: [Secret], context: RequestContext };\n  action write,',
      ),
    };
    const a = authorizer(
      `@id("readers") permit (principal in Coffer::Group::"readers", action in Coffer::Action::"reading", resource);
       @id("no-x") forbid (principal, action in [Coffer::Action::"reading"], resource == Coffer::Secret::"x");`,
      schema,
    );
    const reader = user('corp:r', ['readers']);
    expect(ask(a, reader, secret('y')).allowed).toBe(true);
    expect(ask(a, reader, secret('y'), 'write').allowed).toBe(false);
    expect(ask(a, reader, secret('x'))).toMatchObject({ allowed: false, policyIds: ['no-x'] });
  });

  it('parses the policy set once and each distinct slice once, never per request', () => {
    const policies = [ADMINS];
    for (let i = 0; i < 50; i++) {
      policies.push(
        `@id("team-${i}") permit (principal in Coffer::Group::"team-${i}", action, resource in Coffer::Folder::"team-${i}/");`,
      );
    }
    const a = authorizer(policies.join('\n'));
    expect(a.stats.parsedSets).toBe(1);
    const run = () => {
      for (let n = 0; n < 500; n++) {
        const team = n % 5;
        const decision = ask(a, user(`corp:u${n}`, [`team-${team}`]), secret(`team-${team}/s${n}`));
        expect(decision.allowed).toBe(true);
      }
    };
    run();
    const afterFirst = a.stats.parsedSets;
    expect(afterFirst).toBeLessThanOrEqual(1 + 5);
    run();
    expect(a.stats.parsedSets).toBe(afterFirst);
  });

  it('stays correct when the slice cache is smaller than the working set', () => {
    const set = compilePolicySet(SCHEMA, [
      {
        name: 't.cedar',
        text: `${ADMINS}
          @id("a") permit (principal in Coffer::Group::"a", action, resource in Coffer::Folder::"a/");
          @id("b") permit (principal in Coffer::Group::"b", action, resource in Coffer::Folder::"b/");
          @id("no-b-x") forbid (principal, action, resource == Coffer::Secret::"b/x");`,
      },
    ]);
    const a = new CedarAuthorizer(set, { logger: capture().logger, sliceCacheSize: 1 });
    for (let n = 0; n < 20; n++) {
      expect(ask(a, user('corp:a', ['a']), secret('a/x')).allowed).toBe(true);
      expect(ask(a, user('corp:b', ['b']), secret('b/y')).allowed).toBe(true);
      expect(ask(a, user('corp:b', ['b']), secret('b/x')).allowed).toBe(false);
      expect(ask(a, user('corp:a', ['a']), secret('b/y')).allowed).toBe(false);
    }
    expect(a.stats.cachedSlices).toBe(1);
  });

  describe('the decision cache', () => {
    const POLICIES = `${ADMINS}
      @id("no-prod") forbid (principal, action, resource) when { resource.hasTag("env") && resource.getTag("env") == "prod" };
      @id("hours") forbid (principal in Coffer::Group::"contractors", action, resource)
        unless { context.time < datetime("2025-03-01T18:00:00Z") };`;
    const BEFORE_SIX = Date.parse('2025-03-01T17:59:59Z') / 1000;
    const AFTER_SIX = Date.parse('2025-03-01T18:00:00Z') / 1000;

    it('answers a repeated request without Cedar, and anything a policy reads reaches Cedar again', () => {
      const a = authorizer(POLICIES);
      const calls = () => a.stats.engineCalls;
      expect(ask(a, ADMIN, secret('x'))).toEqual({ allowed: true, policyIds: ['admins'], errors: [] });
      const first = calls();
      expect(ask(a, ADMIN, secret('x'))).toEqual({ allowed: true, policyIds: ['admins'], errors: [] });
      expect(calls()).toBe(first);
      // A tag the forbid reads.
      expect(ask(a, ADMIN, secret('x', { tags: { env: 'prod' } }))).toEqual({
        allowed: false,
        policyIds: ['no-prod'],
        errors: [],
      });
      expect(calls()).toBe(first + 1);
      // A group taken away.
      expect(ask(a, user('corp:ada'), secret('x')).allowed).toBe(false);
      // The time, read by a policy of this slice: the same caller at 17:59:59 and at 18:00.
      const contractor = user('corp:ada', ['admins', 'contractors']);
      const at = (time: number) => ({ ...CONTEXT, time });
      expect(ask(a, contractor, secret('x'), 'read', at(BEFORE_SIX)).allowed).toBe(true);
      expect(ask(a, contractor, secret('x'), 'read', at(AFTER_SIX))).toEqual({
        allowed: false,
        policyIds: ['hours'],
        errors: [],
      });
      const before = calls();
      expect(ask(a, contractor, secret('x'), 'read', at(BEFORE_SIX)).allowed).toBe(true);
      expect(ask(a, contractor, secret('x'), 'read', at(AFTER_SIX)).allowed).toBe(false);
      expect(calls()).toBe(before);
      // No policy of the admins' slice reads the time: another second is the same decision.
      const now = calls();
      expect(ask(a, ADMIN, secret('x'), 'read', at(AFTER_SIX)).allowed).toBe(true);
      expect(calls()).toBe(now);
    });

    it('never keeps a decision whose evaluation errored: it is decided and logged every time', () => {
      const { logger, lines } = capture();
      const a = authorizer(NO_MALLORY_OWNED, OWNER_REQUIRED, logger);
      for (let n = 0; n < 3; n++) {
        const decision = ask(a, ADMIN, secret('legacy/x'));
        expect(decision.allowed).toBe(false);
        expect(decision.errors).toHaveLength(1);
      }
      expect(a.stats.engineCalls).toBe(3);
      expect(lines.filter((l) => l.message === 'policy evaluation error')).toHaveLength(3);
      expect(a.stats.cachedDecisions).toBe(0);
    });

    it('stays within its bound, and a caller cannot change what it keeps', () => {
      const set = compilePolicySet(SCHEMA, [{ name: 't.cedar', text: POLICIES }]);
      const a = new CedarAuthorizer(set, { logger: capture().logger, decisionCacheSize: 2 });
      for (let n = 0; n < 10; n++) expect(ask(a, ADMIN, secret(`s${n}`)).allowed).toBe(true);
      expect(a.stats.cachedDecisions).toBe(2);
      const kept = ask(a, ADMIN, secret('s9'));
      (kept.policyIds as string[]).push('forged');
      expect(ask(a, ADMIN, secret('s9')).policyIds).toEqual(['admins']);
      const off = new CedarAuthorizer(set, { logger: capture().logger, decisionCacheSize: 0 });
      ask(off, ADMIN, secret('x'));
      ask(off, ADMIN, secret('x'));
      expect(off.stats).toMatchObject({ engineCalls: 2, cachedDecisions: 0 });
    });
  });

  it('carries the hash of the policy set in force', () => {
    const a = authorizer(ADMINS);
    const b = authorizer(`${ADMINS}\n// a comment is an edit too\n`);
    expect(a.policySetHash).toMatch(/^[0-9a-f]{64}$/);
    expect(b.policySetHash).not.toBe(a.policySetHash);
    expect(authorizer(ADMINS).policySetHash).toBe(a.policySetHash);
  });
});
