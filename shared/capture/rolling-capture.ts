import { parseTag } from '../targets/resolve.ts';
import { type CaptureDeps, type CaptureOutcome, startCapture } from './start-capture.ts';
import { sweepTimedOutCaptures, type TimedOutHost } from './track-capture.ts';

/**
 * Overlap between consecutive rolling captures so no packet falls between two of them:
 * 5% of the interval, at least 10 s and at most 120 s.
 */
export function rollingOverlapSeconds(intervalSeconds: number): number {
  return Math.min(120, Math.max(10, Math.round(intervalSeconds * 0.05)));
}

export interface RollingOutcome {
  capture: CaptureOutcome;
  overlapSeconds: number;
  timedOut: TimedOutHost[];
}

/**
 * One scheduled run: a capture on every running host tagged ROLLING_TAG, lasting the schedule
 * interval plus the overlap. The next run may take over a host's lock from the previous rolling
 * capture in its last `overlap` seconds (that capture is about to end); any other holder (a
 * manual or detector capture) keeps the host. Rolling captures are bounded by the operator's
 * interval rather than MAX_DURATION_SECONDS and do not spend the hourly budget. Each run also
 * sweeps captures whose hosts never reported.
 */
export async function rollingCapture(deps: CaptureDeps): Promise<RollingOutcome> {
  const timedOut = await sweepTimedOutCaptures(deps).catch((error) => {
    deps.logger.error('timed-out sweep failed', { error: String(error) });
    return [];
  });
  const interval = deps.config.ROLLING_INTERVAL_SECONDS;
  const overlapSeconds = rollingOverlapSeconds(interval);
  const durationSeconds = Math.min(86_400, interval + overlapSeconds);
  const tag = parseTag(deps.config.ROLLING_TAG);
  const capture = await startCapture(
    {
      targets: { kind: 'tag', key: tag.key, value: tag.value },
      durationSeconds,
      reason: `rolling capture every ${interval} s (+${overlapSeconds} s overlap)`,
      requestedBy: 'tapline rolling-capture schedule',
      source: 'schedule',
    },
    {
      ...deps,
      durationCeiling: durationSeconds,
      budgetExempt: true,
      takeOverEndingWithinSeconds: overlapSeconds + 30,
    },
  );
  return { capture, overlapSeconds, timedOut };
}
