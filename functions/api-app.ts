import { DynamoDBClient } from '@aws-sdk/client-dynamodb';
import { KMSClient } from '@aws-sdk/client-kms';
import type { APIGatewayProxyEventV2 } from 'aws-lambda';
import type { Context } from 'hono';
import type { LambdaContext, LambdaEvent } from 'hono/aws-lambda';
import { handle } from 'hono/aws-lambda';
import { DynamoAuditTrail } from '../lib/audit/dynamo-trail.js';
import { hmacFieldHasher } from '../lib/audit/record.js';
import { buildAuthenticator } from '../lib/authn/build.js';
import { iamCallerFromEvent, isIamPath } from '../lib/authn/iam.js';
import { CedarAuthorizer } from '../lib/authz/cedar.js';
import { Envelope } from '../lib/crypto/envelope.js';
import { ConfigError } from '../lib/errors.js';
import { type CofferApp, type ConnectionInfo, createApp } from '../lib/http/app.js';
import { errorBody } from '../lib/http/errors.js';
import { deriveKmsMacKey, KmsKeyProvider, KmsRootSigner } from '../lib/keys/kms.js';
import { describeError, jsonLogger, type Logger } from '../lib/log.js';
import { SecretService } from '../lib/secrets/service.js';
import { SecretsStore } from '../lib/store/secrets-store.js';
import { FIELD_HMAC_LABEL, type LambdaSettings } from './env.js';

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

export interface ApiOptions {
  readonly settings: LambdaSettings;
  /** The Cedar policy directory (in the bundle: `policies/` beside `index.mjs`). */
  readonly policyDir: string;
  readonly clients?: Partial<ApiClients>;
  /** Operational log (stderr). */
  readonly logger?: Logger;
  /** Where audit records are copied as JSON lines (stdout, for CloudWatch Logs). */
  readonly auditSink?: (line: string) => void;
  /** Replaces fetch for OIDC discovery and JWKS (tests). */
  readonly fetch?: typeof fetch;
}

/** The API Gateway HTTP API (payload 2.0) event fields the adapter reads. */
interface HttpApiEvent {
  readonly rawPath?: string;
  readonly requestContext?: { readonly http?: { readonly sourceIp?: string } };
}

/**
 * What API Gateway says about the connection. The source IP is the one API Gateway saw (never
 * X-Forwarded-For), and the IAM caller is read only on the IAM prefix, only from the IAM
 * authorizer's context, which API Gateway sets after verifying SigV4 — never from a header.
 */
export function connectionFromEvent(event: unknown): ConnectionInfo {
  const e = (event ?? {}) as HttpApiEvent;
  const sourceIp = e.requestContext?.http?.sourceIp ?? 'unknown';
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
 * Builds the app: loads and validates the policy set (an invalid one fails the start), derives
 * the audit field-hash key (the one AWS call made at start).
 */
export async function createApiApp(options: ApiOptions): Promise<CofferApp> {
  const { settings } = options;
  const logger = options.logger ?? jsonLogger();
  const authorizer = await CedarAuthorizer.fromDir(options.policyDir, { logger });
  const dynamo = options.clients?.dynamo ?? new DynamoDBClient({});
  // The adapter retries KMS itself (jittered, with error mapping); the SDK must not retry too.
  const kms = options.clients?.kms ?? new KMSClient({ maxAttempts: 1 });
  const kmsLog = { logger };

  const keys = new KmsKeyProvider({
    client: kms,
    keyId: settings.secretsKeyArn,
    previousKeyIds: settings.previousSecretsKeyArns,
    ...kmsLog,
  });
  const root = new KmsRootSigner({ client: kms, keyId: settings.auditKeyArn, ...kmsLog });
  const fieldKey = settings.fieldHmacKeyArn
    ? await deriveKmsMacKey({
        client: kms,
        keyId: settings.fieldHmacKeyArn,
        label: FIELD_HMAC_LABEL,
        ...kmsLog,
      })
    : undefined;
  const audit = new DynamoAuditTrail({
    client: dynamo,
    table: settings.tables.audit,
    root,
    ...(fieldKey ? { fieldHasher: hmacFieldHasher(fieldKey) } : {}),
    sink: options.auditSink ?? ((line) => process.stdout.write(`${line}\n`)),
    chains: 1,
    writer: 'lambda',
  });
  fieldKey?.fill(0);

  const service = new SecretService({
    store: new SecretsStore(dynamo, settings.tables.secrets),
    envelope: new Envelope(keys),
    authorizer,
    audit,
  });
  const authenticator = buildAuthenticator({
    config: settings.config,
    logger,
    ...(options.fetch ? { fetch: options.fetch } : {}),
  });
  return createApp({
    service,
    authenticator,
    audit,
    logger,
    connection: (c: Context) => connectionFromEvent((c.env as { event?: unknown } | undefined)?.event),
  });
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
