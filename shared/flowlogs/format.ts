import { unsetIfBlank } from '../config.ts';
import { FlowLogFormatError } from '../errors.ts';

/**
 * The VPC Flow Logs record fields, by name, with the flow-log version that introduced them and
 * how Tapline types them. Records are always parsed by field name from a format string (stage
 * parameter FLOW_LOG_FORMAT, `--format`) or from an S3 object's header line, never by position.
 */
export type FieldKind = 'int' | 'address' | 'text';

export interface FieldSpec {
  kind: FieldKind;
  /** Flow-log version that introduced the field (null: newer than version 8). */
  version: number | null;
}

export const FLOW_LOG_FIELDS: Readonly<Record<string, FieldSpec>> = {
  // version 2 (the default format, in this order)
  version: { kind: 'int', version: 2 },
  'account-id': { kind: 'text', version: 2 },
  'interface-id': { kind: 'text', version: 2 },
  srcaddr: { kind: 'address', version: 2 },
  dstaddr: { kind: 'address', version: 2 },
  srcport: { kind: 'int', version: 2 },
  dstport: { kind: 'int', version: 2 },
  protocol: { kind: 'int', version: 2 },
  packets: { kind: 'int', version: 2 },
  bytes: { kind: 'int', version: 2 },
  start: { kind: 'int', version: 2 },
  end: { kind: 'int', version: 2 },
  action: { kind: 'text', version: 2 },
  'log-status': { kind: 'text', version: 2 },
  // version 3
  'vpc-id': { kind: 'text', version: 3 },
  'subnet-id': { kind: 'text', version: 3 },
  'instance-id': { kind: 'text', version: 3 },
  'tcp-flags': { kind: 'int', version: 3 },
  type: { kind: 'text', version: 3 },
  'pkt-srcaddr': { kind: 'address', version: 3 },
  'pkt-dstaddr': { kind: 'address', version: 3 },
  // version 4
  region: { kind: 'text', version: 4 },
  'az-id': { kind: 'text', version: 4 },
  'sublocation-type': { kind: 'text', version: 4 },
  'sublocation-id': { kind: 'text', version: 4 },
  // version 5
  'pkt-src-aws-service': { kind: 'text', version: 5 },
  'pkt-dst-aws-service': { kind: 'text', version: 5 },
  'flow-direction': { kind: 'text', version: 5 },
  'traffic-path': { kind: 'int', version: 5 },
  // version 7 (ECS)
  'ecs-cluster-arn': { kind: 'text', version: 7 },
  'ecs-cluster-name': { kind: 'text', version: 7 },
  'ecs-container-instance-arn': { kind: 'text', version: 7 },
  'ecs-container-instance-id': { kind: 'text', version: 7 },
  'ecs-container-id': { kind: 'text', version: 7 },
  'ecs-second-container-id': { kind: 'text', version: 7 },
  'ecs-service-name': { kind: 'text', version: 7 },
  'ecs-task-definition-arn': { kind: 'text', version: 7 },
  'ecs-task-arn': { kind: 'text', version: 7 },
  'ecs-task-id': { kind: 'text', version: 7 },
  // version 8
  'reject-reason': { kind: 'text', version: 8 },
  // newer fields, accepted and kept as text
  'resource-id': { kind: 'text', version: null },
  'encryption-status': { kind: 'text', version: null },
};

export const DEFAULT_FIELDS = [
  'version',
  'account-id',
  'interface-id',
  'srcaddr',
  'dstaddr',
  'srcport',
  'dstport',
  'protocol',
  'packets',
  'bytes',
  'start',
  'end',
  'action',
  'log-status',
] as const;

/** The default (version 2) format as AWS writes it in a flow log's LogFormat. */
export const DEFAULT_FORMAT_STRING = DEFAULT_FIELDS.map((f) => `\${${f}}`).join(' ');

export interface FlowLogFormat {
  /** Field names in record order. */
  readonly fields: readonly string[];
  /** Position of each field, -1 when the format does not have it. */
  indexOf(name: string): number;
  /** Fields this format has that Tapline does not know (kept as text, reported once). */
  readonly unknownFields: readonly string[];
  /** The highest flow-log version among the known fields. */
  readonly version: number;
}

const fieldName = /^[a-z][a-z0-9-]{0,63}$/;
const MAX_FIELDS = 128;

/**
 * Parses a flow-log format: AWS's `${version} ${account-id} …` form, plain space-separated
 * names (`version account-id …`, the S3 header line), or Parquet column names with underscores
 * (`account_id`). Unknown but well-formed names are accepted (newer AWS fields) and reported.
 */
export function parseFlowLogFormat(text: string): FlowLogFormat {
  const tokens = text.trim().split(/\s+/);
  if (tokens.length === 0 || tokens[0] === '') {
    throw new FlowLogFormatError('Flow-log format is empty', { format: text.slice(0, 200) });
  }
  if (tokens.length > MAX_FIELDS) {
    throw new FlowLogFormatError(
      `Flow-log format has ${tokens.length} fields (max ${MAX_FIELDS})`,
      {
        fields: tokens.length,
      },
    );
  }
  const fields: string[] = [];
  for (const token of tokens) {
    const bare = token.startsWith('${') && token.endsWith('}') ? token.slice(2, -1) : token;
    const name = normalizeFieldName(bare);
    if (!fieldName.test(name)) {
      throw new FlowLogFormatError(
        `Flow-log format has a malformed field ${JSON.stringify(token)}`,
        {
          field: token.slice(0, 80),
        },
      );
    }
    if (fields.includes(name)) {
      throw new FlowLogFormatError(`Flow-log format names ${name} twice`, { field: name });
    }
    fields.push(name);
  }
  return makeFormat(fields);
}

/** Parquet columns and some tools use underscores (`log_status`); AWS text uses hyphens. */
export function normalizeFieldName(name: string): string {
  return name.trim().toLowerCase().replaceAll('_', '-');
}

function makeFormat(fields: string[]): FlowLogFormat {
  const positions = new Map<string, number>();
  fields.forEach((f, i) => {
    positions.set(f, i);
  });
  const unknownFields = fields.filter((f) => !(f in FLOW_LOG_FIELDS));
  const version = Math.max(2, ...fields.map((f) => FLOW_LOG_FIELDS[f]?.version ?? 2));
  return {
    fields,
    unknownFields,
    version,
    indexOf: (name) => positions.get(name) ?? -1,
  };
}

export const DEFAULT_FORMAT: FlowLogFormat = makeFormat([...DEFAULT_FIELDS]);

/**
 * True when a line is a header (field names) rather than a record: every token is a field name
 * and at least one is a known flow-log field that cannot be a record value.
 */
export function looksLikeHeader(line: string): boolean {
  const tokens = line.trim().split(/\s+/);
  if (tokens.length === 0) return false;
  let known = 0;
  for (const token of tokens) {
    const name = normalizeFieldName(token);
    if (!fieldName.test(name)) return false;
    if (name in FLOW_LOG_FIELDS) known += 1;
  }
  return known > 0 && known >= tokens.length / 2;
}

/**
 * Resolves the format to use: an explicit string, else (unset, empty or blank, as the config
 * reads FLOW_LOG_FORMAT) the default version 2 format.
 */
export function resolveFlowLogFormat(text: string | undefined): FlowLogFormat {
  const explicit = unsetIfBlank(text);
  return explicit === undefined ? DEFAULT_FORMAT : parseFlowLogFormat(explicit);
}
