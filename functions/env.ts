import type { ControlSettings } from '../lib/compose.js';
import { type CofferConfig, parseConfig } from '../lib/config-file.js';
import { controlSettings } from '../lib/control/settings.js';
import { ConfigError } from '../lib/errors.js';
import type { KeyCacheSettings } from '../lib/keys/key-cache.js';
import { keySettings } from '../lib/keys/key-settings.js';
import type { TableNames } from '../lib/store/tables.js';

/**
 * The environment contract between the CDK stack (which sets these variables) and the Lambda
 * functions (which read them once, at cold start). Nothing secret is ever passed this way: only
 * names and ARNs.
 */
export const ENV = {
  secretsTable: 'COFFER_SECRETS_TABLE',
  auditTable: 'COFFER_AUDIT_TABLE',
  /** ARN of the key new data keys are wrapped under. */
  secretsKeyArn: 'COFFER_SECRETS_KEY_ARN',
  /** Comma-separated ARNs of keys that wrapped older versions (after moving keys). */
  previousSecretsKeyArns: 'COFFER_PREVIOUS_SECRETS_KEY_ARNS',
  /** ARN of the ECC_NIST_P256 root audit key. */
  auditKeyArn: 'COFFER_AUDIT_KEY_ARN',
  /** ARN of the HMAC key the audit field-hashing key is derived from. */
  fieldHmacKeyArn: 'COFFER_FIELD_HMAC_KEY_ARN',
  /** The Coffer configuration (issuers, claims, group mappings) as JSON. */
  config: 'COFFER_CONFIG_JSON',
  /** The stable installation id values and heads are bound to. Default: the secrets table's name. */
  installationId: 'COFFER_INSTALLATION_ID',
  /** `kms` or `cloudhsm`, for the record only. */
  keyStore: 'COFFER_KEY_STORE',
  /**
   * Id of the mutual-TLS HTTP API (infra/constructs/mtls-api.ts); absent when mTLS is off. Events
   * of that API carry API Gateway's verified client certificate, the caller's only credential.
   */
  mtlsApiId: 'COFFER_MTLS_API_ID',
  /** Comma-separated ARNs the root may move to (`coffer keys rotate --root --kms-key`). */
  rootKeyArns: 'COFFER_ROOT_KEY_ARNS',
  /** Comma-separated Lambda function ARNs a rotation policy may name as its rotator. */
  rotatorLambdaArns: 'COFFER_ROTATOR_LAMBDA_ARNS',
  /** The branch key cache bounds (docs/keys.md): seconds and uses; `0` disables. */
  keyCacheSeconds: 'COFFER_KEY_CACHE_SECONDS',
  keyCacheUses: 'COFFER_KEY_CACHE_USES',
  /** Seconds between re-wrap passes (the scheduled re-wrap function). */
  rewrapEverySeconds: 'COFFER_REWRAP_EVERY_SECONDS',
  /** Seconds ahead of notAfter a certificate counts as expiring (the rotation job's metric). */
  expiryWarningSeconds: 'COFFER_EXPIRY_WARNING_SECONDS',
} as const;

/**
 * The label the audit field-hashing key is derived from (kms:GenerateMac over it with the field
 * key). Changing it changes every future hash, so it is versioned.
 */
export const FIELD_HMAC_LABEL = 'coffer/audit-field-hmac/v1';

/** Namespace of the metrics the checkpoint job publishes (VerificationProblems, CheckpointsWritten…). */
export const AUDIT_METRIC_NAMESPACE = 'Coffer/Audit';

export interface LambdaSettings {
  readonly tables: TableNames;
  readonly secretsKeyArn: string;
  readonly previousSecretsKeyArns: readonly string[];
  readonly auditKeyArn: string;
  readonly fieldHmacKeyArn?: string;
  /** COFFER_INSTALLATION_ID; absent: the secrets table's name. */
  readonly installationId?: string;
  /** COFFER_CONFIG_JSON with the COFFER_OIDC_* overrides; no issuers when it is absent. */
  readonly config: CofferConfig;
  /** COFFER_MTLS_API_ID: the API whose events are authenticated by their client certificate. */
  readonly mtlsApiId?: string;
  /** COFFER_ROOT_KEY_ARNS: the allow-list of root keys. */
  readonly rootKeyArns?: readonly string[];
  /** COFFER_ROTATOR_LAMBDA_ARNS: the allow-list of Lambda rotators. */
  readonly rotatorLambdaArns?: readonly string[];
  /** COFFER_KEY_CACHE_SECONDS / COFFER_KEY_CACHE_USES and COFFER_REWRAP_EVERY_SECONDS. */
  readonly keyCache?: KeyCacheSettings;
  readonly rewrapEverySeconds?: number;
  /** Freshness bounds and approvals of pushed policies and revocations (lib/control/settings.ts). */
  readonly control?: ControlSettings;
  /** COFFER_EXPIRY_WARNING_SECONDS: the window of the CertificatesExpiring metric. */
  readonly expiryWarningSeconds?: number;
}

function required(env: NodeJS.ProcessEnv, name: string): string {
  const value = env[name];
  if (!value) throw new ConfigError(`environment variable ${name} is required`);
  return value;
}

/** Reads the settings of a Coffer function; a missing variable fails the cold start loudly. */
export function lambdaSettings(env: NodeJS.ProcessEnv): LambdaSettings {
  const config = parseConfig(env[ENV.config] ?? '', { source: ENV.config, format: 'json', env });
  const fieldHmacKeyArn = env[ENV.fieldHmacKeyArn];
  const mtlsApiId = env[ENV.mtlsApiId]?.trim();
  return {
    tables: { secrets: required(env, ENV.secretsTable), audit: required(env, ENV.auditTable) },
    secretsKeyArn: required(env, ENV.secretsKeyArn),
    previousSecretsKeyArns: (env[ENV.previousSecretsKeyArns] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    auditKeyArn: required(env, ENV.auditKeyArn),
    ...(fieldHmacKeyArn ? { fieldHmacKeyArn } : {}),
    ...(env[ENV.installationId] ? { installationId: env[ENV.installationId] } : {}),
    config,
    ...(mtlsApiId ? { mtlsApiId } : {}),
    rootKeyArns: (env[ENV.rootKeyArns] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    rotatorLambdaArns: (env[ENV.rotatorLambdaArns] ?? '')
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== ''),
    ...keySettings(env),
    control: controlSettings(env),
    ...expiryWarning(env),
  };
}

function expiryWarning(env: NodeJS.ProcessEnv): { expiryWarningSeconds?: number } {
  const raw = env[ENV.expiryWarningSeconds];
  if (raw === undefined || raw === '') return {};
  const seconds = Number(raw);
  if (!/^[0-9]{1,9}$/.test(raw) || seconds < 3600) {
    throw new ConfigError(
      `environment variable ${ENV.expiryWarningSeconds} must be a whole number of seconds, at least 3600`,
    );
  }
  return { expiryWarningSeconds: seconds };
}
