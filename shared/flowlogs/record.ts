import { FLOW_LOG_FIELDS, type FlowLogFormat } from './format.ts';

/** A full flow-log record, built lazily for evidence: every field of the format, typed. */
export type FlowRecord = Record<string, string | number | null>;

/**
 * Builds the full record from its text. Numbers become numbers, `-` becomes null, everything
 * else stays text. Used for the bounded evidence only, never on the hot path.
 */
export function recordFromText(format: FlowLogFormat, text: string): FlowRecord {
  const values = text.trim().split(/[ \t]+/);
  const record: FlowRecord = {};
  format.fields.forEach((name, i) => {
    const raw = values[i];
    if (raw === undefined || raw === '-') {
      record[name] = null;
      return;
    }
    const spec = FLOW_LOG_FIELDS[name];
    record[name] = spec?.kind === 'int' && /^\d{1,16}$/.test(raw) ? Number(raw) : raw;
  });
  return record;
}

/** The inverse, for fixtures and Parquet rows: a record in the format's field order. */
export function recordToText(format: FlowLogFormat, record: Record<string, unknown>): string {
  return format.fields
    .map((name) => {
      const v = record[name];
      return v === null || v === undefined || v === '' ? '-' : String(v);
    })
    .join(' ');
}
