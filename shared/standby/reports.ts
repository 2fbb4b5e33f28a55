import { z } from 'zod';
import {
  lookbackReportSchema as hostLookbackReportSchema,
  hostReportFileSchema,
} from '../capture/host-report.ts';
import { StandbyReportError } from './errors.ts';

/**
 * The JSON lines the standby document and the look-back step print. They come from hosts we do
 * not fully trust: every field is checked, nothing is evaluated, extra fields are ignored.
 */
const count = z.number().int().min(0);
const epoch = z.number().nonnegative();

export const ringPlanSchema = z.object({
  retentionSeconds: count,
  rotateSeconds: count,
  expectedMbps: count,
  neededMegabytes: count,
  capMegabytes: count,
  budgetMegabytes: count,
  fileMegabytes: count,
  slots: count,
  maxFiles: count,
  expectedRetentionSeconds: z.number().int(),
});

export const standbyReportSchema = z.object({
  tapline: z.literal('standby'),
  action: z.enum(['start', 'stop', 'status', 'plan', 'unknown']),
  status: z.enum([
    'ok',
    'started',
    'already-running',
    'stopped',
    'not-running',
    'absent',
    'refused',
    'failed',
  ]),
  running: z.boolean().optional(),
  mode: z.enum(['supervisor', 'systemd', '']).optional(),
  ringDirectory: z.string().max(256).optional(),
  pid: z.number().int().positive().nullable().optional(),
  tcpdumpPid: z.number().int().positive().nullable().optional(),
  state: z
    .enum(['starting', 'running', 'backoff', 'paused-low-disk', 'stopped', 'failed', ''])
    .optional(),
  files: count.optional(),
  bytes: count.optional(),
  oldest: epoch.nullable().optional(),
  newest: epoch.nullable().optional(),
  restarts: count.optional(),
  rotations: count.optional(),
  drops: count.optional(),
  pruned: count.optional(),
  capBytes: count.optional(),
  interface: z.string().max(32).optional(),
  filesKept: z.boolean().optional(),
  plan: ringPlanSchema.optional(),
  error: z.string().max(4096).optional(),
});

export type StandbyReport = z.infer<typeof standbyReportSchema>;

/**
 * The look-back file list and report, as the standby scripts must print them: the capture
 * core's own schemas (shared/capture/host-report.ts, which accepts what hosts send), with what
 * the scripts promise on top: look-back file names, `lookback: true`, known ring states and
 * non-negative times. One base, so a field added there is checked here too.
 */
export const lookbackFileSchema = hostReportFileSchema.extend({
  key: z
    .string()
    .regex(/^pcaps\/cap-[0-9A-Za-z-]+\/(i|mi)-[0-9a-f]{8,17}\/lookback-[0-9TZ]+-[0-9]+\.pcap$/),
  lookback: z.literal(true),
});

export const lookbackReportSchema = hostLookbackReportSchema.extend({
  windowStart: epoch.optional(),
  windowEnd: epoch.optional(),
  ringDirectory: z.string().max(256).optional(),
  ring: z.enum(['running', 'stopped', 'absent']).optional(),
  gaps: z
    .array(z.tuple([epoch, epoch]))
    .max(10_000)
    .optional(),
});

export type LookbackReport = z.infer<typeof lookbackReportSchema>;
export type LookbackFile = z.infer<typeof lookbackFileSchema>;

function lastJsonLine(stdout: string, what: string): unknown {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .at(-1);
  if (!line) throw new StandbyReportError(`the ${what} output has no JSON line`);
  try {
    return JSON.parse(line);
  } catch (error) {
    throw new StandbyReportError(`the ${what} line is not JSON`, {
      line: line.slice(0, 200),
      error: String(error),
    });
  }
}

function check<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const result = schema.safeParse(value);
  if (result.success) return result.data;
  const issues = result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).slice(0, 20);
  throw new StandbyReportError(
    `the ${what} does not have the expected shape (${issues.slice(0, 3).join('; ')})`,
    { issues },
  );
}

/** The standby document's report: the last JSON line of its stdout. */
export function parseStandbyReport(stdout: string): StandbyReport {
  return check(standbyReportSchema, lastJsonLine(stdout, 'standby'), 'standby report');
}

/** The look-back object (`"lookback"` in the capture report, or the step's own line). */
export function parseLookbackReport(value: unknown): LookbackReport {
  return check(lookbackReportSchema, value, 'look-back report');
}

export function parseLookbackFiles(value: unknown): LookbackFile[] {
  return check(z.array(lookbackFileSchema).max(10_000), value, 'look-back file list');
}
