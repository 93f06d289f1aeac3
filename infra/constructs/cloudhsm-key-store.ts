import { CustomResource, Duration, RemovalPolicy, Stack, Validations } from 'aws-cdk-lib';
import * as iam from 'aws-cdk-lib/aws-iam';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import * as secretsmanager from 'aws-cdk-lib/aws-secretsmanager';
import * as sfn from 'aws-cdk-lib/aws-stepfunctions';
import * as cr from 'aws-cdk-lib/custom-resources';
import { Construct, type IConstruct } from 'constructs';
import { CofferFunction } from './coffer-function.js';

/** CloudFormation waits at most an hour for a custom resource; the framework must finish first. */
const MAX_TOTAL_TIMEOUT = Duration.minutes(55);

export interface CloudHsmKeyStoreProps {
  /** The existing CloudHSM cluster (ACTIVE, at least two HSMs in different AZs). */
  readonly clusterId: string;
  /** Name of the Secrets Manager secret holding the kmsuser password (read at deploy time only). */
  readonly kmsUserSecretName: string;
  /** PEM of the cluster's trust anchor certificate (customerCA.crt). Public; not a secret. */
  readonly trustAnchorPem: string;
  /** Name of the KMS custom key store: adopted when it exists, created otherwise. */
  readonly keyStoreName: string;
  /** Alias given to the key, and how a re-run finds it (`alias/...`). */
  readonly keyAlias: string;
  /** Retention of the custom resource's log groups. */
  readonly logRetention: logs.RetentionDays;
  /**
   * How long the Provider framework waits for the key store to connect (connecting usually takes 5
   * to 20 minutes). At most 55 minutes: CloudFormation itself gives a custom resource one hour
   * (its ServiceTimeout), and the framework must report the timeout, with its reason, before
   * CloudFormation gives up on it with none. @default Duration.minutes(50)
   */
  readonly totalTimeout?: Duration;
}

/**
 * A symmetric KMS key in a CloudHSM custom key store, made by a custom resource (CloudFormation has
 * no resource type for custom key stores). The Provider framework runs `onEvent` once and then
 * polls `isComplete` until the store is CONNECTED and the key exists, within `totalTimeout`,
 * because connecting takes longer than one Lambda run may.
 *
 * On stack delete nothing is deleted (the resource is also RETAIN): the key wraps every stored
 * data key. Keys in custom key stores cannot rotate automatically; see docs/cloudhsm.md.
 */
export class CloudHsmKeyStore extends Construct {
  /** ARN of the KMS key in the custom key store. */
  readonly keyArn: string;
  readonly customKeyStoreId: string;

  constructor(scope: Construct, id: string, props: CloudHsmKeyStoreProps) {
    super(scope, id);
    const stack = Stack.of(this);
    const totalTimeout = props.totalTimeout ?? Duration.minutes(50);
    if (totalTimeout.toSeconds() > MAX_TOTAL_TIMEOUT.toSeconds()) {
      throw new Error(
        `CloudHsmKeyStore totalTimeout must be at most ${MAX_TOTAL_TIMEOUT.toMinutes()} minutes (CloudFormation's custom resource limit is one hour)`,
      );
    }

    const handlerProps = {
      entry: 'functions/custom-resources/cloudhsm-key-store.ts',
      logRetention: props.logRetention,
      timeout: Duration.minutes(2),
      memorySize: 256,
    };
    const onEvent = new CofferFunction(this, 'OnEvent', {
      ...handlerProps,
      handler: 'onEvent',
      description: 'Coffer: create or adopt the CloudHSM key store and start connecting it',
    });
    const isComplete = new CofferFunction(this, 'IsComplete', {
      ...handlerProps,
      handler: 'isComplete',
      description: 'Coffer: wait for the CloudHSM key store to connect, then create or adopt the key',
    });

    // Both handlers may set the store's password from the secret before they connect it.
    const secret = secretsmanager.Secret.fromSecretNameV2(this, 'KmsUserSecret', props.kmsUserSecretName);
    secret.grantRead(onEvent.role);
    secret.grantRead(isComplete.role);

    const keyStoreActions = new iam.PolicyStatement({
      // Custom key store operations and cloudhsm:DescribeClusters have no resource-level permissions.
      actions: [
        'cloudhsm:DescribeClusters',
        'kms:DescribeCustomKeyStores',
        'kms:ConnectCustomKeyStore',
        'kms:DisconnectCustomKeyStore',
        'kms:UpdateCustomKeyStore',
      ],
      resources: ['*'],
    });
    for (const fn of [onEvent, isComplete]) fn.role.addToPolicy(keyStoreActions);
    onEvent.role.addToPolicy(
      new iam.PolicyStatement({ actions: ['kms:CreateCustomKeyStore'], resources: ['*'] }),
    );
    // KMS makes its service-linked role the first time a CloudHSM key store is created.
    onEvent.role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['iam:CreateServiceLinkedRole'],
        resources: [
          stack.formatArn({
            service: 'iam',
            region: '',
            resource: 'role',
            resourceName:
              'aws-service-role/cks.kms.amazonaws.com/AWSServiceRoleForKeyManagementServiceCustomKeyStores',
          }),
        ],
        conditions: { StringEquals: { 'iam:AWSServiceName': 'cks.kms.amazonaws.com' } },
      }),
    );

    const aliasArn = stack.formatArn({ service: 'kms', resource: props.keyAlias });
    const anyKeyArn = stack.formatArn({ service: 'kms', resource: 'key', resourceName: '*' });
    isComplete.role.addToPolicy(
      new iam.PolicyStatement({
        // CreateKey has no resource to scope to before the key exists; it may only make keys in a
        // CloudHSM key store (kms:KeyOrigin), which the alias then names.
        actions: ['kms:CreateKey', 'kms:TagResource'],
        resources: ['*'],
        conditions: { StringEquals: { 'kms:KeyOrigin': 'AWS_CLOUDHSM' } },
      }),
    );
    isComplete.role.addToPolicy(
      new iam.PolicyStatement({
        actions: ['kms:CreateAlias', 'kms:DescribeKey'],
        resources: [aliasArn, anyKeyArn],
      }),
    );

    const frameworkLogs = new logs.LogGroup(this, 'ProviderLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });
    // Own roles instead of the framework's defaults, which carry AWSLambdaBasicExecutionRole.
    const frameworkRole = (roleId: string, what: string) =>
      new iam.Role(this, roleId, {
        assumedBy: new iam.ServicePrincipal('lambda.amazonaws.com'),
        description: `Coffer CloudHSM key store: provider framework (${what})`,
        inlinePolicies: {
          logs: new iam.PolicyDocument({
            statements: [
              new iam.PolicyStatement({
                actions: ['logs:CreateLogStream', 'logs:PutLogEvents'],
                resources: [frameworkLogs.logGroupArn],
              }),
            ],
          }),
        },
      });

    const onEventRole = frameworkRole('ProviderOnEventRole', 'onEvent');
    const completeRole = frameworkRole('ProviderIsCompleteRole', 'isComplete, onTimeout');
    const provider = new cr.Provider(this, 'Provider', {
      onEventHandler: onEvent.function,
      isCompleteHandler: isComplete.function,
      queryInterval: Duration.seconds(30),
      totalTimeout,
      frameworkOnEventRole: onEventRole,
      frameworkCompleteAndTimeoutRole: completeRole,
      logGroup: frameworkLogs,
      disableWaiterStateMachineLogging: false,
      waiterStateMachineLogOptions: { destination: frameworkLogs, level: sfn.LogLevel.ALL },
    });

    const resource = new CustomResource(this, 'Resource', {
      serviceToken: provider.serviceToken,
      resourceType: 'Custom::CofferCloudHsmKey',
      removalPolicy: RemovalPolicy.RETAIN,
      serviceTimeout: Duration.hours(1),
      properties: {
        ClusterId: props.clusterId,
        KmsUserSecretId: props.kmsUserSecretName,
        TrustAnchorCertificate: props.trustAnchorPem,
        CustomKeyStoreName: props.keyStoreName,
        KeyAlias: props.keyAlias,
        KeyDescription: `Coffer (${stack.stackName}): wraps the data keys of stored secrets`,
      },
    });
    this.keyArn = resource.getAttString('KeyArn');
    this.customKeyStoreId = resource.getAttString('CustomKeyStoreId');

    // cdk-nag acknowledgments, each on the one role that holds the finding.
    const wildcard = (fn: CofferFunction, reason: string) =>
      Validations.of(fn.role).acknowledge({ id: 'AwsSolutions-IAM5[Resource::*]', reason });
    wildcard(
      onEvent,
      'cloudhsm:DescribeClusters and the custom key store actions (Describe/Create/Connect/Disconnect/UpdateCustomKeyStore) support no resource-level permission.',
    );
    wildcard(
      isComplete,
      'cloudhsm:DescribeClusters and the custom key store actions support no resource-level permission; kms:CreateKey has no key to name before it runs and is limited to origin AWS_CLOUDHSM by condition.',
    );
    Validations.of(isComplete.role).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:kms:<AWS::Region>:<AWS::AccountId>:key/*]',
      reason:
        'kms:DescribeKey and kms:CreateAlias must name the key, whose id is only known after kms:CreateKey; the alias ARN beside it is exact.',
    });
    const logicalId = (fn: IConstruct) =>
      stack.resolve((fn.node.defaultChild as lambda.CfnFunction).logicalId) as string;
    const anyVersion = (role: IConstruct, functions: IConstruct[]) => {
      for (const fn of functions) {
        Validations.of(role).acknowledge({
          id: `AwsSolutions-IAM5[Resource::<${logicalId(fn)}.Arn>:*]`,
          reason:
            'The CDK Provider framework invokes the handler it was given by `<function arn>:*`, meaning any version of that one function.',
        });
      }
    };
    const handlers = [onEvent.function, isComplete.function];
    anyVersion(onEventRole, handlers);
    anyVersion(completeRole, handlers);
    const waiterRole = provider.node.findChild('waiter-state-machine').node.findChild('Role');
    anyVersion(waiterRole, [
      provider.node.findChild('framework-isComplete'),
      provider.node.findChild('framework-onTimeout'),
    ]);
    Validations.of(waiterRole).acknowledge({
      id: 'AwsSolutions-IAM5[Resource::*]',
      reason:
        'The waiter state machine logs to CloudWatch Logs: the log delivery actions (logs:CreateLogDelivery and friends) support no resource-level permission.',
    });
    Validations.of(provider).acknowledge({
      id: 'AwsSolutions-SF2',
      reason:
        'The waiter state machine only polls isComplete every 30 s during a deployment; X-Ray adds nothing there.',
    });
    Validations.of(provider).acknowledge({
      id: 'AwsSolutions-L1',
      reason: 'The Provider framework functions use the runtime aws-cdk-lib picks for them.',
    });
  }
}
