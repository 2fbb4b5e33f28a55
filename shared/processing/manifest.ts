import { GetObjectCommand, type S3Client } from '@aws-sdk/client-s3';
import { z } from 'zod';
import type { CoreLogger } from '../observability.ts';
import { ManifestReadError } from './errors.ts';
import type { ProvenanceCheck } from './integrity.ts';

/**
 * What the processor reads from the capture manifest (`captures/<captureId>/manifest.json`):
 * the host's kernel drop counter, its record of this file's hash, and the capture request
 * (for CARVE_MODE=findings). The manifest is written by the capture side and may not exist
 * yet, or lack these fields: every field is optional here and an unreadable manifest is
 * reported, never fatal.
 */

/** A manifest lists ~330 bytes per file: 32 MiB holds ~100,000 files across a capture's hosts. */
export const MAX_MANIFEST_BYTES = 32 * 1024 * 1024;

const fileSchema = z
  .object({
    key: z.string().optional(),
    versionId: z.string().nullish(),
    sha256: z.string().optional(),
  })
  .loose();

const hostSchema = z
  .object({
    status: z.string().optional(),
    commandId: z.unknown().optional(),
    ssmStatus: z.unknown().optional(),
    files: z.array(fileSchema).optional(),
    packetsCaptured: z.number().nullish(),
    packetsDroppedByKernel: z.number().nullish(),
  })
  .loose();

const manifestSchema = z
  .object({
    version: z.number().optional(),
    captureId: z.string().optional(),
    request: z.unknown().optional(),
    finding: z.unknown().optional(),
    hosts: z.record(z.string(), hostSchema).optional(),
  })
  .loose();

export type ManifestStatus = 'read' | 'absent' | 'unreadable';

export interface ManifestFacts {
  status: ManifestStatus;
  /** Why it was unreadable (size, JSON, shape). */
  problem?: string;
  packetsDroppedByKernel: number | null;
  packetsCaptured: number | null;
  /** The manifest's entry for this object (same key, and same version when it names one). */
  file: { sha256?: string | undefined } | undefined;
  /**
   * When `file` is undefined: the manifest's entries for the same key under OTHER version IDs.
   * The host never uploads two different files to one key, so a version the manifest does not
   * know, of a key it does, is a replacement of recorded evidence (or a retried upload of the
   * same bytes): the check compares hashes instead of calling the file "not listed".
   */
  otherVersions?: Array<{ versionId: string; sha256?: string | undefined }>;
  /** This instance's status in the manifest; null when the manifest does not name it. */
  hostStatus: string | null;
  /** The manifest records a command (its ID or an SSM status) for this instance. */
  hostCommandSeen: boolean;
  /** The capture request, as recorded (validated by whoever uses it). */
  request: unknown;
  finding: unknown;
}

const absent = (status: ManifestStatus, problem?: string): ManifestFacts => ({
  status,
  ...(problem ? { problem } : {}),
  packetsDroppedByKernel: null,
  packetsCaptured: null,
  file: undefined,
  hostStatus: null,
  hostCommandSeen: false,
  request: undefined,
  finding: undefined,
});

/** The problem recorded when S3 answers 403 (a missing key, to a role that may not list it). */
const ACCESS_DENIED = 'AccessDenied: the manifest is missing or not readable';

export function manifestKey(captureId: string): string {
  return `captures/${captureId}/manifest.json`;
}

/** Pure part: picks this host's and this file's facts out of a parsed manifest document. */
export function manifestFacts(
  document: unknown,
  instanceId: string,
  key: string,
  versionId: string | undefined,
): ManifestFacts {
  const parsed = manifestSchema.safeParse(document);
  if (!parsed.success) return absent('unreadable', 'manifest does not have the expected shape');
  const host = parsed.data.hosts?.[instanceId];
  const candidates = (host?.files ?? []).filter((f) => f.key === key);
  const file =
    candidates.find((f) => versionId !== undefined && f.versionId === versionId) ??
    candidates.find((f) => f.versionId === undefined || f.versionId === null);
  const otherVersions = file
    ? []
    : candidates.flatMap((f) =>
        typeof f.versionId === 'string' && f.versionId !== versionId
          ? [{ versionId: f.versionId, sha256: f.sha256 }]
          : [],
      );
  const finite = (n: number | null | undefined) =>
    typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : null;
  return {
    status: 'read',
    packetsDroppedByKernel: finite(host?.packetsDroppedByKernel),
    packetsCaptured: finite(host?.packetsCaptured),
    file,
    ...(otherVersions.length > 0 ? { otherVersions } : {}),
    hostStatus: host === undefined ? null : (host.status ?? 'unknown'),
    hostCommandSeen:
      host !== undefined &&
      (typeof host.commandId === 'string' || typeof host.ssmStatus === 'string'),
    request: parsed.data.request,
    finding: parsed.data.finding,
  };
}

/**
 * Reads the manifest (bounded). Absence, refusal (403) and damage are facts, not errors; a read
 * error that may pass throws ManifestReadError so the record is retried.
 */
export async function readManifestFacts(
  s3: S3Client,
  bucket: string,
  captureId: string,
  instanceId: string,
  key: string,
  versionId: string | undefined,
  logger: CoreLogger,
): Promise<ManifestFacts> {
  let text: string;
  try {
    const out = await s3.send(
      new GetObjectCommand({ Bucket: bucket, Key: manifestKey(captureId) }),
    );
    if (Number(out.ContentLength ?? 0) > MAX_MANIFEST_BYTES) {
      (out.Body as { destroy?: () => void } | undefined)?.destroy?.();
      return absent('unreadable', `manifest larger than ${MAX_MANIFEST_BYTES} bytes`);
    }
    text = (await out.Body?.transformToString('utf8')) ?? '';
  } catch (error) {
    const name = error && typeof error === 'object' && 'name' in error ? String(error.name) : '';
    if (name === 'NoSuchKey' || name === 'NotFound') return absent('absent');
    const status = (error as { $metadata?: { httpStatusCode?: number } })?.$metadata
      ?.httpStatusCode;
    if (status === 403) {
      // S3 says 403 for a missing key when the role may not list the bucket.
      return absent('unreadable', ACCESS_DENIED);
    }
    // Anything else may pass (throttling after the SDK's retries, a connection cut while the
    // body was read): the record is retried, not given an unknown provenance for good.
    logger.warn('capture manifest could not be read', { captureId, error: name || String(error) });
    throw new ManifestReadError(
      `capture manifest ${manifestKey(captureId)} could not be read: ${name || String(error)}`,
      { captureId, key: manifestKey(captureId) },
      error,
    );
  }
  let document: unknown;
  try {
    document = JSON.parse(text);
  } catch {
    return absent('unreadable', 'manifest is not JSON');
  }
  return manifestFacts(document, instanceId, key, versionId);
}

/** Provenance from what the processor read of the manifest. */
export function checkProvenance(
  manifest: Pick<ManifestFacts, 'status' | 'problem'> &
    Partial<Pick<ManifestFacts, 'hostStatus' | 'hostCommandSeen'>>,
  captureId: string,
  instanceId: string,
): ProvenanceCheck {
  if (manifest.status === 'absent') {
    return {
      status: 'no-manifest',
      detail: `capture ${captureId} has no manifest: no Tapline capture by that ID sent a command, so it did not make this file`,
    };
  }
  if (manifest.status === 'unreadable' && manifest.problem === ACCESS_DENIED) {
    // S3 answers 403, not 404, for a missing key to a role that may not list the prefix
    // (the processing role may not list captures/): missing and refused look the same.
    return {
      status: 'no-manifest',
      detail: `capture ${captureId} has no manifest this job can read (S3 answered AccessDenied: it is missing, or the role may not read it): who made this file is not known`,
    };
  }
  if (manifest.status === 'unreadable') {
    return {
      status: 'manifest-unreadable',
      detail: `the manifest of capture ${captureId} could not be read (${manifest.problem ?? 'unknown'}): who made this file is not known`,
    };
  }
  if (manifest.hostStatus === null || manifest.hostStatus === undefined) {
    return {
      status: 'not-a-target',
      detail: `the manifest of capture ${captureId} does not name ${instanceId} as a host: that capture did not make this file`,
    };
  }
  // "refused" by the capture core (no command recorded); a host's own report can also say
  // refused, after a command was sent (it then uploads nothing).
  if (manifest.hostStatus === 'refused' && manifest.hostCommandSeen !== true) {
    return {
      status: 'not-sent',
      detail: `the manifest of capture ${captureId} records ${instanceId} as refused: no capture command went to it`,
    };
  }
  return { status: 'capture-host', detail: null };
}
