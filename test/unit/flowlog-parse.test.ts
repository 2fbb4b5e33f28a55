import { describe, expect, it } from 'vitest';
import { FlowLogFormatError } from '../../shared/errors.ts';
import { K_SRC, type ParsedFields, parseFields } from '../../shared/flowlogs/field-parser.ts';
import {
  DEFAULT_FORMAT,
  DEFAULT_FORMAT_STRING,
  looksLikeHeader,
  parseFlowLogFormat,
} from '../../shared/flowlogs/format.ts';
import { recordFromText } from '../../shared/flowlogs/record.ts';
import {
  ACTION_ACCEPT,
  ACTION_REJECT,
  FlowCursor,
  FlowScanner,
  ipv4ToString,
} from '../../shared/flowlogs/scanner.ts';
import { flowLogFixture } from '../support/flowlog-inputs.ts';

/** A record as the rules see it: the cursor's numeric fields, addresses as text. */
interface Seen
  extends Pick<
    ParsedFields,
    | 'srcport'
    | 'dstport'
    | 'protocol'
    | 'packets'
    | 'bytes'
    | 'start'
    | 'end'
    | 'action'
    | 'tcpFlags'
    | 'dstIsAwsService'
  > {
  src: string;
  dst: string;
  text: string;
}

/** Scans text and snapshots every record the rules would see. */
function scan(text: string | Buffer, options: ConstructorParameters<typeof FlowScanner>[1] = {}) {
  const seen: Seen[] = [];
  const scanner = new FlowScanner(
    {
      observe(c: FlowCursor) {
        seen.push({
          src: c.srcV4 ? ipv4ToString(c.src) : (c.srcText ?? '-'),
          dst: c.dstV4 ? ipv4ToString(c.dst) : (c.dstText ?? '-'),
          srcport: c.srcport,
          dstport: c.dstport,
          protocol: c.protocol,
          packets: c.packets,
          bytes: c.bytes,
          start: c.start,
          end: c.end,
          action: c.action,
          tcpFlags: c.tcpFlags,
          dstIsAwsService: c.dstIsAwsService,
          text: c.text(),
        });
      },
    },
    options,
  );
  scanner.push(Buffer.isBuffer(text) ? text : Buffer.from(text));
  const stats = scanner.end();
  return { seen, stats, scanner };
}

describe('parseFlowLogFormat', () => {
  it('reads the AWS dollar-brace form, plain names and Parquet underscores alike', () => {
    const aws = parseFlowLogFormat(DEFAULT_FORMAT_STRING);
    const plain = parseFlowLogFormat(DEFAULT_FORMAT.fields.join(' '));
    const parquet = parseFlowLogFormat('version account_id interface_id srcaddr log_status');
    expect(aws.fields).toEqual(DEFAULT_FORMAT.fields);
    expect(plain.fields).toEqual(DEFAULT_FORMAT.fields);
    expect(parquet.fields).toEqual([
      'version',
      'account-id',
      'interface-id',
      'srcaddr',
      'log-status',
    ]);
    expect(aws.version).toBe(2);
  });

  it('knows the fields of versions 2 to 8 and accepts newer ones as text', () => {
    const f = parseFlowLogFormat(
      // biome-ignore lint/suspicious/noTemplateCurlyInString: AWS LogFormat syntax, not a template
      '${vpc-id} ${tcp-flags} ${az-id} ${traffic-path} ${ecs-task-id} ${reject-reason} ${some-future-field}',
    );
    expect(f.version).toBe(8);
    expect(f.unknownFields).toEqual(['some-future-field']);
    expect(f.indexOf('tcp-flags')).toBe(1);
    expect(f.indexOf('srcaddr')).toBe(-1);
  });

  it('rejects empty, duplicate and malformed formats with FlowLogFormatError', () => {
    expect(() => parseFlowLogFormat('   ')).toThrow(FlowLogFormatError);
    expect(() => parseFlowLogFormat('srcaddr srcaddr')).toThrow(/twice/);
    expect(() => parseFlowLogFormat('srcaddr $(reboot)')).toThrow(FlowLogFormatError);
  });

  it('tells a header line from a record', () => {
    expect(looksLikeHeader(DEFAULT_FORMAT.fields.join(' '))).toBe(true);
    expect(looksLikeHeader(flowLogFixture('aws-doc-default.log').split('\n')[0]!)).toBe(false);
  });
});

describe('FlowScanner', () => {
  it('parses the AWS documentation samples by field name, counting NODATA and SKIPDATA', () => {
    const { seen, stats } = scan(flowLogFixture('aws-doc-default.log'));
    expect(stats.records).toBe(4);
    expect(stats.nodata).toBe(1);
    expect(stats.skipdata).toBe(1);
    expect(stats.malformed).toBe(0);
    expect(seen[0]).toMatchObject({
      src: '172.31.16.139',
      dst: '172.31.16.21',
      srcport: 20641,
      dstport: 22,
      protocol: 6,
      packets: 20,
      bytes: 4249,
      start: 1418530010,
      end: 1418530070,
      action: ACTION_ACCEPT,
      tcpFlags: -1,
    });
    expect(seen[1]!.action).toBe(ACTION_REJECT);
    expect(seen[2]).toMatchObject({ protocol: 1, srcport: 0, dstport: 0 });
  });

  it('parses a custom v3 format given as a format string (AWS TCP flag example)', () => {
    const format = parseFlowLogFormat(flowLogFixture('aws-doc-tcp-flags-v3.format'));
    const { seen, stats } = scan(flowLogFixture('aws-doc-tcp-flags-v3.log'), {
      format,
      header: 'none',
    });
    expect(stats.records).toBe(4);
    expect(seen.map((s) => s.tcpFlags)).toEqual([2, 18, 2, 18]);
    // bytes and packets are swapped in this format: by name, not position
    expect(seen[2]).toMatchObject({ bytes: 100701, packets: 70, dstport: 5001 });
  });

  it('takes the format from an S3 header line (v5 custom format)', () => {
    const { seen, stats } = scan(flowLogFixture('custom-v5.log'));
    expect(stats.headerLines).toBe(1);
    expect(stats.format).toContain('pkt-dst-aws-service');
    expect(stats.records).toBe(5);
    expect(seen[1]!.dstIsAwsService).toBe(true);
    expect(seen[0]!.dstIsAwsService).toBe(false);
    expect(seen[3]).toMatchObject({ protocol: 47, tcpFlags: -1 });
  });

  it('reads IPv6 addresses (lower-cased) and keeps IPv4 as numbers', () => {
    const { seen } = scan(flowLogFixture('ipv6.log'));
    expect(seen.map((s) => s.src)).toEqual([
      '2001:db8:1234:a100:8d6e:3477:df66:f105',
      '2001:db8:1234:a102:3304:8879:34cf:4071',
      'fd12:3456:789a:1::10',
    ]);
    expect(seen[2]!.dst).toBe('2001:db8::bad:1');
  });

  it('counts malformed records with a bounded sample and never stops the batch', () => {
    const { seen, stats } = scan(flowLogFixture('malformed.log'));
    expect(seen.map((s) => s.dstport)).toEqual([22, 3389]);
    expect(stats.malformed).toBe(7);
    expect(stats.blank).toBe(1);
    expect(stats.malformedByReason).toMatchObject({
      'srcport is not a number': 1,
      'srcport out of range': 1,
      'srcaddr is not an IP address': 1,
      'dstaddr is not an IP address': 1,
      'unknown action': 1,
    });
    const many = `${'garbage line\n'.repeat(1000)}`;
    const flood = scan(many, { maxMalformedSample: 5 });
    expect(flood.stats.malformed).toBe(1000);
    expect(flood.stats.malformedSample).toHaveLength(5);
  });

  it('gives the same records however the bytes are chunked (CRLF included)', () => {
    const text = `${flowLogFixture('aws-doc-default.log').replaceAll('\n', '\r\n')}${flowLogFixture('ipv6.log')}`;
    const whole = scan(text).seen;
    for (const size of [1, 2, 7, 64]) {
      const seen: string[] = [];
      const scanner = new FlowScanner({ observe: (c) => seen.push(c.text()) });
      const buf = Buffer.from(text);
      for (let i = 0; i < buf.length; i += size) scanner.push(buf.subarray(i, i + size));
      scanner.end();
      expect(seen).toEqual(whole.map((s) => s.text));
    }
    expect(whole[0]!.text.endsWith('OK')).toBe(true);
  });

  it('bounds line length on hostile input', () => {
    const long = `${'9'.repeat(100_000)}\n${flowLogFixture('aws-doc-default.log')}`;
    const { stats } = scan(long, { maxLineBytes: 4096 });
    expect(stats.records).toBe(4);
    expect(stats.malformed).toBe(1);
  });

  it('parses IPv4 strictly', () => {
    // through the parser the scanner really uses (one srcaddr field)
    const p = (s: string) => {
      const c = new FlowCursor();
      const parsed = parseFields(Uint8Array.of(K_SRC), Buffer.from(s), 0, s.length, c, -1);
      return (parsed & 255) === 0 && c.srcV4 ? c.src >>> 0 : -1;
    };
    expect(p('10.202.1.2')).toBe(0x0aca0102);
    expect(p('255.255.255.255')).toBe(4294967295);
    for (const bad of ['1.2.3', '1.2.3.4.5', '256.1.1.1', '01.2.3.4', '1..2.3', '1.2.3.4a', '']) {
      expect(p(bad)).toBe(-1);
    }
  });

  it('builds full records lazily with types and nulls for "-"', () => {
    const format = parseFlowLogFormat(flowLogFixture('custom-v5.log').split('\n')[0]!);
    const record = recordFromText(format, flowLogFixture('custom-v5.log').split('\n')[1]!);
    expect(record).toMatchObject({
      version: 5,
      'instance-id': 'i-0a1b2c3d4e5f60718',
      dstport: 0,
      'tcp-flags': null,
      'flow-direction': 'egress',
      'traffic-path': 8,
    });
  });
});

describe('FlowScanner strictness', () => {
  it('accepts only the exact action and log-status words', () => {
    const base =
      '2 123456789010 eni-1235b8ca123456789 10.0.0.1 10.0.0.2 40000 443 6 1 60 1418530010 1418530070';
    const { seen, stats } = scan(
      [
        `${base} ACCEPT OK`,
        `${base} ACCEPX OK`,
        `${base} REJECT OK`,
        `${base} REJECT OX`,
        `${base}\tACCEPT\tOK`,
      ].join('\n'),
    );
    expect(seen.map((s) => s.action)).toEqual([ACTION_ACCEPT, ACTION_REJECT, ACTION_ACCEPT]);
    expect(stats.malformedByReason).toEqual({ 'unknown action': 1, 'unknown log-status': 1 });
  });
});
