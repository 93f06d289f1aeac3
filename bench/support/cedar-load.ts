/**
 * How long a fresh process takes to get the Cedar engine and the shipped policy set ready, in the
 * steps a cold start goes through: loading the engine (its wasm is compiled on import), then
 * reading, parsing and validating the set against the schema, then building the authorizer.
 * Run by bench/coldstart.bench.ts in its own process; prints one JSON line. With `sealed`, the set
 * is read and parsed as a start with a verified seal does (lib/control/policy-seal.ts): no validator.
 *
 *   node --import tsx bench/support/cedar-load.ts <policy dir> [sealed]
 */
const dir = process.argv[2];
const sealed = process.argv[3] === 'sealed';
if (!dir) throw new Error('usage: cedar-load.ts <policy dir> [sealed]');
const t0 = performance.now();
await import('../../lib/authz/cedar-engine.js');
const engine = performance.now();
const { compileSealedPolicySet, loadPolicyDir, readPolicyDir } = await import(
  '../../lib/authz/policy-set.js'
);
const { CedarAuthorizer } = await import('../../lib/authz/cedar.js');
const { silentLogger } = await import('../../lib/log.js');
const modules = performance.now();
const set = sealed
  ? await readPolicyDir(dir).then(({ schema, files }) => compileSealedPolicySet(schema, files))
  : await loadPolicyDir(dir);
const validated = performance.now();
new CedarAuthorizer(set, { logger: silentLogger });
const built = performance.now();
process.stdout.write(
  `${JSON.stringify({
    engineImportMs: engine - t0,
    loadAndValidateMs: validated - modules,
    authorizerMs: built - validated,
    policies: set.policies.length,
  })}\n`,
);
