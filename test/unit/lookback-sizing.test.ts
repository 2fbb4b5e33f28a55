import { describe, expect, it } from 'vitest';
import { InvalidLookbackInputError } from '../../shared/standby/errors.ts';
import {
  FLOW_LOG_DELIVERY_DELAY_SECONDS,
  type LookbackSizingInput,
  lookbackSecondsFor,
} from '../../shared/standby/lookback-sizing.ts';

const now = new Date('2026-11-23T09:00:00Z');
const rule = { lookbackMarginSeconds: 120, maxLookbackSeconds: 3600 };
const input = (over: Partial<LookbackSizingInput> = {}): LookbackSizingInput => ({
  now,
  delivery: 'cloudwatch-logs',
  ...rule,
  ...over,
});

describe('lookbackSecondsFor', () => {
  it('reaches back to the start of the oldest evidence record, plus the margin', () => {
    // Records from 08:52:00–08:53:00 seen at 09:00:00 (8 minutes after they began).
    const sizing = lookbackSecondsFor(
      input({ findingStart: '2026-11-23T08:52:00Z', findingEnd: '2026-11-23T08:53:00Z' }),
    );
    expect(sizing).toEqual({
      seconds: 480 + 120,
      wantedSeconds: 600,
      cappedBy: 'none',
      basis: 'finding-range',
    });
  });

  it('never asks for less than the delivery delay plus the record span', () => {
    // A record stamped in the future (host clock skew): the configured delay is the floor.
    const cw = lookbackSecondsFor(
      input({ findingStart: '2026-11-23T09:01:00Z', findingEnd: '2026-11-23T09:02:00Z' }),
    );
    expect(cw.seconds).toBe(FLOW_LOG_DELIVERY_DELAY_SECONDS['cloudwatch-logs'] + 60 + 120);
    const s3 = lookbackSecondsFor(
      input({ delivery: 's3', findingStart: now.getTime() / 1000, findingEnd: now }),
    );
    expect(s3.seconds).toBe(600 + 120);
    const custom = lookbackSecondsFor(
      input({ deliveryDelaySeconds: 30, findingStart: now, findingEnd: now }),
    );
    expect(custom.seconds).toBe(150);
  });

  it('uses the delivery delay and aggregation interval when the finding has no time range', () => {
    expect(lookbackSecondsFor(input()).seconds).toBe(300 + 600 + 120);
    expect(lookbackSecondsFor(input({ aggregationIntervalSeconds: 60 })).basis).toBe(
      'delivery-delay',
    );
    expect(lookbackSecondsFor(input({ aggregationIntervalSeconds: 60 })).seconds).toBe(480);
  });

  it('lets a rule fix the look-back, and caps by the rule, the ring and the request schema', () => {
    expect(lookbackSecondsFor(input({ lookbackSeconds: 90 }))).toMatchObject({
      seconds: 90,
      basis: 'fixed',
    });
    const old = input({ findingStart: '2026-11-23T06:00:00Z' });
    expect(lookbackSecondsFor(old)).toMatchObject({ seconds: 3600, cappedBy: 'rule-maximum' });
    expect(lookbackSecondsFor({ ...old, ringRetentionSeconds: 900 })).toMatchObject({
      seconds: 900,
      cappedBy: 'ring-retention',
    });
    expect(
      lookbackSecondsFor({
        ...old,
        findingStart: '2026-11-20T00:00:00Z',
        maxLookbackSeconds: 999_999,
      }),
    ).toMatchObject({ seconds: 86_400, cappedBy: 'request-maximum' });
  });

  it('refuses inputs that make no sense with a typed error', () => {
    expect(() => lookbackSecondsFor(input({ findingStart: 'yesterday-ish' }))).toThrow(
      InvalidLookbackInputError,
    );
    expect(() =>
      lookbackSecondsFor(
        input({ findingStart: '2026-11-23T08:55:00Z', findingEnd: '2026-11-23T08:50:00Z' }),
      ),
    ).toThrow(/before findingStart/);
    expect(() => lookbackSecondsFor(input({ deliveryDelaySeconds: -5 }))).toThrow(
      /deliveryDelaySeconds/,
    );
    expect(() => lookbackSecondsFor(input({ lookbackMarginSeconds: 1.5 }))).toThrow(
      InvalidLookbackInputError,
    );
  });
});
