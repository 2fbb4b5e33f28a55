import { DescribeRouteTablesCommand } from '@aws-sdk/client-ec2';
import {
  GetBucketVersioningCommand,
  GetObjectLockConfigurationCommand,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { ReceiveMessageCommand } from '@aws-sdk/client-sqs';
import { GetDocumentCommand } from '@aws-sdk/client-ssm';
import { beforeAll, describe, expect, it } from 'vitest';
import { startMoto } from '../../scripts/lib/moto-server.ts';
import { makeAwsClients } from '../../shared/aws/clients.ts';
import { type LabStack, provisionLabStack } from '../../shared/lab/lab-aws.ts';
import { packagedTemplate } from '../support/template.ts';

// The lab gets a moto of its own (as `npm run lab` does), so the template's fixed names cannot
// collide with other tests sharing the run's moto.
describe('lab stack provisioned in moto from the packaged template', () => {
  let stack: LabStack;
  const clients = { current: undefined as ReturnType<typeof makeAwsClients> | undefined };

  beforeAll(async () => {
    const moto = await startMoto();
    clients.current = makeAwsClients({ region: 'us-east-1', endpoint: moto.endpoint });
    stack = await provisionLabStack(clients.current, await packagedTemplate(), {
      endpoint: moto.endpoint,
      region: 'us-east-1',
    });
    return () => moto.stop();
  });

  it('has a versioned, object-locked evidence bucket whose pcaps/ uploads reach the queue', async () => {
    const s3 = clients.current!.s3;
    expect((await s3.send(new GetBucketVersioningCommand({ Bucket: stack.bucket }))).Status).toBe(
      'Enabled',
    );
    const lock = await s3.send(new GetObjectLockConfigurationCommand({ Bucket: stack.bucket }));
    expect(lock.ObjectLockConfiguration?.Rule?.DefaultRetention?.Days).toBeGreaterThan(0);
    await s3.send(
      new PutObjectCommand({ Bucket: stack.bucket, Key: 'pcaps/cap-x/i-1/a+b.pcap', Body: 'x' }),
    );
    await s3.send(
      new PutObjectCommand({
        Bucket: stack.bucket,
        Key: 'captures/cap-x/manifest.json',
        Body: '{}',
      }),
    );
    const keys: string[] = [];
    for (let i = 0; i < 5 && keys.length === 0; i += 1) {
      const got = await clients.current!.sqs.send(
        new ReceiveMessageCommand({
          QueueUrl: stack.queueUrl,
          MaxNumberOfMessages: 10,
          WaitTimeSeconds: 1,
        }),
      );
      for (const m of got.Messages ?? []) {
        for (const r of JSON.parse(m.Body ?? '{}').Records ?? []) {
          // S3 event keys are form-encoded (moto also encodes the slashes).
          keys.push(decodeURIComponent(r.s3.object.key.replaceAll('+', ' ')));
        }
      }
    }
    expect(keys).toEqual(['pcaps/cap-x/i-1/a+b.pcap']);
  });

  it('routes the private subnet to the NAT instance and registers the packaged document', async () => {
    const tables = await clients.current!.ec2.send(
      new DescribeRouteTablesCommand({ RouteTableIds: [stack.routeTableId] }),
    );
    const route = tables.RouteTables?.[0]?.Routes?.find(
      (r) => r.DestinationCidrBlock === '0.0.0.0/0',
    );
    expect(route?.InstanceId).toBe(stack.natInstanceId);
    const doc = await clients.current!.ssm.send(
      new GetDocumentCommand({ Name: stack.documentName }),
    );
    expect(JSON.parse(doc.Content ?? '{}').schemaVersion).toBe('2.2');
    expect(stack.functionEnvironment.TAPLINE_AWS_ENDPOINT).toMatch(/^http:\/\/127\.0\.0\.1:/);
  });
});
