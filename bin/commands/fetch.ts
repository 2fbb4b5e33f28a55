import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { GetObjectCommand } from '@aws-sdk/client-s3';
import type { Command } from 'commander';
import { IntegrityError, TaplineError } from '../../shared/errors.ts';
import type { ManifestFile } from '../../shared/evidence/manifest.ts';
import { makeDirectory } from '../../shared/make-directory.ts';
import {
  type CliContext,
  cliContext,
  type StageOptions,
  withStageOptions,
} from '../cli-context.ts';
import { humanBytes, progressBar, table } from '../output.ts';
import { captureStatus } from './status.ts';

const run = promisify(execFile);

export interface FetchedFile {
  instanceId: string;
  key: string;
  versionId?: string | undefined;
  path?: string | undefined;
  size: number;
  sha256: string;
  /** Every source the bytes were checked against, and what it said. */
  checks: { manifest: boolean; hostMetadata: boolean | 'missing'; s3Checksum: boolean | 'missing' };
  verified: boolean;
  problem?: string | undefined;
}

export interface FetchResult {
  captureId: string;
  outDir: string;
  files: FetchedFile[];
  merged?: string | undefined;
  ok: boolean;
}

/**
 * Downloads every pcap of a capture, exactly the object versions the manifest recorded,
 * hashing while streaming; a file is kept only when its SHA-256 equals the manifest's, the
 * host's metadata hash and S3's stored checksum. A file that fails is deleted and named; the
 * others are kept. Optionally merges the verified files in time order (mergecap).
 */
export async function fetchCapture(
  ctx: CliContext,
  captureId: string,
  options: { outDir: string; merge?: boolean; progress?: boolean },
): Promise<FetchResult> {
  const manifest = await captureStatus(ctx, captureId);
  const wanted: { instanceId: string; file: ManifestFile }[] = [];
  for (const [instanceId, host] of Object.entries(manifest.hosts ?? {})) {
    for (const file of host.files ?? []) wanted.push({ instanceId, file });
  }
  if (wanted.length === 0) {
    throw new TaplineError(
      `capture ${captureId} has no uploaded files yet (state ${manifest.state}); try \`tapline status ${captureId}\``,
      { code: 'NOTHING_TO_FETCH', details: { captureId, state: manifest.state } },
    );
  }
  const total = wanted.reduce((n, w) => n + (w.file.size ?? 0), 0);
  const bar =
    options.progress === false ? { update() {}, finish() {} } : progressBar('fetch', total);
  let done = 0;
  const files: FetchedFile[] = [];
  try {
    for (const { instanceId, file } of wanted) {
      const dir = join(options.outDir, captureId, instanceId);
      await makeDirectory(dir);
      const target = join(dir, basename(file.key));
      const partial = `${target}.part`;
      const out = await ctx.clients.s3.send(
        new GetObjectCommand({
          Bucket: ctx.bucket,
          Key: file.key,
          ...(file.versionId ? { VersionId: file.versionId } : {}),
          ChecksumMode: 'ENABLED',
        }),
      );
      const hash = createHash('sha256');
      let size = 0;
      await pipeline(
        out.Body as NodeJS.ReadableStream,
        new Transform({
          transform(chunk: Buffer, _enc, callback) {
            hash.update(chunk);
            size += chunk.length;
            done += chunk.length;
            bar.update(done);
            callback(null, chunk);
          },
        }),
        createWriteStream(partial),
      );
      const digest = hash.digest();
      const hex = digest.toString('hex');
      const hostHash = out.Metadata?.sha256;
      const s3Checksum = out.ChecksumSHA256;
      const checks: FetchedFile['checks'] = {
        manifest: hex === file.sha256,
        hostMetadata: hostHash === undefined ? 'missing' : hostHash === hex,
        // A multipart (composite) checksum ends in -N and is not a hash of the whole object.
        s3Checksum:
          s3Checksum === undefined || /-\d+$/.test(s3Checksum)
            ? 'missing'
            : s3Checksum === digest.toString('base64'),
      };
      // Tapline hosts always upload with their hash as metadata and as S3's SHA-256 checksum, so
      // all three must be present and equal to the bytes just hashed.
      const verified =
        checks.manifest && checks.hostMetadata === true && checks.s3Checksum === true;
      let problem: string | undefined;
      if (!checks.manifest) problem = `SHA-256 ${hex} differs from the manifest's ${file.sha256}`;
      else if (checks.hostMetadata !== true) {
        problem =
          checks.hostMetadata === 'missing'
            ? 'the object has no host hash metadata'
            : `SHA-256 differs from the host's metadata hash ${hostHash}`;
      } else if (checks.s3Checksum !== true) {
        problem =
          checks.s3Checksum === 'missing'
            ? 'S3 holds no whole-object SHA-256 checksum for this object'
            : `SHA-256 differs from S3's stored checksum ${s3Checksum}`;
      }
      if (verified) {
        await rename(partial, target);
      } else {
        await rm(partial, { force: true });
      }
      files.push({
        instanceId,
        key: file.key,
        versionId: out.VersionId ?? file.versionId,
        path: verified ? target : undefined,
        size,
        sha256: hex,
        checks,
        verified,
        problem,
      });
    }
  } finally {
    bar.finish();
  }
  const ok = files.every((f) => f.verified);
  let merged: string | undefined;
  if (options.merge && files.some((f) => f.verified)) {
    merged = join(options.outDir, captureId, `${captureId}-merged.pcapng`);
    const inputs = files.filter((f) => f.verified).map((f) => f.path!);
    try {
      await run('mergecap', ['-w', merged, ...inputs], { timeout: 600_000 });
    } catch (error) {
      throw new TaplineError(
        `merging needs Wireshark's mergecap (apt-get install wireshark-common): ${(error as Error).message}`,
        { code: 'MERGE_FAILED' },
      );
    }
  }
  return { captureId, outDir: options.outDir, files, merged, ok };
}

export function renderFetch(result: FetchResult): string {
  const rows = result.files.map((f) => [
    f.verified ? 'ok' : 'REFUSED',
    f.instanceId,
    basename(f.key),
    humanBytes(f.size),
    `${f.sha256.slice(0, 16)}…`,
    f.verified ? f.path : f.problem,
  ]);
  let text = table(['CHECK', 'HOST', 'FILE', 'SIZE', 'SHA-256', 'SAVED AS / PROBLEM'], rows);
  if (result.merged) text += `merged (time order): ${result.merged}\n`;
  if (!result.ok) {
    text += `\n${result.files.filter((f) => !f.verified).length} file(s) failed verification and were not kept: treat this capture's evidence as tampered or damaged, and keep the manifest's version history.\n`;
  }
  return text;
}

export function register(program: Command): void {
  withStageOptions(
    program
      .command('fetch')
      .description(
        'download a capture’s pcaps, verifying each SHA-256 against the manifest, the host hash and S3’s checksum',
      )
      .argument('<capture-id>')
      .option('--out <dir>', 'where to write (DIR/<capture-id>/<instance-id>/…)', '.')
      .option('--merge', 'also merge the verified files in time order (mergecap)'),
  ).action(async (captureId: string, options: StageOptions & { out: string; merge?: boolean }) => {
    const result = await fetchCapture(cliContext(options), captureId, {
      outDir: options.out,
      merge: options.merge,
    });
    process.stdout.write(options.json ? `${JSON.stringify(result)}\n` : renderFetch(result));
    if (!result.ok) {
      const failed = result.files.filter((f) => !f.verified).map((f) => f.key);
      throw new IntegrityError(
        `refused ${failed.length} file(s) that failed verification: ${failed.join(', ')}`,
        {
          failed,
        },
      );
    }
  });
}
