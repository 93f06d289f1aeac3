import { RemovalPolicy, Validations } from 'aws-cdk-lib';
import { AccessLogFormat } from 'aws-cdk-lib/aws-apigateway';
import * as apigw from 'aws-cdk-lib/aws-apigatewayv2';
import { HttpLambdaIntegration } from 'aws-cdk-lib/aws-apigatewayv2-integrations';
import * as acm from 'aws-cdk-lib/aws-certificatemanager';
import type * as lambda from 'aws-cdk-lib/aws-lambda';
import * as logs from 'aws-cdk-lib/aws-logs';
import type * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';
import { ACCESS_LOG_FIELDS } from './http-api.js';

/**
 * The environment variable that tells the API function the id of the mutual TLS API. The function
 * takes a caller's identity from `requestContext.authentication.clientCert` only on an event whose
 * `requestContext.apiId` equals it (docs/mtls.md, "What the function trusts").
 */
export const MTLS_API_ID_ENV = 'COFFER_MTLS_API_ID';

/** The one route of the mutual TLS API: the same paths as the local server serves to certificates. */
export const MTLS_ROUTE = '/v1/{proxy+}';

/**
 * The access log line of the mutual TLS API: the regular fields without the IAM caller (no IAM
 * authorizer here), with the certificate API Gateway verified. Never the PEM (long, and the
 * subject, issuer and serial identify it).
 */
export const MTLS_ACCESS_LOG_FIELDS = {
  ...Object.fromEntries(Object.entries(ACCESS_LOG_FIELDS).filter(([k]) => k !== 'iamCaller')),
  clientCertSubject: '$context.identity.clientCert.subjectDN',
  clientCertIssuer: '$context.identity.clientCert.issuerDN',
  clientCertSerial: '$context.identity.clientCert.serialNumber',
};

export interface MtlsTruststore {
  readonly bucket: s3.IBucket;
  /** The object key of the PEM bundle of trusted client CAs. */
  readonly key: string;
  /** @default - the version that is current when the domain is created or updated */
  readonly version?: string;
}

export interface CofferMtlsApiProps {
  /** The API function (the same one the regular API calls). */
  readonly handler: lambda.IFunction;
  /** The custom domain clients with a certificate call. */
  readonly domainName: string;
  /** ARN of the ACM certificate of that domain, in the stack's region. */
  readonly certificateArn: string;
  /**
   * ARN of a public ACM certificate for the same domain, proving ownership when the server
   * certificate is imported or from AWS Private CA.
   * @default - none
   */
  readonly ownershipCertificateArn?: string;
  /** The bundle of client CAs API Gateway verifies certificates against. */
  readonly truststore: MtlsTruststore;
  /** Steady-state requests per second for the stage. */
  readonly rateLimit: number;
  /** Burst capacity for the stage. */
  readonly burstLimit: number;
  /** Retention of the access log group. */
  readonly logRetention: logs.RetentionDays;
}

/**
 * A second HTTP API, reachable only through a custom domain that requires a client certificate
 * (mutual TLS). API Gateway ends TLS, checks the certificate chain against the truststore and its
 * validity dates, refuses the handshake otherwise, and hands the verified certificate to the
 * function in `requestContext.authentication.clientCert`.
 *
 * A separate API, not a route of the regular one, because mutual TLS is a property of a domain:
 * the regular API keeps its `execute-api` endpoint for OIDC and IAM callers, and this API's own
 * `execute-api` endpoint is disabled, so the only way into it is the domain, where no request
 * arrives without a verified certificate. The function tells the two apart by
 * `requestContext.apiId` (set by API Gateway, not by the client) against {@link MTLS_API_ID_ENV}.
 */
export class CofferMtlsApi extends Construct {
  readonly api: apigw.HttpApi;
  readonly stage: apigw.HttpStage;
  readonly domain: apigw.DomainName;
  readonly mapping: apigw.ApiMapping;
  readonly accessLogs: logs.LogGroup;
  private readonly domainName: string;

  constructor(scope: Construct, id: string, props: CofferMtlsApiProps) {
    super(scope, id);
    this.domainName = props.domainName;

    this.accessLogs = new logs.LogGroup(this, 'AccessLogs', {
      retention: props.logRetention,
      removalPolicy: RemovalPolicy.RETAIN,
    });

    this.api = new apigw.HttpApi(this, 'Api', {
      description: 'Coffer secrets API for client certificates (mutual TLS domain only)',
      createDefaultStage: false,
      // Otherwise https://<id>.execute-api.<region>.amazonaws.com reaches the same routes without
      // any certificate.
      disableExecuteApiEndpoint: true,
    });

    this.stage = new apigw.HttpStage(this, 'DefaultStage', {
      httpApi: this.api,
      stageName: '$default',
      autoDeploy: true,
      throttle: { rateLimit: props.rateLimit, burstLimit: props.burstLimit },
      accessLogSettings: {
        destination: new apigw.LogGroupLogDestination(this.accessLogs),
        format: AccessLogFormat.custom(JSON.stringify(MTLS_ACCESS_LOG_FIELDS)),
      },
    });

    this.domain = new apigw.DomainName(this, 'Domain', {
      domainName: props.domainName,
      certificate: acm.Certificate.fromCertificateArn(this, 'Certificate', props.certificateArn),
      ...(props.ownershipCertificateArn
        ? {
            ownershipCertificate: acm.Certificate.fromCertificateArn(
              this,
              'OwnershipCertificate',
              props.ownershipCertificateArn,
            ),
          }
        : {}),
      endpointType: apigw.EndpointType.REGIONAL,
      // Mutual TLS needs TLS 1.2 or newer.
      securityPolicy: apigw.SecurityPolicy.TLS_1_2,
      mtls: {
        bucket: props.truststore.bucket,
        key: props.truststore.key,
        ...(props.truststore.version ? { version: props.truststore.version } : {}),
      },
    });

    // The one mapping of this API, and the only one of this domain.
    this.mapping = new apigw.ApiMapping(this, 'Mapping', {
      api: this.api,
      domainName: this.domain,
      stage: this.stage,
    });

    const [route] = this.api.addRoutes({
      path: MTLS_ROUTE,
      methods: [apigw.HttpMethod.ANY],
      integration: new HttpLambdaIntegration('Handler', props.handler, {
        payloadFormatVersion: apigw.PayloadFormatVersion.VERSION_2_0,
      }),
    });
    if (route) {
      Validations.of(route).acknowledge({
        id: 'AwsSolutions-APIG4',
        reason:
          'The caller is authenticated by mutual TLS on the only way in (the custom domain; execute-api is disabled): API Gateway refuses the handshake without a certificate from the truststore, and the app maps the verified certificate to a principal that Cedar authorizes.',
      });
    }
  }

  /** The base URL clients with a certificate use (COFFER_ADDR). */
  get url(): string {
    return `https://${this.domainName}`;
  }
}
