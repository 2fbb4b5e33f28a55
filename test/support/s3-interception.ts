/**
 * S3 clients that send every command on to a real (moto) client but let a test see, hold,
 * fail, change or answer each one on the way: fault injection and call recording in front of
 * real S3 behaviour (aws-sdk-client-mock bypasses the SDK's retries).
 */
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  GetObjectAttributesCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectVersionsCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { mockClient } from 'aws-sdk-client-mock';

/** The commands the result store sends (HEAD, read back, single and multipart writes). */
export const RESULT_STORE_COMMANDS = [
  HeadObjectCommand,
  GetObjectCommand,
  PutObjectCommand,
  CreateMultipartUploadCommand,
  UploadPartCommand,
  CompleteMultipartUploadCommand,
  AbortMultipartUploadCommand,
] as const;

/** The commands the processing job sends: the result store's and the source integrity check. */
/** The processing job also lists a pcap key's other versions (the replaced-evidence check). */
export const PROCESSING_COMMANDS = [
  ...RESULT_STORE_COMMANDS,
  GetObjectAttributesCommand,
  ListObjectVersionsCommand,
] as const;

/**
 * What a test does with one command: `name` is the command class name (`'UploadPartCommand'`),
 * `send()` forwards the input to the real client and gives its answer. Return what the caller
 * should get, or throw to fail the command.
 */
export type S3Interceptor = (
  name: string,
  input: any,
  send: () => Promise<any>,
) => Promise<unknown> | unknown;

/**
 * An S3 client that passes each of `commands` through `intercept` to `real`; any other
 * command fails with "unexpected command", so a test notices a call it did not plan for.
 */
export function interceptedS3(
  real: S3Client,
  intercept: S3Interceptor,
  commands: readonly (new (input: any) => any)[] = PROCESSING_COMMANDS,
): S3Client {
  const client = new S3Client({ region: 'us-east-1' });
  const mock = mockClient(client);
  mock.onAnyCommand().callsFake(async (input: any) => {
    throw new Error(`unexpected command ${JSON.stringify(input)}`);
  });
  for (const Command of commands) {
    mock
      .on(Command as any)
      .callsFake(async (input: any) =>
        intercept(Command.name, input, () => real.send(new Command(input))),
      );
  }
  return client;
}
