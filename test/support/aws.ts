import { randomBytes } from 'node:crypto';
import { CreateKeyCommand } from '@aws-sdk/client-kms';
import {
  CreateBucketCommand,
  ListObjectVersionsCommand,
  PutBucketVersioningCommand,
  type S3Client,
} from '@aws-sdk/client-s3';
import { inject } from 'vitest';
import { type AwsClients, makeAwsClients } from '../../shared/aws/clients.ts';
import { versionsOfKey } from '../../shared/aws/object-versions.ts';
import { parseConfig, type TaplineConfig } from '../../shared/config.ts';

/** The moto endpoint started by test/support/global-setup.ts. */
export function motoEndpoint(): string {
  return inject('motoEndpoint');
}

/** SDK clients pointed at the run's moto server, through the same factory Lambda uses. */
export function motoClients(region = 'us-east-1'): AwsClients {
  return makeAwsClients({ region, endpoint: motoEndpoint() });
}

/** A name no other test in the run uses (moto's state is shared by all test files). */
export function uniqueName(prefix: string): string {
  return `${prefix}-${randomBytes(4).toString('hex')}`;
}

/** Creates `bucket` on moto with versioning enabled, as the evidence bucket is. */
export async function createVersionedBucket(s3: S3Client, bucket: string): Promise<void> {
  await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  await s3.send(
    new PutBucketVersioningCommand({
      Bucket: bucket,
      VersioningConfiguration: { Status: 'Enabled' },
    }),
  );
}

/**
 * An evidence bucket and key of the test's own on moto: a versioned bucket named from `prefix`
 * and a new KMS key (with `keyDescription` when given).
 */
export async function versionedBucketWithKey(
  prefix: string,
  keyDescription?: string,
  clients: Pick<AwsClients, 's3' | 'kms'> = motoClients(),
): Promise<{ bucket: string; keyArn: string }> {
  const bucket = uniqueName(prefix);
  await createVersionedBucket(clients.s3, bucket);
  const key = await clients.kms.send(
    new CreateKeyCommand(keyDescription === undefined ? {} : { Description: keyDescription }),
  );
  return { bucket, keyArn: key.KeyMetadata!.Arn! };
}

/** A full config for tests, with the moto endpoint; override what the test cares about. */
export function testConfig(overrides: Record<string, string> = {}): TaplineConfig {
  return parseConfig({
    STAGE: 'test',
    AWS_REGION: 'us-east-1',
    TAPLINE_AWS_ENDPOINT: motoEndpoint(),
    EVIDENCE_BUCKET: 'tapline-test-evidence',
    EVIDENCE_KEY_ID: 'arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000',
    CAPTURE_DOCUMENT_NAME: 'TaplineCapture-test',
    NOTIFICATION_TOPIC: 'arn:aws:sns:us-east-1:123456789012:tapline-test',
    ...overrides,
  });
}

/** Every version of every object under a prefix, all pages of it: key → number of versions. */
export async function objectVersions(
  s3: S3Client,
  bucket: string,
  prefix = '',
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  let keyMarker: string | undefined;
  let versionMarker: string | undefined;
  for (;;) {
    const out = await s3.send(
      new ListObjectVersionsCommand({
        Bucket: bucket,
        Prefix: prefix,
        KeyMarker: keyMarker,
        VersionIdMarker: versionMarker,
      }),
    );
    for (const v of out.Versions ?? []) counts.set(v.Key!, (counts.get(v.Key!) ?? 0) + 1);
    if (!out.IsTruncated) return counts;
    keyMarker = out.NextKeyMarker;
    versionMarker = out.NextVersionIdMarker;
  }
}

/** How many versions the object `key` has (0: none). */
export async function versionsOf(s3: S3Client, bucket: string, key: string): Promise<number> {
  return (await versionsOfKey(s3, bucket, key)).length;
}
