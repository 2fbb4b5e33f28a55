/**
 * What the evidence bucket policy and the capture-host policy decide for each S3 request an
 * upload makes, evaluated by an IAM policy simulator (@cloud-copilot/iam-simulate) on the
 * packaged template's policies with the request context S3 builds: the encryption headers
 * travel on PutObject and CreateMultipartUpload only; UploadPart and CompleteMultipartUpload
 * are authorized as s3:PutObject with no such keys. Multipart uploads (aws s3 cp above 8 MB,
 * the processor's large result tables) must pass; any explicit other encryption must not.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { type IntrinsicValues, resolveIntrinsics, simulate } from '../support/policy-simulation.ts';
import { type PackagedTemplate, packagedTemplate } from '../support/template.ts';

const ACCOUNT = '123456789012';
const BUCKET = 'tapline-ci-us-east-1-evidence';
const KEY_ARN = `arn:aws:kms:us-east-1:${ACCOUNT}:key/0b1c2d3e-evidence`;
const OTHER_KEY_ARN = `arn:aws:kms:us-east-1:${ACCOUNT}:key/ffffffff-other`;
const HOST = `arn:aws:iam::${ACCOUNT}:role/capture-host`;
const PCAP = `arn:aws:s3:::${BUCKET}/pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/00001.pcap`;

/** The values the packaged policies' intrinsics take in this account and region. */
const INTRINSICS: IntrinsicValues = {
  getAtt: { 'EvidenceBucket.Arn': `arn:aws:s3:::${BUCKET}`, 'EvidenceKey.Arn': KEY_ARN },
  refs: { 'AWS::Partition': 'aws', 'AWS::Region': 'us-east-1', 'AWS::AccountId': ACCOUNT },
};
const resolve = (value: unknown) => resolveIntrinsics(value, INTRINSICS);

let bucketPolicy: any;
let hostPolicy: any;

beforeAll(async () => {
  const pkg: PackagedTemplate = await packagedTemplate();
  bucketPolicy = resolve(pkg.template.Resources.EvidenceBucketPolicy!.Properties!.PolicyDocument);
  hostPolicy = resolve(pkg.template.Resources.CaptureHostPolicy!.Properties!.PolicyDocument);
}, 600_000);

type Headers = { sse?: string; key?: string; customer?: string };

async function decide(
  identity: any,
  resourcePolicy: any,
  resource: string,
  headers: Headers,
  secure = true,
): Promise<string> {
  const context: Record<string, string> = { 'aws:SecureTransport': String(secure) };
  if (headers.sse) context['s3:x-amz-server-side-encryption'] = headers.sse;
  if (headers.key) context['s3:x-amz-server-side-encryption-aws-kms-key-id'] = headers.key;
  if (headers.customer)
    context['s3:x-amz-server-side-encryption-customer-algorithm'] = headers.customer;
  return simulate(
    { principal: HOST, action: 's3:PutObject', resource, accountId: ACCOUNT, context },
    identity,
    resourcePolicy,
  );
}

const EVIDENCE = { sse: 'aws:kms', key: KEY_ARN };
/** The requests of one upload and what S3 puts in their request context. */
const REQUESTS: [name: string, headers: Headers][] = [
  ['PutObject (single upload)', EVIDENCE],
  ['CreateMultipartUpload', EVIDENCE],
  ['UploadPart', {}],
  ['CompleteMultipartUpload', {}],
];

describe('uploads to the evidence bucket (IAM policy simulation of the packaged policies)', () => {
  it.each(REQUESTS)(
    'a capture host may send %s of an upload with the evidence key',
    async (_, headers) => {
      expect(await decide(hostPolicy, bucketPolicy, PCAP, headers)).toBe('Allowed');
    },
  );

  it.each([
    ['SSE-S3', { sse: 'AES256' }],
    ['DSSE-KMS', { sse: 'aws:kms:dsse', key: KEY_ARN }],
    ['another KMS key', { sse: 'aws:kms', key: OTHER_KEY_ARN }],
    ['the AWS managed key (aws:kms without a key ID)', { sse: 'aws:kms' }],
    ['SSE-C (a key only the uploader holds)', { customer: 'AES256' }],
  ] as [string, Headers][])(
    'the bucket policy denies an upload (or multipart initiation) asking for %s, to anyone',
    async (_, headers) => {
      const anyone = {
        Version: '2012-10-17',
        Statement: [{ Effect: 'Allow', Action: 's3:PutObject', Resource: '*' }],
      };
      expect(await decide(anyone, bucketPolicy, PCAP, headers)).toBe('ExplicitlyDenied');
      expect(await decide(hostPolicy, bucketPolicy, PCAP, headers)).toBe('ExplicitlyDenied');
    },
  );

  it('the bucket policy lets header-less parts and completions through for any writer (the processor)', async () => {
    const processor = {
      Version: '2012-10-17',
      Statement: [
        { Effect: 'Allow', Action: 's3:PutObject', Resource: `arn:aws:s3:::${BUCKET}/results/*` },
      ],
    };
    const table = `arn:aws:s3:::${BUCKET}/results/cap-x/i-y/f/conversations.jsonl.gz`;
    for (const [, headers] of REQUESTS) {
      expect(await decide(processor, bucketPolicy, table, headers)).toBe('Allowed');
    }
  });

  it('still denies plain HTTP, and the host cannot write outside pcaps/', async () => {
    expect(await decide(hostPolicy, bucketPolicy, PCAP, EVIDENCE, false)).toBe('ExplicitlyDenied');
    const manifest = `arn:aws:s3:::${BUCKET}/captures/cap-20261123T084000Z-1a2b3c4d/manifest.json`;
    expect(await decide(hostPolicy, bucketPolicy, manifest, EVIDENCE)).toBe('ImplicitlyDenied');
    expect(await decide(hostPolicy, bucketPolicy, manifest, {})).toBe('ImplicitlyDenied');
  });

  it('control: without the Null guard the same denies refuse UploadPart and CompleteMultipartUpload', async () => {
    // The statements as they were: the simulator models "negated operator, absent key → true".
    const unguarded = structuredClone(bucketPolicy);
    for (const s of unguarded.Statement) {
      if (['DenyUploadsNotSseKms', 'DenyUploadsWithAnotherKey'].includes(s.Sid)) {
        delete s.Condition.Null;
      }
    }
    expect(await decide(hostPolicy, unguarded, PCAP, EVIDENCE)).toBe('Allowed');
    expect(await decide(hostPolicy, unguarded, PCAP, {})).toBe('ExplicitlyDenied');
  });
});
