/**
 * One Lambda cold start, in this fresh process: imports the built API bundle (the execution
 * environment's init), then invokes its handler with HTTP API v2 events, as the Lambda runtime
 * does right after init on an on-demand cold start. Prints one JSON line with the timings.
 *
 *   node coldstart-driver.mjs <index.mjs> <mode> <token>
 *
 * mode `seed`: one PUT (sets up the secret the measured starts read).
 * mode `now`: a GET at once after the import, then a second GET (warm).
 * mode `idle`: a GET after 3 s idle, so that whatever init started has finished (the first
 * request then shows what remains on the first request when init's work is off its path).
 *
 * Plain JavaScript on purpose: the bundle is what runs in Lambda, and no TypeScript loader may
 * add to the import time measured here.
 */
import { pathToFileURL } from 'node:url';

const [bundle, mode, token] = process.argv.slice(2);
let counter = 0;

function event(method, rawPath, body) {
  counter++;
  return {
    version: '2.0',
    routeKey: 'ANY /v1/{proxy+}',
    rawPath,
    rawQueryString: '',
    headers: {
      host: 'a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com',
      authorization: `Bearer ${token}`,
      ...(body ? { 'content-type': 'application/json' } : {}),
    },
    requestContext: {
      accountId: '111122223333',
      apiId: 'a1b2c3d4e5',
      domainName: 'a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com',
      domainPrefix: 'a1b2c3d4e5',
      http: { method, path: rawPath, protocol: 'HTTP/1.1', sourceIp: '198.51.100.7', userAgent: 'bench' },
      requestId: `gw-${counter}`,
      routeKey: 'ANY /v1/{proxy+}',
      stage: '$default',
      time: '30/Nov/2026:10:00:00 +0000',
      timeEpoch: 1_796_032_800_000,
    },
    isBase64Encoded: false,
    ...(body ? { body: JSON.stringify(body) } : {}),
  };
}

const mark = (label) => process.stderr.write(`${JSON.stringify({ bench: 'mark', label })}\n`);
// The handler's audit copies go to stdout, one JSON line each: keep stdout for the result alone.
const stdoutWrite = process.stdout.write.bind(process.stdout);
process.stdout.write = () => true;

const t0 = performance.now();
const { handler } = await import(pathToFileURL(bundle).href);
const imported = performance.now();
const invoke = async (e) => {
  const out = await handler(e, { awsRequestId: `lambda-${counter}` });
  if (out.statusCode !== 200)
    throw new Error(`${e.requestContext.http.method} answered ${out.statusCode}: ${out.body}`);
  return out;
};

const result = { mode, importMs: imported - t0 };
if (mode === 'seed') {
  await invoke(event('PUT', '/v1/secrets/apps/db/password', { value: 'cold-start-value' }));
} else {
  if (mode === 'idle') await new Promise((r) => setTimeout(r, 3000));
  mark('first');
  const a = performance.now();
  await invoke(event('GET', '/v1/secrets/apps/db/password'));
  const b = performance.now();
  mark('second');
  await invoke(event('GET', '/v1/secrets/apps/db/password'));
  const c = performance.now();
  Object.assign(result, { firstMs: b - a, secondMs: c - b });
}
stdoutWrite(`${JSON.stringify(result)}\n`);
process.exit(0);
