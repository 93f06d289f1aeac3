import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpIamAuthorizer } from 'aws-cdk-lib/aws-apigatewayv2-authorizers';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import { Construct } from 'constructs';

/** Route prefix for OIDC bearer tokens: verified by the app, which trusts several issuers. */
export const BEARER_ROUTE = '/v1/{proxy+}';
/** Route prefix for SigV4 callers (workloads with an IAM role): verified by API Gateway. */
export const IAM_ROUTE = '/iam/v1/{proxy+}';

/**
 * One JSON line per request, including those the gateway refuses before the function runs (bad
 * SigV4, throttling, no route): those never reach the app's audit trail. No query string (it may
 * be sensitive), no header values beyond the user agent.
 */
export const ACCESS_LOG_FIELDS = {
  requestId: '$context.requestId',
  time: '$context.requestTime',
  sourceIp: '$context.identity.sourceIp',
  method: '$context.httpMethod',
  path: '$context.path',
  routeKey: '$context.routeKey',
  status: '$context.status',
  protocol: '$context.protocol',
  responseLength: '$context.responseLength',
  latencyMs: '$context.responseLatency',
  integrationStatus: '$context.integrationStatus',
  integrationError: '$context.integrationErrorMessage',
  error: '$context.error.message',
  authorizerError: '$context.authorizer.error',
  iamCaller: '$context.identity.userArn',
  userAgent: '$context.identity.userAgent',
};

export interface CofferHttpApiProps {
  /** The API function: both route prefixes go to it. */
  readonly handler: lambda.IFunction;
  /** Steady-state requests per second for the stage. */
  readonly rateLimit: number;
  /** Burst capacity for the stage. */
  readonly burstLimit: number;
  /** Retention of the access log group. */
  readonly logRetention: logs.RetentionDays;
}

/**
 * The HTTP API (API Gateway v2): `/v1/{proxy+}` without a gateway authorizer, because the app
 * verifies OIDC tokens from several issuers itself (a gateway JWT authorizer takes one issuer), and
 * `/iam/v1/{proxy+}` behind the IAM authorizer, whose verified caller ARN the app reads from the
 * event. One `$default` stage with throttling and JSON access logs.
 */
export class CofferHttpApi extends Construct {
  readonly api: apigw.HttpApi;
  readonly stage: apigw.HttpStage;
  readonly accessLogs: logs.LogGroup;

  constructor(scope: Construct, id: string, props: CofferHttpApiProps) {
    super(scope, id);

    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.api = new apigw.HttpApi(this, 'Api', {
      description: 'Coffer secrets API',
      createDefaultStage: false,
    });

    this.stage = new apigw.HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: props.rateLimit, burstLimit: props.burstLimit },
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(this.accessLogs),
        format: AccessLogFormat.custom(JSON.stringify(ACCESS_LOG_FIELDS)),
      },
    });

    const integration = new HttpLambdaIntegration('Handler', props.handler, {
      payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
    });

    const [bearerRoute] = this.api.addRoutes({
      path: BEARER_ROUTE,
      methods: [apigw.HttpMethod.ANY],
      integration,
    });
    this.api.addRoutes({
      path: IAM_ROUTE,
      methods: [apigw.HttpMethod.ANY],
      integration,
      authorizer: new HttpIamAuthorizer(),
    });

    if (bearerRoute) {
      Validations.of(bearerRoute).acknowledge({
        id: 'AwsSolutions-APIG4',
        reason:
          'The app verifies the bearer token on every /v1 request against the configured OIDC issuers (several, which a gateway JWT authorizer cannot express); requests without a valid token get 401 from the app and an audit record.',
      });
    }
  }

  /** The base URL of the API (the `$default` stage has no path prefix). */
  get url(): string {
    return this.api.apiEndpoint;
  }
}
