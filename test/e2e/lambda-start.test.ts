import { afterEach, describe, expect, it, vi } from 'vitest';
import { lambdaHandler } from '../../functions/api-app.js';
import { ENV } from '../../functions/env.js';
import { FILTER_PATTERNS } from '../../infra/constructs/monitoring.js';
import { ConfigError, KeyStoreUnavailableError } from '../../lib/errors.js';
import { jsonLogger } from '../../lib/log.js';
import { matchesFilterPattern } from '../support/cloudwatch-filter.js';

/*
 * How the API function starts in a Lambda execution environment whose configuration is wrong or
 * whose key store is down: it fails closed, answers in Coffer's error shape without detail, and
 * logs one line an operator can act on.
 */

const event = {
  version: '2.0',
  routeKey: 'ANY /v1/{proxy+}',
  rawPath: '/v1/health',
  rawQueryString: '',
  headers: { host: 'a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com' },
  requestContext: {
    accountId: '111122223333',
    apiId: 'a1b2c3d4e5',
    domainName: 'a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com',
    domainPrefix: 'a1b2c3d4e5',
    http: {
      method: 'GET',
      path: '/v1/health',
      protocol: 'HTTP/1.1',
      sourceIp: '203.0.113.9',
      userAgent: 't',
    },
    requestId: 'gw-1',
    routeKey: 'ANY /v1/{proxy+}',
    stage: '$default',
    time: '22/Nov/2026:21:03:58 +0000',
    timeEpoch: 1_795_381_438_000,
  },
  isBase64Encoded: false,
};

afterEach(() => {
  vi.restoreAllMocks();
  vi.unstubAllEnvs();
});

describe('the API function at start', () => {
  it('when a required variable is missing, every request gets a bare 500 and the log names the variable', async () => {
    for (const name of Object.values(ENV)) vi.stubEnv(name, undefined);
    vi.stubEnv(ENV.auditTable, 'coffer-audit');
    const lines: string[] = [];
    vi.spyOn(process.stderr, 'write').mockImplementation((chunk) => {
      lines.push(String(chunk));
      return true;
    });
    const { handler } = await import('../../functions/api.js');
    for (const requestId of ['req-1', 'req-2']) {
      const out = (await handler(event as never, { awsRequestId: requestId } as never)) as {
        statusCode: number;
        body: string;
      };
      expect(out.statusCode).toBe(500);
      expect(JSON.parse(out.body)).toEqual({
        error: { code: 'internal', message: 'internal error', requestId },
      });
    }
    const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toHaveLength(2);
    expect(logged[0]).toMatchObject({
      level: 'error',
      message: 'api configuration invalid',
      requestId: 'req-1',
      code: 'config_error',
      detail: `environment variable ${ENV.secretsTable} is required`,
    });
  });

  it('when the module is imported, the policies start loading during init, before any request, and a failed load cannot crash the init', async () => {
    vi.resetModules();
    const loads: string[] = [];
    vi.doMock('../../lib/compose.js', async (importOriginal) => {
      const real = await importOriginal<typeof import('../../lib/compose.js')>();
      const loadAuthorizer: typeof real.loadAuthorizer = (policy, logger) => {
        loads.push(String(policy.dir));
        return real.loadAuthorizer(policy, logger);
      };
      return { ...real, loadAuthorizer };
    });
    try {
      // Beside the sources there is no policies/ directory (the bundle ships one): this load fails,
      // and the failure must wait for a request to report it instead of rejecting unhandled.
      await import('../../functions/api.js');
      expect(loads).toHaveLength(1);
      expect(loads[0]).toMatch(/functions\/policies\/?$/);
      await new Promise((r) => setTimeout(r, 50));
    } finally {
      vi.doUnmock('../../lib/compose.js');
      vi.resetModules();
    }
  });

  it('when the configuration holds an invalid issuer list, it fails closed without echoing the JSON', async () => {
    const lines: string[] = [];
    const handler = lambdaHandler(
      async () => {
        throw new ConfigError('COFFER_CONFIG_JSON: issuers[0].issuer must be an https URL');
      },
      jsonLogger((l) => lines.push(l)),
    );
    const out = (await handler(event as never, { awsRequestId: 'r' } as never)) as {
      statusCode: number;
      body: string;
    };
    expect(out.statusCode).toBe(500);
    expect(out.body).not.toContain('issuer');
    expect(lines.join('')).toContain('issuers[0].issuer must be an https URL');
  });

  it('when KMS is unreachable at start, it answers 503 key_store_unavailable and builds again on the next request', async () => {
    let builds = 0;
    const lines: string[] = [];
    const handler = lambdaHandler(
      async () => {
        builds++;
        throw new KeyStoreUnavailableError();
      },
      jsonLogger((l) => lines.push(l)),
    );
    for (let i = 0; i < 2; i++) {
      const out = (await handler(event as never, { awsRequestId: 'r' } as never)) as {
        statusCode: number;
        body: string;
      };
      expect(out.statusCode).toBe(503);
      expect(JSON.parse(out.body).error.code).toBe('key_store_unavailable');
    }
    expect(builds).toBe(2);
    // Each refused request logs a line the KeyStoreDisconnected alarm's metric filter counts.
    expect(lines).toHaveLength(2);
    expect(lines.every((l) => matchesFilterPattern(FILTER_PATTERNS.keyStoreUnavailable, l))).toBe(true);
    expect(JSON.parse(lines[0] as string)).toMatchObject({
      message: 'api start failed',
      code: 'key_store_unavailable',
    });
  });
});
