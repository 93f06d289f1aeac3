import { createHash } from 'node:crypto';
import { readdir, readFile } from 'node:fs/promises';
import { join, relative, resolve } from 'node:path';
import { canonicalJson } from '../crypto/canonical.js';
import { CofferError } from '../errors.js';
import { ACTIONS } from './authorizer.js';
import { cedar, type DetailedError, type PolicyJson, type SchemaJson } from './cedar-engine.js';
import { contextJson, NAMESPACE, principalEntity, resourceEntity, TYPES } from './entities.js';
import type { Uid } from './entity-uid.js';

export const SCHEMA_FILE = 'schema.cedarschema';
export const POLICY_EXTENSION = '.cedar';

/**
 * The policy set could not be loaded: a file is missing or unreadable, a policy does not parse or
 * does not validate against the schema. Raised at start (the server does not run without a valid
 * policy set) and by `coffer policy validate`; each problem names the file and the line:column.
 */
export class PolicySetError extends CofferError {
  static override readonly code = 'invalid_policy_set';
  readonly problems: readonly string[];

  constructor(problems: readonly string[]) {
    super(`invalid policy set:\n${problems.map((p) => `  ${p}`).join('\n')}`);
    this.problems = problems;
  }
}

/** A file's name (as shown in messages) and text. */
export interface PolicySource {
  readonly name: string;
  readonly text: string;
}

export interface LoadedPolicy {
  /** The `@id("...")` annotation, else `<file>:<line>`. */
  readonly id: string;
  readonly effect: 'permit' | 'forbid';
  /** `<file>:<line>` where the policy starts. */
  readonly location: string;
  readonly text: string;
  readonly json: PolicyJson;
}

/** What the schema says about one action. */
export interface ActionInfo {
  readonly principalTypes: ReadonlySet<string>;
  readonly resourceTypes: ReadonlySet<string>;
  /** Action groups it belongs to, transitively. */
  readonly parents: readonly Uid[];
}

/** A parsed, validated policy set: what the authorizer runs on. */
export interface PolicySet {
  readonly schema: PolicySource;
  readonly policies: readonly LoadedPolicy[];
  readonly actions: ReadonlyMap<string, ActionInfo>;
  /** SHA-256 (hex) of the canonical text of the schema and every policy file. */
  readonly hash: string;
  /** The policy files, in load order. */
  readonly files: readonly string[];
  /** Validator warnings: they do not stop the start, they are worth reading. */
  readonly warnings: readonly string[];
}

const normalize = (text: string): string => text.replace(/\r\n?/g, '\n');

/**
 * SHA-256 of the canonical policy set text: the schema and every policy file by name (sorted),
 * line endings normalized, so the same files hash the same on every machine and any edit to a
 * policy or the schema changes the hash that audit records carry.
 */
export function policySetHash(schema: PolicySource, files: readonly PolicySource[]): string {
  const canonical = canonicalJson({
    schema: normalize(schema.text),
    policies: [...files]
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0))
      .map((f) => [f.name, normalize(f.text)]),
  });
  return createHash('sha256').update(canonical).digest('hex');
}

/** 1-based line and column of a character offset. */
function lineCol(text: string, offset: number): { line: number; col: number } {
  let line = 1;
  let start = 0;
  for (let i = 0; i < offset && i < text.length; i++) {
    if (text.charCodeAt(i) === 10) {
      line++;
      start = i + 1;
    }
  }
  return { line, col: offset - start + 1 };
}

/** Cedar reports UTF-8 byte offsets; JavaScript strings index UTF-16 units. */
function byteToChar(text: string, byteOffset: number): number {
  return Buffer.from(text, 'utf8').subarray(0, byteOffset).toString('utf8').length;
}

interface Chunk {
  readonly text: string;
  /** Character offset of the chunk in its file. */
  readonly start: number;
}

/**
 * Splits a policy file into one text per policy, at each `;` outside string literals and `//`
 * comments (Cedar has no other comment form and no other use of `;`), so each policy keeps its
 * location in the file for messages and ids. Cedar then parses each piece on its own: a split in
 * the wrong place could only produce a parse error, never a different policy.
 */
export function splitPolicies(text: string): Chunk[] {
  const chunks: Chunk[] = [];
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      i++;
      while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
    } else if (c === '/' && text[i + 1] === '/') {
      while (i < text.length && text[i] !== '\n') i++;
    } else if (c === ';') {
      chunks.push({ text: text.slice(start, i + 1), start });
      i++;
      start = i;
    } else {
      i++;
    }
  }
  const rest = text.slice(start);
  // Whatever follows the last `;` must be blank or comments; anything else is an unfinished policy
  // that Cedar will report.
  if (rest.replace(/\/\/[^\n]*/g, '').trim() !== '') chunks.push({ text: rest, start });
  return chunks;
}

/** Offset of the first character of a chunk that is neither whitespace nor a comment. */
function firstToken(text: string): number {
  const m = /^(?:\s|\/\/[^\n]*)*/.exec(text);
  return m ? m[0].length : 0;
}

function describe(
  file: string,
  text: string,
  base: number,
  local: string,
  err: DetailedError,
  strip?: RegExp,
): string {
  const loc = err.sourceLocations?.[0];
  const at = loc ? base + byteToChar(local, loc.start) : base + firstToken(local);
  const { line, col } = lineCol(text, at);
  const message = strip ? err.message.replace(strip, '') : err.message;
  const label = loc?.label ? ` (${loc.label})` : '';
  const help = err.help ? `; ${err.help}` : '';
  return `${file}:${line}:${col}: ${message}${label}${help}`;
}

/**
 * The validator reports a problem once per action a policy can apply to; messages that differ only
 * in the action become one, naming the actions: `... for Coffer::Action::"read", "write"; ...`.
 */
export function mergeActions(messages: readonly string[]): string[] {
  const action = / for Coffer::Action::("[^"]*")/;
  const groups = new Map<string, string[]>();
  for (const m of messages) {
    const found = action.exec(m);
    const key = found ? m.replace(action, ' for Coffer::Action::\u0000') : m;
    const list = groups.get(key) ?? [];
    if (found?.[1] !== undefined) list.push(found[1]);
    groups.set(key, list);
  }
  return [...groups].map(([key, actions]) =>
    key.includes('\u0000') ? key.replace('\u0000', [...new Set(actions)].join(', ')) : key,
  );
}

/** Reads what the schema says about the actions and checks it declares every Coffer action. */
function actionsOf(schema: SchemaJson<string>, problems: string[]): Map<string, ActionInfo> {
  const ns = schema[NAMESPACE];
  const out = new Map<string, ActionInfo>();
  if (!ns) {
    problems.push(`${SCHEMA_FILE}: the schema must declare namespace ${NAMESPACE}`);
    return out;
  }
  const qualify = (name: string) => (name.includes('::') ? name : `${NAMESPACE}::${name}`);
  const direct = new Map<string, string[]>();
  for (const [name, def] of Object.entries(ns.actions)) {
    direct.set(
      name,
      (def.memberOf ?? [])
        .filter((m) => m.type === undefined || qualify(m.type) === TYPES.action)
        .map((m) => m.id),
    );
  }
  const ancestors = (name: string, seen = new Set<string>()): Set<string> => {
    for (const p of direct.get(name) ?? []) {
      if (!seen.has(p)) {
        seen.add(p);
        ancestors(p, seen);
      }
    }
    return seen;
  };
  for (const [name, def] of Object.entries(ns.actions)) {
    out.set(name, {
      principalTypes: new Set((def.appliesTo?.principalTypes ?? []).map(qualify)),
      resourceTypes: new Set((def.appliesTo?.resourceTypes ?? []).map(qualify)),
      parents: [...ancestors(name)].map((id) => ({ type: TYPES.action, id })),
    });
  }
  for (const action of ACTIONS) {
    if (!out.has(action)) problems.push(`${SCHEMA_FILE}: the schema must declare action "${action}"`);
  }
  return out;
}

/**
 * Checks that the schema accepts the entities and context Coffer sends, so that a schema edited out
 * of step with lib/authz/entities.ts stops the start instead of failing (closed) on every request.
 */
/** The entities the schema probe sends: one of each kind Coffer sends, with every field set. */
function probeEntities() {
  const user = principalEntity({
    type: 'User',
    id: 'probe:user',
    groups: ['probe'],
    attributes: { probe: 'x' },
    authMethod: 'oidc',
    issuer: 'probe',
  });
  const role = principalEntity({
    type: 'Role',
    id: 'arn:aws:iam::000000000000:role/probe',
    groups: [],
    attributes: { account: '000000000000' },
    authMethod: 'iam',
  });
  const workload = principalEntity({
    type: 'Workload',
    id: 'probe:workload',
    groups: [],
    attributes: { repository: 'x' },
    authMethod: 'oidc',
    issuer: 'probe',
    kind: 'oidc',
  });
  const secret = resourceEntity({ kind: 'Secret', path: 'a/b/c', tags: { env: 'x' }, owner: 'probe:user' });
  const folder = resourceEntity({ kind: 'Folder', path: 'a/b/' });
  return [user, role, workload, secret, folder];
}

const PROBE_SOURCE_IPS = ['10.0.0.1', 'unknown'];

function probeSchema(schemaText: string, problems: string[]): void {
  const entities = cedar.checkParseEntities({
    entities: probeEntities(),
    schema: schemaText,
  });
  if (entities.type === 'failure') {
    for (const e of entities.errors) {
      problems.push(`${SCHEMA_FILE}: does not accept the entities Coffer sends: ${e.message}`);
    }
  }
  for (const sourceIp of PROBE_SOURCE_IPS) {
    const context = contextJson({ authMethod: 'oidc', sourceIp, time: 0 });
    for (const action of ACTIONS) {
      const answer = cedar.checkParseContext({
        context: context as never,
        schema: schemaText,
        action: { type: TYPES.action, id: action },
      });
      if (answer.type === 'failure') {
        problems.push(
          `${SCHEMA_FILE}: does not accept the context Coffer sends for "${action}": ${answer.errors[0]?.message ?? 'rejected'}`,
        );
        return;
      }
    }
  }
}

/** What parsing a set yields before any validation. */
interface Parsed {
  readonly actions: Map<string, ActionInfo>;
  readonly policies: LoadedPolicy[];
  readonly chunkOf: Map<string, { file: PolicySource; chunk: Chunk }>;
}

/**
 * Parses each policy (Cedar's parser and its JSON form: the authorizer needs both) and reads the
 * actions from the schema. Problems (parse errors, duplicate ids, a schema without Coffer's
 * actions) are pushed to `problems`.
 */
function parseSet(
  schemaJson: SchemaJson<string>,
  files: readonly PolicySource[],
  problems: string[],
): Parsed {
  const actions = actionsOf(schemaJson, problems);
  const policies: LoadedPolicy[] = [];
  const chunkOf = new Map<string, { file: PolicySource; chunk: Chunk }>();
  const parseIdPrefix = /^failed to parse policy with id `[^`]*` from string: /;
  for (const file of files) {
    for (const chunk of splitPolicies(file.text)) {
      const parsed = cedar.checkParsePolicySet({ staticPolicies: { policy: chunk.text } });
      if (parsed.type === 'failure') {
        for (const e of parsed.errors) {
          problems.push(describe(file.name, file.text, chunk.start, chunk.text, e, parseIdPrefix));
        }
        continue;
      }
      const json = cedar.policyToJson(chunk.text);
      if (json.type === 'failure') {
        for (const e of json.errors)
          problems.push(describe(file.name, file.text, chunk.start, chunk.text, e));
        continue;
      }
      const { line } = lineCol(file.text, chunk.start + firstToken(chunk.text));
      const location = `${file.name}:${line}`;
      const id = json.json.annotations?.id ?? location;
      const clash = chunkOf.get(id);
      if (clash) {
        const first = policies.find((p) => p.id === id);
        problems.push(
          `${location}: policy id "${id}" is already used at ${first?.location ?? clash.file.name}`,
        );
        continue;
      }
      chunkOf.set(id, { file, chunk });
      policies.push({ id, effect: json.json.effect, location, text: chunk.text, json: json.json });
    }
  }
  return { actions, policies, chunkOf };
}

function schemaJsonOf(schema: PolicySource): SchemaJson<string> {
  const schemaJson = cedar.schemaToJson(schema.text);
  if (schemaJson.type === 'failure') {
    throw new PolicySetError(schemaJson.errors.map((e) => `${schema.name}: ${e.message}`));
  }
  return schemaJson.json;
}

function noPermitWarning(policies: readonly LoadedPolicy[]): string[] {
  return policies.some((p) => p.effect === 'permit')
    ? []
    : ['the policy set has no permit policy: every request will be denied'];
}

let validations = 0;

/**
 * How many times this process ran the validator (`compilePolicySet`). Tests assert that a sealed
 * set (lib/control/policy-seal.ts) is loaded without it.
 */
export function policyValidations(): number {
  return validations;
}

/**
 * Parses the schema and the policy files, validates every policy against the schema (Cedar's
 * strict mode) and returns the set, or throws PolicySetError listing every problem with its file
 * and line:column. Template policies (with `?principal`/`?resource` slots) are refused.
 */
export function compilePolicySet(schema: PolicySource, files: readonly PolicySource[]): PolicySet {
  validations++;
  const problems: string[] = [];
  const schemaParse = cedar.checkParseSchema(schema.text);
  if (schemaParse.type === 'failure') {
    throw new PolicySetError(
      schemaParse.errors.map((e) => describe(schema.name, schema.text, 0, schema.text, e)),
    );
  }
  const schemaJson = schemaJsonOf(schema);
  const { actions, policies, chunkOf } = parseSet(schemaJson, files, problems);
  probeSchema(schema.text, problems);
  if (problems.length > 0) throw new PolicySetError(problems);

  const warnings: string[] = [];
  const validation = cedar.validate({
    schema: schema.text,
    policies: { staticPolicies: Object.fromEntries(policies.map((p) => [p.id, p.text])) },
    validationSettings: { mode: 'strict' },
  });
  if (validation.type === 'failure') {
    throw new PolicySetError(validation.errors.map((e) => `${schema.name}: ${e.message}`));
  }
  const where = (policyId: string, e: DetailedError): string => {
    const origin = chunkOf.get(policyId);
    if (!origin) return `${policyId}: ${e.message}`;
    return describe(origin.file.name, origin.file.text, origin.chunk.start, origin.chunk.text, e);
  };
  problems.push(...mergeActions(validation.validationErrors.map((v) => where(v.policyId, v.error))));
  warnings.push(...mergeActions(validation.validationWarnings.map((v) => where(v.policyId, v.error))));
  for (const w of validation.otherWarnings) warnings.push(w.message);
  if (problems.length > 0) throw new PolicySetError(problems);
  warnings.push(...noPermitWarning(policies));

  return {
    schema,
    policies,
    actions,
    hash: policySetHash(schema, files),
    files: files.map((f) => f.name),
    warnings,
  };
}

/**
 * The set, parsed but not validated: only for files whose hash and schema hash carry a verified
 * seal saying `compilePolicySet` accepted exactly them (lib/control/policy-seal.ts). Skipping the
 * validator and the schema probe is most of a cold start's policy work; the policies are still
 * parsed (the authorizer runs on their JSON), and a parse problem still throws PolicySetError.
 */
export function compileSealedPolicySet(schema: PolicySource, files: readonly PolicySource[]): PolicySet {
  const problems: string[] = [];
  const { actions, policies } = parseSet(schemaJsonOf(schema), files, problems);
  if (problems.length > 0) throw new PolicySetError(problems);
  return {
    schema,
    policies,
    actions,
    hash: policySetHash(schema, files),
    files: files.map((f) => f.name),
    warnings: noPermitWarning(policies),
  };
}

/**
 * What parsing a valid set yields that the authorizer needs besides the texts: each policy's id,
 * effect, location and Cedar JSON, and what the schema says about each action. A seal stores it
 * (under its MAC), so that a sealed start calls neither the schema parser nor the policy parser,
 * the first calls into the engine being its slowest.
 */
export interface CompiledSet {
  readonly actions: readonly (readonly [
    string,
    {
      readonly principalTypes: readonly string[];
      readonly resourceTypes: readonly string[];
      readonly parents: readonly Uid[];
    },
  ])[];
  readonly policies: readonly {
    readonly id: string;
    readonly effect: 'permit' | 'forbid';
    readonly location: string;
    readonly json: PolicyJson;
  }[];
}

export function compiledForm(set: PolicySet): CompiledSet {
  return {
    actions: [...set.actions].map(([name, a]) => [
      name,
      { principalTypes: [...a.principalTypes], resourceTypes: [...a.resourceTypes], parents: a.parents },
    ]),
    policies: set.policies.map((p) => ({ id: p.id, effect: p.effect, location: p.location, json: p.json })),
  };
}

/**
 * The set from its compiled form and its files (the texts, split as `compilePolicySet` splits
 * them: one policy per piece in a valid set). Only for a compiled form a verified seal holds for
 * exactly these files; undefined when the files do not split into its policies.
 */
export function setFromCompiled(
  schema: PolicySource,
  files: readonly PolicySource[],
  compiled: CompiledSet,
): PolicySet | undefined {
  const texts = files.flatMap((f) => splitPolicies(f.text).map((c) => c.text));
  if (texts.length !== compiled.policies.length) return undefined;
  const policies = compiled.policies.map((p, i) => ({ ...p, text: texts[i] as string }));
  return {
    schema,
    policies,
    actions: new Map(
      compiled.actions.map(([name, a]) => [
        name,
        {
          principalTypes: new Set(a.principalTypes),
          resourceTypes: new Set(a.resourceTypes),
          parents: a.parents,
        },
      ]),
    ),
    hash: policySetHash(schema, files),
    files: files.map((f) => f.name),
    warnings: noPermitWarning(policies),
  };
}

let fingerprint: string | undefined;

/**
 * What a validation's outcome depends on besides the set and the schema: the engine's version and
 * what this code sends it (the probe's entities and contexts, the actions it requires). A seal
 * made under another fingerprint (an older Coffer) is not trusted: the set is validated again.
 */
export function validatorFingerprint(): string {
  fingerprint ??= createHash('sha256')
    .update(
      canonicalJson({
        seal: 1,
        cedar: cedar.getCedarVersion(),
        actions: ACTIONS,
        entities: probeEntities(),
        contexts: PROBE_SOURCE_IPS.map((sourceIp) => contextJson({ authMethod: 'oidc', sourceIp, time: 0 })),
      }),
    )
    .digest('hex');
  return fingerprint;
}

/** SHA-256 (hex) of the schema's text, line endings normalized: what a seal binds a set to. */
export function schemaHash(schema: PolicySource): string {
  return createHash('sha256').update(normalize(schema.text)).digest('hex');
}

async function readSource(dir: string, name: string): Promise<PolicySource> {
  try {
    return { name, text: await readFile(join(dir, name), 'utf8') };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const hint = name === SCHEMA_FILE ? ` (copy Coffer's policies/${SCHEMA_FILE} there)` : '';
    throw new PolicySetError([
      code === 'ENOENT'
        ? `${name}: file not found in ${dir}${hint}`
        : `${name}: cannot be read (${code ?? 'error'})`,
    ]);
  }
}

export interface LoadOptions {
  /**
   * More policy files, relative to the directory (e.g. `examples/prod-readers.cedar`), loaded after
   * the directory's own. Used by the policy test tables.
   */
  readonly extraFiles?: readonly string[];
}

/** The schema and the policy files of a directory, read but not parsed (see loadPolicyDir). */
export async function readPolicyDir(
  dir: string,
  options: LoadOptions = {},
): Promise<{ readonly schema: PolicySource; readonly files: readonly PolicySource[] }> {
  const root = resolve(dir);
  let names: string[];
  try {
    names = (await readdir(root, { withFileTypes: true }))
      .filter((e) => e.isFile() && e.name.endsWith(POLICY_EXTENSION))
      .map((e) => e.name)
      .sort();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new PolicySetError([
      code === 'ENOENT'
        ? `policy directory ${root} not found`
        : `policy directory ${root}: ${code ?? 'error'}`,
    ]);
  }
  for (const extra of options.extraFiles ?? []) {
    const full = resolve(root, extra);
    const rel = relative(root, full);
    if (rel.startsWith('..') || !rel.endsWith(POLICY_EXTENSION)) {
      throw new PolicySetError([`${extra}: extra policy files must be .cedar files inside ${root}`]);
    }
    if (!names.includes(rel)) names.push(rel);
  }
  const schema = await readSource(root, SCHEMA_FILE);
  const files = await Promise.all(names.map((n) => readSource(root, n)));
  return { schema, files };
}

/**
 * Loads `schema.cedarschema` and every `*.cedar` file directly in `dir` (sorted by name; the
 * `tests/` and `examples/` sub-folders are not loaded), then parses and validates them.
 *
 * @example
 * const set = await loadPolicyDir(settings.policyDir); // throws PolicySetError if invalid
 */
export async function loadPolicyDir(dir: string, options: LoadOptions = {}): Promise<PolicySet> {
  const { schema, files } = await readPolicyDir(dir, options);
  return compilePolicySet(schema, files);
}
