import { GetCallerIdentityCommand } from '@aws-sdk/client-sts';
import type { Command } from 'commander';
import { type AwsClients, makeAwsClients } from '../shared/aws/clients.ts';
import type { EvidenceStore } from '../shared/evidence/store.ts';

/** Where a deployed Tapline stage lives, from flags or environment (flags win). */
export interface StageOptions {
  stage: string;
  region: string;
  endpoint?: string | undefined;
  bucket?: string | undefined;
  json?: boolean | undefined;
}

/** Adds --stage/--region/--endpoint/--bucket/--json to a verb that talks to a deployed stage. */
export function withStageOptions(command: Command): Command {
  return command
    .option(
      '--stage <stage>',
      'deployed stage (env TAPLINE_STAGE)',
      process.env.TAPLINE_STAGE ?? 'dev',
    )
    .option(
      '--region <region>',
      'AWS region (env AWS_REGION)',
      process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1',
    )
    .option(
      '--endpoint <url>',
      'AWS endpoint override, e.g. moto (env TAPLINE_AWS_ENDPOINT)',
      process.env.TAPLINE_AWS_ENDPOINT,
    )
    .option(
      '--bucket <name>',
      'evidence bucket (env TAPLINE_EVIDENCE_BUCKET; default the stack default tapline-STAGE-REGION-evidence)',
      process.env.TAPLINE_EVIDENCE_BUCKET,
    )
    .option('--json', 'machine-readable JSON output');
}

export interface CliContext {
  options: StageOptions;
  clients: AwsClients;
  bucket: string;
  /** Read-only access to the evidence bucket (the CLI never writes evidence). */
  store: EvidenceStore;
  functionName(shortName: string): string;
}

export function cliContext(options: StageOptions, clients?: AwsClients): CliContext {
  const bucket = options.bucket ?? `tapline-${options.stage}-${options.region}-evidence`;
  const made = clients ?? makeAwsClients({ region: options.region, endpoint: options.endpoint });
  return {
    options,
    clients: made,
    bucket,
    store: { s3: made.s3, bucket, keyArn: '' },
    functionName: (shortName) => `tapline-${options.stage}-${shortName}`,
  };
}

/** The caller's own identity, recorded as requestedBy; undefined when STS cannot say. */
export async function callerIdentity(clients: AwsClients): Promise<string | undefined> {
  try {
    return (await clients.sts.send(new GetCallerIdentityCommand({}))).Arn;
  } catch {
    return undefined;
  }
}
