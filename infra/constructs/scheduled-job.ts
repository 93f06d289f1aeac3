import { Duration } from 'aws-cdk-lib';
import * as events from 'aws-cdk-lib/aws-events';
import * as targets from 'aws-cdk-lib/aws-events-targets';
import type * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';
import { CofferFunction } from './coffer-function.js';

export interface ScheduledJobProps {
  /** The handler's source file, relative to the repository root. */
  readonly entry: string;
  readonly description: string;
  /** How often it runs. */
  readonly every: Duration;
  readonly environment: Readonly<Record<string, string>>;
  readonly logRetention: logs.RetentionDays;
  /** @default Duration.minutes(5) */
  readonly timeout?: Duration;
}

/**
 * A Coffer function run on a schedule by an EventBridge rule. A failed run is retried twice by
 * Lambda's asynchronous invocation, then shows in the function's Errors metric.
 *
 * No reserved concurrency: new accounts may have too little unreserved concurrency to reserve any,
 * and the jobs are safe to overlap anyway (a checkpoint claims its sequence number with a
 * conditional write; a purge deletes only what is still due).
 */
export class ScheduledJob extends Construct {
  readonly handler: CofferFunction;
  readonly rule: events.Rule;

  constructor(scope: Construct, id: string, props: ScheduledJobProps) {
    super(scope, id);
    this.handler = new CofferFunction(this, 'Handler', {
      entry: props.entry,
      description: props.description,
      environment: props.environment,
      logRetention: props.logRetention,
      timeout: props.timeout ?? Duration.minutes(5),
      memorySize: 512,
    });
    this.rule = new events.Rule(this, 'Schedule', {
      description: props.description,
      schedule: events.Schedule.rate(props.every),
      targets: [new targets.LambdaFunction(this.handler.function, { retryAttempts: 2 })],
    });
  }
}
