import { randomBytes } from 'node:crypto';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DevIssuer } from '../lib/authn/dev-issuer.js';
import { composeCoffer } from '../lib/compose.js';
import { DEFAULT_POLICY_DIR } from '../lib/config.js';
import { startDynamoDbLocal } from '../lib/local/dynamodb-local.js';
import { silentLogger } from '../lib/log.js';
import { localDynamoClient } from '../lib/store/dynamo-client.js';
import { ensureTables } from '../lib/store/tables.js';
const ddb = await startDynamoDbLocal();
const dataDir = await mkdtemp(join(tmpdir(), 'prof-'));
const suffix = randomBytes(3).toString('hex');
const tables = { secrets: `p-secrets-${suffix}`, audit: `p-audit-${suffix}` };
const client = localDynamoClient(ddb.endpoint);
await ensureTables(client, tables);
const issuer = await DevIssuer.open(dataDir);
const coffer = await composeCoffer({
  dynamo: client, tables, keys: { kind: 'local', dataDir },
  audit: { kind: 'dynamo', writer: 'bench', chains: 4, sink: () => {} },
  policy: { dir: DEFAULT_POLICY_DIR }, authn: { config: { issuers: [] }, devIssuerKey: issuer.publicKey },
  connection: () => ({ sourceIp: '127.0.0.1' }) as never, logger: silentLogger,
});
const token = await issuer.mint({ subject: 'dev-admin', groups: ['admins'] });
const req = (method: string, route: string, body?: unknown) => coffer.app.request(route, { method, headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' }, ...(body ? { body: JSON.stringify(body) } : {}) });
console.log((await req('PUT', '/v1/secrets/p/get', { value: 'x'.repeat(64) })).status);
for (let i = 0; i < 300; i++) await req('GET', '/v1/secrets/p/get');
const N = Number(process.env.N ?? 3000);
const t0 = process.cpuUsage(); const w0 = performance.now();
for (let i = 0; i < N; i++) { const r = await req('GET', '/v1/secrets/p/get'); if (r.status !== 200) throw new Error(String(r.status)); await r.text(); }
const cpu = process.cpuUsage(t0);
console.log('cpu ms/GET', ((cpu.user + cpu.system) / 1000 / N).toFixed(3), 'wall ms/GET', ((performance.now() - w0) / N).toFixed(2));
await ddb.stop();
process.exit(0);
