import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MalformedEventError } from '../../shared/errors.ts';
import { decodeS3Key, parseS3Message } from '../../shared/processing/s3-event.ts';

const fixture = (name: string) =>
  JSON.parse(readFileSync(new URL(`../../events/sqs/${name}`, import.meta.url), 'utf8'));

const s3Body = (records: Array<{ key: string; eventName?: string; versionId?: string }>) =>
  JSON.stringify({
    Records: records.map((r) => ({
      eventVersion: '2.1',
      eventSource: 'aws:s3',
      eventName: r.eventName ?? 'ObjectCreated:Put',
      eventTime: '2026-11-23T08:45:12.345Z',
      s3: {
        bucket: { name: 'evidence-bucket' },
        object: { key: r.key, size: 10, ...(r.versionId ? { versionId: r.versionId } : {}) },
      },
    })),
  });

describe('S3 event messages on the processing queue', () => {
  it('reads the sample SQS event: decodes + and %xx in the key, keeps version and size', () => {
    const event = fixture('pcap-created.json');
    const parsed = parseS3Message(event.Records[0].body);
    expect(parsed).toEqual({
      kind: 'objects',
      skipped: [],
      objects: [
        {
          bucket: 'tapline-dev-us-east-1-evidence',
          key: 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/tapline ens5 20261123T084000Z+00.pcap',
          versionId: '3HL4kqtJlcpXroDTDmJ.rmSpXd3dIbrHY',
          size: 1048576,
          eventName: 'ObjectCreated:CompleteMultipartUpload',
          eventTime: '2026-11-23T08:45:12.345Z',
        },
      ],
    });
  });

  it('recognises the s3:TestEvent S3 sends when the notification is configured', () => {
    const event = fixture('s3-test-event.json');
    expect(parseS3Message(event.Records[0].body)).toEqual({
      kind: 'test-event',
      bucket: 'tapline-dev-us-east-1-evidence',
    });
  });

  it('skips keys outside pcaps/ and non-create events, keeping the pcaps', () => {
    const parsed = parseS3Message(
      s3Body([
        { key: 'captures/cap-x/manifest.json' },
        {
          key: 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/a.pcap',
          eventName: 'ObjectRemoved:Delete',
        },
        { key: 'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/b.pcap' },
      ]),
    );
    expect(parsed.kind).toBe('objects');
    if (parsed.kind !== 'objects') return;
    expect(parsed.objects.map((o) => o.key)).toEqual([
      'pcaps/cap-20261123T084000Z-1a2b3c4d/i-0123456789abcdef0/b.pcap',
    ]);
    expect(parsed.skipped.map((s) => s.reason)).toEqual([
      'outside-pcaps-prefix',
      'not-object-created',
    ]);
  });

  it('decodes keys exactly as S3 encodes them (space as +, a real + as %2B, UTF-8)', () => {
    expect(decodeS3Key('pcaps/a+b%2Bc/%C3%A9t%C3%A9.pcap')).toBe('pcaps/a b+c/été.pcap');
    expect(decodeS3Key('plain/key.pcap')).toBe('plain/key.pcap');
  });

  it.each([
    ['not JSON', '{"Records": ['],
    ['an array', '[]'],
    [
      'records without s3',
      JSON.stringify({ Records: [{ eventSource: 'aws:s3', eventName: 'ObjectCreated:Put' }] }),
    ],
    [
      'another source',
      JSON.stringify({ Records: [{ eventSource: 'aws:sns', eventName: 'x', s3: {} }] }),
    ],
    ['empty records', JSON.stringify({ Records: [] })],
    ['a bad escape in the key', s3Body([{ key: 'pcaps/%E0%A4%A/x.pcap' }])],
  ])('refuses %s with a typed MalformedEventError', (_what, body) => {
    expect(() => parseS3Message(body)).toThrow(MalformedEventError);
  });
});
