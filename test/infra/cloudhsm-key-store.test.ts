import { CloudHSMV2Client, DescribeClustersCommand, type Hsm } from '@aws-sdk/client-cloudhsm-v2';
import {
  AlreadyExistsException,
  ConnectCustomKeyStoreCommand,
  CreateAliasCommand,
  CreateCustomKeyStoreCommand,
  CreateKeyCommand,
  CustomKeyStoreNotFoundException,
  DeleteCustomKeyStoreCommand,
  DescribeCustomKeyStoresCommand,
  DescribeKeyCommand,
  DisconnectCustomKeyStoreCommand,
  IncorrectTrustAnchorException,
  KMSClient,
  NotFoundException,
  ScheduleKeyDeletionCommand,
  UpdateCustomKeyStoreCommand,
} from '@aws-sdk/client-kms';
import { GetSecretValueCommand, SecretsManagerClient } from '@aws-sdk/client-secrets-manager';
import { mockClient } from 'aws-sdk-client-mock';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import {
  type Clients,
  type IsCompleteRequest,
  isCompleteWith,
  type OnEventRequest,
  onEventWith,
} from '../../functions/custom-resources/cloudhsm-key-store.js';

// The pinned 3.332.0 CloudHSM client predates the middleware types aws-sdk-client-mock 4 is typed
// against; the stub replaces `send` at run time all the same, so the types are bridged here, once.
const hsm = mockClient(CloudHSMV2Client as unknown as Parameters<typeof mockClient>[0]);
const describeClustersInputs = () =>
  hsm
    .calls()
    .map((c) => c.args[0] as unknown)
    .filter((command) => command instanceof DescribeClustersCommand)
    .map((command) => command.input);
const kms = mockClient(KMSClient);
const sm = mockClient(SecretsManagerClient);
const clients: Clients = {
  cloudhsm: new CloudHSMV2Client({ region: 'eu-west-1' }),
  kms: new KMSClient({ region: 'eu-west-1' }),
  secrets: new SecretsManagerClient({ region: 'eu-west-1' }),
};

const CLUSTER = 'cluster-abcdefghijk';
const STORE = 'cks-1234567890abcdef0';
const PASSWORD = 'kmsuser-Pa55word';
const KEY_ARN = 'arn:aws:kms:eu-west-1:111122223333:key/11111111-2222-3333-4444-555555555555';
const properties = {
  ServiceToken: 'arn:aws:lambda:eu-west-1:111122223333:function:provider',
  ClusterId: CLUSTER,
  KmsUserSecretId: 'coffer/kmsuser',
  TrustAnchorCertificate: '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n',
  CustomKeyStoreName: 'coffer-keystore',
  KeyAlias: 'alias/coffer/secrets',
};

const create: OnEventRequest = { RequestType: 'Create', ResourceProperties: properties };
const poll = (extra: Partial<IsCompleteRequest> = {}): IsCompleteRequest => ({
  RequestType: 'Create',
  ResourceProperties: properties,
  PhysicalResourceId: STORE,
  ...extra,
});

let hsmCount = 0;
const activeHsm = (az: string): Hsm => ({
  HsmId: `hsm-${++hsmCount}`,
  AvailabilityZone: az,
  State: 'ACTIVE',
  ClusterId: CLUSTER,
});

function cluster(state = 'ACTIVE', hsms: Hsm[] = [activeHsm('eu-west-1a'), activeHsm('eu-west-1b')]) {
  hsm.onAnyCommand().callsFake(() => ({ Clusters: [{ ClusterId: CLUSTER, State: state, Hsms: hsms }] }));
}

const storeEntry = (state: string, extra: Record<string, string> = {}) => ({
  CustomKeyStores: [
    {
      CustomKeyStoreId: STORE,
      CustomKeyStoreName: 'coffer-keystore',
      CloudHsmClusterId: CLUSTER,
      ConnectionState: state as 'CONNECTED',
      ...extra,
    },
  ],
});

const keyMetadata = {
  KeyId: '11111111-2222-3333-4444-555555555555',
  Arn: KEY_ARN,
  CustomKeyStoreId: STORE,
  Origin: 'AWS_CLOUDHSM' as const,
  KeyState: 'Enabled' as const,
};

const notFoundStore = () => new CustomKeyStoreNotFoundException({ message: 'none', $metadata: {} });
const noAlias = () => new NotFoundException({ message: 'alias not found', $metadata: {} });

let output: string[];
beforeEach(() => {
  hsm.reset();
  kms.reset();
  sm.reset();
  output = [];
  vi.spyOn(process.stdout, 'write').mockImplementation((chunk) => {
    output.push(String(chunk));
    return true;
  });
  sm.on(GetSecretValueCommand).resolves({ SecretString: JSON.stringify({ password: PASSWORD }) });
});
afterEach(() => {
  vi.restoreAllMocks();
  // Whatever happened, the password must not have been printed.
  expect(output.join('')).not.toContain(PASSWORD);
});

/** Commands that would lose the key store or the key: never sent. */
function expectNothingDestroyed() {
  expect(kms.commandCalls(DeleteCustomKeyStoreCommand)).toHaveLength(0);
  expect(kms.commandCalls(ScheduleKeyDeletionCommand)).toHaveLength(0);
}

describe('the CloudHSM key store custom resource: cluster checks', () => {
  it('when the cluster does not exist, it fails saying so', async () => {
    hsm.onAnyCommand().callsFake(() => ({ Clusters: [] }));
    await expect(onEventWith(clients, create)).rejects.toThrow(`CloudHSM cluster ${CLUSTER} was not found`);
    expect(describeClustersInputs()[0]).toEqual({
      Filters: { clusterIds: [CLUSTER] },
    });
    expect(kms.calls()).toHaveLength(0);
  });

  it('when the cluster is not ACTIVE, it fails naming its state', async () => {
    cluster('UNINITIALIZED');
    await expect(onEventWith(clients, create)).rejects.toThrow(/is UNINITIALIZED; it must be ACTIVE/);
    expect(kms.calls()).toHaveLength(0);
  });

  it('when the cluster has one HSM, it fails asking for two in different AZs', async () => {
    cluster('ACTIVE', [activeHsm('eu-west-1a')]);
    await expect(onEventWith(clients, create)).rejects.toThrow(
      /1 active HSM\(s\) in 1 Availability Zone\(s\); .* at least two active HSMs in different Availability Zones/,
    );
  });

  it('when both HSMs are in the same AZ (or one is not active), it fails too', async () => {
    cluster('ACTIVE', [activeHsm('eu-west-1a'), activeHsm('eu-west-1a')]);
    await expect(onEventWith(clients, create)).rejects.toThrow(/2 active HSM\(s\) in 1 Availability Zone/);
    cluster('ACTIVE', [activeHsm('eu-west-1a'), { ...activeHsm('eu-west-1b'), State: 'DEGRADED' }]);
    await expect(onEventWith(clients, create)).rejects.toThrow(/1 active HSM\(s\)/);
  });
});

describe('the CloudHSM key store custom resource: create', () => {
  it('when nothing exists, it creates the key store with the password from Secrets Manager and starts connecting', async () => {
    cluster();
    kms.on(DescribeCustomKeyStoresCommand).rejects(notFoundStore());
    kms.on(CreateCustomKeyStoreCommand).resolves({ CustomKeyStoreId: STORE });
    kms.on(ConnectCustomKeyStoreCommand).resolves({});
    const out = await onEventWith(clients, create);
    expect(out).toEqual({ PhysicalResourceId: STORE, Data: { CustomKeyStoreId: STORE } });
    expect(sm.commandCalls(GetSecretValueCommand)[0]?.args[0].input).toEqual({ SecretId: 'coffer/kmsuser' });
    expect(kms.commandCalls(CreateCustomKeyStoreCommand)[0]?.args[0].input).toEqual({
      CustomKeyStoreName: 'coffer-keystore',
      CustomKeyStoreType: 'AWS_CLOUDHSM',
      CloudHsmClusterId: CLUSTER,
      TrustAnchorCertificate: properties.TrustAnchorCertificate,
      KeyStorePassword: PASSWORD,
    });
    expect(kms.commandCalls(ConnectCustomKeyStoreCommand)[0]?.args[0].input).toEqual({
      CustomKeyStoreId: STORE,
    });
    // The store this run created already holds the secret's password: read once, sent once.
    expect(kms.commandCalls(UpdateCustomKeyStoreCommand)).toHaveLength(0);
    expect(sm.commandCalls(GetSecretValueCommand)).toHaveLength(1);
  });

  it('when the key store already exists for the cluster, it adopts it without reading the password or creating another', async () => {
    cluster();
    kms.on(DescribeCustomKeyStoresCommand).resolves(storeEntry('CONNECTED'));
    const out = await onEventWith(clients, create);
    expect(out.PhysicalResourceId).toBe(STORE);
    expect(kms.commandCalls(CreateCustomKeyStoreCommand)).toHaveLength(0);
    expect(kms.commandCalls(ConnectCustomKeyStoreCommand)).toHaveLength(0);
    expect(sm.calls()).toHaveLength(0);
  });

  it('when a key store of that name belongs to another cluster, it fails instead of adopting it', async () => {
    cluster();
    kms
      .on(DescribeCustomKeyStoresCommand)
      .resolves(storeEntry('CONNECTED', { CloudHsmClusterId: 'cluster-other' }));
    await expect(onEventWith(clients, create)).rejects.toThrow(/already exists for cluster cluster-other/);
  });

  it('when KMS rejects the trust anchor, the failure names the step and never the password', async () => {
    cluster();
    kms.on(DescribeCustomKeyStoresCommand).rejects(notFoundStore());
    kms
      .on(CreateCustomKeyStoreCommand)
      .rejects(new IncorrectTrustAnchorException({ message: 'trust anchor does not match', $metadata: {} }));
    const err = (await onEventWith(clients, create).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/^CreateCustomKeyStore failed: IncorrectTrustAnchorException/);
    expect(err.message).not.toContain(PASSWORD);
  });

  it('when the secret holds a password KMS cannot take, it fails without echoing it', async () => {
    cluster();
    kms.on(DescribeCustomKeyStoresCommand).rejects(notFoundStore());
    sm.on(GetSecretValueCommand).resolves({ SecretString: 'short' });
    const err = (await onEventWith(clients, create).catch((e: unknown) => e)) as Error;
    expect(err.message).toMatch(/must be 7 to 32 characters/);
    expect(err.message).not.toContain('short');
  });

  it('goes DISCONNECTED -> CONNECTING -> CONNECTED, then creates the key with origin AWS_CLOUDHSM and names it', async () => {
    cluster();
    kms
      .on(DescribeCustomKeyStoresCommand, { CustomKeyStoreName: 'coffer-keystore' })
      .resolves(storeEntry('DISCONNECTED'));
    kms
      .on(DescribeCustomKeyStoresCommand, { CustomKeyStoreId: STORE })
      .resolvesOnce(storeEntry('CONNECTING'))
      .resolvesOnce(storeEntry('CONNECTING'))
      .resolves(storeEntry('CONNECTED'));
    kms.on(ConnectCustomKeyStoreCommand).resolves({});
    kms.on(DescribeKeyCommand).rejects(noAlias());
    kms.on(CreateKeyCommand).resolves({ KeyMetadata: keyMetadata });
    kms.on(CreateAliasCommand).resolves({});

    const started = await onEventWith(clients, create);
    expect(kms.commandCalls(ConnectCustomKeyStoreCommand)).toHaveLength(1);
    const request = poll({ Data: started.Data });
    expect(await isCompleteWith(clients, request)).toEqual({ IsComplete: false });
    expect(await isCompleteWith(clients, request)).toEqual({ IsComplete: false });
    expect(kms.commandCalls(CreateKeyCommand)).toHaveLength(0);
    expect(await isCompleteWith(clients, request)).toEqual({
      IsComplete: true,
      Data: { CustomKeyStoreId: STORE, KeyArn: KEY_ARN, KeyId: keyMetadata.KeyId },
    });
    expect(kms.commandCalls(CreateKeyCommand)[0]?.args[0].input).toMatchObject({
      CustomKeyStoreId: STORE,
      Origin: 'AWS_CLOUDHSM',
      KeySpec: 'SYMMETRIC_DEFAULT',
      KeyUsage: 'ENCRYPT_DECRYPT',
    });
    expect(kms.commandCalls(CreateAliasCommand)[0]?.args[0].input).toEqual({
      AliasName: 'alias/coffer/secrets',
      TargetKeyId: keyMetadata.KeyId,
    });
  });

  it('when a poll finds the store DISCONNECTED again, it sets the password from the secret, connects again and keeps waiting', async () => {
    kms.on(DescribeCustomKeyStoresCommand).resolves(storeEntry('DISCONNECTED'));
    kms.on(UpdateCustomKeyStoreCommand).resolves({});
    kms.on(ConnectCustomKeyStoreCommand).resolves({});
    expect(await isCompleteWith(clients, poll())).toEqual({ IsComplete: false });
    expect(kms.commandCalls(ConnectCustomKeyStoreCommand)).toHaveLength(1);
    expect(kms.commandCalls(UpdateCustomKeyStoreCommand)[0]?.args[0].input).toEqual({
      CustomKeyStoreId: STORE,
      KeyStorePassword: PASSWORD,
    });
  });

  it('when a redeploy adopts a DISCONNECTED store after the password was fixed in the secret, KMS gets the new password before it connects', async () => {
    // The first deployment failed with INVALID_CREDENTIALS; KMS still holds the old password.
    cluster();
    kms.on(DescribeCustomKeyStoresCommand).resolves(storeEntry('DISCONNECTED'));
    kms.on(UpdateCustomKeyStoreCommand).resolves({});
    kms.on(ConnectCustomKeyStoreCommand).resolves({});
    await onEventWith(clients, create);
    const sent = kms
      .calls()
      .map((c) => (c.args[0] as { constructor: { name: string } }).constructor.name)
      .filter((n) => n !== 'DescribeCustomKeyStoresCommand');
    expect(sent).toEqual(['UpdateCustomKeyStoreCommand', 'ConnectCustomKeyStoreCommand']);
    expect(kms.commandCalls(UpdateCustomKeyStoreCommand)[0]?.args[0].input.KeyStorePassword).toBe(PASSWORD);
    expect(kms.commandCalls(CreateCustomKeyStoreCommand)).toHaveLength(0);
  });

  it('when the secret cannot be read to set the password, it fails naming the step and does not connect', async () => {
    kms.on(DescribeCustomKeyStoresCommand).resolves(storeEntry('DISCONNECTED'));
    sm.on(GetSecretValueCommand).rejects(
      Object.assign(new Error('User is not authorized to perform secretsmanager:GetSecretValue'), {
        name: 'AccessDeniedException',
      }),
    );
    await expect(isCompleteWith(clients, poll())).rejects.toThrow(
      /^GetSecretValue \(kmsuser password\) failed: AccessDeniedException/,
    );
    expect(kms.commandCalls(ConnectCustomKeyStoreCommand)).toHaveLength(0);
  });

  it('when the connection fails, it fails with the connection error code and what to do', async () => {
    kms
      .on(DescribeCustomKeyStoresCommand)
      .resolves(storeEntry('FAILED', { ConnectionErrorCode: 'INVALID_CREDENTIALS' }));
    await expect(isCompleteWith(clients, poll())).rejects.toThrow(
      /failed to connect \(ConnectionErrorCode INVALID_CREDENTIALS\): the kmsuser password/,
    );
    expect(kms.commandCalls(CreateKeyCommand)).toHaveLength(0);
  });

  it('when a new deployment finds the store FAILED, it disconnects it so that the poll can reconnect', async () => {
    cluster();
    kms
      .on(DescribeCustomKeyStoresCommand)
      .resolves(storeEntry('FAILED', { ConnectionErrorCode: 'NETWORK_ERRORS' }));
    kms.on(DisconnectCustomKeyStoreCommand).resolves({});
    await onEventWith(clients, create);
    expect(kms.commandCalls(DisconnectCustomKeyStoreCommand)[0]?.args[0].input).toEqual({
      CustomKeyStoreId: STORE,
    });
  });

  it('when create runs again (an interrupted deployment), it adopts the store and the key and creates nothing', async () => {
    cluster();
    kms.on(DescribeCustomKeyStoresCommand).resolves(storeEntry('CONNECTED'));
    kms.on(DescribeKeyCommand, { KeyId: 'alias/coffer/secrets' }).resolves({ KeyMetadata: keyMetadata });
    for (let i = 0; i < 2; i++) {
      const started = await onEventWith(clients, create);
      const done = await isCompleteWith(clients, poll({ Data: started.Data }));
      expect(done).toEqual({
        IsComplete: true,
        Data: { CustomKeyStoreId: STORE, KeyArn: KEY_ARN, KeyId: keyMetadata.KeyId },
      });
    }
    expect(kms.commandCalls(CreateCustomKeyStoreCommand)).toHaveLength(0);
    expect(kms.commandCalls(CreateKeyCommand)).toHaveLength(0);
    expect(kms.commandCalls(CreateAliasCommand)).toHaveLength(0);
  });

  it('when another run named its key first, it uses that key', async () => {
    kms.on(DescribeCustomKeyStoresCommand).resolves(storeEntry('CONNECTED'));
    kms.on(DescribeKeyCommand).rejectsOnce(noAlias()).resolves({ KeyMetadata: keyMetadata });
    kms
      .on(CreateKeyCommand)
      .resolves({ KeyMetadata: { ...keyMetadata, KeyId: 'other', Arn: `${KEY_ARN}-other` } });
    kms.on(CreateAliasCommand).rejects(new AlreadyExistsException({ message: 'exists', $metadata: {} }));
    const done = await isCompleteWith(clients, poll());
    expect(done.Data?.KeyArn).toBe(KEY_ARN);
  });

  it('when the alias names a key pending deletion, it fails saying so', async () => {
    kms.on(DescribeCustomKeyStoresCommand).resolves(storeEntry('CONNECTED'));
    kms.on(DescribeKeyCommand).resolves({ KeyMetadata: { ...keyMetadata, KeyState: 'PendingDeletion' } });
    await expect(isCompleteWith(clients, poll())).rejects.toThrow(/is PendingDeletion/);
  });
});

describe('the CloudHSM key store custom resource: update and delete', () => {
  it('when an update keeps the names, it checks the cluster and keeps the same key store', async () => {
    cluster();
    kms.on(DescribeCustomKeyStoresCommand).resolves(storeEntry('CONNECTED'));
    kms.on(DescribeKeyCommand).resolves({ KeyMetadata: keyMetadata });
    const update: OnEventRequest = {
      RequestType: 'Update',
      PhysicalResourceId: STORE,
      ResourceProperties: { ...properties, KeyDescription: 'new description' },
      OldResourceProperties: properties,
    };
    expect((await onEventWith(clients, update)).PhysicalResourceId).toBe(STORE);
    expect(describeClustersInputs()).toHaveLength(1);
    expect((await isCompleteWith(clients, { ...update, PhysicalResourceId: STORE })).IsComplete).toBe(true);
    expect(kms.commandCalls(CreateKeyCommand)).toHaveLength(0);
  });

  it('when an update changes the cluster, the key store name or the alias, it refuses', async () => {
    cluster();
    const update: OnEventRequest = {
      RequestType: 'Update',
      PhysicalResourceId: STORE,
      ResourceProperties: { ...properties, ClusterId: 'cluster-zzzzzzzzzzz' },
      OldResourceProperties: properties,
    };
    await expect(onEventWith(clients, update)).rejects.toThrow(/ClusterId cannot change/);
    expect(kms.calls()).toHaveLength(0);
  });

  it('when the stack deletes the resource, it retains the key store and the key and calls nothing', async () => {
    const del: OnEventRequest = {
      RequestType: 'Delete',
      PhysicalResourceId: STORE,
      ResourceProperties: properties,
    };
    expect(await onEventWith(clients, del)).toEqual({ PhysicalResourceId: STORE });
    expect(await isCompleteWith(clients, del)).toEqual({ IsComplete: true });
    expect(kms.calls()).toHaveLength(0);
    expect(hsm.calls()).toHaveLength(0);
    expect(sm.calls()).toHaveLength(0);
    expectNothingDestroyed();
    expect(output.join('')).toContain('retained');
  });
});
