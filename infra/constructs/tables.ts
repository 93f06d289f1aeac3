import { RemovalPolicy } from 'aws-cdk-lib';
import * as dynamodb from 'aws-cdk-lib/aws-dynamodb';
import { Construct } from 'constructs';

export interface CofferTablesProps {
  /**
   * Days point-in-time recovery keeps (1 to 35). Destroyed versions stay in these backups until
   * the window passes: see docs/deploy.md. @default 35
   */
  readonly recoveryPeriodDays?: number;
  /**
   * Use this existing table as the secrets table instead of creating one: the table a
   * point-in-time restore made. Its backups, deletion protection and TTL are the operator's
   * (docs/operations.md). @default - the stack creates and owns the secrets table
   */
  readonly secretsTableName?: string;
}

/**
 * The two DynamoDB tables, both `pk`/`sk` strings, on-demand: the secrets table (heads, versions,
 * list and purge indexes, idempotency keys) and the append-only audit table. Both have
 * point-in-time recovery, deletion protection, encryption at rest, and are retained when the
 * stack is deleted: losing either by a stack operation must be impossible.
 *
 * Encryption at rest uses the AWS-managed DynamoDB key: every secret value is already sealed
 * under Coffer's own key (envelope encryption) before DynamoDB sees it, and a customer-managed
 * table key could not live in a CloudHSM key store alongside it anyway.
 */
export class CofferTables extends Construct {
  readonly secrets: dynamodb.ITable;
  readonly audit: dynamodb.Table;

  constructor(scope: Construct, id: string, props: CofferTablesProps = {}) {
    super(scope, id);
    const recoveryPeriodInDays = props.recoveryPeriodDays ?? 35;
    const common: dynamodb.TableProps = {
      partitionKey: { name: 'pk', type: dynamodb.AttributeType.STRING },
      sortKey: { name: 'sk', type: dynamodb.AttributeType.STRING },
      billingMode: dynamodb.BillingMode.PAY_PER_REQUEST,
      pointInTimeRecoverySpecification: { pointInTimeRecoveryEnabled: true, recoveryPeriodInDays },
      deletionProtection: true,
      encryption: dynamodb.TableEncryption.AWS_MANAGED,
      removalPolicy: RemovalPolicy.RETAIN,
    };
    this.secrets = props.secretsTableName
      ? // Imported by name: the stack grants on it and never changes or deletes it. The table it
        // created before is retained (RETAIN), outside the stack, for as long as the operator keeps it.
        dynamodb.Table.fromTableName(this, 'RestoredSecrets', props.secretsTableName)
      : new dynamodb.Table(this, 'Secrets', {
          ...common,
          // Only remembered Idempotency-Key results carry `ttl`: DynamoDB may drop them after 24 h.
          // Nothing else relies on TTL (reads check windows themselves).
          timeToLiveAttribute: 'ttl',
        });
    this.audit = new dynamodb.Table(this, 'Audit', common);
  }
}
