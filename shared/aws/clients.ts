import { EC2Client } from '@aws-sdk/client-ec2';
import { EventBridgeClient } from '@aws-sdk/client-eventbridge';
import { KMSClient } from '@aws-sdk/client-kms';
import { LambdaClient } from '@aws-sdk/client-lambda';
import { S3Client } from '@aws-sdk/client-s3';
import { SNSClient } from '@aws-sdk/client-sns';
import { SQSClient } from '@aws-sdk/client-sqs';
import { SSMClient } from '@aws-sdk/client-ssm';
import { STSClient } from '@aws-sdk/client-sts';

export interface AwsSettings {
  region: string;
  /** One endpoint for every client (moto on loopback); undefined means real AWS. */
  endpoint?: string | undefined;
}

export interface AwsClients {
  s3: S3Client;
  ssm: SSMClient;
  ec2: EC2Client;
  sqs: SQSClient;
  sns: SNSClient;
  eventBridge: EventBridgeClient;
  lambda: LambdaClient;
  sts: STSClient;
  kms: KMSClient;
}

/**
 * The only place SDK clients are constructed. Pointing Tapline at moto (or any other endpoint)
 * is a single setting: TAPLINE_AWS_ENDPOINT in the environment, or `endpoint` here.
 */
export function makeAwsClients(settings: AwsSettings): AwsClients {
  const common = {
    region: settings.region,
    maxAttempts: 4,
    ...(settings.endpoint ? { endpoint: settings.endpoint } : {}),
  };
  return {
    s3: new S3Client({
      ...common,
      forcePathStyle: Boolean(settings.endpoint),
      // Keep the SDK's default flexible checksums on every upload: the evidence bucket has Object
      // Lock, and S3 refuses a PutObject into it without Content-MD5 or a checksum header.
      requestChecksumCalculation: 'WHEN_SUPPORTED',
      responseChecksumValidation: 'WHEN_SUPPORTED',
    }),
    ssm: new SSMClient(common),
    ec2: new EC2Client(common),
    sqs: new SQSClient(common),
    sns: new SNSClient(common),
    eventBridge: new EventBridgeClient(common),
    lambda: new LambdaClient(common),
    sts: new STSClient(common),
    kms: new KMSClient(common),
  };
}

export function awsSettingsFromEnv(env: NodeJS.ProcessEnv = process.env): AwsSettings {
  return {
    region: env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1',
    endpoint: env.TAPLINE_AWS_ENDPOINT || undefined,
  };
}
