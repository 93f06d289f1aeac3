/**
 * How long a fresh process takes to get the Cedar engine and the shipped policy set ready, in the
 * steps a cold start goes through: loading the engine (its wasm is compiled on import), then
 * reading, parsing and validating the set against the schema, then building the authorizer.
 * Run by bench/coldstart.bench.ts in its own process; prints one JSON line.
 *
 *   node --import tsx bench/support/cedar-load.ts <policy dir>
 */
const dir = process.argv[2];
if (!dir) throw new Error('usage: cedar-load.ts <policy dir>');
const t0 = performance.now();
await import('../../lib/authz/cedar-engine.js');
const engine = performance.now();
const { loadPolicyDir } = await import('../../lib/authz/policy-set.js');
const { CedarAuthorizer } = await import('../../lib/authz/cedar.js');
const { silentLogger } = await import('../../lib/log.js');
const modules = performance.now();
const set = await loadPolicyDir(dir);
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
