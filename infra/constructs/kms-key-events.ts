import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

/** KMS API calls that make Coffer's keys unusable, now or after a waiting period. */
export const KEY_EVENT_NAMES = [
  'DisableKey',
  'ScheduleKeyDeletion',
  'DisableKeyRotation',
  'PutKeyPolicy',
  'DeleteImportedKeyMaterial',
] as const;

/** Calls that cut a CloudHSM key store off from KMS. */
export const KEY_STORE_EVENT_NAMES = [
  'DisconnectCustomKeyStore',
  'DeleteCustomKeyStore',
  'UpdateCustomKeyStore',
] as const;

export interface KmsKeyEventsProps {
  /** ARNs of the keys to watch (CloudTrail names the key's ARN in `resources`). */
  readonly keyArns: readonly string[];
  /** The CloudHSM key store to watch, in cloudhsm mode. @default - none */
  readonly customKeyStoreId?: string;
  /** Where matching events are sent. */
  readonly topic: sns.ITopic;
}

/**
 * An EventBridge rule on CloudTrail's KMS management events: a Coffer key disabled, scheduled for
 * deletion or re-policied, or (CloudHSM mode) its custom key store disconnected, deleted or
 * changed. The event goes to the alarm topic as it is, and an alarm on the rule's TriggeredRules
 * metric shows it on the dashboard. CloudTrail must record management events (a trail), which is
 * how AWS delivers "AWS API Call via CloudTrail" events to EventBridge.
 */
export class KmsKeyEvents extends Construct {
  readonly rule: events.Rule;

  constructor(scope: Construct, id: string, props: KmsKeyEventsProps) {
    super(scope, id);
    const keyCalls = {
      eventSource: ['kms.amazonaws.com'],
      eventName: [...KEY_EVENT_NAMES],
      resources: { ARN: [...props.keyArns] },
    };
    const storeCalls = props.customKeyStoreId
      ? {
          eventSource: ['kms.amazonaws.com'],
          eventName: [...KEY_STORE_EVENT_NAMES],
          requestParameters: { customKeyStoreId: [props.customKeyStoreId] },
        }
      : undefined;

    this.rule = new events.Rule(this, 'Rule', {
      description: 'Coffer: a Coffer KMS key or its custom key store is being disabled or deleted',
      eventPattern: {
        source: ['aws.kms'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: storeCalls ? { $or: [keyCalls, storeCalls] } : keyCalls,
      },
      targets: [new targets.SnsTopic(props.topic)],
    });
  }
}
