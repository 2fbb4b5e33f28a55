// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the expected values are CloudFormation Fn::Sub strings
import { readFile } from 'node:fs/promises';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
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
