import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { communityId } from '../../shared/pcap/community-id.ts';
import { ip4, ip6 } from './pcap-frames.ts';

// corelight/community-id-spec baseline/baseline_deflt.json (seed 0); ICMP ports are type/code
const BASELINE: [number, string, string, number | null, number | null, string][] = [
  [
    58,
    'fe80::200:86ff:fe05:80da',
    'fe80::260:97ff:fe07:69ea',
    135,
    136,
    '1:dGHyGvjMfljg6Bppwm3bg0LO8TY=',
  ],
  [
    58,
    'fe80::260:97ff:fe07:69ea',
    'fe80::200:86ff:fe05:80da',
    136,
    135,
    '1:dGHyGvjMfljg6Bppwm3bg0LO8TY=',
  ],
  [
    58,
    'fe80::260:97ff:fe07:69ea',
    'fe80::200:86ff:fe05:80da',
    135,
    136,
    '1:zavyT/cezQr1fmImYCwYnMXbgck=',
  ],
  [
    58,
    '3ffe:501:1800:2345::2',
    '3ffe:507:0:1:200:86ff:fe05:80da',
    3,
    0,
    '1:2ObVBgIn28oZvibYZhZMBgh7WdQ=',
  ],
  [
    58,
    '3ffe:501:410:0:2c0:dfff:fe47:33e',
    '3ffe:507:0:1:200:86ff:fe05:80da',
    1,
    4,
    '1:hLZd0XGWojozrvxqE0dWB1iM6R0=',
  ],
  [
    58,
    '3ffe:507:0:1:200:86ff:fe05:80da',
    '3ffe:501:0:1001::2',
    128,
    129,
    '1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=',
  ],
  [
    58,
    '3ffe:501:0:1001::2',
    '3ffe:507:0:1:200:86ff:fe05:80da',
    129,
    128,
    '1:+TW+HtLHvV1xnGhV1lv7XoJrqQg=',
  ],
  [58, 'fe80::200:86ff:fe05:80da', 'ff02::2', 133, 134, '1:hO+sN4H+MG5MY/8hIrXPqc4ZQz0='],
  [58, 'fe80::260:97ff:fe07:69ea', 'ff02::1', 134, 133, '1:pkvHqCL88/tg1k4cPigmZXUtL00='],
  [1, '192.168.0.89', '192.168.0.1', 8, 0, '1:X0snYXpgwiv9TZtqg64sgzUn6Dk='],
  [1, '192.168.0.1', '192.168.0.89', 0, 8, '1:X0snYXpgwiv9TZtqg64sgzUn6Dk='],
  [1, '10.0.0.1', '10.0.0.2', 11, 0, '1:YHxtAirCG//0OzkcVAukqKQN9xM='],
  [
    6,
    '2001:470:e5bf:dead:4957:2174:e82c:4887',
    '2607:f8b0:400c:c03::1a',
    63943,
    25,
    '1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=',
  ],
  [
    6,
    '2607:f8b0:400c:c03::1a',
    '2001:470:e5bf:dead:4957:2174:e82c:4887',
    25,
    63943,
    '1:/qFaeAR+gFe1KYjMzVDsMv+wgU4=',
  ],
  [132, '192.168.170.8', '192.168.170.56', 7, 7, '1:MP2EtRCAUIZvTw6MxJHLV7N7JDs='],
  [132, '192.168.170.56', '192.168.170.8', 7, 7, '1:MP2EtRCAUIZvTw6MxJHLV7N7JDs='],
  [6, '128.232.110.120', '66.35.250.204', 34855, 80, '1:LQU9qZlK+B5F3KDmev6m5PMibrg='],
  [6, '66.35.250.204', '128.232.110.120', 80, 34855, '1:LQU9qZlK+B5F3KDmev6m5PMibrg='],
  [17, '192.168.1.52', '8.8.8.8', 54585, 53, '1:d/FP5EW3wiY1vCndhwleRRKHowQ='],
  [17, '8.8.8.8', '192.168.1.52', 53, 54585, '1:d/FP5EW3wiY1vCndhwleRRKHowQ='],
  [46, '10.1.12.1', '10.1.12.2', null, null, '1:KHlLkgoJW7ifUTyTSgyVfkFHzKw='],
  [46, '10.1.12.2', '10.1.12.1', null, null, '1:KHlLkgoJW7ifUTyTSgyVfkFHzKw='],
];

const addr = (a: string) => (a.includes(':') ? ip6(a) : ip4(a));

describe('Community ID v1', () => {
  it.each(BASELINE)('proto %i %s → %s', (proto, src, dst, sport, dport, expected) => {
    expect(
      communityId({ proto, src: addr(src), dst: addr(dst), sport: sport ?? 0, dport: dport ?? 0 }),
    ).toBe(expected);
  });

  it('our one-block SHA-1 equals node:crypto for any TCP/UDP tuple', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.constantFrom(6, 17),
        fc.integer({ min: 0, max: 65535 }),
        fc.integer({ min: 0, max: 65535 }),
        fc.boolean(),
        (s, d, proto, sport, dport, v4) => {
          const src = v4 ? s.subarray(0, 4) : s;
          const dst = v4 ? d.subarray(0, 4) : d;
          let [a, b, pa, pb] = [src, dst, sport, dport];
          const cmp = Buffer.compare(Buffer.from(a), Buffer.from(b));
          if (cmp > 0 || (cmp === 0 && pa > pb)) [a, b, pa, pb] = [b, a, pb, pa];
          const input = Buffer.concat([
            Buffer.from([0, 0]),
            Buffer.from(a),
            Buffer.from(b),
            Buffer.from([proto, 0, pa >> 8, pa & 255, pb >> 8, pb & 255]),
          ]);
          const expected = `1:${createHash('sha1').update(input).digest('base64')}`;
          expect(communityId({ proto, src, dst, sport, dport })).toBe(expected);
        },
      ),
      { numRuns: 2000 },
    );
  });
});
