import { randomBytes } from 'node:crypto';
import {
  AssociateRouteTableCommand,
  CreateRouteCommand,
  CreateRouteTableCommand,
  CreateSubnetCommand,
  CreateVpcCommand,
  type EC2Client,
  ModifyInstanceAttributeCommand,
  RunInstancesCommand,
} from '@aws-sdk/client-ec2';
import { CreateAliasCommand, CreateKeyCommand } from '@aws-sdk/client-kms';
import {
  CreateBucketCommand,
  PutBucketEncryptionCommand,
  PutBucketNotificationConfigurationCommand,
  PutObjectLockConfigurationCommand,
} from '@aws-sdk/client-s3';
import { CreateTopicCommand } from '@aws-sdk/client-sns';
import { CreateQueueCommand, GetQueueAttributesCommand } from '@aws-sdk/client-sqs';
import { CreateDocumentCommand } from '@aws-sdk/client-ssm';
import type { Context } from 'aws-lambda';
import type { AwsClients } from '../aws/clients.ts';
import { parseTag } from '../targets/resolve.ts';
import { LAB_ADDRESSES } from './lab-network.ts';
import { captureDocumentResource, type PackagedTemplate } from './packaged-template.ts';

/**
 * Recreates, in moto, the parts of the packaged stack the pipeline touches — with the names,
 * Object Lock settings, notification filter, queue redrive and capture document taken from the
 * packaged CloudFormation template itself — plus an EC2 model of the lab network whose private
 * subnet routes 0.0.0.0/0 through the NAT instance.
 */
export interface LabStack {
  bucket: string;
  queueUrl: string;
  deadLetterQueueUrl: string;
  topicArn: string;
  keyArn: string;
  keyAlias: string;
  documentName: string;
  vpcId: string;
  privateSubnetId: string;
  publicSubnetId: string;
  routeTableId: string;
  natInstanceId: string;
  natEniId: string;
  workloadInstanceId: string;
  workloadEniId: string;
  /** Environment for the real handlers, as serverless.yml sets it, pointed at moto. */
  functionEnvironment: Record<string, string>;
}

/**
 * The Lambda context a real handler gets when the lab (or a test) calls it in-process: the
 * function name, ARN and log group a deployed `functionName` would see, a fresh request ID and
 * five minutes left. `overrides` replace any of it.
 */
export function lambdaContext(functionName: string, overrides: Partial<Context> = {}): Context {
  return {
    callbackWaitsForEmptyEventLoop: false,
    functionName,
    functionVersion: '$LATEST',
    invokedFunctionArn: `arn:aws:lambda:us-east-1:123456789012:function:${functionName}`,
    memoryLimitInMB: '1024',
    awsRequestId: randomBytes(16).toString('hex'),
    logGroupName: `/aws/lambda/${functionName}`,
    logStreamName: 'local',
    getRemainingTimeInMillis: () => 300_000,
    done: () => undefined,
    fail: () => undefined,
    succeed: () => undefined,
    ...overrides,
  };
}

function prop<T>(value: T | undefined, what: string): T {
  if (value === undefined || value === null)
    throw new Error(`packaged template: ${what} is missing`);
  return value;
}

/** The plain-string environment serverless.yml gives a function in the packaged template. */
export function functionEnvironmentFrom(
  pkg: PackagedTemplate,
  logicalId = 'StartCaptureLambdaFunction',
): Record<string, string> {
  const variables = pkg.template.Resources[logicalId]?.Properties?.Environment?.Variables as Record<
    string,
    unknown
  >;
  if (!variables) throw new Error(`packaged template: ${logicalId} has no environment`);
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(variables)) {
    if (typeof value !== 'string')
      throw new Error(`packaged template: ${name} is not a plain string`);
    env[name] = value;
  }
  return env;
}

/** An EC2 instance modelled in moto: its ID, primary ENI and private address. */
export interface ModelInstance {
  instanceId: string;
  eniId: string;
  privateIp: string;
}

/**
 * Launches one instance into a subnet, tagged with `key=value` tags (read as CAPTURE_TAG and
 * SENSOR_TAG are: parseTag), at `privateIpAddress` when given, else where EC2 puts it.
 */
export async function runInstance(
  ec2: EC2Client,
  subnetId: string,
  tags: string[] = [],
  privateIpAddress?: string,
): Promise<ModelInstance> {
  const out = await ec2.send(
    new RunInstancesCommand({
      ImageId: 'ami-12c6146b',
      InstanceType: 't3.micro',
      MinCount: 1,
      MaxCount: 1,
      SubnetId: subnetId,
      ...(privateIpAddress ? { PrivateIpAddress: privateIpAddress } : {}),
      ...(tags.length > 0
        ? {
            TagSpecifications: [
              {
                ResourceType: 'instance',
                Tags: tags.map(parseTag).map(({ key, value }) => ({ Key: key, Value: value })),
              },
            ],
          }
        : {}),
    }),
  );
  const instance = prop(out.Instances?.[0], 'instance');
  return {
    instanceId: prop(instance.InstanceId, 'instance id'),
    eniId: prop(instance.NetworkInterfaces?.[0]?.NetworkInterfaceId, 'instance ENI'),
    privateIp: prop(instance.PrivateIpAddress, 'instance address'),
  };
}

/** What buildNatVpc makes: the VPC, its two subnets, the private route table and the hosts. */
export interface NatVpc {
  vpcId: string;
  publicSubnetId: string;
  privateSubnetId: string;
  /** Explicitly associated with the private subnet; 0.0.0.0/0 goes to the NAT instance. */
  routeTableId: string;
  nat: ModelInstance;
  workload: ModelInstance;
}

/**
 * The shape of network Tapline captures in, modelled in EC2 (moto): a VPC with a public subnet
 * holding a NAT instance (source/destination check off, as a NAT instance needs) and a private
 * subnet holding a workload, whose explicitly associated route table sends 0.0.0.0/0 to the NAT
 * instance. The lab models its namespaces with it; the capture tests add their own hosts and
 * routes to it.
 */
export async function buildNatVpc(
  ec2: EC2Client,
  spec: {
    vpcCidr: string;
    publicSubnet: string;
    privateSubnet: string;
    nat: { tags: string[]; address?: string | undefined };
    workload: { tags: string[]; address?: string | undefined };
  },
): Promise<NatVpc> {
  const vpcId = prop(
    (await ec2.send(new CreateVpcCommand({ CidrBlock: spec.vpcCidr }))).Vpc?.VpcId,
    'vpc',
  );
  const subnet = async (cidr: string) =>
    prop(
      (await ec2.send(new CreateSubnetCommand({ VpcId: vpcId, CidrBlock: cidr }))).Subnet?.SubnetId,
      'subnet',
    );
  const publicSubnetId = await subnet(spec.publicSubnet);
  const privateSubnetId = await subnet(spec.privateSubnet);
  const nat = await runInstance(ec2, publicSubnetId, spec.nat.tags, spec.nat.address);
  await ec2.send(
    new ModifyInstanceAttributeCommand({
      InstanceId: nat.instanceId,
      SourceDestCheck: { Value: false },
    }),
  );
  const workload = await runInstance(
    ec2,
    privateSubnetId,
    spec.workload.tags,
    spec.workload.address,
  );
  const routeTableId = prop(
    (await ec2.send(new CreateRouteTableCommand({ VpcId: vpcId }))).RouteTable?.RouteTableId,
    'route table',
  );
  await ec2.send(
    new AssociateRouteTableCommand({ RouteTableId: routeTableId, SubnetId: privateSubnetId }),
  );
  await ec2.send(
    new CreateRouteCommand({
      RouteTableId: routeTableId,
      DestinationCidrBlock: '0.0.0.0/0',
      InstanceId: nat.instanceId,
    }),
  );
  return { vpcId, publicSubnetId, privateSubnetId, routeTableId, nat, workload };
}

export async function provisionLabStack(
  clients: AwsClients,
  pkg: PackagedTemplate,
  options: { endpoint: string; region: string },
): Promise<LabStack> {
  const [, bucketResource] = Object.entries(pkg.template.Resources).find(
    ([id, r]) => r.Type === 'AWS::S3::Bucket' && id === 'EvidenceBucket',
  ) ?? [undefined, undefined];
  const evidence = prop(bucketResource?.Properties, 'EvidenceBucket');
  const bucket = prop(evidence.BucketName as string, 'EvidenceBucket.BucketName');
  const lock = prop(evidence.ObjectLockConfiguration, 'EvidenceBucket.ObjectLockConfiguration');
  const queueConfig = prop(
    evidence.NotificationConfiguration?.QueueConfigurations?.[0],
    'bucket queue notification',
  );
  const queue = prop(pkg.template.Resources.ProcessingQueue?.Properties, 'ProcessingQueue');
  const dlq = prop(
    pkg.template.Resources.ProcessingDeadLetterQueue?.Properties,
    'ProcessingDeadLetterQueue',
  );
  const topic = prop(pkg.template.Resources.NotificationTopic?.Properties, 'NotificationTopic');
  const alias = prop(
    pkg.template.Resources.EvidenceKeyAlias?.Properties?.AliasName as string,
    'EvidenceKeyAlias',
  );
  // By logical ID: the stack has two SSM documents (capture and standby).
  const document = prop(captureDocumentResource(pkg).Properties, 'capture document');

  // KMS: the evidence key and its alias (the functions get alias/NAME, as in AWS).
  const key = await clients.kms.send(
    new CreateKeyCommand({ Description: 'Tapline lab evidence key' }),
  );
  const keyArn = prop(key.KeyMetadata?.Arn, 'created key ARN');
  await clients.kms.send(
    new CreateAliasCommand({ AliasName: alias, TargetKeyId: key.KeyMetadata?.KeyId }),
  );

  // SQS: processing queue with its dead-letter queue and redrive from the template.
  const dlqUrl = prop(
    (await clients.sqs.send(new CreateQueueCommand({ QueueName: dlq.QueueName as string })))
      .QueueUrl,
    'DLQ url',
  );
  const dlqArn = prop(
    (
      await clients.sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: dlqUrl, AttributeNames: ['QueueArn'] }),
      )
    ).Attributes?.QueueArn,
    'DLQ arn',
  );
  const queueUrl = prop(
    (
      await clients.sqs.send(
        new CreateQueueCommand({
          QueueName: queue.QueueName as string,
          Attributes: {
            VisibilityTimeout: String(queue.VisibilityTimeout),
            RedrivePolicy: JSON.stringify({
              deadLetterTargetArn: dlqArn,
              maxReceiveCount: queue.RedrivePolicy?.maxReceiveCount ?? 5,
            }),
          },
        }),
      )
    ).QueueUrl,
    'queue url',
  );
  const queueArn = prop(
    (
      await clients.sqs.send(
        new GetQueueAttributesCommand({ QueueUrl: queueUrl, AttributeNames: ['QueueArn'] }),
      )
    ).Attributes?.QueueArn,
    'queue arn',
  );

  // S3: versioned, object-locked, SSE-KMS evidence bucket notifying the queue for pcaps/.
  await clients.s3.send(
    new CreateBucketCommand({ Bucket: bucket, ObjectLockEnabledForBucket: true }),
  );
  await clients.s3.send(
    new PutObjectLockConfigurationCommand({
      Bucket: bucket,
      ObjectLockConfiguration: {
        ObjectLockEnabled: 'Enabled',
        Rule: {
          DefaultRetention: {
            Mode: lock.Rule.DefaultRetention.Mode,
            Days: Number(lock.Rule.DefaultRetention.Days),
          },
        },
      },
    }),
  );
  await clients.s3.send(
    new PutBucketEncryptionCommand({
      Bucket: bucket,
      ServerSideEncryptionConfiguration: {
        Rules: [
          {
            ApplyServerSideEncryptionByDefault: { SSEAlgorithm: 'aws:kms', KMSMasterKeyID: keyArn },
            BucketKeyEnabled: true,
          },
        ],
      },
    }),
  );
  await clients.s3.send(
    new PutBucketNotificationConfigurationCommand({
      Bucket: bucket,
      NotificationConfiguration: {
        QueueConfigurations: [
          {
            QueueArn: queueArn,
            Events: [queueConfig.Event],
            Filter: {
              Key: {
                FilterRules: queueConfig.Filter.S3Key.Rules.map(
                  (r: { Name: string; Value: string }) => ({
                    Name: r.Name,
                    Value: r.Value,
                  }),
                ),
              },
            },
          },
        ],
      },
    }),
  );

  const topicArn = prop(
    (await clients.sns.send(new CreateTopicCommand({ Name: topic.TopicName as string }))).TopicArn,
    'topic arn',
  );

  // SSM: the capture document exactly as packaged.
  await clients.ssm.send(
    new CreateDocumentCommand({
      Name: document.Name as string,
      DocumentType: 'Command',
      DocumentFormat: 'JSON',
      Content: JSON.stringify(document.Content),
    }),
  );

  // EC2: the lab network as a VPC; the private subnet's default route goes to the NAT instance,
  // which carries the stage's capture tag.
  const network = await buildNatVpc(clients.ec2, {
    vpcCidr: LAB_ADDRESSES.vpcCidr,
    publicSubnet: LAB_ADDRESSES.publicSubnet,
    privateSubnet: LAB_ADDRESSES.privateSubnet,
    nat: {
      address: LAB_ADDRESSES.natPublic,
      tags: ['Name=lab-nat', functionEnvironmentFrom(pkg).CAPTURE_TAG ?? 'tapline:capture=true'],
    },
    workload: { address: LAB_ADDRESSES.workload, tags: ['Name=lab-workload'] },
  });

  const functionEnvironment = {
    ...functionEnvironmentFrom(pkg),
    AWS_REGION: options.region,
    TAPLINE_AWS_ENDPOINT: options.endpoint,
  };
  return {
    bucket,
    queueUrl,
    deadLetterQueueUrl: dlqUrl,
    topicArn,
    keyArn,
    keyAlias: alias,
    documentName: document.Name as string,
    vpcId: network.vpcId,
    privateSubnetId: network.privateSubnetId,
    publicSubnetId: network.publicSubnetId,
    routeTableId: network.routeTableId,
    natInstanceId: network.nat.instanceId,
    natEniId: network.nat.eniId,
    workloadInstanceId: network.workload.instanceId,
    workloadEniId: network.workload.eniId,
    functionEnvironment,
  };
}
