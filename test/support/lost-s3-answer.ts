/**
 * "An S3 answer is lost after the write was stored": moto clients whose S3 client sends a
 * chosen PutObject on to moto, then throws a 500 in place of moto's answer, the first time only.
 * The interception sits below the SDK's retry middleware (the `deserialize` step), so the SDK
 * retries the PUT exactly as it would after a dropped connection, and the retry meets the object
 * the first attempt stored (a conditional write then answers 412).
 */
import { S3ServiceException } from '@aws-sdk/client-s3';
import type { AwsClients } from '../../shared/aws/clients.ts';
import { motoClients } from './aws.ts';

/** An SDK middleware as the tests add it to a client's `middlewareStack` (S3, SSM, …). */
export type SdkMiddleware = (
  next: (args: unknown) => Promise<unknown>,
  ctx: { commandName?: string },
) => (args: unknown) => Promise<unknown>;

/** An S3 error as the SDK throws it for an answer with HTTP `status` (5xx: a server fault). */
export function injectedS3Error(name: string, status: number, message: string): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message,
  });
}

/** The PutObject input fields the interceptions look at. */
export interface PutInput {
  Key?: string;
  IfNoneMatch?: string;
  IfMatch?: string;
  Body?: string;
}

/** How many matching PUTs were sent (the first one's answer was lost; retries count too). */
export interface LostAnswerCount {
  writes: number;
}

/**
 * moto clients whose first PutObject matching `matches` is stored but answered with a 500;
 * `writes` counts every matching PUT, so `writes > 1` shows the SDK retried it.
 */
export function clientsLosingFirstAnswer(matches: (input: PutInput) => boolean): {
  clients: AwsClients;
  seen: LostAnswerCount;
} {
  const clients = motoClients();
  const seen: LostAnswerCount = { writes: 0 };
  const middleware: SdkMiddleware = (next, ctx) => async (args) => {
    const input = (args as { input: PutInput }).input;
    const out = await next(args);
    if (ctx.commandName === 'PutObjectCommand' && matches(input) && seen.writes++ === 0) {
      throw injectedS3Error(
        'InternalError',
        500,
        'injected: the write was stored, the answer lost',
      );
    }
    return out;
  };
  // below the retry middleware: the SDK retries the PUT as it would after a lost answer
  clients.s3.middlewareStack.add(middleware as never, { step: 'deserialize', name: 'loseAnswer' });
  return { clients, seen };
}

/** A manifest create: `IfNoneMatch: '*'` on `captures/…`. */
export const isManifestCreate = (input: PutInput): boolean =>
  String(input.Key).startsWith('captures/') && input.IfNoneMatch === '*';

/** A manifest update: `IfMatch` on `captures/…`. */
export const isManifestUpdate = (input: PutInput): boolean =>
  String(input.Key).startsWith('captures/') && input.IfMatch !== undefined;

/** A guard create (`IfNoneMatch: '*'`) of the object at `key`. */
export const isCreateOf =
  (key: string) =>
  (input: PutInput): boolean =>
    input.Key === key && input.IfNoneMatch === '*';
