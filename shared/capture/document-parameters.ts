import type { CaptureRequest } from './request.ts';

/** Bytes kept per packet in "headers" mode: Ethernet + VLAN + IPv6 + TCP with options. */
export const HEADERS_SNAPLEN = 128;

export interface DocumentParameterInput {
  captureId: string;
  request: CaptureRequest;
  bpf: string;
  durationSeconds: number;
  maxMegabytes: number;
  bucket: string;
  keyArn: string;
  region: string;
  minFreeMegabytes: number;
  /** Optional S3 endpoint for the host (lab: http://127.0.0.1:PORT); AWS: unset. */
  hostS3Endpoint?: string | undefined;
  /** Optional host work directory (default /var/lib/tapline from the document). */
  hostWorkDir?: string | undefined;
}

/**
 * SendCommand parameters for the capture document: one value per String parameter. Every value
 * here is produced from validated, typed fields, and the document's allowedPatterns (and the
 * script's own re-check) accept nothing else.
 */
export function captureDocumentParameters(input: DocumentParameterInput): Record<string, string[]> {
  const { request } = input;
  const snaplen = request.snaplen === 'headers' ? HEADERS_SNAPLEN : request.snaplen;
  const params: Record<string, string> = {
    CaptureId: input.captureId,
    Bucket: input.bucket,
    KmsKeyId: input.keyArn,
    Region: input.region,
    Interface: request.interface,
    DurationSeconds: String(input.durationSeconds),
    Snaplen: String(snaplen),
    RotateSeconds: String(request.rotation.seconds ?? 0),
    RotateMegabytes: String(request.rotation.megabytes),
    FileCount: String(request.fileCount),
    MaxMegabytes: String(input.maxMegabytes),
    Filter: input.bpf,
    MinFreeMegabytes: String(input.minFreeMegabytes),
    LookbackSeconds: String(request.lookbackSeconds),
  };
  if (input.hostS3Endpoint) params.EndpointUrl = input.hostS3Endpoint;
  if (input.hostWorkDir) params.WorkDir = input.hostWorkDir;
  return Object.fromEntries(Object.entries(params).map(([k, v]) => [k, [v]]));
}
