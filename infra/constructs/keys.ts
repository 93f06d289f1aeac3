import { Duration, RemovalPolicy } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as kms from 'aws-cdk-lib/aws-kms';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import type { CloudHsmSettings, KeyStoreMode } from '../settings.js';
import { CloudHsmKeyStore } from './cloudhsm-key-store.js';

/** The keys of the encryption context Coffer sends with every data key (lib/crypto/envelope.ts). */
export const ENCRYPTION_CONTEXT_KEYS = ['coffer:table', 'coffer:path', 'coffer:version'] as const;
/** The encryption context keys of branch keys (and of a new root's test wrap). */
export const BRANCH_CONTEXT_KEYS = [
  'coffer:table',
  'coffer:purpose',
  'coffer:folder',
  'coffer:branch-version',
] as const;

/**
 * The encryption context shape Coffer sends (lib/crypto/envelope.ts `encryptionContextFor`),
 * exactly: this deployment's table, every one of Coffer's keys present (`Null: false`), and no
 * other key (`ForAllValues`, which on its own would also pass a request with fewer keys).
 */
export function contextConditions(secretsTableName: string): Record<string, Record<string, unknown>> {
  return {
    StringEquals: { 'kms:EncryptionContext:coffer:table': secretsTableName },
    'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...ENCRYPTION_CONTEXT_KEYS] },
    Null: Object.fromEntries(ENCRYPTION_CONTEXT_KEYS.map((k) => [`kms:EncryptionContext:${k}`, 'false'])),
  };
}

export interface CofferKeysProps {
  /** `kms`: a standard symmetric KMS key with yearly rotation. `cloudhsm`: a key in a custom key store. */
  readonly keyStore: KeyStoreMode;
  /** Required when `keyStore` is `cloudhsm`. */
  readonly cloudHsm?: CloudHsmSettings;
  /** Used in aliases, so two Coffer stacks in one account and region keep their keys apart. */
  readonly aliasPrefix: string;
  /** Retention of the custom resource's log groups (CloudHSM mode). */
  readonly logRetention: logs.RetentionDays;
}

/**
 * Coffer's KMS keys, all retained when the stack is deleted:
 * - the secrets key (symmetric), which wraps every data key: a standard KMS key with automatic
 *   rotation, or a key in a CloudHSM custom key store;
 * - the audit root key (ECC_NIST_P256, SIGN_VERIFY), which certifies writer keys and signs
 *   checkpoints (custom key stores hold symmetric keys only, so it is always a standard key);
 * - the audit field key (HMAC_256), from which the API derives the key that hashes sensitive
 *   request fields (query strings) in audit records.
 *
 * Grants carry conditions wherever KMS supports them: the secrets key only with Coffer's
 * encryption context shape and this deployment's table, the audit key only for ECDSA_SHA_256 over
 * digests, the field key only for HMAC_SHA_256.
 */
export class CofferKeys extends Construct {
  /** ARN of the key that wraps data keys (pinned in the API's configuration). */
  readonly secretsKeyArn: string;
  /** The standard KMS secrets key (kms mode only). */
  readonly secretsKey?: kms.Key;
  /** The CloudHSM key store construct (cloudhsm mode only). */
  readonly cloudHsmKeyStore?: CloudHsmKeyStore;
  readonly auditKey: kms.Key;
  readonly fieldHmacKey: kms.Key;

  constructor(scope: Construct, id: string, props: CofferKeysProps) {
    super(scope, id);

    if (props.keyStore === 'cloudhsm') {
      if (!props.cloudHsm) throw new Error('keyStore cloudhsm needs the CloudHSM settings');
      this.cloudHsmKeyStore = new CloudHsmKeyStore(this, 'CloudHsm', {
        clusterId: props.cloudHsm.clusterId,
        kmsUserSecretName: props.cloudHsm.kmsUserSecretName,
        trustAnchorPem: props.cloudHsm.trustAnchorPem,
        keyStoreName: props.cloudHsm.keyStoreName,
        keyAlias: `alias/${props.aliasPrefix}/secrets`,
        logRetention: props.logRetention,
      });
      this.secretsKeyArn = this.cloudHsmKeyStore.keyArn;
    } else {
      this.secretsKey = new kms.Key(this, 'SecretsKey', {
        description: 'Coffer: wraps the data keys of stored secrets',
        enableKeyRotation: true,
        alias: `${props.aliasPrefix}/secrets`,
        pendingWindow: Duration.days(30),
        removalPolicy: RemovalPolicy.RETAIN,
      });
      this.secretsKeyArn = this.secretsKey.keyArn;
    }

    this.auditKey = new kms.Key(this, 'AuditKey', {
      description: 'Coffer: root audit key (certifies writer keys, signs checkpoints)',
      keySpec: kms.KeySpec.ECC_NIST_P256,
      keyUsage: kms.KeyUsage.SIGN_VERIFY,
      alias: `${props.aliasPrefix}/audit`,
      pendingWindow: Duration.days(30),
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.fieldHmacKey = new kms.Key(this, 'FieldHmacKey', {
      description: 'Coffer: derives the key that hashes sensitive request fields in audit records',
      keySpec: kms.KeySpec.HMAC_256,
      keyUsage: kms.KeyUsage.GENERATE_VERIFY_MAC,
      alias: `${props.aliasPrefix}/audit-fields`,
      pendingWindow: Duration.days(30),
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }

  /**
   * Lets `grantee` make, unwrap and re-wrap data keys, only with Coffer's encryption context keys
   * and only for `secretsTableName` (a role of another deployment, or a request naming another
   * table, is refused by KMS itself).
   */
  grantDataKeys(grantee: iam.IGrantable, secretsTableName: string): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo'],
        resources: [this.secretsKeyArn],
        conditions: contextConditions(secretsTableName),
      }),
    );
  }

  /**
   * Lets `grantee` make, unwrap and re-wrap branch keys (docs/keys.md) under the root keys: the
   * secrets key and the allow-listed `rootKeyArns`. Scoped like data keys, by installation id and
   * by purpose: a branch key's context is `coffer:table`, `coffer:purpose` = `branch-key`,
   * `coffer:folder` and `coffer:branch-version`; a new root's test wrap uses `root-key-test`.
   * Also RotateKeyOnDemand on the secrets key (`coffer keys rotate --root` without a new key).
   */
  grantBranchKeys(grantee: iam.IGrantable, rootKeyArns: readonly string[], secretsTableName: string): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateDataKey', 'kms:Decrypt', 'kms:ReEncryptFrom', 'kms:ReEncryptTo'],
        resources: [this.secretsKeyArn, ...rootKeyArns],
        conditions: {
          StringEquals: {
            'kms:EncryptionContext:coffer:table': secretsTableName,
            'kms:EncryptionContext:coffer:purpose': ['branch-key', 'root-key-test'],
          },
          'ForAllValues:StringEquals': { 'kms:EncryptionContextKeys': [...BRANCH_CONTEXT_KEYS] },
          // Exactly the four keys: a context with fewer is refused too.
          Null: Object.fromEntries(BRANCH_CONTEXT_KEYS.map((k) => [`kms:EncryptionContext:${k}`, 'false'])),
        },
      }),
    );
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['kms:RotateKeyOnDemand'], resources: [this.secretsKeyArn] }),
    );
  }

  /**
   * Lets `grantee` unwrap (and re-wrap away from) data keys of older keys, with the same
   * conditions as grantDataKeys. Never GenerateDataKey: new versions use the current key only.
   */
  grantPreviousDataKeys(grantee: iam.IGrantable, keyArns: readonly string[], secretsTableName: string): void {
    if (keyArns.length === 0) return;
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:Decrypt', 'kms:ReEncryptFrom'],
        resources: [...keyArns],
        conditions: contextConditions(secretsTableName),
      }),
    );
  }

  /** Lets `grantee` sign digests with the audit key (ECDSA_SHA_256 only) and read its public key. */
  grantAuditSigning(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:Sign'],
        resources: [this.auditKey.keyArn],
        conditions: {
          StringEquals: { 'kms:SigningAlgorithm': 'ECDSA_SHA_256', 'kms:MessageType': 'DIGEST' },
        },
      }),
    );
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['kms:GetPublicKey'], resources: [this.auditKey.keyArn] }),
    );
  }

  /** Lets `grantee` derive the audit field-hashing key (HMAC_SHA_256 only). */
  grantFieldHmac(grantee: iam.IGrantable): void {
    grantee.grantPrincipal.addToPrincipalPolicy(
      new iam.PolicyStatement({
        actions: ['kms:GenerateMac'],
        resources: [this.fieldHmacKey.keyArn],
        conditions: { StringEquals: { 'kms:MacAlgorithm': 'HMAC_SHA_256' } },
      }),
    );
  }
}
