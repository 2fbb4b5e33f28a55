import { describe, expect, it } from 'vitest';
import { parseCaptureRequest } from '../../shared/capture/request.ts';
import { InvalidCaptureRequestError } from '../../shared/errors.ts';

const valid = {
  targets: { kind: 'instances', instanceIds: ['i-0123456789abcdef0'] },
  reason: 'IR-42 suspected exfiltration',
};

describe('parseCaptureRequest', () => {
  it('fills defaults for a minimal manual request', () => {
    const request = parseCaptureRequest(valid);
    expect(request.interface).toBe('auto');
    expect(request.snaplen).toBe(0);
    expect(request.source).toBe('manual');
    expect(request.lookbackSeconds).toBe(0);
  });

  it('names the failing field', () => {
    expect(() =>
      parseCaptureRequest({
        ...valid,
        targets: { kind: 'instances', instanceIds: ['i-$(reboot)'] },
      }),
    ).toThrow(/targets.instanceIds.0/);
    expect(() => parseCaptureRequest({ ...valid, interface: '-i eth0' })).toThrow(
      InvalidCaptureRequestError,
    );
    expect(() => parseCaptureRequest({ ...valid, reason: 'line\nbreak' })).toThrow(/reason/);
  });

  it('rejects malformed CIDRs in a structured filter', () => {
    for (const host of ['10.0.0.0/33', '10.0.0.1/8/1', 'example.com', '10.0.0.1;id']) {
      expect(() =>
        parseCaptureRequest({ ...valid, filter: { kind: 'structured', hosts: [host] } }),
      ).toThrow(/filter.hosts.0/);
    }
  });
});
