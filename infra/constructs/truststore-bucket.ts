import { Duration, RemovalPolicy, Validations } from 'aws-cdk-lib';
import * as s3 from 'aws-cdk-lib/aws-s3';
import { Construct } from 'constructs';

/** Where the operator uploads the CA bundle in the bucket the stack makes (docs/mtls.md). */
export const TRUSTSTORE_KEY = 'truststore.pem';

export interface TruststoreBucketProps {
  /** Days the bucket's server access logs are kept. */
  readonly accessLogDays: number;
}

/**
 * The bucket API Gateway reads the mutual TLS truststore (the PEM bundle of client CAs) from.
 *
 * Versioned, because the custom domain is pinned to one version of the bundle: a write to the
 * bucket changes whom Coffer trusts only once a deployment names the new version, and every earlier
 * bundle stays on record. Encrypted with S3-managed keys: the bundle holds public certificates
 * only, so a KMS key would add cost and a key policy without protecting anything secret. Public
 * access is blocked, TLS is required, and every access is logged to a second bucket (who uploaded
 * which CA is the question an incident asks first). Both are retained when the stack is deleted.
 */
export class TruststoreBucket extends Construct {
  readonly bucket: s3.Bucket;
  readonly accessLogs: s3.Bucket;

  constructor(scope: Construct, id: string, props: TruststoreBucketProps) {
    super(scope, id);

    // S3 server access logs can only be delivered to a bucket with S3-managed encryption.
    this.accessLogs = new s3.Bucket(this, 'AccessLogs', {
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      lifecycleRules: [{ expiration: Duration.days(props.accessLogDays) }],
      removalPolicy: RemovalPolicy.RETAIN,
    });
    Validations.of(this.accessLogs).acknowledge({
      id: 'AwsSolutions-S1',
      reason:
        'This bucket receives the truststore bucket access logs; logging its own access would need a third bucket, and it holds no certificate or secret.',
    });

    this.bucket = new s3.Bucket(this, 'Bucket', {
      versioned: true,
      encryption: s3.BucketEncryption.S3_MANAGED,
      blockPublicAccess: s3.BlockPublicAccess.BLOCK_ALL,
      enforceSSL: true,
      objectOwnership: s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
      serverAccessLogsBucket: this.accessLogs,
      serverAccessLogsPrefix: 'truststore/',
      removalPolicy: RemovalPolicy.RETAIN,
    });
  }
}
