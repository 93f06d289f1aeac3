import { DynamoDBClient } from '@aws-sdk/client-dynamodb';

/**
 * Fixed credentials and region for DynamoDB Local. DynamoDB Local runs with `-sharedDb`, and
 * using fixed values means a developer's real AWS credentials in the environment neither reach
 * the local engine nor change which data it serves. (DynamoDB Local accepts only letters and
 * digits in the access key id.)
 */
export const LOCAL_DYNAMODB_CREDENTIALS = { accessKeyId: 'cofferlocal', secretAccessKey: 'cofferlocal' };
export const LOCAL_DYNAMODB_REGION = 'us-east-1';

export function localDynamoClient(endpoint: string): DynamoDBClient {
  return new DynamoDBClient({
    endpoint,
    region: LOCAL_DYNAMODB_REGION,
    credentials: LOCAL_DYNAMODB_CREDENTIALS,
    maxAttempts: 3,
  });
}
