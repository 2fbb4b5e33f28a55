import { describe, expect, it } from 'vitest';
import type { StreamInfo } from '../../shared/pcap/index.ts';
import {
  findingsPredicate,
  indicatorsFromRequest,
  pieceName,
} from '../../shared/processing/carve.ts';

const stream = (a: [string, number], b: [string, number]): StreamInfo => ({
  index: 3,
  a: { addr: a[0], port: a[1] },
  b: { addr: b[0], port: b[1] },
  communityId: '1:x',
  start: 0,
});

describe('CARVE_MODE=findings stream selection', () => {
  it('always carves streams with port 0 on either side', () => {
    const pick = findingsPredicate(indicatorsFromRequest(undefined));
    expect(pick(stream(['10.0.0.1', 0], ['10.0.0.2', 80]))).toBe(true);
    expect(pick(stream(['10.0.0.1', 5555], ['10.0.0.2', 0]))).toBe(true);
    expect(pick(stream(['10.0.0.1', 5555], ['10.0.0.2', 80]))).toBe(false);
  });

  it("adds the finding's hosts and ports from the recorded capture request", () => {
    const pick = findingsPredicate(
      indicatorsFromRequest({
        source: 'detector',
        finding: { rule: 'deny-listed-peer', fingerprint: 'f' },
        filter: { kind: 'structured', hosts: ['203.0.113.0/24', '2001:db8::1'], ports: [443] },
      }),
    );
    expect(pick(stream(['10.0.0.5', 50000], ['203.0.113.9', 443]))).toBe(true);
    expect(pick(stream(['2001:db8::1', 443], ['10.0.0.5', 50000]))).toBe(true);
    expect(pick(stream(['10.0.0.5', 50000], ['203.0.113.9', 22]))).toBe(false);
    expect(pick(stream(['10.0.0.5', 50000], ['198.51.100.1', 443]))).toBe(false);
  });

  it('ignores the filter of a capture that was not started for a finding', () => {
    const pick = findingsPredicate(
      indicatorsFromRequest({
        source: 'schedule',
        filter: { kind: 'structured', hosts: ['0.0.0.0/0'] },
      }),
    );
    expect(pick(stream(['10.0.0.5', 50000], ['203.0.113.9', 443]))).toBe(false);
  });

  it('keeps decoder file names only when they are plain names', () => {
    const chunk = (fileName: string, part = 0, final = true) => ({
      stream: stream(['a', 1], ['b', 2]),
      fileName,
      part,
      final,
      packets: 1,
      pcap: new Uint8Array(),
    });
    expect(pieceName(chunk('tcp-stream-000003.pcap'))).toBe('tcp-stream-000003.pcap');
    expect(pieceName(chunk('../../evil.pcap'))).toBe('tcp-stream-000003.pcap');
    expect(pieceName(chunk('a/b', 2, false))).toBe('tcp-stream-000003.part-2.pcap');
  });
});
