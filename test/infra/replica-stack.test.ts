// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the expected values are CloudFormation Fn::Sub strings
import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { resolveIntrinsics, simulate } from '../support/policy-simulation.ts';
import { type PackagedTemplate, packagedTemplate } from '../support/template.ts';

// resources/replica-stack.yml is deployed on its own in the replica region (docs/deploy.md);
// npm run scan lints and guards it. Here: the properties replication depends on, and that it
// fits what the source stack's parameters and replication role expect.

const path = new URL('../../resources/replica-stack.yml', import.meta.url);
let replica: { Parameters: Record<string, any>; Resources: Record<string, any>; Outputs: any };
let source: PackagedTemplate;

beforeAll(async () => {
  replica = parse(await readFile(path, 'utf8'));
  source = await packagedTemplate();
}, 600_000);

const statements = (id: string) =>
  replica.Resources[id].Properties.PolicyDocument.Statement as Record<string, any>[];

describe('replica stack (resources/replica-stack.yml)', () => {
  it('the replica bucket is versioned, Object Lock with default retention, SSE-KMS with its own rotating key', () => {
    const bucket = replica.Resources.ReplicaBucket.Properties;
    expect(bucket.VersioningConfiguration).toEqual({ Status: 'Enabled' });
    expect(bucket.ObjectLockEnabled).toBe(true);
    expect(bucket.ObjectLockConfiguration.Rule.DefaultRetention).toEqual({
      Mode: { Ref: 'ObjectLockMode' },
      Days: { Ref: 'ObjectLockDays' },
    });
    expect(bucket.BucketEncryption.ServerSideEncryptionConfiguration[0]).toEqual({
      ServerSideEncryptionByDefault: {
        SSEAlgorithm: 'aws:kms',
        KMSMasterKeyID: { 'Fn::GetAtt': ['ReplicaKey', 'Arn'] },
      },
      BucketKeyEnabled: true,
    });
    expect(replica.Resources.ReplicaKey.Properties.EnableKeyRotation).toBe(true);
    expect(bucket.PublicAccessBlockConfiguration.BlockPublicPolicy).toBe(true);
    expect(bucket.OwnershipControls.Rules[0].ObjectOwnership).toBe('BucketOwnerEnforced');
    expect(bucket.LoggingConfiguration.DestinationBucketName).toEqual({
      Ref: 'ReplicaAccessLogBucket',
    });
  });

  it('only the source replication role may write replicas, and only encrypt with the replica key through S3', () => {
    const write = statements('ReplicaBucketPolicy').find(
      (s) => s.Sid === 'SourceReplicationRoleWritesReplicas',
    );
    expect(write?.Action).toEqual([
      's3:ReplicateObject',
      's3:ReplicateDelete',
      's3:ReplicateTags',
      's3:ObjectOwnerOverrideToBucketOwner',
    ]);
    expect(write?.Condition).toEqual({
      ArnEquals: { 'aws:PrincipalArn': { Ref: 'ReplicationRoleArn' } },
    });
    const key = replica.Resources.ReplicaKey.Properties.KeyPolicy.Statement.find(
      (s: any) => s.Sid === 'SourceReplicationRoleEncryptsReplicas',
    );
    expect(key.Action).toEqual(['kms:Encrypt', 'kms:GenerateDataKey']);
    expect(key.Condition.ArnEquals['aws:PrincipalArn']).toEqual({ Ref: 'ReplicationRoleArn' });
    expect(key.Condition.StringEquals['kms:ViaService']).toEqual({
      'Fn::Sub': 's3.${AWS::Region}.amazonaws.com',
    });
  });

  it('is TLS 1.2+ only and accepts direct uploads only SSE-KMS with the replica key', () => {
    const sids = statements('ReplicaBucketPolicy').map((s) => s.Sid);
    expect(sids).toEqual(
      expect.arrayContaining([
        'DenyInsecureTransport',
        'DenyTlsBelow12',
        'DenyUploadsNotSseKms',
        'DenyUploadsWithAnotherKey',
      ]),
    );
  });

  describe('what the replica bucket policy decides (IAM policy simulation)', () => {
    const ACCOUNT = '123456789012';
    const BUCKET = 'tapline-prod-eu-west-1-evidence-replica';
    const KEY_ARN = `arn:aws:kms:eu-west-1:${ACCOUNT}:key/1234abcd-replica`;
    const ROLE = `arn:aws:iam::${ACCOUNT}:role/tapline-prod-us-east-1-replication`;
    const OBJECT = `arn:aws:s3:::${BUCKET}/pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/00001.pcap`;
    const policy = () =>
      resolveIntrinsics(replica.Resources.ReplicaBucketPolicy.Properties.PolicyDocument, {
        getAtt: { 'ReplicaBucket.Arn': `arn:aws:s3:::${BUCKET}`, 'ReplicaKey.Arn': KEY_ARN },
        refs: {
          'AWS::Partition': 'aws',
          'AWS::AccountId': ACCOUNT,
          SourceAccountId: ACCOUNT,
          ReplicationRoleArn: ROLE,
        },
      });
    /** A same-account operator allowed to write the replica (e.g. re-seeding it). */
    const operator = {
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Action: 's3:PutObject', Resource: `arn:aws:s3:::${BUCKET}/*` },
      ],
    };
    const put = (context: Record<string, string>, resourcePolicy: unknown = policy()) =>
      simulate(
        {
          principal: `arn:aws:iam::${ACCOUNT}:role/operator`,
          action: 's3:PutObject',
          resource: OBJECT,
          accountId: ACCOUNT,
          context,
        },
        operator,
        resourcePolicy,
      );
    const replicaKey = {
      's3:x-amz-server-side-encryption': 'aws:kms',
      's3:x-amz-server-side-encryption-aws-kms-key-id': KEY_ARN,
    };

    it('the SSE denies carry the Null guard of the evidence bucket, and SSE-C is denied on its own header', () => {
      for (const sid of ['DenyUploadsNotSseKms', 'DenyUploadsWithAnotherKey']) {
        const statement = statements('ReplicaBucketPolicy').find((s) => s.Sid === sid)!;
        expect(statement.Condition.Null).toEqual({ 's3:x-amz-server-side-encryption': 'false' });
      }
      const sseC = statements('ReplicaBucketPolicy').find((s) => s.Sid === 'DenySseCUploads')!;
      expect(sseC).toMatchObject({ Effect: 'Deny', Principal: '*', Action: 's3:PutObject' });
    });

    it.each([
      ['PutObject with the replica key', replicaKey],
      ['CreateMultipartUpload with the replica key', replicaKey],
      ['UploadPart (no encryption headers)', {}],
      ['CompleteMultipartUpload (no encryption headers)', {}],
    ] as [string, Record<string, string>][])('lets %s through', async (_, context) => {
      expect(await put(context)).toBe('Allowed');
    });

    it.each([
      ['SSE-S3', { 's3:x-amz-server-side-encryption': 'AES256' }],
      ['DSSE-KMS', { ...replicaKey, 's3:x-amz-server-side-encryption': 'aws:kms:dsse' }],
      [
        'another KMS key',
        { ...replicaKey, 's3:x-amz-server-side-encryption-aws-kms-key-id': `${KEY_ARN}-other` },
      ],
      ['the AWS managed key', { 's3:x-amz-server-side-encryption': 'aws:kms' }],
      ['SSE-C', { 's3:x-amz-server-side-encryption-customer-algorithm': 'AES256' }],
    ] as [string, Record<string, string>][])(
      'denies an upload asking for %s',
      async (_, context) => {
        expect(await put(context)).toBe('ExplicitlyDenied');
      },
    );

    it('replication (s3:ReplicateObject) by the source role is not subject to the upload denies', async () => {
      const role = {
        Version: '2012-10-17',
        Statement: [
          { Effect: 'Allow', Action: 's3:ReplicateObject', Resource: `arn:aws:s3:::${BUCKET}/*` },
        ],
      };
      const request = {
        principal: ROLE,
        action: 's3:ReplicateObject',
        resource: OBJECT,
        accountId: ACCOUNT,
      };
      expect(await simulate(request, role, policy())).toBe('Allowed');
      expect(
        await simulate({ ...request, context: { 'aws:SecureTransport': 'false' } }, role, policy()),
      ).toBe('ExplicitlyDenied');
    });

    it('control: without the Null guard the denies refuse a correctly encrypted multipart upload; with it, SSE-C needs its own deny', async () => {
      const unguarded = structuredClone(policy()) as { Statement: any[] };
      for (const s of unguarded.Statement) {
        if (s.Condition?.Null?.['s3:x-amz-server-side-encryption']) delete s.Condition.Null;
      }
      expect(await put(replicaKey, unguarded)).toBe('Allowed');
      expect(await put({}, unguarded)).toBe('ExplicitlyDenied');
      // and with the guard, SSE-C (no x-amz-server-side-encryption header) needs its own deny
      const withoutSseCDeny = structuredClone(policy()) as { Statement: any[] };
      withoutSseCDeny.Statement = withoutSseCDeny.Statement.filter(
        (s) => s.Sid !== 'DenySseCUploads',
      );
      const sseC = { 's3:x-amz-server-side-encryption-customer-algorithm': 'AES256' };
      expect(await put(sseC, withoutSseCDeny)).toBe('Allowed');
    });
  });

  it("names the bucket and outputs ARNs that the source stack's replica parameters accept", () => {
    const bucketPattern = new RegExp(source.template.Parameters.ReplicaBucketArn.AllowedPattern);
    const keyPattern = new RegExp(source.template.Parameters.ReplicaKeyArn.AllowedPattern);
    const name = replica.Resources.ReplicaBucket.Properties.BucketName['Fn::Sub']
      .replace('${Stage}', 'prod')
      .replace('${AWS::Region}', 'eu-west-1');
    expect(`arn:aws:s3:::${name}`).toMatch(bucketPattern);
    expect('arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab').toMatch(
      keyPattern,
    );
    expect(replica.Outputs.ReplicaBucketArn.Value).toEqual({
      'Fn::GetAtt': ['ReplicaBucket', 'Arn'],
    });
    expect(replica.Outputs.ReplicaKeyArn.Value).toEqual({ 'Fn::GetAtt': ['ReplicaKey', 'Arn'] });
  });

  it("its ReplicationRoleArn parameter accepts the source stack's deterministic replication role", () => {
    const roleName = source.template.Resources.ReplicationRole.Properties?.RoleName;
    expect(roleName).toBe('tapline-ci-us-east-1-replication');
    expect(`arn:aws:iam::123456789012:role/${roleName}`).toMatch(
      new RegExp(replica.Parameters.ReplicationRoleArn.AllowedPattern),
    );
  });
});
