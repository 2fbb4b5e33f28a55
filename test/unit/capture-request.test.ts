import { describe, expect, it } from 'vitest';
import { parseCaptureRequest } from '../../shared/capture/request.ts';
import { InvalidCaptureRequestError, InvalidFilterError } from '../../shared/errors.ts';
import { HOSTILE_FILTERS, INJECTION_CORPUS } from '../fixtures/capture/injection-corpus.ts';

const valid = {
  targets: { kind: 'instances', instanceIds: ['i-0123456789abcdef0'] },
  reason: 'IR-42 suspected exfiltration',
};

/** Every string-valued place in a request, as a function that puts a value there. */
const STRING_FIELDS: Record<string, (v: string) => Record<string, unknown>> = {
  'targets.instanceIds.0': (v) => ({ ...valid, targets: { kind: 'instances', instanceIds: [v] } }),
  'targets.key': (v) => ({ ...valid, targets: { kind: 'tag', key: v, value: 'true' } }),
  'targets.value': (v) => ({
    ...valid,
    targets: { kind: 'tag', key: 'tapline:capture', value: v },
  }),
  'targets.eniId': (v) => ({ ...valid, targets: { kind: 'eni', eniId: v } }),
  'targets.peerAddress': (v) => ({
    ...valid,
    targets: { kind: 'eni', eniId: 'eni-0123456789abcdef0', peerAddress: v },
  }),
  'targets.address': (v) => ({ ...valid, targets: { kind: 'address', address: v } }),
  'targets.vpcId': (v) => ({
    ...valid,
    targets: { kind: 'address', address: '10.0.0.1', vpcId: v },
  }),
  interface: (v) => ({ ...valid, interface: v }),
  reason: (v) => ({ ...valid, reason: v }),
  requestedBy: (v) => ({ ...valid, requestedBy: v }),
  ticket: (v) => ({ ...valid, ticket: v }),
  fingerprint: (v) => ({ ...valid, fingerprint: v }),
  'finding.rule': (v) => ({ ...valid, finding: { rule: v, fingerprint: 'f1' } }),
  'finding.fingerprint': (v) => ({ ...valid, finding: { rule: 'port-zero', fingerprint: v } }),
  'finding.severity': (v) => ({ ...valid, finding: { rule: 'r', fingerprint: 'f', severity: v } }),
  'finding.start': (v) => ({ ...valid, finding: { rule: 'r', fingerprint: 'f', start: v } }),
  'filter.hosts.0': (v) => ({ ...valid, filter: { kind: 'structured', hosts: [v] } }),
  'filter.expression': (v) => ({ ...valid, filter: { kind: 'bpf', expression: v } }),
  'filter.protocols.0': (v) => ({ ...valid, filter: { kind: 'structured', protocols: [v] } }),
  snaplen: (v) => ({ ...valid, snaplen: v }),
  durationSeconds: (v) => ({ ...valid, durationSeconds: v }),
};

describe('parseCaptureRequest', () => {
  it('fills defaults for a minimal manual request', () => {
    const request = parseCaptureRequest(valid);
    expect(request).toMatchObject({
      interface: 'auto',
      snaplen: 0,
      source: 'manual',
      lookbackSeconds: 0,
      fileCount: 20,
      rotation: { seconds: 300, megabytes: 256 },
    });
    expect(request.durationSeconds).toBeUndefined();
  });

  it('rejects 100% of the injection corpus in every string field, naming the field', () => {
    let checked = 0;
    for (const [field, put] of Object.entries(STRING_FIELDS)) {
      for (const value of INJECTION_CORPUS) {
        let error: unknown;
        try {
          parseCaptureRequest(put(value));
        } catch (e) {
          error = e;
        }
        expect(error, `${field} = ${JSON.stringify(value)}`).toBeDefined();
        if (field === 'filter.expression') {
          expect(error).toBeInstanceOf(InvalidFilterError);
        } else {
          expect(error, `${field} = ${JSON.stringify(value)}`).toBeInstanceOf(
            InvalidCaptureRequestError,
          );
          const fields = (error as InvalidCaptureRequestError).details.fields as {
            field: string;
          }[];
          expect(fields.map((f) => f.field).join(','), field).toContain(field.split('.')[0]);
        }
        checked++;
      }
    }
    expect(checked).toBe(Object.keys(STRING_FIELDS).length * INJECTION_CORPUS.length);
  });

  it('rejects hostile raw filters with the token and position', () => {
    for (const { expression } of HOSTILE_FILTERS) {
      expect(() => parseCaptureRequest({ ...valid, filter: { kind: 'bpf', expression } })).toThrow(
        InvalidFilterError,
      );
    }
    try {
      parseCaptureRequest({ ...valid, filter: { kind: 'bpf', expression: 'port 0; id' } });
    } catch (e) {
      expect((e as InvalidFilterError).details).toMatchObject({
        field: 'filter.expression',
        token: ';',
        position: 6,
      });
      expect((e as Error).message).toMatch(/filter\.expression: ";" at 6/);
    }
  });

  it('refuses unknown fields instead of silently dropping them', () => {
    expect(() => parseCaptureRequest({ ...valid, duration: 60 })).toThrow(
      /Unrecognized key.*duration/,
    );
  });

  it('bounds the numbers', () => {
    for (const bad of [
      { durationSeconds: 0 },
      { durationSeconds: 86_401 },
      { durationSeconds: 1.5 },
      { fileCount: 1 },
      { rotation: { seconds: 5 } },
      { rotation: { megabytes: 0 } },
      { snaplen: -1 },
      { lookbackSeconds: -5 },
      { maxMegabytes: 0 },
    ]) {
      expect(() => parseCaptureRequest({ ...valid, ...bad }), JSON.stringify(bad)).toThrow(
        InvalidCaptureRequestError,
      );
    }
  });

  it('accepts the realistic shapes the detector, CLI and responders send', () => {
    const request = parseCaptureRequest({
      targets: {
        kind: 'address',
        address: '10.0.1.25',
        vpcId: 'vpc-0a1b2c3d',
        peerAddress: '203.0.113.9',
      },
      durationSeconds: 600,
      snaplen: 'headers',
      interface: 'ens5',
      rotation: { seconds: 60, megabytes: 64 },
      fileCount: 50,
      filter: { kind: 'structured', hosts: ['10.0.1.25'], ports: [0], protocols: ['tcp', 'udp'] },
      reason: 'port-0 traffic from 10.0.1.25 to 203.0.113.9 (rule port-zero, 14 flows)',
      requestedBy: 'arn:aws:sts::123456789012:assumed-role/Responder/alice@example.com',
      ticket: 'IR-2026-1123',
      source: 'detector',
      fingerprint: 'port-zero:10.0.1.25:203.0.113.9',
      finding: {
        rule: 'port-zero',
        fingerprint: 'port-zero:10.0.1.25:203.0.113.9',
        severity: 'high',
        start: '2026-11-23T08:31:00Z',
        end: '2026-11-23T08:36:00Z',
      },
    });
    expect(request.snaplen).toBe('headers');
  });
});
