import type { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import type { KMSClient } from '@aws-sdk/client-kms';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import type { Context } from 'hono';
import type { LambdaContext, LambdaEvent } from 'hono/aws-lambda';
import { handle } from 'hono/aws-lambda';
import { clientCertFromEvent } from '../lib/authn/certificate.js';
import { iamCallerFromEvent, isIamPath } from '../lib/authn/iam.js';
import type { Authorizer } from '../lib/authz/authorizer.js';
import { type AuditedCoffer, composeCoffer } from '../lib/compose.js';
import { ConfigError } from '../lib/errors.js';
import type { CofferApp, ConnectionInfo } from '../lib/http/app.js';
import { errorBody } from '../lib/http/errors.js';
import { describeError, jsonLogger, type Logger } from '../lib/log.js';
import { defaultDynamoClient, defaultKmsClient, kmsKeys, lambdaRotators, stdoutSink } from './aws.js';
import type { LambdaSettings } from './env.js';

/**
 * The wiring of the API function: the same Hono app as the local server, with the AWS adapters —
 * DynamoDB, the KMS KeyProvider and root signer, the DynamoDB audit trail, the Cedar policies
 * shipped in the bundle, the configured OIDC issuers (never the dev issuer) and the IAM caller from
 * API Gateway's authorizer context.
 */

/** The SDK clients; tests pass a DynamoDB Local client and a mocked KMS client. */
export interface ApiClients {
  readonly dynamo: DynamoDBClient;
  readonly kms: KMSClient;
}

/**
 * The Cedar policies: their directory (in the bundle, `policies/` beside `index.mjs`), or the
 * authorizer loaded from it already (the function starts loading it during init).
 */
export type ApiPolicies =
  | {
      readonly policyDir: string;
      /**
       * Load the directory through its seal (lib/control/policy-seal.ts): validated by the first
       * start of a set, checked by MAC at the later ones. The bundle's own policies. Default false.
       */
      readonly sealedPolicies?: boolean;
      readonly authorizer?: never;
    }
  | { readonly authorizer: Authorizer; readonly policyDir?: never; readonly sealedPolicies?: never };

export type ApiOptions = ApiPolicies & {
  readonly settings: LambdaSettings;
  readonly clients?: Partial<ApiClients>;
  /** Operational log (stderr). */
  readonly logger?: Logger;
  /** Where audit records are copied as JSON lines (stdout, for CloudWatch Logs). */
  readonly auditSink?: (line: string) => void;
  /** Replaces fetch for OIDC discovery and JWKS (tests). */
  readonly fetch?: typeof fetch;
  /**
   * Start the audit chain (its certificate, signed by the root audit key) while building, so
   * the first request does not wait for it. Best effort: a failure leaves it to the first record.
   * Default false.
   */
  readonly warm?: boolean;
};

export type { CofferApp };

/** The API Gateway HTTP API (payload 2.0) event fields the adapter reads. */
interface HttpApiEvent {
  readonly rawPath?: string;
  readonly requestContext?: { readonly apiId?: unknown; readonly http?: { readonly sourceIp?: string } };
}

/**
 * What API Gateway says about the connection. The source IP is the one API Gateway saw (never
 * X-Forwarded-For), and the IAM caller is read only on the IAM prefix, only from the IAM
 * authorizer's context, which API Gateway sets after verifying SigV4 — never from a header.
 *
 * An event of the mutual-TLS API (`requestContext.apiId` equals `mtlsApiId`, both set by API
 * Gateway and the stack, not by the client) is authenticated by the client certificate API Gateway
 * verified (`requestContext.authentication.clientCert`) and by nothing else: no Authorization
 * header, no IAM context; without a certificate it gets 401. Every other event's
 * `requestContext.authentication` is not read. No header ever names a certificate.
 */
export function connectionFromEvent(event: unknown, mtlsApiId?: string): ConnectionInfo {
  const e = (event ?? {}) as HttpApiEvent;
  const sourceIp = e.requestContext?.http?.sourceIp ?? 'unknown';
  const rawPath = typeof e.rawPath === 'string' ? { rawPath: e.rawPath } : {};
  if (mtlsApiId !== undefined && e.requestContext?.apiId === mtlsApiId) {
    const clientCert = clientCertFromEvent(e as Parameters<typeof clientCertFromEvent>[0]);
    return {
      sourceIp,
      certificateOnly: true,
      ...(clientCert ? { clientCertificate: { source: 'api-gateway', clientCert } } : {}),
      ...rawPath,
    };
  }
  const onIamRoute = typeof e.rawPath === 'string' && isIamPath(e.rawPath);
  const iamCaller = onIamRoute
    ? iamCallerFromEvent(e as Parameters<typeof iamCallerFromEvent>[0])
    : undefined;
  return {
    sourceIp,
    ...(iamCaller ? { iamCaller } : {}),
    ...(typeof e.rawPath === 'string' ? { rawPath: e.rawPath } : {}),
  };
}

/**
 * Builds the app through the composition root: loads the policy set (an invalid one fails the
 * start), derives the storage and audit field-hash keys (KMS GenerateMac).
 */
export async function createApiApp(options: ApiOptions): Promise<CofferApp> {
  const { settings } = options;
  const logger = options.logger ?? jsonLogger();
  const coffer = await composeCoffer({
    dynamo: options.clients?.dynamo ?? defaultDynamoClient(),
    tables: settings.tables,
    ...(settings.installationId ? { installationId: settings.installationId } : {}),
    keys: kmsKeys(settings, options.clients?.kms ?? defaultKmsClient()),
    ...(settings.keyCache ? { keyCache: settings.keyCache } : {}),
    audit: { kind: 'dynamo', writer: 'lambda', chains: 1, sink: options.auditSink ?? stdoutSink },
    policy: options.authorizer
      ? { authorizer: options.authorizer }
      : { dir: options.policyDir, sealed: options.sealedPolicies === true },
    ...(settings.control ? { control: settings.control } : {}),
    authn: { config: settings.config, ...(options.fetch ? { fetch: options.fetch } : {}) },
    connection: (c: Context) =>
      connectionFromEvent((c.env as { event?: unknown } | undefined)?.event, settings.mtlsApiId),
    logger,
    // Only the allow-listed functions are ever invoked (checked when a policy names one, and
    // again at every call).
    rotators: lambdaRotators(settings.rotatorLambdaArns),
  });
  if (options.warm) await warmUp(coffer, logger);
  return coffer.app;
}

/**
 * What the first request would otherwise do itself, done while building: the audit chain's
 * certificate (a root signature and a write), the control records' first read (pushed policies,
 * revocations, the signed generations) and one Cedar decision, which compiles the engine's
 * evaluation code (the first call into the wasm is its slowest). The decision is made on a
 * made-up principal and thrown away: nothing is authorized by it. Best effort: what fails here is
 * done again by the first request, which fails closed as usual.
 */
async function warmUp(coffer: AuditedCoffer, logger: Logger): Promise<void> {
  await Promise.all([
    coffer.audit.prepare().catch((err: unknown) => {
      logger.warn('audit chain not started ahead of the first request', describeError(err));
    }),
    coffer.plane.ensureFresh().catch((err: unknown) => {
      logger.warn('control records not read ahead of the first request', describeError(err));
    }),
  ]);
  try {
    coffer.authorizer.authorize({
      principal: {
        type: 'User',
        id: 'coffer:warm-up',
        groups: ['admins'],
        attributes: {},
        authMethod: 'oidc',
      },
      action: 'read',
      resource: { kind: 'Secret', path: 'coffer/warm-up', tags: {} },
      context: { authMethod: 'oidc', sourceIp: 'unknown', time: Math.floor(Date.now() / 1000) },
    });
  } catch (err) {
    logger.warn('policy engine not warmed up', describeError(err));
  }
}

type Handler = ReturnType<typeof handle>;

/** A failed start answers 503 when KMS or the store may recover by itself, else a bare 500. */
function startFailure(err: unknown, requestId: string): ReturnType<typeof errorBody> {
  const mapped = errorBody(err, requestId);
  if (mapped.status === 503) return mapped;
  return { status: 500, body: { error: { code: 'internal', message: 'internal error', requestId } } };
}
type Result = Awaited<ReturnType<Handler>>;

/**
 * The Lambda handler around `hono/aws-lambda`. The app is built on the first request (and again
 * after a failed build), so that a KMS hiccup at start answers one request in Coffer's error shape
 * (503 key_store_unavailable) instead of failing the execution environment's init.
 */
export function lambdaHandler(
  build: () => Promise<CofferApp>,
  logger: Logger = jsonLogger(),
): (event: APIGatewayProxyEventV2, context?: LambdaContext) => Promise<Result> {
  let ready: Promise<Handler> | undefined;
  return async (event, context) => {
    ready ??= build()
      .then((app) => handle(app))
      .catch((err: unknown) => {
        ready = undefined;
        throw err;
      });
    let handler: Handler;
    try {
      handler = await ready;
    } catch (err) {
      const requestId = context?.awsRequestId ?? 'unknown';
      const { status, body } = startFailure(err, requestId);
      if (err instanceof ConfigError) {
        // Configuration messages name a variable or a setting, never a value that is secret: the
        // operator needs the sentence. The caller gets a bare 500 (no detail), like any internal error.
        logger.error('api configuration invalid', { requestId, code: err.code, detail: err.message });
      } else {
        // `code` as in "request failed" lines: the KeyStoreUnavailable metric filter counts it.
        logger.error('api start failed', { requestId, code: body.error.code, ...describeError(err) });
      }
      return {
        statusCode: status,
        headers: { 'content-type': 'application/json', 'cache-control': 'no-store' },
        body: JSON.stringify(body),
        isBase64Encoded: false,
      } as Result;
    }
    // hono types `body` as `string | null` where aws-lambda says `string | undefined`: same event.
    return handler(event as unknown as LambdaEvent, context);
  };
}
