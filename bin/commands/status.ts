import type { Command } from 'commander';
import { isCaptureId } from '../../shared/capture/ids.ts';
import { TaplineError } from '../../shared/errors.ts';
import {
  type CaptureManifest,
  overdueHosts,
  readManifest,
} from '../../shared/evidence/manifest.ts';
import {
  type CliContext,
  cliContext,
  type StageOptions,
  withStageOptions,
} from '../cli-context.ts';
import { humanBytes, humanTime, table } from '../output.ts';

export class CaptureNotFoundError extends TaplineError {
  constructor(captureId: string, bucket: string) {
    super(
      `no capture ${captureId} in s3://${bucket}/captures/ (check --stage, --region, --bucket)`,
      {
        code: 'CAPTURE_NOT_FOUND',
        details: { captureId, bucket },
      },
    );
  }
}

export function checkCaptureId(captureId: string): void {
  if (!isCaptureId(captureId)) {
    throw new TaplineError(`"${captureId}" is not a capture ID (cap-YYYYMMDDTHHMMSSZ-xxxxxxxx)`, {
      code: 'USAGE',
      details: { captureId },
    });
  }
}

/** The capture's manifest (custody log) as it stands now. */
export async function captureStatus(ctx: CliContext, captureId: string): Promise<CaptureManifest> {
  checkCaptureId(captureId);
  const found = await readManifest(ctx.store, captureId);
  if (!found) throw new CaptureNotFoundError(captureId, ctx.bucket);
  return found.manifest;
}

export function renderStatus(m: CaptureManifest, now = new Date()): string {
  const overdue = overdueHosts(m, now);
  const overdueSince = new Map(overdue.map((o) => [o.instanceId, o.deadline]));
  const lines = [
    `capture   ${m.captureId}`,
    `state     ${m.state}${
      overdue.length > 0
        ? ` (${overdue.length} host(s) overdue: no report by their deadline; the timed-out sweep, every 15 minutes, closes them as timed-out)`
        : ''
    }`,
    `source    ${m.source}${m.finding ? ` (finding ${String(m.finding.rule ?? '')} ${String(m.finding.fingerprint ?? '')})` : ''}`,
    `reason    ${m.reason}`,
    `asked by  ${m.requestedBy}${m.invokedBy ? ` via ${m.invokedBy}` : ''}`,
    `created   ${humanTime(m.createdAt)}   updated ${humanTime(m.updatedAt)}`,
    `filter    ${m.limits?.bpf || '(all traffic)'}   duration ${m.limits?.durationSeconds ?? '-'}s`,
    `command   ${m.ssm?.commandIds?.join(', ') || '-'} (${m.ssm?.documentName ?? '-'})`,
    '',
  ];
  const hosts = Object.entries(m.hosts ?? {});
  if (hosts.length > 0) {
    lines.push(
      table(
        ['HOST', 'STATUS', 'WHY', 'FILES', 'BYTES', 'PACKETS', 'DROPPED', 'ERRORS'],
        hosts.map(([id, h]) => [
          id,
          overdueSince.has(id)
            ? `${h.status} (overdue since ${humanTime(overdueSince.get(id)!)})`
            : h.status,
          m.targets?.find((t) => t.instanceId === id)?.via ?? '-',
          h.files?.length ?? 0,
          humanBytes(h.bytes ?? (h.files ?? []).reduce((n, f) => n + (f.size ?? 0), 0)),
          h.packetsCaptured,
          h.packetsDroppedByKernel,
          h.errors?.length ? h.errors.join('; ') : '',
        ]),
      ),
    );
  }
  for (const r of m.refused ?? [])
    lines.push(`refused   ${r.instanceId ?? '(all)'}: ${r.reason}: ${r.message}`);
  return `${lines.join('\n').trimEnd()}\n`;
}

export function register(program: Command): void {
  withStageOptions(
    program
      .command('status')
      .description('show a capture’s custody manifest: hosts, files, packets, drops')
      .argument('<capture-id>'),
  ).action(async (captureId: string, options: StageOptions) => {
    const manifest = await captureStatus(cliContext(options), captureId);
    process.stdout.write(options.json ? `${JSON.stringify(manifest)}\n` : renderStatus(manifest));
  });
}
