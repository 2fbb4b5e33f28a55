import { DocumentParameterError } from './errors.ts';
import type { CaptureRequest } from './request.ts';

/**
 * The allowedPattern of every String parameter of ssm-documents/tapline-capture.yml the core
 * sends, as the document states it, character for character (a copy: the Lambda bundle does not
 * carry the document; test/unit/capture-document-parameter-patterns.test.ts keeps the two equal).
 * moto does not enforce allowedPattern and real SSM refuses the whole command on a mismatch, so
 * the core checks each value against these before anything is started.
 */
const PATTERN_SOURCES: Readonly<Record<string, string>> = {
  CaptureId: '^cap-[0-9]{8}T[0-9]{6}Z-[0-9a-f]{8}$',
  Bucket: '^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$',
  KmsKeyId: '^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/(mrk-[0-9a-f]{32}|[0-9a-f-]{36})$',
  Region: '^[a-z]{2}(-[a-z]+)+-[0-9]$',
  Interface: '^(auto|[a-zA-Z0-9][a-zA-Z0-9._-]{0,14})$',
  DurationSeconds: '^[1-9][0-9]{0,4}$',
  Snaplen: '^(0|[1-9][0-9]{0,5})$',
  RotateSeconds: '^(0|[1-9][0-9]{0,4})$',
  RotateMegabytes: '^[1-9][0-9]{0,3}$',
  FileCount: '^[1-9][0-9]{0,3}$',
  MaxMegabytes: '^[1-9][0-9]{0,6}$',
  Filter: '^$|^[a-zA-Z0-9(!][a-zA-Z0-9 .:/()!&|<>=*+\\[\\]-]{0,1023}$',
  MinFreeMegabytes: '^(0|[1-9][0-9]{0,6})$',
  LookbackSeconds: '^(0|[1-9][0-9]{0,4})$',
  WorkDir: '^/(var/lib|var/tmp|tmp|opt)/tapline[A-Za-z0-9_-]*(/[A-Za-z0-9_-]+)*$',
  EndpointUrl:
    '^$|^http://127\\.0\\.0\\.1:[1-9][0-9]{1,4}$|^https://[a-z0-9-]+(\\.[a-z0-9-]+)*\\.amazonaws\\.com(\\.cn)?$',
};

export const CAPTURE_DOCUMENT_PATTERNS: Readonly<Record<string, RegExp>> = Object.fromEntries(
  Object.entries(PATTERN_SOURCES).map(([name, source]) => [name, new RegExp(source)]),
);

/** Throws DocumentParameterError for the first value its document pattern refuses. */
export function checkDocumentParameters(params: Record<string, string[]>): void {
  for (const [name, values] of Object.entries(params)) {
    const pattern = CAPTURE_DOCUMENT_PATTERNS[name];
    const value = values[0] ?? '';
    if (!pattern || values.length !== 1) {
      throw new DocumentParameterError(name, value, pattern ?? /^(?!)$/);
    }
    if (!pattern.test(value)) throw new DocumentParameterError(name, value, pattern);
  }
}

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
 * SendCommand parameters for the capture document: one value per String parameter, produced
 * from validated, typed fields. The capture core checks them with checkDocumentParameters
 * before anything starts (the dry-run plan shows them as built); the script re-checks each one
 * on the host.
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
