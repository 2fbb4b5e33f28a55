import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { Command } from 'commander';
import { isCaptureId } from '../../shared/capture/ids.ts';
import { TaplineError } from '../../shared/errors.ts';
import {
  type CaptureManifest,
  ManifestUnreadableError,
  overdueHosts,
  readManifest,
} from '../../shared/evidence/manifest.ts';
import {
  type CliContext,
  cliContext,
  type StageOptions,
  withStageOptions,
} from '../cli-context.ts';
import { humanTime, table } from '../output.ts';

/** "90s", "15m", "24h", "7d" → seconds. */
export function parseSince(value: string): number {
  const match = /^(\d+)([smhd])$/.exec(value.trim());
  if (!match)
    throw new TaplineError(`--since takes a number and s, m, h or d (e.g. 24h), got "${value}"`, {
      code: 'USAGE',
    });
  const unit = { s: 1, m: 60, h: 3600, d: 86_400 }[match[2] as 's' | 'm' | 'h' | 'd'];
  return Number(match[1]) * unit;
}

/** The capture ID carries its start time: cap-YYYYMMDDTHHMMSSZ-… */
function idTime(captureId: string): number {
  const m = /^cap-(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-/.exec(captureId);
  return m ? Date.UTC(+m[1]!, +m[2]! - 1, +m[3]!, +m[4]!, +m[5]!, +m[6]!) : 0;
}

/** A capture whose manifest (its custody record) exists but cannot be read. */
export interface UnreadableCapture {
  captureId: string;
  state: 'unreadable';
  unreadable: true;
  error: string;
}

export type ListedCapture = CaptureManifest | UnreadableCapture;

const unreadable = (c: ListedCapture): c is UnreadableCapture =>
  (c as Partial<UnreadableCapture>).unreadable === true;

/** What of a manifest the list shows, checked: a custody record of the wrong shape is named. */
function listProblem(m: CaptureManifest): string | undefined {
  const text = (v: unknown) => typeof v === 'string';
  for (const field of ['captureId', 'createdAt', 'state', 'source', 'reason'] as const) {
    if (!text(m[field])) return `its ${field} is not text`;
  }
  for (const [id, host] of Object.entries(m.hosts)) {
    if (typeof host !== 'object' || host === null || Array.isArray(host))
      return `its host ${id.slice(0, 40)} is not an object`;
    if (host.files !== undefined && !Array.isArray(host.files))
      return `the files of host ${id.slice(0, 40)} are not a list`;
  }
  return undefined;
}

/**
 * Captures started in the last `sinceSeconds`, newest first, read from their manifests. A
 * damaged manifest is listed as unreadable (with why), not allowed to hide the others.
 */
export async function listCaptures(
  ctx: CliContext,
  sinceSeconds: number,
  now = new Date(),
): Promise<ListedCapture[]> {
  const ids: string[] = [];
  let ContinuationToken: string | undefined;
  do {
    const out = await ctx.clients.s3.send(
      new ListObjectsV2Command({
        Bucket: ctx.bucket,
        Prefix: 'captures/',
        Delimiter: '/',
        ContinuationToken,
      }),
    );
    for (const p of out.CommonPrefixes ?? []) {
      const id = p.Prefix?.slice('captures/'.length, -1) ?? '';
      if (isCaptureId(id) && idTime(id) >= now.getTime() - sinceSeconds * 1000) ids.push(id);
    }
    ContinuationToken = out.IsTruncated ? out.NextContinuationToken : undefined;
  } while (ContinuationToken);
  ids.sort().reverse();
  const manifests: ListedCapture[] = [];
  const read = async (captureId: string): Promise<ListedCapture | undefined> => {
    const damaged = (error: string): UnreadableCapture => ({
      captureId,
      state: 'unreadable',
      unreadable: true,
      error,
    });
    try {
      const manifest = (await readManifest(ctx.store, captureId))?.manifest;
      const problem = manifest && listProblem(manifest);
      return problem
        ? damaged(`the manifest of ${captureId} cannot be listed: ${problem}`)
        : manifest;
    } catch (error) {
      if (!(error instanceof ManifestUnreadableError)) throw error;
      return damaged(error.message);
    }
  };
  for (let i = 0; i < ids.length; i += 8) {
    const batch = await Promise.all(ids.slice(i, i + 8).map(read));
    for (const m of batch) if (m) manifests.push(m);
  }
  return manifests;
}

export function renderList(manifests: ListedCapture[], now = new Date()): string {
  if (manifests.length === 0) return 'no captures in that window\n';
  return table(
    ['CAPTURE', 'CREATED', 'STATE', 'SOURCE', 'HOSTS', 'FILES', 'REASON'],
    manifests.map((m) =>
      unreadable(m)
        ? [m.captureId, idTimeText(m.captureId), 'unreadable', '', '', '', m.error]
        : listedRow(m, now),
    ),
  );
}

function idTimeText(captureId: string): string {
  const t = idTime(captureId);
  return t > 0 ? humanTime(new Date(t).toISOString()) : '';
}

function listedRow(m: CaptureManifest, now: Date): (string | number)[] {
  return [
    m.captureId,
    humanTime(m.createdAt),
    overdueHosts(m, now).length > 0 ? `${m.state} (overdue)` : m.state,
    m.source,
    Object.keys(m.hosts ?? {}).length,
    Object.values(m.hosts ?? {}).reduce((n, h) => n + (h.files?.length ?? 0), 0),
    m.reason.length > 48 ? `${m.reason.slice(0, 47)}…` : m.reason,
  ];
}

export function register(program: Command): void {
  withStageOptions(
    program
      .command('list')
      .description('list recent captures from their manifests')
      .option('--since <window>', 'how far back: 90m, 24h, 7d', '24h'),
  ).action(async (options: StageOptions & { since: string }) => {
    const manifests = await listCaptures(cliContext(options), parseSince(options.since));
    process.stdout.write(options.json ? `${JSON.stringify(manifests)}\n` : renderList(manifests));
    // a custody record that cannot be read is a failed check, after everything else is shown
    const damaged = manifests.filter(unreadable).length;
    if (damaged > 0) {
      process.stderr.write(`tapline: ${damaged} capture manifest(s) could not be read\n`);
      process.exitCode = 1;
    }
  });
}
