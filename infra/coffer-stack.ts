import { CfnOutput, Duration, Stack, type StackProps, Validations } from 'aws-cdk-lib';
import type * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import * as iam from 'aws-cdk-lib/aws-iam';
import * as s3 from 'aws-cdk-lib/aws-s3';
import type { Construct } from 'constructs';
import { AUDIT_METRIC_NAMESPACE, ENV } from '../functions/env.js';
import { CONTROL_ENV } from '../lib/control/settings.js';
import { LIFECYCLE_METRIC_NAMESPACE } from '../lib/secrets/lifecycle.js';
import { AlarmTopic } from './constructs/alarm-topic.js';
import { BranchKeyEvents } from './constructs/branch-key-events.js';
import { CofferCodeSigning } from './constructs/code-signing.js';
import { CofferFunction } from './constructs/coffer-function.js';
import { CofferHttpApi } from './constructs/http-api.js';
import { CofferKeys } from './constructs/keys.js';
import { KmsKeyEvents } from './constructs/kms-key-events.js';
import { CofferMonitoring } from './constructs/monitoring.js';
import { CofferMtlsApi, MTLS_API_ID_ENV, type MtlsTruststore } from './constructs/mtls-api.js';
import { ScheduledJob } from './constructs/scheduled-job.js';
import { CofferTables } from './constructs/tables.js';
import { TRUSTSTORE_KEY, TruststoreBucket } from './constructs/truststore-bucket.js';
import type { CofferSettings } from './settings.js';

/** Item actions the secrets store uses (lib/store/secrets-store.ts). No Scan: nothing scans. */
export const SECRETS_TABLE_ACTIONS = [
  'dynamodb:GetItem',
  // A read takes the head and its current item in one call; batch-get takes all of them.
  'dynamodb:BatchGetItem',
  'dynamodb:Query',
  'dynamodb:PutItem',
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:ConditionCheckItem',
] as const;

/** What an audit writer may do: append (conditional puts) and read its chains back. */
export const AUDIT_TABLE_ACTIONS = [
  'dynamodb:GetItem',
  'dynamodb:Query',
  'dynamodb:PutItem',
  'dynamodb:ConditionCheckItem',
] as const;

/**
 * Never allowed on the audit table, and denied explicitly so that no later grant can add them:
 * records are appended, never edited or removed (BatchWriteItem and PartiQL could delete too).
 */
export const AUDIT_TABLE_DENIED = [
  'dynamodb:UpdateItem',
  'dynamodb:DeleteItem',
  'dynamodb:BatchWriteItem',
  'dynamodb:PartiQLUpdate',
  'dynamodb:PartiQLDelete',
  'dynamodb:DeleteTable',
  'dynamodb:UpdateTable',
] as const;

export interface CofferStackProps extends StackProps {
  readonly settings: CofferSettings;
}

function allowTable(role: iam.IRole, table: dynamodb.ITable, actions: readonly string[]): void {
  role.addToPrincipalPolicy(new iam.PolicyStatement({ actions: [...actions], resources: [table.tableArn] }));
}

function appendOnly(role: iam.IRole, audit: dynamodb.ITable): void {
  allowTable(role, audit, AUDIT_TABLE_ACTIONS);
  role.addToPrincipalPolicy(
    new iam.PolicyStatement({
      effect: iam.Effect.DENY,
      actions: [...AUDIT_TABLE_DENIED],
      resources: [audit.tableArn],
    }),
  );
}

/**
 * Coffer in one stack: tables, keys, the API function behind an HTTP API, the scheduled audit
 * checkpoint and purge, and monitoring. Environment-agnostic (no account or region lookups), so it
 * synthesizes offline; `cdk deploy` picks the account and region from the credentials in use.
 */
export class CofferStack extends Stack {
  readonly tables: CofferTables;
  readonly keys: CofferKeys;
  readonly api: CofferHttpApi;
  readonly apiFunction: CofferFunction;
  readonly checkpoint: ScheduledJob;
  readonly purge: ScheduledJob;
  readonly rotation: ScheduledJob;
  readonly rewrap: ScheduledJob;
  readonly monitoring: CofferMonitoring;
  /** With `mtlsDomainName` and no `mtlsTruststore`: the bucket the CA bundle is uploaded to. */
  readonly truststore?: TruststoreBucket;
  /** With `mtlsDomainName`, once the truststore is known: the API behind the mutual TLS domain. */
  readonly mtlsApi?: CofferMtlsApi;
  /** With `codeSigning=true`: the signing profile and the enforced code signing config. */
  readonly codeSigning?: CofferCodeSigning;

  constructor(scope: Construct, id: string, props: CofferStackProps) {
    super(scope, id, props);
    const s = props.settings;

    this.tables = new CofferTables(this, 'Tables', {
      recoveryPeriodDays: s.pitrRecoveryDays,
      ...(s.secretsTableName ? { secretsTableName: s.secretsTableName } : {}),
    });
    this.keys = new CofferKeys(this, 'Keys', {
      keyStore: s.keyStore,
      ...(s.cloudHsm ? { cloudHsm: s.cloudHsm } : {}),
      aliasPrefix: `coffer/${s.stackName}`,
      logRetention: s.logRetention,
    });
    const alarms = new AlarmTopic(this, 'Alarms', s.alarmEmail ? { email: s.alarmEmail } : {});

    // Values are bound to this id, not to the physical table: a restored table keeps reading.
    const installationId = s.installationId ?? this.tables.secrets.tableName;
    const common: Record<string, string> = {
      [ENV.installationId]: installationId,
      [ENV.secretsTable]: this.tables.secrets.tableName,
      [ENV.auditTable]: this.tables.audit.tableName,
      [ENV.secretsKeyArn]: this.keys.secretsKeyArn,
      [ENV.auditKeyArn]: this.keys.auditKey.keyArn,
      [ENV.keyStore]: s.keyStore,
      ...(s.previousSecretsKeyArns.length > 0
        ? { [ENV.previousSecretsKeyArns]: s.previousSecretsKeyArns.join(',') }
        : {}),
      ...(s.rootKeyArns.length > 0 ? { [ENV.rootKeyArns]: s.rootKeyArns.join(',') } : {}),
      ...(s.rotatorLambdaArns.length > 0 ? { [ENV.rotatorLambdaArns]: s.rotatorLambdaArns.join(',') } : {}),
      [ENV.keyCacheSeconds]: String(s.keyCacheSeconds),
      [ENV.keyCacheUses]: String(s.keyCacheUses),
    };

    this.apiFunction = new CofferFunction(this, 'ApiFunction', {
      entry: 'functions/api.ts',
      description: 'Coffer API (the Hono app behind the HTTP API)',
      environment: {
        ...common,
        [ENV.fieldHmacKeyArn]: this.keys.fieldHmacKey.keyArn,
        ...(s.cofferConfigJson ? { [ENV.config]: s.cofferConfigJson } : {}),
        ...(s.policyApproval ? { [CONTROL_ENV.approval]: 'required' } : {}),
      },
      timeout: Duration.seconds(15),
      logRetention: s.logRetention,
      shipsPolicies: true,
    });
    const apiRole = this.apiFunction.role;
    allowTable(apiRole, this.tables.secrets, SECRETS_TABLE_ACTIONS);
    appendOnly(apiRole, this.tables.audit);
    this.keys.grantDataKeys(apiRole, installationId);
    this.keys.grantPreviousDataKeys(apiRole, s.previousSecretsKeyArns, installationId);
    this.keys.grantBranchKeys(apiRole, s.rootKeyArns, installationId);
    // Key administration only: `coffer keys rewrap` slices and `coffer keys retire`'s rescan of
    // the versions that still use a key. No request path scans (list is a Query).
    apiRole.addToPrincipalPolicy(
      new iam.PolicyStatement({ actions: ['dynamodb:Scan'], resources: [this.tables.secrets.tableArn] }),
    );
    this.keys.grantAuditSigning(apiRole);
    this.keys.grantFieldHmac(apiRole);

    this.api = new CofferHttpApi(this, 'Http', {
      handler: this.apiFunction.function,
      rateLimit: s.apiRateLimit,
      burstLimit: s.apiBurstLimit,
      logRetention: s.logRetention,
    });

    if (s.mtls) {
      const m = s.mtls;
      let truststore: MtlsTruststore | undefined;
      if (m.truststore) {
        const bucket = s3.Bucket.fromBucketName(this, 'ExistingTruststore', m.truststore.bucketName);
        truststore = {
          bucket,
          key: m.truststore.key,
          ...(m.truststoreVersion ? { version: m.truststoreVersion } : {}),
        };
      } else {
        this.truststore = new TruststoreBucket(this, 'Truststore', { accessLogDays: s.logRetention });
        // API Gateway refuses to create the domain without the bundle, which cannot be uploaded to
        // a bucket that does not exist yet: the first deployment makes the bucket, the next one
        // (with the uploaded version) the domain.
        if (m.truststoreVersion) {
          truststore = { bucket: this.truststore.bucket, key: TRUSTSTORE_KEY, version: m.truststoreVersion };
        }
      }
      if (truststore) {
        this.mtlsApi = new CofferMtlsApi(this, 'Mtls', {
          handler: this.apiFunction.function,
          domainName: m.domainName,
          certificateArn: m.certificateArn,
          ...(m.ownershipCertificateArn ? { ownershipCertificateArn: m.ownershipCertificateArn } : {}),
          truststore,
          rateLimit: s.apiRateLimit,
          burstLimit: s.apiBurstLimit,
          logRetention: s.logRetention,
        });
        // The function trusts a client certificate only on events of this API (docs/mtls.md).
        this.apiFunction.function.addEnvironment(MTLS_API_ID_ENV, this.mtlsApi.api.apiId);
      }
    }

    this.checkpoint = new ScheduledJob(this, 'Checkpoint', {
      entry: 'functions/checkpoint.ts',
      description: 'Coffer: writes the signed audit checkpoint and verifies the chains since the last one',
      every: Duration.minutes(s.checkpointMinutes),
      // The field HMAC key derives the storage MAC key: the checkpoint signs the control records'
      // verified generations and runs the one-time legacy-head migration.
      environment: { ...common, [ENV.fieldHmacKeyArn]: this.keys.fieldHmacKey.keyArn },
      logRetention: s.logRetention,
    });
    appendOnly(this.checkpoint.handler.role, this.tables.audit);
    this.keys.grantAuditSigning(this.checkpoint.handler.role);
    this.keys.grantFieldHmac(this.checkpoint.handler.role);
    // Reads control records and heads; Scan and PutItem only for the legacy-head migration (conditional puts).
    allowTable(this.checkpoint.handler.role, this.tables.secrets, [
      'dynamodb:GetItem',
      'dynamodb:Query',
      'dynamodb:Scan',
      'dynamodb:PutItem',
    ]);
    this.checkpoint.handler.role.addToPrincipalPolicy(
      new iam.PolicyStatement({
        // PutMetricData has no resource; the namespace condition is its only scope.
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': AUDIT_METRIC_NAMESPACE } },
      }),
    );
    Validations.of(this.checkpoint.handler.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'cloudwatch:PutMetricData supports no resource; it is limited to the Coffer/Audit namespace by condition.',
    });

    this.purge = new ScheduledJob(this, 'Purge', {
      entry: 'functions/purge.ts',
      description: 'Coffer: purges soft-deleted secrets whose recovery window has ended',
      every: Duration.hours(1),
      environment: common,
      logRetention: s.logRetention,
    });
    allowTable(this.purge.handler.role, this.tables.secrets, [
      'dynamodb:GetItem',
      'dynamodb:Query',
      'dynamodb:DeleteItem',
      'dynamodb:BatchWriteItem',
    ]);

    // Rotates what is due (a Query of the due index, never a Scan): it writes new versions, so it
    // holds what a writer of the API holds, but serves no request and decides nothing by Cedar.
    this.rotation = new ScheduledJob(this, 'Rotation', {
      entry: 'functions/rotation.ts',
      description: 'Coffer: rotates secrets whose rotation policy is due, with their own generator',
      every: Duration.minutes(15),
      environment: {
        ...common,
        [ENV.fieldHmacKeyArn]: this.keys.fieldHmacKey.keyArn,
        [ENV.expiryWarningSeconds]: String(s.expiryWarningDays * 86_400),
      },
      logRetention: s.logRetention,
    });
    const rotationRole = this.rotation.handler.role;
    rotationRole.addToPrincipalPolicy(
      new iam.PolicyStatement({
        // PutMetricData has no resource; the namespace condition is its only scope.
        actions: ['cloudwatch:PutMetricData'],
        resources: ['*'],
        conditions: { StringEquals: { 'cloudwatch:namespace': LIFECYCLE_METRIC_NAMESPACE } },
      }),
    );
    Validations.of(rotationRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'cloudwatch:PutMetricData supports no resource; it is limited to the Coffer/Lifecycle namespace by condition.',
    });
    allowTable(rotationRole, this.tables.secrets, SECRETS_TABLE_ACTIONS);
    appendOnly(rotationRole, this.tables.audit);
    this.keys.grantDataKeys(rotationRole, installationId);
    this.keys.grantPreviousDataKeys(rotationRole, s.previousSecretsKeyArns, installationId);
    this.keys.grantBranchKeys(rotationRole, s.rootKeyArns, installationId);
    this.keys.grantAuditSigning(rotationRole);
    this.keys.grantFieldHmac(rotationRole);
    // External rotators: the API (rotate now, revert) and the job call the allow-listed ones only.
    if (s.rotatorLambdaArns.length > 0) {
      for (const role of [apiRole, rotationRole]) {
        role.addToPrincipalPolicy(
          new iam.PolicyStatement({
            actions: ['lambda:InvokeFunction'],
            resources: [...s.rotatorLambdaArns],
          }),
        );
      }
    }
    // Re-wrap: hourly ticks, each continuing an unfinished pass or starting one every
    // `rewrapSchedule` days, stopping a minute before the time limit with its cursor saved.
    this.rewrap = new ScheduledJob(this, 'Rewrap', {
      entry: 'functions/rewrap.ts',
      description: 'Coffer: re-wraps data keys under the active branch keys (resumable)',
      every: Duration.hours(1),
      timeout: Duration.minutes(15),
      environment: {
        ...common,
        [ENV.fieldHmacKeyArn]: this.keys.fieldHmacKey.keyArn,
        [ENV.rewrapEverySeconds]: String(s.rewrapScheduleDays * 86_400),
      },
      logRetention: s.logRetention,
    });
    allowTable(this.rewrap.handler.role, this.tables.secrets, [
      'dynamodb:GetItem',
      'dynamodb:Query',
      'dynamodb:Scan',
      'dynamodb:PutItem',
      'dynamodb:UpdateItem',
    ]);
    this.keys.grantDataKeys(this.rewrap.handler.role, installationId);
    this.keys.grantPreviousDataKeys(this.rewrap.handler.role, s.previousSecretsKeyArns, installationId);
    this.keys.grantBranchKeys(this.rewrap.handler.role, s.rootKeyArns, installationId);
    this.keys.grantFieldHmac(this.rewrap.handler.role);

    if (s.codeSigning) {
      this.codeSigning = new CofferCodeSigning(
        this,
        'CodeSigning',
        s.codeSigning.profileVersionArn ? { profileVersionArn: s.codeSigning.profileVersionArn } : {},
      );
      this.codeSigning.enforceOn(this);
    }

    const keyEvents = new KmsKeyEvents(this, 'KeyEvents', {
      keyArns: [this.keys.secretsKeyArn, this.keys.auditKey.keyArn, this.keys.fieldHmacKey.keyArn],
      ...(this.keys.cloudHsmKeyStore
        ? { customKeyStoreId: this.keys.cloudHsmKeyStore.customKeyStoreId }
        : {}),
      topic: alarms.topic,
    });

    // With branch keys cached, CloudTrail shows few Decrypts: any by someone else is a signal.
    new BranchKeyEvents(this, 'BranchKeyEvents', {
      installationId,
      roleArns: [apiRole.roleArn, this.rewrap.handler.role.roleArn],
      topic: alarms.topic,
    });

    this.monitoring = new CofferMonitoring(this, 'Monitoring', {
      api: this.api.api,
      apiFunction: this.apiFunction.function,
      apiLogs: this.apiFunction.logGroup,
      accessLogs: this.api.accessLogs,
      checkpointFunction: this.checkpoint.handler.function,
      checkpointInterval: Duration.minutes(s.checkpointMinutes),
      purgeFunction: this.purge.handler.function,
      rotationFunction: this.rotation.handler.function,
      lifecycle: { expiryWarningDays: s.expiryWarningDays },
      keyEvents,
      topic: alarms.topic,
    });

    const outputs: Record<string, [string, string]> = {
      ApiUrl: [this.api.url, 'Base URL of the Coffer API (COFFER_ADDR)'],
      SecretsTableName: [this.tables.secrets.tableName, 'Secrets table'],
      AuditTableName: [this.tables.audit.tableName, 'Audit table'],
      ApiLogGroupName: [
        this.apiFunction.logGroup.logGroupName,
        "The API function's log group, with the audit records' copy: coffer audit verify --against-logs",
      ],
      SecretsKeyArn: [this.keys.secretsKeyArn, 'KMS key that wraps data keys'],
      AuditKeyArn: [
        this.keys.auditKey.keyArn,
        'Root audit key: give it to the verifier (coffer audit verify --kms-key-id)',
      ],
      StorageMacKeyArn: [
        this.keys.fieldHmacKey.keyArn,
        'HMAC key the storage MAC key is derived from: coffer audit verify --storage --storage-mac-key-id',
      ],
      CheckpointFunctionName: [
        this.checkpoint.handler.function.functionName,
        'Audit checkpoint (and one-time legacy-head migration): aws lambda invoke --function-name <it> out.json',
      ],
      AlarmTopicArn: [alarms.topic.topicArn, 'SNS topic of Coffer alarms'],
      DashboardName: [this.monitoring.dashboard.dashboardName, 'CloudWatch dashboard'],
    };
    if (this.truststore) {
      outputs.MtlsTruststoreUri = [
        this.truststore.bucket.s3UrlForObject(TRUSTSTORE_KEY),
        'Upload the PEM bundle of client CAs here, then deploy with -c mtlsTruststoreVersion=<its VersionId>',
      ];
    }
    if (this.mtlsApi) {
      outputs.MtlsUrl = [this.mtlsApi.url, 'Base URL for callers with a client certificate (COFFER_ADDR)'];
      outputs.MtlsDnsTarget = [
        this.mtlsApi.domain.regionalDomainName,
        'Point the mutual TLS domain here (CNAME, or a Route 53 alias with MtlsHostedZoneId)',
      ];
      outputs.MtlsHostedZoneId = [
        this.mtlsApi.domain.regionalHostedZoneId,
        'Hosted zone id of MtlsDnsTarget, for a Route 53 alias record',
      ];
    }
    if (this.codeSigning) {
      outputs.CodeSigningConfigArn = [
        this.codeSigning.config.attrCodeSigningConfigArn,
        'Lambda code signing config (enforced) on every function',
      ];
      if (this.codeSigning.profile) {
        outputs.SigningProfileName = [
          this.codeSigning.profile.signingProfileName,
          'Sign function packages with this profile: aws signer start-signing-job --profile-name <it>',
        ];
      }
    }
    if (this.keys.cloudHsmKeyStore) {
      outputs.CustomKeyStoreId = [
        this.keys.cloudHsmKeyStore.customKeyStoreId,
        'KMS custom key store (CloudHSM)',
      ];
    }
    for (const [name, [value, description]] of Object.entries(outputs)) {
      new CfnOutput(this, name, { value, description });
    }
  }
}
