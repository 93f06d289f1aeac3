import { type CloudWatchClient, PutMetricDataCommand } from '@aws-sdk/client-cloudwatch';
import { describeError, type Logger } from '../log.js';
import { LIFECYCLE_METRIC_NAMESPACE } from './lifecycle.js';
import type { SecretService } from './service.js';

/** Certificates that expire within the warning window (or have expired), by default 30 days. */
export const DEFAULT_EXPIRY_WARNING_SECONDS = 30 * 86_400;

export interface LifecycleMetrics {
  /** Certificates (current versions of live secrets) whose notAfter is within the window. */
  readonly CertificatesExpiring: number;
  /** Rotations still due after the run (failing, or left for the next run). */
  readonly RotationsOverdue: number;
  /** Rotations this run tried and that failed. */
  readonly RotationsFailed: number;
}

/**
 * After a run of the scheduled rotation: counts expiring certificates and overdue rotations from
 * the expiry and due indexes (Queries, never a Scan; SecretService.lifecycleCounts) and publishes
 * them with PutMetricData, as the checkpoint job publishes its own. Neither counting nor publishing
 * fails the run: a missing datapoint is treated as breaching by the stack's alarms, so a job that
 * stops reporting alarms as surely as one that reports a problem.
 */
export async function publishLifecycleMetrics(deps: {
  readonly service: Pick<SecretService, 'lifecycleCounts'>;
  readonly cloudwatch: CloudWatchClient;
  readonly failed: number;
  readonly expiryWarningSeconds?: number;
  readonly namespace?: string;
  readonly logger: Logger;
  readonly now: () => Date;
}): Promise<LifecycleMetrics | undefined> {
  let metrics: LifecycleMetrics;
  try {
    const counts = await deps.service.lifecycleCounts(
      deps.expiryWarningSeconds ?? DEFAULT_EXPIRY_WARNING_SECONDS,
    );
    metrics = {
      CertificatesExpiring: counts.expiring,
      RotationsOverdue: counts.overdue,
      RotationsFailed: deps.failed,
    };
  } catch (err) {
    deps.logger.warn('counting expiring certificates and overdue rotations failed', describeError(err));
    return undefined;
  }
  try {
    await deps.cloudwatch.send(
      new PutMetricDataCommand({
        Namespace: deps.namespace ?? LIFECYCLE_METRIC_NAMESPACE,
        MetricData: Object.entries(metrics).map(([name, value]) => ({
          MetricName: name,
          Value: value,
          Unit: 'Count',
          Timestamp: deps.now(),
        })),
      }),
    );
  } catch (err) {
    deps.logger.warn('publishing lifecycle metrics failed', describeError(err));
  }
  return metrics;
}
