import type { Command } from 'commander';
import { resolveKeyArn } from '../../shared/aws/resolve.ts';
import { captureDocumentParameters } from '../../shared/capture/document-parameters.ts';
import { filterToBpf } from '../../shared/capture/filter.ts';
import { parseCaptureRequest } from '../../shared/capture/request.ts';
import { parseConfig, type TaplineConfig } from '../../shared/config.ts';
import { isTaplineError } from '../../shared/errors.ts';
import { silentLogger } from '../../shared/observability.ts';
import { resolveTargets, type TargetResolution } from '../../shared/targets/resolve.ts';
import { type CaptureFlags, captureRequestFromFlags, withCaptureFlags } from '../capture-flags.ts';
import {
  type CliContext,
  cliContext,
  type StageOptions,
  withStageOptions,
} from '../cli-context.ts';
import { table } from '../output.ts';

export interface CapturePlan {
  documentName: string;
  durationSeconds: number;
  bpf: string;
  targets: TargetResolution['targets'];
  skipped: TargetResolution['skipped'];
  noTarget?: { message: string; details: Record<string, unknown> } | undefined;
  /** Exactly what SendCommand would carry, per document parameter (capture ID is a placeholder). */
  parameters: Record<string, string[]>;
}

/** The stage's configuration as its functions get it, from the CLI's flags and environment. */
export function stageConfig(ctx: CliContext): TaplineConfig {
  const { stage, region } = ctx.options;
  return parseConfig({
    ...process.env,
    STAGE: stage,
    AWS_REGION: region,
    EVIDENCE_BUCKET: ctx.bucket,
    EVIDENCE_KEY_ID: process.env.EVIDENCE_KEY_ID ?? `alias/tapline-${stage}-evidence`,
    CAPTURE_DOCUMENT_NAME: process.env.CAPTURE_DOCUMENT_NAME ?? `tapline-${stage}-capture`,
    NOTIFICATION_TOPIC: process.env.NOTIFICATION_TOPIC ?? `tapline-${stage}-notifications`,
  });
}

/**
 * Dry run: which hosts would capture, with which filter, and the exact SSM parameters — using
 * the same request schema, target resolution, BPF compiler and parameter builder as the
 * capture core, and only read-only AWS calls (EC2 Describe*, KMS DescribeKey). Sends nothing.
 */
export async function planCapture(ctx: CliContext, flags: CaptureFlags): Promise<CapturePlan> {
  const request = parseCaptureRequest(await captureRequestFromFlags(flags, 'cli'));
  const config = stageConfig(ctx);
  const durationSeconds = request.durationSeconds ?? config.DEFAULT_DURATION_SECONDS;
  const bpf = filterToBpf(request.filter);
  let resolution: TargetResolution = { targets: [], skipped: [] };
  let noTarget: CapturePlan['noTarget'];
  try {
    resolution = await resolveTargets(request.targets, {
      ec2: ctx.clients.ec2,
      captureTag: config.CAPTURE_TAG,
      sensorTag: config.SENSOR_TAG,
      logger: silentLogger,
    });
  } catch (error) {
    if (!isTaplineError(error) || error.code !== 'NO_CAPTURE_TARGET') throw error;
    noTarget = { message: error.message, details: error.details };
  }
  const keyArn = await resolveKeyArn(ctx.clients.kms, config.EVIDENCE_KEY_ID).catch(
    () => config.EVIDENCE_KEY_ID,
  );
  const parameters = captureDocumentParameters({
    captureId: 'cap-00000000T000000Z-00000000',
    request,
    bpf,
    durationSeconds,
    maxMegabytes: request.maxMegabytes ?? config.MAX_CAPTURE_MEGABYTES,
    bucket: config.EVIDENCE_BUCKET,
    keyArn,
    region: config.AWS_REGION,
    minFreeMegabytes: config.MIN_FREE_MEGABYTES,
  });
  return {
    documentName: config.CAPTURE_DOCUMENT_NAME,
    durationSeconds,
    bpf,
    targets: resolution.targets,
    skipped: resolution.skipped,
    noTarget,
    parameters,
  };
}

export function renderPlan(plan: CapturePlan): string {
  const lines: string[] = [];
  if (plan.noTarget) lines.push(`no host can see this traffic: ${plan.noTarget.message}`, '');
  if (plan.targets.length > 0) {
    lines.push(
      table(
        ['WOULD CAPTURE ON', 'VIA', 'WHY'],
        plan.targets.map((t) => [t.instanceId, t.via, t.why]),
      ),
    );
  }
  for (const s of plan.skipped) lines.push(`skipped ${s.instanceId}: ${s.reason}: ${s.detail}`);
  lines.push(
    `document  ${plan.documentName}`,
    `filter    ${plan.bpf || '(all traffic)'}`,
    `duration  ${plan.durationSeconds}s`,
    '',
  );
  lines.push(
    table(
      ['PARAMETER', 'VALUE'],
      Object.entries(plan.parameters).map(([k, v]) => [k, v.join(',')]),
    ),
  );
  lines.push('(dry run: nothing was sent)');
  return `${lines.join('\n')}\n`;
}

export function register(program: Command): void {
  withCaptureFlags(
    withStageOptions(
      program
        .command('plan')
        .description(
          'dry run: which host a request or finding resolves to, the filter, the exact SSM parameters',
        ),
    ),
  ).action(async (options: StageOptions & CaptureFlags) => {
    const plan = await planCapture(cliContext(options), {
      ...options,
      reason: options.reason ?? 'plan (dry run)',
    });
    process.stdout.write(options.json ? `${JSON.stringify(plan)}\n` : renderPlan(plan));
    if (plan.targets.length === 0) process.exitCode = 1;
  });
}
