import { Duration } from 'aws-cdk-lib';
import type * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import * as cloudwatch from 'aws-cdk-lib/aws-cloudwatch';
import * as actions from 'aws-cdk-lib/aws-cloudwatch-actions';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as sns from 'aws-cdk-lib/aws-sns';
import { Construct } from 'constructs';
import { AUDIT_METRIC_NAMESPACE } from '../../functions/env.js';
import { LIFECYCLE_METRIC_NAMESPACE } from '../../lib/secrets/lifecycle.js';
import type { KmsKeyEvents } from './kms-key-events.js';

/** Namespace of the metrics made from Coffer's log lines (metric filters). */
export const METRIC_NAMESPACE = 'Coffer';

/**
 * CloudWatch Logs filter patterns over the JSON lines the functions write: audit records
 * (`audit: "coffer.v1"`, lib/audit/record.ts) on stdout, operational lines on stderr
 * (`message`, `code`, `errorName`: lib/log.ts, lib/http/app.ts, lib/keys/kms.ts).
 */
export const FILTER_PATTERNS = {
  /** Requests Cedar denied, and requests without valid credentials (401): both are probing signals. */
  denied: '{ $.audit = "coffer.v1" && $.type = "request" && ($.decision = "deny" || $.status = 401) }',
  auditWriteFailures: '{ ($.message = "audit write failed") || ($.code = "audit_unavailable") }',
  keyStoreUnavailable:
    '{ ($.code = "key_store_unavailable") || ($.message = "kms call failed" && ($.errorName = "KMSInvalidStateException" || $.errorName = "CustomKeyStoreInvalidStateException" || $.errorName = "DisabledException")) }',
  /**
   * Stored items that failed verification (a head or control record changed outside Coffer): the
   * operational line of the 500, once per request (the audit record's `error` is not counted too).
   */
  integrityFailures: '{ $.code = "integrity_error" }',
} as const;

export interface CofferMonitoringProps {
  readonly api: apigw.HttpApi;
  readonly apiFunction: lambda.IFunction;
  /** The API function's log group: audit records and operational lines. */
  readonly apiLogs: logs.ILogGroup;
  /** The API Gateway access log group (requests refused before the function). */
  readonly accessLogs: logs.ILogGroup;
  readonly checkpointFunction: lambda.IFunction;
  /** How often the checkpoint job runs (the period of its metrics). */
  readonly checkpointInterval: Duration;
  readonly purgeFunction: lambda.IFunction;
  /** The scheduled rotation function (its run fails when a due rotation failed). @default none */
  readonly rotationFunction?: lambda.IFunction;
  /**
   * Alarms on the rotation function's lifecycle metrics (CertificatesExpiring, RotationsOverdue),
   * with the warning window they were counted with. Needs `rotationFunction`. @default none
   */
  readonly lifecycle?: { readonly expiryWarningDays: number };
  /** The rule that reports KMS key disable/deletion events. */
  readonly keyEvents: KmsKeyEvents;
  /** Where alarms go. */
  readonly topic: sns.ITopic;
  /** Denied requests in 5 minutes that count as a spike. @default 20 */
  readonly deniedSpikeThreshold?: number;
}

/**
 * Audit review and alarms: metric filters over the function logs, alarms (denied spikes, audit
 * write failures, audit verification failures, key store unavailable, KMS key disabled or
 * scheduled for deletion, API 5xx, checkpoint failures) sent to the alarm topic, Logs Insights
 * saved queries (by principal, by path, denials, gateway refusals) and a dashboard.
 */
export class CofferMonitoring extends Construct {
  readonly alarms: Record<string, cloudwatch.Alarm> = {};
  readonly dashboard: cloudwatch.Dashboard;

  constructor(scope: Construct, id: string, props: CofferMonitoringProps) {
    super(scope, id);
    const action = new actions.SnsAction(props.topic);
    const fiveMinutes = Duration.minutes(5);

    const filter = (name: string, logGroup: logs.ILogGroup, pattern: string, value = '1') =>
      new logs.MetricFilter(this, `${name}Filter`, {
        logGroup,
        metricNamespace: METRIC_NAMESPACE,
        metricName: name,
        filterPattern: logs.FilterPattern.literal(pattern),
        metricValue: value,
      }).metric({ statistic: 'Sum', period: fiveMinutes });

    const denied = filter('DeniedRequests', props.apiLogs, FILTER_PATTERNS.denied);
    const auditFailures = filter('AuditWriteFailures', props.apiLogs, FILTER_PATTERNS.auditWriteFailures);
    const keyStore = filter('KeyStoreUnavailable', props.apiLogs, FILTER_PATTERNS.keyStoreUnavailable);
    const integrity = filter('IntegrityFailures', props.apiLogs, FILTER_PATTERNS.integrityFailures);
    // Published by the checkpoint job itself (lib/audit/checkpoint-job.ts), once per run.
    const interval = props.checkpointInterval;
    const verification = new cloudwatch.Metric({
      namespace: AUDIT_METRIC_NAMESPACE,
      metricName: 'VerificationProblems',
      statistic: 'Maximum',
      period: interval,
    });
    const checkpointsWritten = new cloudwatch.Metric({
      namespace: AUDIT_METRIC_NAMESPACE,
      metricName: 'CheckpointsWritten',
      statistic: 'Sum',
      period: interval,
    });

    const alarm = (
      name: string,
      metric: cloudwatch.IMetric,
      threshold: number,
      description: string,
      options: Partial<cloudwatch.AlarmProps> = {},
    ) => {
      const a = new cloudwatch.Alarm(this, name, {
        alarmDescription: description,
        metric,
        threshold,
        evaluationPeriods: 1,
        comparisonOperator: cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
        treatMissingData: cloudwatch.TreatMissingData.NOT_BREACHING,
        ...options,
      });
      a.addAlarmAction(action);
      this.alarms[name] = a;
      return a;
    };

    alarm(
      'DeniedSpike',
      denied,
      props.deniedSpikeThreshold ?? 20,
      'Many requests were denied by policy or refused for bad credentials (401) in 5 minutes (probing, a broken deploy, or a revoked principal still trying).',
    );
    alarm(
      'AuditWriteFailures',
      auditFailures,
      1,
      'Audit records could not be written: requests are being refused with 503 audit_unavailable.',
    );
    alarm(
      'AuditVerificationFailures',
      verification,
      1,
      'The scheduled audit verification found a broken chain, a bad signature or a gap. Investigate at once.',
    );
    alarm(
      'KeyStoreDisconnected',
      keyStore,
      1,
      'KMS could not serve Coffer key requests (custom key store disconnected, key disabled or pending deletion): requests fail with 503 key_store_unavailable.',
    );
    alarm(
      'IntegrityFailures',
      integrity,
      1,
      'A stored head or control record failed its MAC: someone changed the secrets table outside Coffer, or a restore mixed installations. The affected requests fail with 500 integrity_error. Investigate at once.',
    );
    alarm(
      'KmsKeyEvents',
      new cloudwatch.Metric({
        namespace: 'AWS/Events',
        metricName: 'TriggeredRules',
        dimensionsMap: { RuleName: props.keyEvents.rule.ruleName },
        statistic: 'Sum',
        period: fiveMinutes,
      }),
      1,
      'A Coffer KMS key was disabled, scheduled for deletion, or its custom key store was disconnected (CloudTrail).',
    );
    alarm(
      'Api5xx',
      props.api.metricServerError({ statistic: 'Sum', period: fiveMinutes }),
      5,
      'The Coffer API answered 5xx.',
    );
    alarm(
      'CheckpointMissing',
      checkpointsWritten,
      1,
      'No audit checkpoint was written in two intervals: quiet periods are no longer provable and verification is not running.',
      {
        comparisonOperator: cloudwatch.ComparisonOperator.LESS_THAN_THRESHOLD,
        evaluationPeriods: 2,
        treatMissingData: cloudwatch.TreatMissingData.BREACHING,
      },
    );
    alarm(
      'CheckpointFailures',
      props.checkpointFunction.metricErrors({ statistic: 'Sum', period: Duration.hours(1) }),
      1,
      'The audit checkpoint function failed: checkpoints (and verification) are missing.',
    );
    alarm(
      'PurgeFailures',
      props.purgeFunction.metricErrors({ statistic: 'Sum', period: Duration.hours(1) }),
      1,
      'The purge of expired soft-deleted secrets failed.',
    );
    if (props.rotationFunction) {
      alarm(
        'RotationFailures',
        props.rotationFunction.metricErrors({ statistic: 'Sum', period: Duration.hours(1) }),
        1,
        'A scheduled rotation failed: current is unchanged; see lastRotationError (coffer ls --rotation-overdue).',
      );
    }
    if (props.rotationFunction && props.lifecycle) {
      // Published by the rotation job after each run (every 15 minutes): an hour without a
      // datapoint means the job stopped watching, which alarms like a problem found.
      const lifecycleMetric = (metricName: string) =>
        new cloudwatch.Metric({
          namespace: LIFECYCLE_METRIC_NAMESPACE,
          metricName,
          statistic: 'Maximum',
          period: Duration.hours(1),
        });
      const missingBreaches = { treatMissingData: cloudwatch.TreatMissingData.BREACHING };
      alarm(
        'CertificatesExpiring',
        lifecycleMetric('CertificatesExpiring'),
        1,
        `A certificate secret expires within ${props.lifecycle.expiryWarningDays} days (or has expired) and no rotation renewed it: see coffer ls --expiring ${props.lifecycle.expiryWarningDays}d. Also fires when the rotation job stops reporting.`,
        missingBreaches,
      );
      alarm(
        'RotationsOverdue',
        lifecycleMetric('RotationsOverdue'),
        1,
        'A rotation is still due after the scheduled run (failing, or a CA refusing a renewal): see coffer ls --rotation-overdue. Also fires when the rotation job stops reporting.',
        missingBreaches,
      );
    }

    const auditRequests = 'audit = "coffer.v1" and type = "request"';
    const queries: Record<string, { logGroups: logs.ILogGroup[]; query: logs.QueryString }> = {
      'Coffer/audit/by-principal': {
        logGroups: [props.apiLogs],
        query: new logs.QueryString({
          fields: ['@timestamp', 'principalType', 'principalId', 'authMethod', 'decision'],
          filterStatements: [auditRequests],
          statsStatements: ['count(*) as requests by principalType, principalId, authMethod, decision'],
          sort: 'requests desc',
        }),
      },
      'Coffer/audit/by-path': {
        logGroups: [props.apiLogs],
        query: new logs.QueryString({
          fields: [
            '@timestamp',
            'path',
            'version',
            'action',
            'principalId',
            'decision',
            'status',
            'sourceIp',
          ],
          filterStatements: [`${auditRequests} and ispresent(path)`],
          // Edit the path (or use `path like /^team-a\\//`) to review one secret or folder.
          sort: '@timestamp desc',
          limit: 500,
        }),
      },
      'Coffer/audit/denials': {
        logGroups: [props.apiLogs],
        query: new logs.QueryString({
          fields: [
            '@timestamp',
            'principalId',
            'authMethod',
            'action',
            'path',
            'policyIds',
            'error',
            'sourceIp',
            'userAgent',
          ],
          // Denied by policy, or refused for missing or invalid credentials.
          filterStatements: [`${auditRequests} and (decision = "deny" or status = 401)`],
          sort: '@timestamp desc',
          limit: 500,
        }),
      },
      'Coffer/gateway/refused': {
        logGroups: [props.accessLogs],
        query: new logs.QueryString({
          fields: [
            '@timestamp',
            'status',
            'method',
            'path',
            'routeKey',
            'error',
            'authorizerError',
            'sourceIp',
          ],
          filterStatements: ['status >= 400 and integrationStatus = "-"'],
          sort: '@timestamp desc',
          limit: 500,
        }),
      },
    };
    for (const [name, { logGroups, query }] of Object.entries(queries)) {
      new logs.QueryDefinition(this, name.replace(/[^A-Za-z0-9]/g, ''), {
        queryDefinitionName: name,
        queryString: query,
        logGroups,
      });
    }

    this.dashboard = new cloudwatch.Dashboard(this, 'Dashboard', {
      defaultInterval: Duration.hours(24),
    });
    this.dashboard.addWidgets(
      new cloudwatch.AlarmStatusWidget({
        title: 'Coffer alarms',
        alarms: Object.values(this.alarms),
        width: 24,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'API requests',
        left: [
          props.api.metricCount({ statistic: 'Sum', period: fiveMinutes }),
          props.api.metricClientError({ statistic: 'Sum', period: fiveMinutes }),
          props.api.metricServerError({ statistic: 'Sum', period: fiveMinutes }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'API latency (ms)',
        left: [
          props.api.metricLatency({ statistic: 'p50', period: fiveMinutes }),
          props.api.metricLatency({ statistic: 'p99', period: fiveMinutes }),
          props.apiFunction.metricDuration({ statistic: 'p50', period: fiveMinutes }),
        ],
        width: 8,
      }),
      new cloudwatch.GraphWidget({
        title: 'API function',
        left: [
          props.apiFunction.metricInvocations({ statistic: 'Sum', period: fiveMinutes }),
          props.apiFunction.metricErrors({ statistic: 'Sum', period: fiveMinutes }),
          props.apiFunction.metricThrottles({ statistic: 'Sum', period: fiveMinutes }),
        ],
        width: 8,
      }),
    );
    this.dashboard.addWidgets(
      new cloudwatch.GraphWidget({
        title: 'Security signals',
        left: [denied, auditFailures, keyStore, verification, integrity],
        width: 12,
      }),
      new cloudwatch.LogQueryWidget({
        title: 'Latest denials',
        logGroupNames: [props.apiLogs.logGroupName],
        queryLines: [
          'fields @timestamp, principalId, action, path, policyIds, sourceIp',
          'filter audit = "coffer.v1" and type = "request" and (decision = "deny" or status = 401)',
          'sort @timestamp desc',
          'limit 20',
        ],
        width: 12,
      }),
    );
  }
}
