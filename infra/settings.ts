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
] as const;

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

  return {
    stackName,
    keyStore,
    ...(cloudHsm ? { cloudHsm } : {}),
    logRetention: retention as RetentionDays,
    pitrRecoveryDays: integer(ctx, 'pitrRecoveryDays', 35, 1, 35),
    ...(alarmEmail ? { alarmEmail } : {}),
    apiRateLimit: integer(ctx, 'apiRateLimit', 50, 1, 10_000),
    apiBurstLimit: integer(ctx, 'apiBurstLimit', 100, 1, 5_000),
    checkpointMinutes: integer(ctx, 'checkpointMinutes', 5, 5, 1440),
    previousSecretsKeyArns,
    ...(configPath ? { cofferConfigJson: configJson(configPath, baseDir) } : {}),
  };
}
