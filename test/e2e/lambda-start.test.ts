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

  it('when the module is imported, the app (policies included, through their seal) is built during init, before any request, and a failed build cannot crash the init', async () => {
    vi.resetModules();
    const builds: { policyDir?: string; sealedPolicies?: boolean; warm?: boolean }[] = [];
    vi.doMock('../../functions/api-app.js', async (importOriginal) => {
      const real = await importOriginal<typeof import('../../functions/api-app.js')>();
      // The error class of this module graph (reset above), the one the handler maps to 503.
      const errors = await import('../../lib/errors.js');
      const createApiApp: typeof real.createApiApp = async (options) => {
        builds.push({ ...options });
        throw new errors.KeyStoreUnavailableError();
      };
      return { ...real, createApiApp };
    });
    vi.stubEnv(ENV.secretsTable, 'coffer-secrets');
    vi.stubEnv(ENV.auditTable, 'coffer-audit');
    vi.stubEnv(
      ENV.secretsKeyArn,
      'arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000001',
    );
    vi.stubEnv(
      ENV.auditKeyArn,
      'arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000002',
    );
    vi.stubEnv(
      ENV.fieldHmacKeyArn,
      'arn:aws:kms:eu-west-1:111122223333:key/00000000-0000-0000-0000-000000000003',
    );
    vi.stubEnv(ENV.config, JSON.stringify({ issuers: [] }));
    vi.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      const { handler } = await import('../../functions/api.js');
      // Init (the import, top-level await included) built once, before any request.
      expect(builds).toHaveLength(1);
      expect(builds[0]).toMatchObject({ sealedPolicies: true, warm: true });
      expect(builds[0]?.policyDir).toMatch(/functions\/policies\/?$/);
      // The failed build waited for the first request, which reports it and builds again after.
      const out = (await handler(event as never, { awsRequestId: 'r' } as never)) as {
        statusCode: number;
        body: string;
      };
      expect(out.body).toContain('key_store_unavailable');
      expect(out.statusCode).toBe(503);
      expect(builds).toHaveLength(1);
      await handler(event as never, { awsRequestId: 'r2' } as never);
      expect(builds).toHaveLength(2);
    } finally {
      vi.doUnmock('../../functions/api-app.js');
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
