import { InvalidLookbackInputError } from './errors.ts';

/**
 * How far back a capture triggered by a flow-log finding must reach into the standby ring.
 *
 * Flow-log records arrive late: CloudWatch Logs about 5 minutes, S3 about 10 minutes after the
 * aggregation interval ends (AWS documents both as best effort). By the time the detector sees a
 * record, the traffic it describes is that old, plus the record's own span (its `start`..`end`,
 * up to the 1 or 10 minute aggregation interval). The look-back must reach the *start* of the
 * oldest evidence record, plus a margin for clock skew and SSM delivery:
 *
 *   seconds = max(now − findingStart, deliveryDelay + (findingEnd − findingStart)) + margin
 *
 * (`now − findingStart` is the delay actually observed; the configured delivery delay is the
 * floor when records carry future or missing times). Without a finding time range it is
 * `deliveryDelay + aggregationInterval + margin`. The result is capped by the rule's maximum and
 * by the ring's retention (asking for more than the ring holds uploads nothing extra, and the
 * report's `complete:false` says so), and a rule's fixed `lookbackSeconds` wins when set.
 */
export type FlowLogDelivery = 'cloudwatch-logs' | 's3';

/** Typical delivery delays (seconds). Override with `deliveryDelaySeconds`. */
export const FLOW_LOG_DELIVERY_DELAY_SECONDS: Record<FlowLogDelivery, number> = {
  'cloudwatch-logs': 300,
  s3: 600,
};

/** The largest LookbackSeconds the capture document accepts (allowedPattern ^(0|[1-9][0-9]{0,4})$). */
export const MAX_DOCUMENT_LOOKBACK_SECONDS = 99_999;
/** The capture request's own ceiling (shared/capture/request.ts). */
export const MAX_REQUEST_LOOKBACK_SECONDS = 86_400;

export interface LookbackSizingInput {
  now: Date;
  /** Earliest evidence record start and latest end (Date, ISO string or epoch seconds). */
  findingStart?: Date | string | number | undefined;
  findingEnd?: Date | string | number | undefined;
  /** Where the detector read the records from; decides the default delivery delay. */
  delivery: FlowLogDelivery;
  deliveryDelaySeconds?: number | undefined;
  /** Used when the finding has no time range: the flow log's aggregation interval (60 or 600). */
  aggregationIntervalSeconds?: number | undefined;
  /** Rule settings (shared/rules/config.ts `capture`): fixed value, margin, ceiling. */
  lookbackSeconds?: number | undefined;
  lookbackMarginSeconds: number;
  maxLookbackSeconds: number;
  /** The ring's retention on the target hosts, when known (standby `RetentionMinutes` × 60). */
  ringRetentionSeconds?: number | undefined;
}

export interface LookbackSizing {
  /** What to put in the capture request's `lookbackSeconds`. */
  seconds: number;
  /** Before the caps. */
  wantedSeconds: number;
  cappedBy: 'none' | 'rule-maximum' | 'ring-retention' | 'request-maximum';
  basis: 'fixed' | 'finding-range' | 'delivery-delay';
}

function toEpochSeconds(value: Date | string | number, field: string): number {
  const ms =
    value instanceof Date
      ? value.getTime()
      : typeof value === 'number'
        ? value * 1000
        : Date.parse(value);
  if (!Number.isFinite(ms)) {
    throw new InvalidLookbackInputError(`${field} is not a valid time`, {
      field,
      value: String(value),
    });
  }
  return ms / 1000;
}

function nonNegativeInt(value: number | undefined, field: string): void {
  if (value === undefined) return;
  if (!Number.isInteger(value) || value < 0) {
    throw new InvalidLookbackInputError(`${field} must be a non-negative integer`, {
      field,
      value,
    });
  }
}

export function lookbackSecondsFor(input: LookbackSizingInput): LookbackSizing {
  nonNegativeInt(input.deliveryDelaySeconds, 'deliveryDelaySeconds');
  nonNegativeInt(input.aggregationIntervalSeconds, 'aggregationIntervalSeconds');
  nonNegativeInt(input.lookbackSeconds, 'lookbackSeconds');
  nonNegativeInt(input.lookbackMarginSeconds, 'lookbackMarginSeconds');
  nonNegativeInt(input.maxLookbackSeconds, 'maxLookbackSeconds');
  nonNegativeInt(input.ringRetentionSeconds, 'ringRetentionSeconds');
  const now = toEpochSeconds(input.now, 'now');
  const delay = input.deliveryDelaySeconds ?? FLOW_LOG_DELIVERY_DELAY_SECONDS[input.delivery];

  let wanted: number;
  let basis: LookbackSizing['basis'];
  if (input.lookbackSeconds !== undefined) {
    wanted = input.lookbackSeconds;
    basis = 'fixed';
  } else if (input.findingStart !== undefined) {
    const start = toEpochSeconds(input.findingStart, 'findingStart');
    const end =
      input.findingEnd === undefined ? start : toEpochSeconds(input.findingEnd, 'findingEnd');
    if (end < start) {
      throw new InvalidLookbackInputError('findingEnd is before findingStart', { start, end });
    }
    wanted = Math.max(now - start, delay + (end - start)) + input.lookbackMarginSeconds;
    basis = 'finding-range';
  } else {
    wanted = delay + (input.aggregationIntervalSeconds ?? 600) + input.lookbackMarginSeconds;
    basis = 'delivery-delay';
  }
  wanted = Math.max(0, Math.ceil(wanted));

  let seconds = wanted;
  let cappedBy: LookbackSizing['cappedBy'] = 'none';
  const caps: [number | undefined, LookbackSizing['cappedBy']][] = [
    [input.maxLookbackSeconds, 'rule-maximum'],
    [input.ringRetentionSeconds, 'ring-retention'],
    [MAX_REQUEST_LOOKBACK_SECONDS, 'request-maximum'],
  ];
  for (const [cap, name] of caps) {
    if (cap !== undefined && seconds > cap) {
      seconds = cap;
      cappedBy = name;
    }
  }
  return { seconds, wantedSeconds: wanted, cappedBy, basis };
}
