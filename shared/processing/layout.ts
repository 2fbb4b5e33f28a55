import { UnexpectedPcapKeyError } from './errors.ts';
import { PCAP_PREFIX } from './s3-event.ts';

/**
 * Where a pcap's results go. Two families under `results/`, both keyed by the source object's
 * version so that every (bucket, key, versionId) has exactly one deterministic result set:
 *
 *   results/<captureId>/<instanceId>/<file>/<versionId>/summary.json     completion record, last
 *   results/<captureId>/<instanceId>/<file>/<versionId>/streams/*.pcap   carved TCP streams
 *   results/tables/<table>/dt=<YYYY-MM-DD>/capture=<captureId>/instance=<instanceId>/
 *       file=<file>/version=<versionId>/<table>.jsonl.gz                   Athena tables
 *
 * The per-file folder is what a responder opens; the per-table prefixes are what Athena reads
 * (one table = one prefix; `dt` is the partition, projected, so queries prune by day). See
 * docs/processing.md for why.
 */

export const RESULTS_PREFIX = 'results/';
export const TABLES_PREFIX = `${RESULTS_PREFIX}tables/`;

export const RESULT_TABLES = [
  'summary',
  'conversations',
  'dns',
  'tls',
  'http',
  'port_zero',
] as const;
export type ResultTable = (typeof RESULT_TABLES)[number];

const CAPTURE_ID = /^cap-(\d{4})(\d{2})(\d{2})T\d{6}Z-[0-9a-f]{8}$/;
const INSTANCE_ID = /^(i|mi)-[0-9a-f]{8,17}$/;
const VERSION_ID = /^[A-Za-z0-9._-]{1,1024}$/;

/** What the key of a pcap object says about it. */
export interface PcapKeyParts {
  captureId: string;
  instanceId: string;
  /** The file name as uploaded (may contain spaces; never `/`, control characters, `.`/`..`). */
  file: string;
  /** UTC day of the capture start, from the capture ID: the `dt` partition. */
  day: string;
}

/** Splits `pcaps/<captureId>/<instanceId>/<file>`; anything else is UnexpectedPcapKeyError. */
export function parsePcapKey(key: string): PcapKeyParts {
  const fail = (why: string): never => {
    throw new UnexpectedPcapKeyError(
      `pcap key ${JSON.stringify(key.slice(0, 300))} does not follow pcaps/<captureId>/<instanceId>/<file>: ${why}`,
      { key: key.slice(0, 1024), why },
    );
  };
  if (!key.startsWith(PCAP_PREFIX)) fail('not under pcaps/');
  const parts = key.slice(PCAP_PREFIX.length).split('/');
  if (parts.length !== 3) fail(`expected 3 path segments after pcaps/, found ${parts.length}`);
  const [captureId, instanceId, file] = parts as [string, string, string];
  const capture = CAPTURE_ID.exec(captureId);
  if (!capture) fail('capture ID is not cap-YYYYMMDDTHHMMSSZ-<8 hex>');
  const [, year, month, dayOfMonth] = capture as RegExpExecArray;
  const day = `${year}-${month}-${dayOfMonth}`;
  const date = new Date(`${day}T00:00:00Z`);
  if (Number.isNaN(date.getTime()) || date.toISOString().slice(0, 10) !== day) {
    fail('capture ID carries an impossible date');
  }
  if (!INSTANCE_ID.test(instanceId)) fail('instance ID is not i-<hex> or mi-<hex>');
  if (file.length === 0 || file.length > 255) fail('file name is empty or longer than 255');
  if (file === '.' || file === '..') fail('file name is . or ..');
  if (/[\x00-\x1f\x7f]/.test(file)) fail('file name contains control characters');
  return { captureId, instanceId, file, day };
}

/** S3 reports a missing version ID (unversioned bucket) as `null`; so do we, in paths. */
export function versionSegment(versionId: string | undefined): string {
  if (versionId === undefined || versionId === '') return 'null';
  if (!VERSION_ID.test(versionId)) {
    throw new UnexpectedPcapKeyError('S3 version ID has unexpected characters', {
      versionId: versionId.slice(0, 128),
    });
  }
  return versionId;
}

export interface ResultLayout {
  /** Per-file folder, ending in `/`. */
  home: string;
  /** Completion record (written last, with IfNoneMatch). Its presence means "done". */
  completion: string;
  /** Prefix for carved stream pieces, ending in `/`. */
  streams: string;
  /** One object per Athena table. */
  tables: Record<ResultTable, string>;
}

export function resultLayout(parts: PcapKeyParts, versionId: string | undefined): ResultLayout {
  const version = versionSegment(versionId);
  const home = `${RESULTS_PREFIX}${parts.captureId}/${parts.instanceId}/${parts.file}/${version}/`;
  const partition = `dt=${parts.day}/capture=${parts.captureId}/instance=${parts.instanceId}/file=${parts.file}/version=${version}/`;
  const table = (name: ResultTable, file: string) => `${TABLES_PREFIX}${name}/${partition}${file}`;
  return {
    home,
    completion: `${home}summary.json`,
    streams: `${home}streams/`,
    tables: {
      summary: table('summary', 'summary.json'),
      conversations: table('conversations', 'conversations.jsonl.gz'),
      dns: table('dns', 'dns.jsonl.gz'),
      tls: table('tls', 'tls.jsonl.gz'),
      http: table('http', 'http.jsonl.gz'),
      port_zero: table('port_zero', 'port_zero.jsonl.gz'),
    },
  };
}
