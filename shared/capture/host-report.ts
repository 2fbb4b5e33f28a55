import { z } from 'zod';
import { MalformedEventError } from '../errors.ts';

/**
 * The one JSON line the capture document prints last on stdout. track-capture (from
 * GetCommandInvocation's StandardOutputContent) and the lab agent (from the script's own stdout)
 * both parse it here. The line comes from a host we do not fully trust: every field is checked,
 * nothing is evaluated, and a missing or broken line is reported, not guessed.
 */
const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const count = z.number().int().min(0).nullable();

export const hostReportFileSchema = z.object({
  key: z.string().regex(/^pcaps\/cap-[0-9A-Za-z-]+\/(i|mi)-[0-9a-f]{8,17}\/[A-Za-z0-9._-]+\.pcap$/),
  versionId: z.string().max(1024).optional(),
  size: z.number().int().min(0),
  sha256: hex64,
  s3ChecksumSha256: z.string().regex(/^[A-Za-z0-9+/]{43}=$/),
  lookback: z.boolean().default(false),
  start: z.number().nonnegative(),
  end: z.number().nonnegative(),
});

const epoch = z.number().nonnegative().nullable();

/**
 * The look-back step's report (docs/lookback.md, "The report"): whether the standby ring's files
 * covering the finding's time range were uploaded, and how completely they cover it.
 */
export const lookbackReportSchema = z.object({
  status: z.enum(['ok', 'partial', 'failed', 'no-ring', 'empty', 'skipped', 'not-requested']),
  requestedSeconds: z.number().int().min(0).optional(),
  windowStart: epoch.optional(),
  windowEnd: epoch.optional(),
  ringDirectory: z.string().max(1024).optional(),
  ring: z.string().max(32).optional(),
  rotated: z.boolean().optional(),
  fileCount: z.number().int().min(0).optional(),
  bytes: z.number().int().min(0).optional(),
  /** Header-only ring files in the window: not sent, but their span counts as covered. */
  silentFiles: z.number().int().min(0).optional(),
  coverageStart: epoch.optional(),
  coverageEnd: epoch.optional(),
  complete: z.boolean().optional(),
  gaps: z
    .array(z.tuple([z.number(), z.number()]))
    .max(10_000)
    .optional(),
  errors: z.array(z.string().max(4096)).max(1000).default([]),
});

export type LookbackReport = z.infer<typeof lookbackReportSchema>;

/**
 * A look-back report as kept (the manifest host's `lookback`): the validated report, or
 * `unreadable` with the problems found in `errors` when it did not validate.
 */
export type KeptLookbackReport = Omit<LookbackReport, 'status'> & {
  status: LookbackReport['status'] | 'unreadable';
};

/**
 * A look-back report that does not validate does not cost the capture its files: it is kept
 * as `unreadable` with the problems found (the rest of the report is checked as strictly).
 */
const lookbackField = z.unknown().transform((value): KeptLookbackReport | undefined => {
  if (value === undefined) return undefined;
  const parsed = lookbackReportSchema.safeParse(value);
  if (parsed.success) return parsed.data;
  return {
    status: 'unreadable',
    errors: parsed.error.issues
      .slice(0, 10)
      .map((i) => `look-back report: ${i.path.join('.') || '(root)'}: ${i.message}`.slice(0, 300)),
  };
});

/** Tool versions as kept: the known tools and any other well-named tool a script reports. */
export interface ToolVersions {
  aws?: string | undefined;
  tcpdump?: string | undefined;
  [tool: string]: string | undefined;
}

const TOOL_NAME = /^[a-z0-9][a-z0-9._-]{0,31}$/i;
const MAX_TOOLS = 16;
const MAX_TOOL_VERSION = 64;

/**
 * The `tools` field, parsed leniently like the look-back report: it records what produced the
 * evidence, so a bad entry (another script version, a wrong type) must not cost the capture its
 * status and files. Every well-formed entry is kept (unknown tool names too: a newer script may
 * report more); what is dropped or shortened is said in `problems`, which the manifest keeps
 * in the host's errors. Values are printable text of at most 64 characters (the script cuts the
 * version line there); longer values keep their first 64 characters.
 */
export function parseTools(value: unknown): {
  tools: ToolVersions | undefined;
  problems: string[];
} {
  const problems: string[] = [];
  const say = (what: string) => problems.push(`host report: tools${what}`.slice(0, 300));
  if (value === undefined) return { tools: undefined, problems };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    const type = value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value;
    say(`: expected an object of tool versions, got ${type}; no tool versions kept`);
    return { tools: undefined, problems };
  }
  const kept: [string, string][] = [];
  const entries = Object.entries(value);
  for (const [name, version] of entries.slice(0, MAX_TOOLS)) {
    const label = TOOL_NAME.test(name) ? `.${name}` : ` entry ${JSON.stringify(name.slice(0, 40))}`;
    if (!TOOL_NAME.test(name)) {
      say(`${label}: not a tool name; dropped`);
    } else if (typeof version !== 'string') {
      const type = version === null ? 'null' : Array.isArray(version) ? 'an array' : typeof version;
      say(`${label}: expected a version string, got ${type}; dropped`);
    } else if (/[\u0000-\u001f\u007f]/.test(version)) {
      say(`${label}: contains control characters; dropped`);
    } else if (version.length > MAX_TOOL_VERSION) {
      say(`${label}: ${version.length} characters, kept the first ${MAX_TOOL_VERSION}`);
      kept.push([name, version.slice(0, MAX_TOOL_VERSION)]);
    } else {
      kept.push([name, version]);
    }
  }
  if (entries.length > MAX_TOOLS) {
    say(`: ${entries.length - MAX_TOOLS} entries beyond the first ${MAX_TOOLS} dropped`);
  }
  return { tools: Object.fromEntries(kept) as ToolVersions, problems };
}

const hostReportFields = z.object({
  tapline: z.literal('capture-result'),
  version: z.literal(1),
  captureId: z.string().max(64),
  instanceId: z.string().max(32),
  status: z.enum(['success', 'partial', 'failed', 'refused']),
  interface: z.string().max(32),
  /** The tools that made the evidence ("aws-cli/2.15.0", "tcpdump version 4.99.4"): parseTools. */
  tools: z.unknown().optional(),
  started: z.number(),
  ended: z.number(),
  files: z.array(hostReportFileSchema).max(10_000),
  filesOmitted: z.boolean().optional(),
  fileCount: z.number().int().min(0),
  bytes: z.number().int().min(0),
  packetsCaptured: count,
  packetsReceivedByFilter: count,
  packetsDroppedByKernel: count,
  /** Absent from documents without the look-back step. */
  lookback: lookbackField.optional(),
  unsent: z
    .array(
      z.object({
        path: z.string().max(1024),
        key: z.string().max(1024),
        size: z.number().int().min(0),
        sha256: hex64,
      }),
    )
    .max(10_000),
  errors: z.array(z.string().max(4096)).max(1000),
});

/**
 * The report as validated. `reportProblems`: what of the report's lenient parts (`tools`) could
 * not be kept as sent; readers put it in the manifest host's errors. (A broken look-back report
 * keeps its own problems, as `lookback.status: "unreadable"`.)
 */
export const hostReportSchema = hostReportFields.transform(({ tools, ...rest }) => {
  const parsed = parseTools(tools);
  return { ...rest, tools: parsed.tools, reportProblems: parsed.problems };
});

export type HostReport = z.infer<typeof hostReportSchema>;
export type HostReportFile = z.infer<typeof hostReportFileSchema>;

/**
 * Finds and validates the report in a command's stdout (the last line that starts with `{`).
 * Throws MalformedEventError when there is none or it does not validate (e.g. SSM truncated
 * the output at 24,000 characters, or the host was killed before it could print).
 */
export function parseHostReport(stdout: string): HostReport {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l.startsWith('{'))
    .at(-1);
  if (!line) throw new MalformedEventError('the command output has no Tapline report line', {});
  let json: unknown;
  try {
    json = JSON.parse(line);
  } catch (error) {
    throw new MalformedEventError('the Tapline report line is not JSON', {
      line: line.slice(0, 200),
      error: String(error),
    });
  }
  const result = hostReportSchema.safeParse(json);
  if (!result.success) {
    throw new MalformedEventError('the Tapline report line does not have the expected shape', {
      issues: result.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).slice(0, 20),
    });
  }
  return result.data;
}
