import { readFileSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { RetentionDays } from 'aws-cdk-lib/aws-logs';
import { parse as parseYaml } from 'yaml';
import { parseConfig } from '../lib/config-file.js';

/**
 * The deployment's choices, read once from CDK context (`cdk.json` or `-c key=value`) and
 * validated before any construct is made, so a mistake fails `cdk synth` with one clear line.
 * Nothing here is looked up in an AWS account: synthesis works offline.
 */

export type KeyStoreMode = 'kms' | 'cloudhsm';

/**
 * A second custom domain that requires client certificates (mutual TLS), in front of its own HTTP
 * API (docs/mtls.md). Context keys in parentheses.
 */
export interface MtlsSettings {
  /** The custom domain clients with a certificate call, e.g. `coffer-mtls.example.com` (`mtlsDomainName`). */
  readonly domainName: string;
  /** ARN of the ACM certificate for that domain, in the stack's region (`mtlsCertificateArn`). */
  readonly certificateArn: string;
  /**
   * ARN of an ACM-issued public certificate for the same domain, which API Gateway needs when the
   * server certificate is imported or from AWS Private CA (`mtlsOwnershipCertificateArn`).
   * @default - none (an ACM-issued public certificate needs none)
   */
  readonly ownershipCertificateArn?: string;
  /**
   * The CA bundle in an existing bucket (`mtlsTruststore`, `s3://bucket/key`).
   * @default - the stack creates a versioned bucket and the operator uploads `truststore.pem` to it
   */
  readonly truststore?: { readonly bucketName: string; readonly key: string };
  /**
   * The S3 version id of the CA bundle to trust (`mtlsTruststoreVersion`). Pinning it means that a
   * write to the bucket changes nothing until a deployment names the new version.
   * @default - with the stack's bucket: the domain is not created yet (the bundle is not uploaded);
   * with an existing bucket: the version that is current when the domain is created or updated
   */
  readonly truststoreVersion?: string;
}

/** Enforced code signing of every Lambda function in the stack (docs/deploy.md, "Signed code"). */
export interface CodeSigningSettings {
  /**
   * An existing signing profile version to trust instead of one the stack creates
   * (`codeSigningProfileVersionArn`), e.g. a pipeline account's profile.
   * @default - the stack creates an AWS Signer profile for Lambda
   */
  readonly profileVersionArn?: string;
}

/** What a CloudHSM-backed deployment needs (context keys in parentheses). */
export interface CloudHsmSettings {
  /** An existing, ACTIVE cluster with two or more HSMs in different AZs (`cloudHsmClusterId`). */
  readonly clusterId: string;
  /** Name of the Secrets Manager secret holding the kmsuser password (`cloudHsmKmsUserSecret`). */
  readonly kmsUserSecretName: string;
  /** PEM of the cluster's trust anchor, read from the file named by `cloudHsmTrustAnchor`. */
  readonly trustAnchorPem: string;
  /** Name of the KMS custom key store (`cloudHsmKeyStoreName`, default `coffer-<stack name>`). */
  readonly keyStoreName: string;
}

export interface CofferSettings {
  /** CloudFormation stack name (`stackName`, default `Coffer`). */
  readonly stackName: string;
  /** Where the secrets key lives (`keyStore`, default `kms`). */
  readonly keyStore: KeyStoreMode;
  /** Only when `keyStore` is `cloudhsm`. */
  readonly cloudHsm?: CloudHsmSettings;
  /** Retention of every log group, audit copy included (`logRetentionDays`, default 365). */
  readonly logRetention: RetentionDays;
  /**
   * Days of point-in-time recovery of both tables (`pitrRecoveryDays`, 1 to 35, default 35): also
   * how long a destroyed version stays restorable from backups (docs/deploy.md).
   */
  readonly pitrRecoveryDays: number;
  /** Optional address subscribed to the alarm topic (`alarmEmail`). */
  readonly alarmEmail?: string;
  /** Steady-state requests per second for the whole API (`apiRateLimit`, default 50). */
  readonly apiRateLimit: number;
  /** Burst of requests for the whole API (`apiBurstLimit`, default 100). */
  readonly apiBurstLimit: number;
  /**
   * Minutes between audit checkpoints (`checkpointMinutes`, default 5): also the longest time a
   * record's deletion from the end of a chain can go unnoticed (docs/audit.md, Limits).
   */
  readonly checkpointMinutes: number;
  /**
   * ARNs of keys that wrapped older versions and must still unwrap them, after the secrets key
   * changed (for example moving from `kms` to `cloudhsm`): `previousSecretsKeyArns`, comma-separated.
   */
  readonly previousSecretsKeyArns: readonly string[];
  /**
   * The Coffer configuration (issuers, claims, group mappings) as JSON, from the file named by
   * `cofferConfig` (JSON or YAML). Absent: no OIDC issuer, so only IAM callers get in.
   */
  readonly cofferConfigJson?: string;
  /**
   * A `coffer policy push` or `rollback` applies only once a second admin approves it
   * (`policyApproval=required`; default `none`). Sets COFFER_POLICY_APPROVAL on the API function.
   */
  readonly policyApproval: boolean;
  /** The mutual TLS domain, when `mtlsDomainName` is set. @default - none */
  readonly mtls?: MtlsSettings;
  /** Enforced signed code, when `codeSigning` is `true`. @default - off */
  readonly codeSigning?: CodeSigningSettings;
  /**
   * The stable installation id values and heads are bound to (AAD, KMS encryption context, head
   * MACs): `installationId`. Set it once and keep it; after a restore into a new table it is what
   * keeps the old data readable. @default - the secrets table's name (what every installation
   * from before this setting is bound to)
   */
  readonly installationId?: string;
  /**
   * An existing secrets table the stack uses instead of its own (`secretsTableName`): the table a
   * point-in-time restore made (docs/operations.md). Requires `installationId`, the original
   * installation's id, which is what the restored data is bound to. @default - the stack's table
   */
  readonly secretsTableName?: string;
  /**
   * KMS key ARNs the root may move to with `coffer keys rotate --root --kms-key` (`rootKeyArns`,
   * comma-separated; all in one account, the stack's). The functions are granted branch-key use of
   * each. @default - none: only the secrets key (and RotateKeyOnDemand of it)
   */
  readonly rootKeyArns: readonly string[];
  /**
   * Lambda functions a rotation policy may name as its external rotator (`rotatorLambdaArns`,
   * comma-separated function ARNs; docs/rotation.md). The API and rotation functions may invoke
   * these and no other. @default - none: no Lambda rotator can be named
   */
  readonly rotatorLambdaArns: readonly string[];
  /** Branch key cache age in seconds (`keyCacheSeconds`, default 300; 0 disables). */
  readonly keyCacheSeconds: number;
  /** Branch key cache uses (`keyCacheUses`, default 100000; 0 disables). */
  readonly keyCacheUses: number;
  /** Days between re-wrap passes (`rewrapSchedule`, default 7). */
  readonly rewrapScheduleDays: number;
  /**
   * Days ahead of notAfter a certificate counts as expiring in the rotation job's
   * CertificatesExpiring metric and alarm (`expiryWarningDays`, 1 to 365, default 30).
   */
  readonly expiryWarningDays: number;
}

export class SettingsError extends Error {}

type Context = (key: string) => unknown;

function text(ctx: Context, key: string): string | undefined {
  const v = ctx(key);
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string' && typeof v !== 'number' && typeof v !== 'boolean') {
    throw new SettingsError(`context ${key} must be a string`);
  }
  return String(v);
}

function integer(ctx: Context, key: string, fallback: number, min: number, max: number): number {
  const raw = text(ctx, key);
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max) {
    throw new SettingsError(`context ${key} must be a whole number from ${min} to ${max}, got "${raw}"`);
  }
  return n;
}

const RETENTIONS = new Set<number>(
  Object.values(RetentionDays).filter((v): v is number => typeof v === 'number'),
);

function readFile(path: string, baseDir: string, key: string): string {
  const full = isAbsolute(path) ? path : resolve(baseDir, path);
  try {
    return readFileSync(full, 'utf8');
  } catch {
    throw new SettingsError(`context ${key}: cannot read ${full}`);
  }
}

/**
 * Reads the Coffer configuration file and checks it with the app's own parser (so a mistake fails
 * `cdk synth`, not the first request), then hands it to the function as JSON.
 */
function configJson(path: string, baseDir: string): string {
  const raw = readFile(path, baseDir, 'cofferConfig');
  const format = /\.json$/i.test(path) ? 'json' : 'yaml';
  try {
    parseConfig(raw, { source: path, format, env: {} });
  } catch (err) {
    throw new SettingsError(`context cofferConfig: ${err instanceof Error ? err.message : 'invalid'}`);
  }
  const json = JSON.stringify(format === 'json' ? JSON.parse(raw) : parseYaml(raw));
  // Lambda environment variables share a 4 KiB budget with the table names and key ARNs.
  if (Buffer.byteLength(json) > 3000) {
    throw new SettingsError('context cofferConfig: the configuration must be under 3000 bytes as JSON');
  }
  return json;
}

/** Every context key Coffer reads (docs/deploy.md, "Context flags"). */
export const SETTING_KEYS = [
  'stackName',
  'keyStore',
  'cloudHsmClusterId',
  'cloudHsmKmsUserSecret',
  'cloudHsmTrustAnchor',
  'cloudHsmKeyStoreName',
  'logRetentionDays',
  'pitrRecoveryDays',
  'alarmEmail',
  'apiRateLimit',
  'apiBurstLimit',
  'checkpointMinutes',
  'previousSecretsKeyArns',
  'cofferConfig',
  'mtlsDomainName',
  'mtlsCertificateArn',
  'mtlsOwnershipCertificateArn',
  'mtlsTruststore',
  'mtlsTruststoreVersion',
  'codeSigning',
  'codeSigningProfileVersionArn',
  'installationId',
  'secretsTableName',
  'rootKeyArns',
  'rotatorLambdaArns',
  'keyCacheSeconds',
  'keyCacheUses',
  'rewrapSchedule',
  'policyApproval',
  'expiryWarningDays',
] as const;

/** A Lambda function ARN, unqualified or with a version or alias: what a rotator allow-list holds. */
const LAMBDA_FUNCTION_ARN =
  /^arn:aws[a-z-]*:lambda:[a-z0-9-]+:\d{12}:function:[A-Za-z0-9_-]{1,64}(:[A-Za-z0-9$_-]{1,128})?$/;

/**
 * Refuses a context key that is one of Coffer's spelled with other capitals (`-c keystore=cloudhsm`
 * would otherwise be ignored, and deploy a standard KMS key without a word).
 */
export function checkContextKeys(keys: Iterable<string>): void {
  const known = new Map(SETTING_KEYS.map((k) => [k.toLowerCase(), k]));
  for (const key of keys) {
    const meant = known.get(key.toLowerCase());
    if (meant !== undefined && meant !== key) {
      throw new SettingsError(`context ${key.slice(0, 64)} is not a Coffer setting; did you mean ${meant}?`);
    }
  }
}

function flag(ctx: Context, key: string): boolean {
  const raw = text(ctx, key);
  if (raw === undefined || raw === 'false') return false;
  if (raw === 'true') return true;
  throw new SettingsError(`context ${key} must be true or false, got "${raw.slice(0, 40)}"`);
}

const ACM_ARN = /^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate\/[A-Za-z0-9-]{1,128}$/;
// Lowercase host names of two or more labels; no wildcard (a client names one host).
const DOMAIN = /^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]{0,61}[a-z0-9]$/;
// S3 bucket naming rules, then the object key.
const S3_URI = /^s3:\/\/([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\/([^\s]{1,1024})$/;

const MTLS_KEYS = [
  'mtlsCertificateArn',
  'mtlsOwnershipCertificateArn',
  'mtlsTruststore',
  'mtlsTruststoreVersion',
] as const;

function readMtls(ctx: Context): MtlsSettings | undefined {
  const domainName = text(ctx, 'mtlsDomainName');
  if (domainName === undefined) {
    for (const key of MTLS_KEYS) {
      if (text(ctx, key) !== undefined) {
        throw new SettingsError(`context ${key} is only used with mtlsDomainName`);
      }
    }
    return undefined;
  }
  if (!DOMAIN.test(domainName)) {
    throw new SettingsError(
      `context mtlsDomainName must be a lowercase host name like coffer-mtls.example.com, got "${domainName.slice(0, 80)}"`,
    );
  }
  const certificateArn = text(ctx, 'mtlsCertificateArn');
  if (!certificateArn) {
    throw new SettingsError(
      'mtlsDomainName needs context mtlsCertificateArn: the ARN of the ACM certificate for that domain',
    );
  }
  const ownershipCertificateArn = text(ctx, 'mtlsOwnershipCertificateArn');
  for (const [key, arn] of [
    ['mtlsCertificateArn', certificateArn],
    ['mtlsOwnershipCertificateArn', ownershipCertificateArn],
  ] as const) {
    if (arn !== undefined && !ACM_ARN.test(arn)) {
      throw new SettingsError(
        `context ${key} must be an ACM certificate ARN (arn:aws:acm:<region>:<account>:certificate/<id>), got "${arn.slice(0, 120)}"`,
      );
    }
  }
  const uri = text(ctx, 'mtlsTruststore');
  let truststore: MtlsSettings['truststore'];
  if (uri !== undefined) {
    const m = S3_URI.exec(uri);
    if (!m?.[1] || !m[2]) {
      throw new SettingsError(
        `context mtlsTruststore must be s3://<bucket>/<key> of the CA bundle, got "${uri.slice(0, 120)}"`,
      );
    }
    truststore = { bucketName: m[1], key: m[2] };
  }
  const truststoreVersion = text(ctx, 'mtlsTruststoreVersion');
  if (truststoreVersion !== undefined && !/^[A-Za-z0-9._+/=-]{1,1024}$/.test(truststoreVersion)) {
    throw new SettingsError('context mtlsTruststoreVersion must be an S3 object version id (VersionId)');
  }
  return {
    domainName,
    certificateArn,
    ...(ownershipCertificateArn ? { ownershipCertificateArn } : {}),
    ...(truststore ? { truststore } : {}),
    ...(truststoreVersion ? { truststoreVersion } : {}),
  };
}

const SIGNING_PROFILE_VERSION_ARN =
  /^arn:aws[a-z-]*:signer:[a-z0-9-]+:\d{12}:\/signing-profiles\/[A-Za-z0-9_]{2,64}\/[A-Za-z0-9]{1,64}$/;

function readCodeSigning(ctx: Context): CodeSigningSettings | undefined {
  const profileVersionArn = text(ctx, 'codeSigningProfileVersionArn');
  if (!flag(ctx, 'codeSigning')) {
    if (profileVersionArn !== undefined) {
      throw new SettingsError('context codeSigningProfileVersionArn is only used with codeSigning=true');
    }
    return undefined;
  }
  if (profileVersionArn !== undefined && !SIGNING_PROFILE_VERSION_ARN.test(profileVersionArn)) {
    throw new SettingsError(
      `context codeSigningProfileVersionArn must be a signing profile version ARN (arn:aws:signer:<region>:<account>:/signing-profiles/<name>/<version>), got "${profileVersionArn.slice(0, 120)}"`,
    );
  }
  return profileVersionArn ? { profileVersionArn } : {};
}

/**
 * Reads and checks the settings. `baseDir` resolves relative file paths (the directory `cdk` runs
 * in, where cdk.json is).
 */
export function readSettings(ctx: Context, baseDir = process.cwd()): CofferSettings {
  const stackName = text(ctx, 'stackName') ?? 'Coffer';
  if (!/^[A-Za-z][A-Za-z0-9-]{0,127}$/.test(stackName)) {
    throw new SettingsError('context stackName must be a CloudFormation stack name');
  }
  const keyStore = text(ctx, 'keyStore') ?? 'kms';
  if (keyStore !== 'kms' && keyStore !== 'cloudhsm') {
    throw new SettingsError(`context keyStore must be "kms" or "cloudhsm", got "${keyStore}"`);
  }

  let cloudHsm: CloudHsmSettings | undefined;
  if (keyStore === 'cloudhsm') {
    const clusterId = text(ctx, 'cloudHsmClusterId');
    const secret = text(ctx, 'cloudHsmKmsUserSecret');
    const anchor = text(ctx, 'cloudHsmTrustAnchor');
    if (!clusterId) {
      throw new SettingsError(
        'keyStore=cloudhsm needs context cloudHsmClusterId: the id of an existing CloudHSM cluster (cluster-…)',
      );
    }
    // CloudHSM's own pattern for cluster ids (`aws cloudhsmv2 describe-clusters` shows them).
    if (!/^cluster-[2-7a-zA-Z]{11,16}$/.test(clusterId)) {
      throw new SettingsError(
        `context cloudHsmClusterId must be a CloudHSM cluster id like cluster-jxhlf7644ne, got "${clusterId.slice(0, 40)}"`,
      );
    }
    if (!secret) {
      throw new SettingsError(
        'keyStore=cloudhsm needs context cloudHsmKmsUserSecret: the name of the Secrets Manager secret holding the kmsuser password',
      );
    }
    // A name, not an ARN: the grant is built from the name (`secret:<name>-??????`).
    if (!/^[A-Za-z0-9/_+=.@-]{1,512}$/.test(secret)) {
      throw new SettingsError(
        'context cloudHsmKmsUserSecret must be the name of a Secrets Manager secret (not its ARN, not the password)',
      );
    }
    if (!anchor) {
      throw new SettingsError(
        'keyStore=cloudhsm needs context cloudHsmTrustAnchor: the path of the trust anchor certificate (customerCA.crt)',
      );
    }
    const trustAnchorPem = readFile(anchor, baseDir, 'cloudHsmTrustAnchor');
    if (!/-----BEGIN CERTIFICATE-----/.test(trustAnchorPem)) {
      throw new SettingsError(`context cloudHsmTrustAnchor: ${anchor} is not a PEM certificate`);
    }
    const keyStoreName = text(ctx, 'cloudHsmKeyStoreName') ?? `coffer-${stackName}`;
    if (!/^[A-Za-z0-9:/_-]{1,256}$/.test(keyStoreName)) {
      throw new SettingsError('context cloudHsmKeyStoreName has characters KMS does not allow');
    }
    cloudHsm = { clusterId, kmsUserSecretName: secret, trustAnchorPem, keyStoreName };
  } else {
    for (const key of ['cloudHsmClusterId', 'cloudHsmKmsUserSecret', 'cloudHsmTrustAnchor']) {
      if (text(ctx, key) !== undefined) {
        throw new SettingsError(`context ${key} is only used with keyStore=cloudhsm`);
      }
    }
  }

  const retention = integer(ctx, 'logRetentionDays', RetentionDays.ONE_YEAR, 1, 3653);
  if (!RETENTIONS.has(retention)) {
    throw new SettingsError(
      `context logRetentionDays must be one of CloudWatch's values (${[...RETENTIONS].filter((d) => d > 0 && d <= 3653).join(', ')})`,
    );
  }
  const alarmEmail = text(ctx, 'alarmEmail');
  if (alarmEmail !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(alarmEmail)) {
    throw new SettingsError('context alarmEmail must be an email address');
  }
  const configPath = text(ctx, 'cofferConfig');
  const previousSecretsKeyArns = (text(ctx, 'previousSecretsKeyArns') ?? '')
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  for (const arn of previousSecretsKeyArns) {
    if (!/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(arn)) {
      throw new SettingsError(`context previousSecretsKeyArns: "${arn.slice(0, 120)}" is not a KMS key ARN`);
    }
  }

  const rootKeyArns = (text(ctx, 'rootKeyArns') ?? '')
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  for (const arn of rootKeyArns) {
    if (!/^arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:key\/[A-Za-z0-9-]+$/.test(arn)) {
      throw new SettingsError(`context rootKeyArns: "${arn.slice(0, 120)}" is not a KMS key ARN`);
    }
  }
  // The stack's own account: the functions refuse, at start, any root key outside the secrets key's.
  if (new Set(rootKeyArns.map((a) => a.split(':')[4])).size > 1) {
    throw new SettingsError("context rootKeyArns: every root key must be in the stack's account");
  }

  const rotatorLambdaArns = (text(ctx, 'rotatorLambdaArns') ?? '')
    .split(',')
    .map((a) => a.trim())
    .filter((a) => a !== '');
  for (const arn of rotatorLambdaArns) {
    if (!LAMBDA_FUNCTION_ARN.test(arn)) {
      throw new SettingsError(
        `context rotatorLambdaArns: "${arn.slice(0, 120)}" is not a Lambda function ARN`,
      );
    }
  }

  const mtls = readMtls(ctx);
  const codeSigning = readCodeSigning(ctx);
  const installationId = text(ctx, 'installationId');
  if (installationId !== undefined && !/^[A-Za-z0-9_.-]{3,255}$/.test(installationId)) {
    throw new SettingsError('context installationId must be 3 to 255 of A-Z a-z 0-9 _ . -');
  }
  const secretsTableName = text(ctx, 'secretsTableName');
  if (secretsTableName !== undefined && !/^[A-Za-z0-9_.-]{3,255}$/.test(secretsTableName)) {
    throw new SettingsError(
      'context secretsTableName must be a DynamoDB table name (3 to 255 of A-Z a-z 0-9 _ . -)',
    );
  }
  // Without it the id would default to the restored table's name, and nothing in it would read.
  if (secretsTableName !== undefined && installationId === undefined) {
    throw new SettingsError(
      "context secretsTableName needs installationId: the original installation's id (its first secrets table's name)",
    );
  }

  const approval = text(ctx, 'policyApproval') ?? 'none';
  if (approval !== 'required' && approval !== 'none') {
    throw new SettingsError('context policyApproval must be "required" or "none"');
  }

  return {
    stackName,
    keyStore,
    policyApproval: approval === 'required',
    ...(cloudHsm ? { cloudHsm } : {}),
    logRetention: retention as RetentionDays,
    pitrRecoveryDays: integer(ctx, 'pitrRecoveryDays', 35, 1, 35),
    ...(alarmEmail ? { alarmEmail } : {}),
    apiRateLimit: integer(ctx, 'apiRateLimit', 50, 1, 10_000),
    apiBurstLimit: integer(ctx, 'apiBurstLimit', 100, 1, 5_000),
    checkpointMinutes: integer(ctx, 'checkpointMinutes', 5, 5, 1440),
    previousSecretsKeyArns,
    ...(configPath ? { cofferConfigJson: configJson(configPath, baseDir) } : {}),
    ...(mtls ? { mtls } : {}),
    ...(codeSigning ? { codeSigning } : {}),
    ...(installationId ? { installationId } : {}),
    ...(secretsTableName ? { secretsTableName } : {}),
    rootKeyArns,
    rotatorLambdaArns,
    keyCacheSeconds: integer(ctx, 'keyCacheSeconds', 300, 0, 86_400),
    keyCacheUses: integer(ctx, 'keyCacheUses', 100_000, 0, 1_000_000_000),
    rewrapScheduleDays: integer(ctx, 'rewrapSchedule', 7, 1, 365),
    expiryWarningDays: integer(ctx, 'expiryWarningDays', 30, 1, 365),
  };
}
