import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { extname, resolve } from 'node:path';
import type * as Yaml from 'yaml';
// A namespace import, not `{ z }`: esbuild then bundles only what is used, leaving out zod's
// locales (~270 KB of the API Lambda's bundle; test/e2e/lambda-bundle.test.ts checks).
import * as z from 'zod';
import { ConfigError } from './errors.js';
import { isLoopbackUrl } from './loopback.js';

/**
 * The Coffer configuration file (brief §5): one file named by `COFFER_CONFIG`, JSON or YAML, one
 * top-level object with one section per concern. It is validated once, at start; a bad file stops
 * the process with a message that names the offending field, never per request.
 *
 * To add a section (policies, audit, keys, tables…): define its schema next to `issuersSection`,
 * add it to `sections` below, and document it in docs/. Unknown top-level keys are refused, so a
 * typo in a section name cannot silently disable it.
 */

/** Asymmetric JWS algorithms only: an HMAC key would have to be shared with every verifier. */
export const ASYMMETRIC_ALGORITHMS = [
  'RS256',
  'RS384',
  'RS512',
  'PS256',
  'PS384',
  'PS512',
  'ES256',
  'ES384',
  'ES512',
  'EdDSA',
  'Ed25519',
] as const;
export type AsymmetricAlgorithm = (typeof ASYMMETRIC_ALGORITHMS)[number];

/** The longest clock skew accepted on `exp`/`nbf`. */
export const MAX_CLOCK_SKEW_SECONDS = 60;
/** Default minimum time between two JWKS fetches caused by an unknown `kid`. */
export const DEFAULT_JWKS_REFRESH_SECONDS = 60;
const MAX_CONFIG_BYTES = 1024 * 1024;

/**
 * Aliases that cannot be configured: `dev` belongs to the local dev issuer, and `arn` would let an
 * OIDC subject such as `aws:iam::1:user/x` produce the id `arn:aws:iam::1:user/x` of an IAM user.
 */
export const RESERVED_ALIASES = ['dev', 'arn'] as const;
/** The dev issuer's `iss`; no configured issuer may claim it. */
const RESERVED_ISSUERS = ['urn:coffer:dev'];

/** A claim name, or a path of names into nested objects (`[realm_access, roles]`). */
export type ClaimPath = string | readonly string[];

export interface IssuerConfig {
  /** Short name; principal ids are `<alias>:<id claim>`. */
  readonly alias: string;
  /** The exact `iss` of the tokens (and the discovery base URL). */
  readonly issuer: string;
  /** A token's `aud` must contain at least one of these. */
  readonly audiences: readonly string[];
  readonly algorithms: readonly AsymmetricAlgorithm[];
  /** Require the JWS header `typ: at+jwt` (RFC 9068 access tokens). */
  readonly requireAtJwt: boolean;
  readonly claims: {
    readonly id: ClaimPath;
    readonly groups: ClaimPath;
    /** Coffer attribute name -> claim. */
    readonly attributes: Readonly<Record<string, ClaimPath>>;
  };
  /** IdP group value -> Coffer groups. A value with no entry gives no group. */
  readonly groupMapping: Readonly<Record<string, readonly string[]>>;
  /** Minimum seconds between JWKS fetches caused by an unknown `kid`. */
  readonly jwksRefreshSeconds: number;
  /**
   * While the IdP is unreachable, tokens signed by a key of the last JWKS it served verify for this
   * many seconds after that fetch (default 86400; in memory only, so a restart forgets it).
   */
  readonly jwksMaxStaleSeconds?: number;
  /** Skips discovery: the JWKS is fetched from here. */
  readonly jwksUri?: string;
  readonly clockSkewSeconds: number;
  /** Permits `http://` for loopback issuers (127.0.0.1, ::1, localhost): tests and local IdPs only. */
  readonly allowHttpLoopback: boolean;
  /** What `coffer login --issuer <alias>` needs. */
  readonly login?: {
    readonly clientId: string;
    readonly scopes: readonly string[];
    readonly resource?: string;
  };
  /**
   * The issuer signs tokens for parties other than this installation (GitHub Actions, gitlab.com):
   * its workload mappings must bind an owner id and a Coffer-specific audience. Absent when false.
   */
  readonly shared?: true;
  /** With `workloads`: which tokens are people's. Without it, such an issuer accepts no people. */
  readonly users?: UserMappingConfig;
  /** Workload mappings; a token must match exactly one mapping (counting `users`). */
  readonly workloads?: readonly WorkloadMappingConfig[];
}

/**
 * One condition of a mapping's bound claims: the claim must be absent, or (one of) its value(s)
 * must equal one of `exact` or match one of `glob` (`*` stands for any run of characters).
 */
export interface BoundClaim {
  /** The claim as the operator named it (for messages and logs). */
  readonly name: string;
  readonly path: ClaimPath;
  readonly absent?: true;
  readonly exact: readonly string[];
  readonly glob: readonly string[];
}

/** One part of a workload id template: literal text, or a claim whose value is escaped into the id. */
export type IdTemplatePart = { readonly text: string } | { readonly claim: string; readonly path: ClaimPath };

/**
 * Which tokens of an issuer are people's, when the issuer also has workload mappings (GitLab's
 * issuer signs both). Such tokens become `User::"<alias>:<id claim>"` as configured by the issuer's
 * `claims` and `groupMapping`.
 */
export interface UserMappingConfig {
  /** The token's `aud` must contain one of these (a subset of the issuer's `audiences`). */
  readonly audiences?: readonly string[];
  readonly bound: readonly BoundClaim[];
}

/**
 * Tokens of an issuer that become `Coffer::Workload` principals (CI jobs, Kubernetes service
 * accounts): docs/workload-identity.md.
 */
export interface WorkloadMappingConfig {
  /** Names the mapping in logs. */
  readonly name: string;
  /** The id template as written (`gha:{repository}:{environment}`). */
  readonly id: string;
  /** The parsed template: the id is the parts joined, claim values escaped (workload-id.ts). */
  readonly idParts: readonly IdTemplatePart[];
  /** The token's `aud` must contain one of these; else the issuer's audiences are enough. */
  readonly audiences?: readonly string[];
  /** All must hold for the mapping to apply. */
  readonly bound: readonly BoundClaim[];
  /** Principal tag -> claim, copied when the claim holds a string, number or boolean. */
  readonly tags: Readonly<Record<string, ClaimPath>>;
  /** Coffer groups every principal of this mapping is in. */
  readonly groups: readonly string[];
}

/** Client certificates (mTLS): which verified certificates become workloads. */
export interface MtlsConfig {
  /**
   * When set, a certificate needs at least one SAN, and every SAN must match one of these
   * (`DNS:*.agents.example.com`, `URI:spiffe://example.com/ci/*`, `email:…`, `IP:…`).
   */
  readonly allowedSans?: readonly string[];
  /** Refused certificates, by issuer DN and serial (hex, normalised) or SHA-256 fingerprint (hex, normalised). */
  readonly revoked: readonly (
    | { readonly issuer: string; readonly serial: string }
    | { readonly fingerprint: string }
  )[];
}

export interface CofferConfig {
  readonly issuers: readonly IssuerConfig[];
  /** Present when COFFER_CONFIG has an `mtls` section. */
  readonly mtls?: MtlsConfig;
}

const toArray = <T>(v: T | readonly T[]): T[] => (Array.isArray(v) ? [...v] : [v as T]);

const claimName = z.string().min(1).max(256);
const claimPath = z.union([claimName, z.array(claimName).min(1).max(8)], {
  error: 'must be a claim name, or a list of 1-8 names (a path into nested objects)',
});
const groupName = z
  .string()
  .regex(/^[A-Za-z0-9._-]{1,64}$/, 'group names are 1-64 characters of A-Z a-z 0-9 . _ -');
const attributeName = z
  .string()
  .regex(/^[A-Za-z][A-Za-z0-9_]{0,63}$/, 'attribute names are 1-64 characters of A-Z a-z 0-9 _');

const ALGORITHM_MESSAGE = `must be one of ${ASYMMETRIC_ALGORITHMS.join(' ')}, or a list of them (asymmetric only: HMAC and none cannot be configured)`;
const algorithm = z.enum(ASYMMETRIC_ALGORITHMS, { error: ALGORITHM_MESSAGE });

export { isLoopbackUrl };

/** Checks an issuer or JWKS URL: https, or http on loopback when the issuer allows it. */
function checkUrl(value: string, allowHttpLoopback: boolean): string | undefined {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return 'must be an absolute URL';
  }
  if (url.username || url.password) return 'must not carry credentials';
  if (url.search || url.hash) return 'must not have a query or fragment';
  if (url.protocol === 'https:') return undefined;
  if (url.protocol === 'http:') {
    if (!isLoopbackUrl(url)) return 'must use https (http is only for loopback issuers)';
    if (!allowHttpLoopback) return 'uses http: set allowHttpLoopback: true (loopback development IdPs only)';
    return undefined;
  }
  return 'must use https';
}

/**
 * Issuers that sign tokens for the whole world (every repository on GitHub, every project on
 * gitlab.com), with the claims that name an owner who cannot change: a repository name can be
 * taken over after a rename or deletion, its owner's numeric id cannot.
 */
const SHARED_ISSUERS: readonly {
  readonly matches: (url: string) => boolean;
  readonly ownerClaims: readonly string[];
}[] = [
  {
    matches: (u) =>
      u === 'https://token.actions.githubusercontent.com' ||
      u.startsWith('https://token.actions.githubusercontent.com/'),
    ownerClaims: ['repository_owner_id'],
  },
  {
    matches: (u) => u.replace(/\/$/, '') === 'https://gitlab.com',
    ownerClaims: ['namespace_id', 'project_id'],
  },
];

/**
 * Audiences that tokens carry for someone else too: the issuer's own URL, GitHub's default
 * `https://github.com/<owner>`, AWS STS's, the Kubernetes API server's. A workload mapping that
 * accepted them would accept tokens minted for another service (and a token sent to Coffer could be
 * replayed there).
 */
export function isGenericAudience(audience: string, issuerUrl: string): boolean {
  const bare = (u: string) => u.replace(/\/+$/, '').toLowerCase();
  return (
    bare(audience) === bare(issuerUrl) ||
    /^https:\/\/(github\.com|gitlab\.com)(\/|$)/i.test(audience) ||
    /^sts\.amazonaws\.com$/i.test(audience) ||
    /^https:\/\/kubernetes\.default\.svc([./:]|$)/i.test(audience)
  );
}

/** Id prefixes no workload mapping may use: certificate workloads are `cert:<issuer>:<subject>`. */
export const RESERVED_WORKLOAD_PREFIXES = ['cert'] as const;

/**
 * A claim as mappings name it: a top-level claim, or a name that the mapping's `claimPaths`
 * defines as a path into nested objects (Kubernetes' `kubernetes.io` → `namespace`).
 */
const claimRef = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, 'claim names are 1-64 characters of A-Z a-z 0-9 _ . -');
const boundScalar = z
  .union([
    z.string().min(1).max(256),
    z.number().refine(Number.isSafeInteger, 'numbers must be whole and exact (quote long ids)'),
    z.boolean(),
  ])
  .transform(String);
const boundValue = z.union(
  [boundScalar, z.array(boundScalar).min(1).max(50), z.strictObject({ absent: z.literal(true) })],
  { error: 'must be a value, a list of values (any may match; * is a wildcard), or { absent: true }' },
);
const audienceList = z
  .union([claimName, z.array(claimName).min(1).max(20)], {
    error: 'must be an audience, or a list of 1-20 audiences',
  })
  .transform(toArray);
const boundSection = z.record(claimRef, boundValue).default({});
const claimPathsSection = z.record(claimRef, claimPath).default({});

const usersSchema = z.strictObject({
  audiences: audienceList.optional(),
  bound: boundSection,
  claimPaths: claimPathsSection,
});

const workloadSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z][a-z0-9-]{0,31}$/, 'names are 1-32 characters of a-z 0-9 -, starting with a letter'),
  id: z.string().min(3).max(256),
  audiences: audienceList.optional(),
  bound: boundSection,
  tags: z.record(attributeName, claimRef).default({}),
  groups: z.array(groupName).max(50).default([]),
  claimPaths: claimPathsSection,
});

const ID_PREFIX = /^[a-z][a-z0-9-]{0,31}$/;
const ID_LITERAL = /^[A-Za-z0-9._-]{1,64}$/;
const ID_PLACEHOLDER = /^\{([A-Za-z0-9_][A-Za-z0-9_.-]{0,63})\}$/;

const resolveClaim = (name: string, paths: Readonly<Record<string, ClaimPath>>): ClaimPath =>
  Object.hasOwn(paths, name) ? (paths[name] as ClaimPath) : name;

/**
 * Parses an id template: `:`-separated segments, the first a literal prefix (`gha`), each other
 * either a literal (`[A-Za-z0-9._-]`) or exactly one `{claim}`. Claim values never contain a raw
 * `:` (it is escaped), so a rendered id splits back into the same segments: no value can forge
 * another id, and two mappings with different prefixes can never produce the same id.
 */
export function parseIdTemplate(
  template: string,
  paths: Readonly<Record<string, ClaimPath>> = {},
): { parts: IdTemplatePart[]; prefix: string } | { problem: string } {
  const segments = template.split(':');
  const prefix = segments[0] as string;
  if (segments.length < 2 || !ID_PREFIX.test(prefix)) {
    return { problem: 'must start with a literal prefix and a colon (a-z 0-9 -, e.g. "gha:{repository}")' };
  }
  if ((RESERVED_WORKLOAD_PREFIXES as readonly string[]).includes(prefix)) {
    return { problem: `the prefix "${prefix}" is reserved for client-certificate workloads` };
  }
  // Adjacent literals are merged so that rendering is a plain join.
  const parts: IdTemplatePart[] = [];
  const addText = (text: string) => {
    const last = parts[parts.length - 1];
    if (last && 'text' in last) parts[parts.length - 1] = { text: last.text + text };
    else parts.push({ text });
  };
  addText(`${prefix}:`);
  for (const [i, segment] of segments.slice(1).entries()) {
    if (i > 0) addText(':');
    const placeholder = ID_PLACEHOLDER.exec(segment);
    if (placeholder) {
      const claim = placeholder[1] as string;
      parts.push({ claim, path: resolveClaim(claim, paths) });
    } else if (ID_LITERAL.test(segment)) {
      addText(segment);
    } else {
      return {
        problem:
          'each segment after the prefix must be one {claim} or literal text of A-Z a-z 0-9 . _ - (segments are separated by ":")',
      };
    }
  }
  return { parts, prefix };
}

type RawBound = Record<string, string | string[] | { absent: true }>;

function resolveBound(bound: RawBound, paths: Readonly<Record<string, ClaimPath>>): BoundClaim[] {
  return Object.entries(bound).map(([name, value]) => {
    const path = resolveClaim(name, paths);
    if (typeof value === 'object' && !Array.isArray(value))
      return { name, path, absent: true, exact: [], glob: [] };
    const values = toArray(value);
    return {
      name,
      path,
      exact: values.filter((v) => !v.includes('*')),
      glob: values.filter((v) => v.includes('*')),
    };
  });
}

/** A bound that pins a top-level claim to exact values (no wildcard, not "absent"). */
const pinsExactly = (b: BoundClaim, claim: string) =>
  (b.path === claim || (Array.isArray(b.path) && b.path.length === 1 && b.path[0] === claim)) &&
  !b.absent &&
  b.glob.length === 0 &&
  b.exact.length > 0;

const issuerSchema = z
  .strictObject({
    alias: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,31}$/, 'aliases are 1-32 characters of a-z 0-9 -, starting with a letter')
      .refine((a) => !(RESERVED_ALIASES as readonly string[]).includes(a), 'this alias is reserved'),
    issuer: z
      .string()
      .max(2048)
      .refine((i) => !RESERVED_ISSUERS.includes(i), 'this issuer is reserved for the dev issuer'),
    audiences: z
      .union([claimName, z.array(claimName).min(1).max(20)], {
        error: (issue) =>
          `${issue.input === undefined ? 'required: ' : 'must be '}an audience, or a list of 1-20 audiences (strings of 1-256 characters)`,
      })
      .transform(toArray),
    // A single algorithm may be written as a string; element errors keep their index.
    algorithms: z.preprocess(
      (v) => (typeof v === 'string' ? [v] : v),
      z.array(algorithm, { error: ALGORITHM_MESSAGE }).min(1).max(11).default(['RS256']),
    ),
    requireAtJwt: z.boolean().default(false),
    claims: z
      .strictObject({
        id: claimPath.default('sub'),
        groups: claimPath.default('groups'),
        attributes: z.record(attributeName, claimPath).default({}),
      })
      .default({ id: 'sub', groups: 'groups', attributes: {} }),
    groupMapping: z
      .record(
        z.string().min(1).max(256),
        z
          .union([groupName, z.array(groupName).max(50)], {
            error:
              'must be a Coffer group name, or a list of up to 50 (1-64 characters of A-Z a-z 0-9 . _ -)',
          })
          .transform(toArray),
      )
      .default({}),
    jwksRefreshSeconds: z.number().int().min(1).max(86_400).optional(),
    jwksMaxStaleSeconds: z
      .number()
      .int()
      .min(0)
      .max(30 * 86_400)
      .default(86_400),
    jwksUri: z.string().max(2048).optional(),
    clockSkewSeconds: z.number().int().min(0).max(MAX_CLOCK_SKEW_SECONDS).default(MAX_CLOCK_SKEW_SECONDS),
    allowHttpLoopback: z.boolean().default(false),
    login: z
      .strictObject({
        clientId: z.string().min(1).max(256),
        scopes: z
          .array(z.string().regex(/^[\x21\x23-\x5B\x5D-\x7E]{1,128}$/))
          .default(['openid', 'offline_access']),
        resource: z.string().min(1).max(2048).optional(),
      })
      .optional(),
    shared: z.boolean().optional(),
    /** For `shared: true` on an issuer Coffer does not know: the claims that name an immutable owner. */
    ownerClaims: z.array(claimName).min(1).max(10).optional(),
    users: usersSchema.optional(),
    workloads: z.array(workloadSchema).max(100).optional(),
  })
  .superRefine((issuer, ctx) => {
    const problem = checkUrl(issuer.issuer, issuer.allowHttpLoopback);
    if (problem) ctx.addIssue({ code: 'custom', path: ['issuer'], message: problem });
    if (issuer.jwksUri !== undefined) {
      const jwksProblem = checkUrl(issuer.jwksUri, issuer.allowHttpLoopback);
      if (jwksProblem) ctx.addIssue({ code: 'custom', path: ['jwksUri'], message: jwksProblem });
    }
    checkMappings(issuer, ctx);
  });

type RawIssuer = {
  issuer: string;
  audiences: string[];
  shared?: boolean | undefined;
  ownerClaims?: string[] | undefined;
  users?: z.infer<typeof usersSchema> | undefined;
  workloads?: z.infer<typeof workloadSchema>[] | undefined;
};

/** The rules that make an issuer's mappings safe, checked once at start (docs/workload-identity.md). */
function checkMappings(issuer: RawIssuer, ctx: z.RefinementCtx): void {
  const known = SHARED_ISSUERS.find((k) => k.matches(issuer.issuer));
  if (known && issuer.shared === false) {
    ctx.addIssue({
      code: 'custom',
      path: ['shared'],
      message: 'this issuer signs tokens for everyone on its platform: it cannot be marked shared: false',
    });
  }
  const shared = known !== undefined || issuer.shared === true;
  const ownerClaims = issuer.ownerClaims ?? known?.ownerClaims;
  if (issuer.shared === true && !known && !issuer.ownerClaims) {
    ctx.addIssue({
      code: 'custom',
      path: ['ownerClaims'],
      message: 'required with shared: true: the claims that name an immutable owner (e.g. [namespace_id])',
    });
  }
  const subset = (list: readonly string[] | undefined, where: (string | number)[]) => {
    for (const aud of list ?? []) {
      if (!issuer.audiences.includes(aud)) {
        ctx.addIssue({
          code: 'custom',
          path: where,
          message: `"${aud.slice(0, 64)}" is not one of the issuer's audiences`,
        });
      }
    }
  };
  const workloads = issuer.workloads ?? [];
  if (issuer.users) {
    subset(issuer.users.audiences, ['users', 'audiences']);
    if (workloads.length > 0 && Object.keys(issuer.users.bound).length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['users', 'bound'],
        message:
          "required when the issuer has workloads: bound claims that tell people's tokens from workloads' (else every workload token would match two mappings)",
      });
    }
  }
  const names = new Set<string>();
  workloads.forEach((w, i) => {
    const at = (...rest: (string | number)[]) => ['workloads', i, ...rest];
    if (names.has(w.name))
      ctx.addIssue({ code: 'custom', path: at('name'), message: 'duplicate mapping name' });
    names.add(w.name);
    const template = parseIdTemplate(w.id, w.claimPaths);
    if ('problem' in template) ctx.addIssue({ code: 'custom', path: at('id'), message: template.problem });
    subset(w.audiences, at('audiences'));
    const audiences = w.audiences ?? issuer.audiences;
    for (const aud of audiences) {
      if (isGenericAudience(aud, issuer.issuer)) {
        ctx.addIssue({
          code: 'custom',
          path: at(w.audiences ? 'audiences' : 'name'),
          message: `the audience "${aud.slice(0, 64)}" is not specific to Coffer (tokens carry it for other services): use one that names this installation, e.g. https://coffer.example.com`,
        });
      }
    }
    if (!shared) return;
    if (!w.audiences) {
      ctx.addIssue({
        code: 'custom',
        path: at('audiences'),
        message:
          'required on a shared issuer: the Coffer-specific audience the workload requests its token for',
      });
    }
    const bound = resolveBound(w.bound, w.claimPaths);
    if (!(ownerClaims ?? []).some((claim) => bound.some((b) => pinsExactly(b, claim)))) {
      ctx.addIssue({
        code: 'custom',
        path: at('bound'),
        message: `a shared issuer signs tokens for everyone on its platform: bind an immutable owner id to exact values (${(ownerClaims ?? []).join(' or ')})`,
      });
    }
  });
}

const issuersSection = z
  .array(issuerSchema)
  .max(20)
  .default([])
  .superRefine((issuers, ctx) => {
    const aliases = new Set<string>();
    const urls = new Set<string>();
    // One prefix, one mapping: two mappings that shared a prefix could give one id to two different
    // kinds of token, and a policy written for one would grant the other.
    const prefixes = new Set<string>();
    issuers.forEach((issuer, i) => {
      issuer.workloads?.forEach((w, j) => {
        const prefix = w.id.split(':')[0] as string;
        if (prefixes.has(prefix)) {
          ctx.addIssue({
            code: 'custom',
            path: [i, 'workloads', j, 'id'],
            message: `the id prefix "${prefix}" is used by another workload mapping: each mapping needs its own`,
          });
        }
        prefixes.add(prefix);
      });
      if (aliases.has(issuer.alias))
        ctx.addIssue({ code: 'custom', path: [i, 'alias'], message: 'duplicate alias' });
      if (urls.has(issuer.issuer))
        ctx.addIssue({ code: 'custom', path: [i, 'issuer'], message: 'duplicate issuer' });
      aliases.add(issuer.alias);
      urls.add(issuer.issuer);
    });
  });

const SAN_PATTERN = /^(DNS|URI|email|IP):[\x21-\x7e]{1,1024}$/i;
const hexOf = (v: string) => v.replace(/[:\s]/g, '').toUpperCase();

/** A serial as hex without separators or leading zeros, upper case: `0A:1b` and `A1B` are one serial. */
export const normalizeSerial = (v: string): string => hexOf(v).replace(/^0+(?=.)/, '');
/** A SHA-256 fingerprint as 64 upper-case hex digits without separators. */
export const normalizeFingerprint = (v: string): string => hexOf(v);

const mtlsSection = z
  .strictObject({
    allowedSans: z
      .array(
        z.string().regex(SAN_PATTERN, 'SAN patterns are DNS:…, URI:…, email:… or IP:… (* is a wildcard)'),
      )
      .min(1)
      .max(100)
      .optional(),
    revoked: z
      .array(
        z.union(
          [
            z.strictObject({
              issuer: z.string().min(1).max(1024),
              serial: z
                .string()
                .regex(/^[0-9A-Fa-f:]{1,128}$/, 'serials are hex (colons allowed)')
                .transform(normalizeSerial),
            }),
            z.strictObject({
              fingerprint: z
                .string()
                .transform(normalizeFingerprint)
                .refine(
                  (f) => /^[0-9A-F]{64}$/.test(f),
                  'fingerprints are SHA-256: 64 hex digits (colons allowed)',
                ),
            }),
          ],
          { error: 'each entry is { issuer, serial } or { fingerprint }' },
        ),
      )
      .max(100_000)
      .default([]),
  })
  .optional();

/** One entry per top-level section. Other sections join here. */
const sections = {
  issuers: issuersSection,
  mtls: mtlsSection,
};

const configSchema = z.strictObject(sections);

type RawObject = Record<string, unknown>;

const isObject = (v: unknown): v is RawObject => typeof v === 'object' && v !== null && !Array.isArray(v);

const splitList = (v: string) =>
  v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

/** `eng=engineers,ops=operators,ops=oncall` -> `{ eng: [engineers], ops: [operators, oncall] }`. */
function parseGroupMap(value: string): Record<string, string[]> {
  const map: Record<string, string[]> = {};
  for (const pair of splitList(value)) {
    const at = pair.indexOf('=');
    if (at <= 0 || at === pair.length - 1) {
      throw new ConfigError('COFFER_OIDC_GROUP_MAP must look like idp-group=coffer-group,other=group2');
    }
    const from = pair.slice(0, at).trim();
    const to = pair.slice(at + 1).trim();
    map[from] = [...(map[from] ?? []), to];
  }
  return map;
}

function parseBool(name: string, value: string): boolean {
  if (/^(1|true|yes)$/i.test(value)) return true;
  if (/^(0|false|no)$/i.test(value)) return false;
  throw new ConfigError(`${name} must be true or false`);
}

const OIDC_ENV = [
  'COFFER_OIDC_AUDIENCE',
  'COFFER_OIDC_ALGORITHMS',
  'COFFER_OIDC_REQUIRE_AT_JWT',
  'COFFER_OIDC_GROUPS_CLAIM',
  'COFFER_OIDC_GROUP_MAP',
  'COFFER_OIDC_ALLOW_HTTP_LOOPBACK',
] as const;

/**
 * Env overrides for the common single-issuer settings. `COFFER_OIDC_ISSUER` defines (or, with the
 * alias of a file issuer, replaces the URL of) the issuer named `COFFER_OIDC_ALIAS` (default `oidc`);
 * the other `COFFER_OIDC_*` variables override that issuer's fields.
 */
function applyEnv(raw: RawObject, env: Readonly<Record<string, string | undefined>>): RawObject {
  const get = (name: string) => {
    const v = env[name];
    return v === undefined || v.trim() === '' ? undefined : v.trim();
  };
  const url = get('COFFER_OIDC_ISSUER');
  const aliasVar = get('COFFER_OIDC_ALIAS');
  const setFields = OIDC_ENV.filter((name) => get(name) !== undefined);
  if (url === undefined && aliasVar === undefined) {
    if (setFields.length > 0) {
      throw new ConfigError(
        `${setFields[0]} needs COFFER_OIDC_ISSUER or COFFER_OIDC_ALIAS to name its issuer`,
      );
    }
    return raw;
  }
  const alias = aliasVar ?? 'oidc';
  const issuers = Array.isArray(raw.issuers)
    ? [...raw.issuers]
    : raw.issuers === undefined
      ? []
      : raw.issuers;
  if (!Array.isArray(issuers)) return raw; // the schema reports the bad section
  let index = issuers.findIndex((i) => isObject(i) && i.alias === alias);
  if (index === -1) {
    if (url === undefined) {
      throw new ConfigError(
        `COFFER_OIDC_ALIAS names "${alias.slice(0, 32)}", which no configured issuer has`,
      );
    }
    issuers.push({ alias });
    index = issuers.length - 1;
  }
  const issuer: RawObject = { ...(issuers[index] as RawObject) };
  const claims: RawObject = isObject(issuer.claims) ? { ...issuer.claims } : {};
  if (url !== undefined) issuer.issuer = url;
  const audience = get('COFFER_OIDC_AUDIENCE');
  if (audience !== undefined) issuer.audiences = splitList(audience);
  const algorithms = get('COFFER_OIDC_ALGORITHMS');
  if (algorithms !== undefined) issuer.algorithms = splitList(algorithms);
  const atJwt = get('COFFER_OIDC_REQUIRE_AT_JWT');
  if (atJwt !== undefined) issuer.requireAtJwt = parseBool('COFFER_OIDC_REQUIRE_AT_JWT', atJwt);
  const groupsClaim = get('COFFER_OIDC_GROUPS_CLAIM');
  if (groupsClaim !== undefined) {
    claims.groups = groupsClaim;
    issuer.claims = claims;
  }
  const groupMap = get('COFFER_OIDC_GROUP_MAP');
  if (groupMap !== undefined) issuer.groupMapping = parseGroupMap(groupMap);
  const http = get('COFFER_OIDC_ALLOW_HTTP_LOOPBACK');
  if (http !== undefined) issuer.allowHttpLoopback = parseBool('COFFER_OIDC_ALLOW_HTTP_LOOPBACK', http);
  issuers[index] = issuer;
  return { ...raw, issuers };
}

/** For an issue under `issuers.N`, the alias of that issuer (if it has a printable one), so the operator finds it. */
function issuerLabel(path: readonly PropertyKey[], raw: RawObject): string {
  if (path[0] !== 'issuers' || typeof path[1] !== 'number' || !Array.isArray(raw.issuers)) return '';
  const entry = raw.issuers[path[1]];
  const alias = isObject(entry) && typeof entry.alias === 'string' ? entry.alias.slice(0, 32) : undefined;
  return alias && /^[\x20-\x7e]+$/.test(alias) ? ` (issuer "${alias}")` : '';
}

/** zod's "expected string, received undefined" means the field is missing. */
const describeMessage = (message: string) =>
  message.replace(/^Invalid input: expected (\w+), received undefined$/, 'required (a $1)');

function formatIssues(source: string, error: z.ZodError, raw: RawObject): string {
  const lines = error.issues.slice(0, 10).map((issue) => {
    const where = issue.path.length > 0 ? issue.path.map(String).join('.') : '(top level)';
    return `  - ${where}: ${describeMessage(issue.message)}${issuerLabel(issue.path, raw)}`;
  });
  const more = error.issues.length > 10 ? [`  - and ${error.issues.length - 10} more`] : [];
  return [`invalid configuration (${source}):`, ...lines, ...more].join('\n');
}

/**
 * The YAML parser, loaded on the first YAML document. The API Lambda reads its configuration as
 * JSON from the environment and never parses YAML: a `require` made through `createRequire` is one
 * that esbuild does not follow, so the parser (~120 KB minified) stays out of the Lambda bundle
 * and off its cold start. The local server and the CLI load it from node_modules when a
 * COFFER_CONFIG file is YAML.
 */
let yamlParser: typeof Yaml | undefined;
const yaml = (): typeof Yaml => {
  yamlParser ??= createRequire(import.meta.url)('yaml') as typeof Yaml;
  return yamlParser;
};

/** The raw document: JSON for `.json`, else YAML (a superset of JSON). Duplicate keys are errors. */
function parseDocument(text: string, source: string, format: 'json' | 'yaml'): unknown {
  if (Buffer.byteLength(text, 'utf8') > MAX_CONFIG_BYTES) {
    throw new ConfigError(`configuration file ${source} is larger than 1 MiB`);
  }
  try {
    // A byte order mark (some Windows editors write one) is not JSON, but is no mistake either.
    if (format === 'json') return JSON.parse(text.replace(/^\uFEFF/, ''));
    return yaml().parse(text, { uniqueKeys: true, maxAliasCount: 100, prettyErrors: true }) ?? {};
  } catch (err) {
    const detail = err instanceof Error ? err.message.split('\n')[0] : 'unreadable';
    throw new ConfigError(`configuration file ${source} is not valid ${format.toUpperCase()}: ${detail}`);
  }
}

function workloadConfig(w: z.infer<typeof workloadSchema>): WorkloadMappingConfig {
  const template = parseIdTemplate(w.id, w.claimPaths);
  // The schema refused a bad template already; this only narrows the type.
  if ('problem' in template) throw new ConfigError(`workload mapping ${w.name}: ${template.problem}`);
  return {
    name: w.name,
    id: w.id,
    idParts: template.parts,
    ...(w.audiences ? { audiences: w.audiences } : {}),
    bound: resolveBound(w.bound, w.claimPaths),
    tags: Object.fromEntries(
      Object.entries(w.tags).map(([tag, claim]) => [tag, resolveClaim(claim, w.claimPaths)]),
    ),
    groups: [...new Set(w.groups)].sort(),
  };
}

export interface ParseConfigOptions {
  /** Where the text came from, for messages (a path, or "environment"). */
  readonly source?: string;
  readonly format?: 'json' | 'yaml';
  /** Environment for the `COFFER_OIDC_*` / `COFFER_JWKS_REFRESH_SECONDS` overrides. */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

/**
 * Parses and validates configuration text (pure: no file or process.env access).
 *
 * @example
 * const config = parseConfig('issuers: []', { source: 'inline', env: {} });
 */
export function parseConfig(text: string, options: ParseConfigOptions = {}): CofferConfig {
  const source = options.source ?? 'configuration';
  const env = options.env ?? {};
  const doc = text.trim() === '' ? {} : parseDocument(text, source, options.format ?? 'yaml');
  if (!isObject(doc))
    throw new ConfigError(`configuration file ${source} must hold one object at the top level`);
  const withEnv = applyEnv(doc, env);
  const result = configSchema.safeParse(withEnv);
  if (!result.success) throw new ConfigError(formatIssues(source, result.error, withEnv));

  const rawRefresh = env.COFFER_JWKS_REFRESH_SECONDS;
  let defaultRefresh = DEFAULT_JWKS_REFRESH_SECONDS;
  if (rawRefresh !== undefined && rawRefresh.trim() !== '') {
    if (!/^\d{1,5}$/.test(rawRefresh.trim()) || Number(rawRefresh) < 1 || Number(rawRefresh) > 86_400) {
      throw new ConfigError('COFFER_JWKS_REFRESH_SECONDS must be a whole number of seconds from 1 to 86400');
    }
    defaultRefresh = Number(rawRefresh);
  }

  const { mtls, ...rest } = result.data;
  return {
    ...rest,
    ...(mtls
      ? { mtls: { ...(mtls.allowedSans ? { allowedSans: mtls.allowedSans } : {}), revoked: mtls.revoked } }
      : {}),
    issuers: result.data.issuers.map((i) => ({
      alias: i.alias,
      issuer: i.issuer,
      audiences: i.audiences,
      algorithms: i.algorithms,
      requireAtJwt: i.requireAtJwt,
      claims: i.claims,
      groupMapping: i.groupMapping,
      jwksRefreshSeconds: i.jwksRefreshSeconds ?? defaultRefresh,
      jwksMaxStaleSeconds: i.jwksMaxStaleSeconds,
      ...(i.jwksUri !== undefined ? { jwksUri: i.jwksUri } : {}),
      clockSkewSeconds: i.clockSkewSeconds,
      allowHttpLoopback: i.allowHttpLoopback,
      ...(i.login
        ? {
            login: {
              clientId: i.login.clientId,
              scopes: i.login.scopes,
              ...(i.login.resource !== undefined ? { resource: i.login.resource } : {}),
            },
          }
        : {}),
      ...(i.shared === true || SHARED_ISSUERS.some((k) => k.matches(i.issuer))
        ? { shared: true as const }
        : {}),
      ...(i.users
        ? {
            users: {
              ...(i.users.audiences ? { audiences: i.users.audiences } : {}),
              bound: resolveBound(i.users.bound, i.users.claimPaths),
            },
          }
        : {}),
      ...(i.workloads ? { workloads: i.workloads.map(workloadConfig) } : {}),
    })),
  };
}

/**
 * Reads the file named by `env.COFFER_CONFIG` (relative to `cwd`) and validates it with the env
 * overrides. Without `COFFER_CONFIG` the configuration comes from the environment alone. Callers
 * (bin/, functions/, the CLI) pass their environment: lib/ never reads process.env.
 */
export async function loadConfig(
  env: Readonly<Record<string, string | undefined>>,
  cwd: string,
): Promise<CofferConfig> {
  const path = env.COFFER_CONFIG?.trim();
  if (!path) return parseConfig('', { source: 'environment', env });
  const full = resolve(cwd, path);
  let text: string;
  try {
    text = await readFile(full, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
    throw new ConfigError(`cannot read COFFER_CONFIG file ${full} (${code})`);
  }
  const format = extname(full).toLowerCase() === '.json' ? 'json' : 'yaml';
  return parseConfig(text, { source: full, format, env });
}
