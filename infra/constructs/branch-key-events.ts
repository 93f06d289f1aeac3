import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';

export interface BranchKeyEventsProps {
  /** The installation id branch keys are bound to (`coffer:table` in their encryption context). */
  readonly installationId: string;
  /** ARNs of the roles that may unwrap branch keys: the API and re-wrap functions'. */
  readonly roleArns: readonly string[];
  /** Where matching events are sent. */
  readonly topic: sns.ITopic;
}

/**
 * An EventBridge rule on CloudTrail's KMS events: a branch key of this installation unwrapped
 * (`Decrypt` with `coffer:purpose = branch-key`) by any principal other than Coffer's function
 * roles. With branch keys cached, CloudTrail no longer shows one Decrypt per read, so this is the
 * KMS-side signal that someone else is opening the key hierarchy (docs/keys.md). Like the key
 * events rule it needs a CloudTrail trail recording management events.
 */
export class BranchKeyEvents extends Construct {
  readonly rule: events.Rule;

  constructor(scope: Construct, id: string, props: BranchKeyEventsProps) {
    super(scope, id);
    this.rule = new events.Rule(this, 'Rule', {
      description: 'Coffer: a branch key was unwrapped by a principal other than the Coffer functions',
      eventPattern: {
        source: ['aws.kms'],
        detailType: ['AWS API Call via CloudTrail'],
        detail: {
          eventSource: ['kms.amazonaws.com'],
          eventName: ['Decrypt', 'ReEncrypt'],
          requestParameters: {
            encryptionContext: {
              'coffer:purpose': ['branch-key'],
              'coffer:table': [props.installationId],
            },
          },
          userIdentity: {
            sessionContext: { sessionIssuer: { arn: events.Match.anythingBut(...props.roleArns) } },
          },
        },
      },
      targets: [new targets.SnsTopic(props.topic)],
    });
  }
}
