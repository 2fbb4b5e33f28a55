import { DescribeKeyCommand, type KMSClient } from '@aws-sdk/client-kms';
import { GetCallerIdentityCommand, type STSClient } from '@aws-sdk/client-sts';
import { ConfigError } from '../errors.ts';

/**
 * serverless.yml gives functions plain strings (so `serverless invoke local` needs no AWS
 * lookups): the key as alias/NAME and the topic as its name. These turn them into ARNs once
 * per process; ARNs pass through untouched.
 */
const cache = new Map<string, Promise<string>>();

function once(key: string, make: () => Promise<string>): Promise<string> {
  let value = cache.get(key);
  if (!value) {
    value = make();
    value.catch(() => cache.delete(key));
    cache.set(key, value);
  }
  return value;
}

export function resolveKeyArn(kms: KMSClient, keyId: string): Promise<string> {
  if (keyId.startsWith('arn:') && keyId.includes(':key/')) return Promise.resolve(keyId);
  return once(`kms:${keyId}`, async () => {
    const out = await kms.send(new DescribeKeyCommand({ KeyId: keyId }));
    const arn = out.KeyMetadata?.Arn;
    if (!arn) throw new ConfigError(`KMS key ${keyId} has no ARN`, { keyId });
    return arn;
  });
}

export function resolveTopicArn(sts: STSClient, region: string, topic: string): Promise<string> {
  if (topic.startsWith('arn:')) return Promise.resolve(topic);
  return once(`sns:${region}:${topic}`, async () => {
    const who = await sts.send(new GetCallerIdentityCommand({}));
    const partition = who.Arn?.split(':')[1] ?? 'aws';
    return `arn:${partition}:sns:${region}:${who.Account}:${topic}`;
  });
}
