import { isIP } from 'node:net';
import { z } from 'zod';
import { InvalidCaptureRequestError, InvalidFilterError } from '../errors.ts';
import { checkBpfExpression, MAX_FILTER_LENGTH } from './filter.ts';

/**
 * The one capture request schema: used by start-capture (manual invoke), rolling-capture
 * (schedule), detect-flow-anomalies (findings) and the CLI. Anything that fails here starts
 * nothing and gets an InvalidCaptureRequestError that says which field is wrong.
 */

/**
 * Free text (reason, requestedBy) reaches SNS, EventBridge, the SSM command comment and SIEMs,
 * never a shell; still, it is kept to plain characters so it can be pasted anywhere safely: it
 * starts with a letter or digit and has no quotes, backslashes, shell operators (; & | < > $ `),
 * braces, control characters or non-ASCII.
 */
const freeText = /^[A-Za-z0-9][A-Za-z0-9 _.,:/#@()+%?!*=-]*$/;
const FREE_TEXT_HINT =
  'letters, digits, spaces and _.,:/#@()+%?!*=- only, starting with a letter or digit';
const instanceId = z.string().regex(/^i-[0-9a-f]{8,17}$/, 'must look like i-0123456789abcdef0');
const tagPart = z
  .string()
  .min(1)
  .max(128)
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9 _.:/=+@-]*$/,
    'tag keys and values start with a letter or digit and use letters, digits and _.:/=+@- only',
  );
const ipAddress = z.string().refine((v) => isIP(v) !== 0, 'must be an IPv4 or IPv6 address');
const cidr = z.string().refine((v) => {
  const [addr, bits, extra] = v.split('/');
  if (extra !== undefined || addr === undefined) return false;
  const family = isIP(addr);
  if (family === 0) return false;
  if (bits === undefined) return true;
  if (!/^\d{1,3}$/.test(bits)) return false;
  return Number(bits) <= (family === 4 ? 32 : 128);
}, 'must be an address or CIDR block');

export const targetSelectorSchema = z.discriminatedUnion('kind', [
  z.object({ kind: z.literal('instances'), instanceIds: z.array(instanceId).min(1).max(50) }),
  /** key/value default to config CAPTURE_TAG (tapline:capture=true). */
  z.object({ kind: z.literal('tag'), key: tagPart.optional(), value: tagPart.optional() }),
  z.object({
    kind: z.literal('eni'),
    eniId: z.string().regex(/^eni-[0-9a-f]{8,17}$/, 'must look like eni-0123456789abcdef0'),
    /** The far end of the traffic; picks the route (longest prefix) the NAT/appliance serves. */
    peerAddress: ipAddress.optional(),
  }),
  z.object({
    kind: z.literal('address'),
    address: ipAddress,
    vpcId: z
      .string()
      .regex(/^vpc-[0-9a-f]{8,17}$/)
      .optional(),
    peerAddress: ipAddress.optional(),
  }),
]);

const port = z.number().int().min(0).max(65535);
const fingerprint = z
  .string()
  .regex(
    /^[A-Za-z0-9][A-Za-z0-9:._/-]{0,127}$/,
    'letters, digits and :._/- (starting with one of the first two)',
  );
/** ISO-8601 instant (or epoch seconds as a string), as the detector reports flow times. */
const timestamp = z.string().regex(/^[0-9][0-9T:.+Z-]{0,39}$/, 'an ISO-8601 time or epoch seconds');

export const structuredFilterSchema = z.object({
  kind: z.literal('structured'),
  hosts: z.array(cidr).max(32).default([]),
  ports: z.array(port).max(32).default([]),
  portRanges: z
    .array(z.object({ from: port, to: port }).refine((r) => r.from <= r.to, 'from must be ≤ to'))
    .max(8)
    .default([]),
  protocols: z
    .array(z.enum(['tcp', 'udp', 'icmp', 'icmp6', 'gre', 'esp', 'ipv6-in-ipv4']))
    .max(8)
    .default([]),
  direction: z.enum(['both', 'src', 'dst']).default('both'),
});

export const bpfFilterSchema = z.object({
  kind: z.literal('bpf'),
  /** Checked against the strict BPF grammar in shared/capture/filter.ts (token level). */
  expression: z
    .string()
    .min(1)
    .max(MAX_FILTER_LENGTH)
    .superRefine((value, ctx) => {
      try {
        checkBpfExpression(value);
      } catch (error) {
        ctx.addIssue({
          code: 'custom',
          message: error instanceof Error ? error.message : String(error),
        });
      }
    }),
});

export const captureFilterSchema = z.discriminatedUnion('kind', [
  structuredFilterSchema,
  bpfFilterSchema,
]);

export const captureRequestSchema = z
  .object({
    targets: targetSelectorSchema,
    /** Default DEFAULT_DURATION_SECONDS; above MAX_DURATION_SECONDS the capture is refused. */
    durationSeconds: z.number().int().min(1).max(86_400).optional(),
    /** Stop once this many MB were written (default and ceiling MAX_CAPTURE_MEGABYTES). */
    maxMegabytes: z.number().int().min(1).max(1_000_000).optional(),
    /** 0 = full packets; "headers" = first 128 bytes (enough for L2–L4 headers and SNI starts). */
    snaplen: z.union([z.number().int().min(0).max(262_144), z.literal('headers')]).default(0),
    interface: z
      .string()
      .regex(/^(auto|[a-zA-Z0-9][a-zA-Z0-9._-]{0,14})$/, 'auto, or an interface name')
      .default('auto'),
    /** A new file every `seconds` (0 or absent: by size only) or every `megabytes`. */
    rotation: z
      .object({
        seconds: z.number().int().min(10).max(86_400).optional(),
        megabytes: z.number().int().min(1).max(4096).default(256),
      })
      .default({ seconds: 300, megabytes: 256 }),
    /**
     * Ring bound: at most this many closed files wait on the host's disk for upload. When uploads
     * cannot keep up the host stops the capture rather than overwrite evidence it never sent.
     */
    fileCount: z.number().int().min(2).max(1000).default(20),
    filter: captureFilterSchema.optional(),
    /** Look-back: ring files covering [now - lookbackSeconds, now] are uploaded first. */
    lookbackSeconds: z.number().int().min(0).max(86_400).default(0),
    reason: z.string().min(3).max(500).regex(freeText, FREE_TEXT_HINT),
    requestedBy: z.string().min(1).max(256).regex(freeText, FREE_TEXT_HINT).optional(),
    ticket: z
      .string()
      .regex(/^[A-Za-z0-9][A-Za-z0-9._:#/-]{0,127}$/, 'a ticket reference like IR-42')
      .optional(),
    source: z.enum(['manual', 'schedule', 'detector', 'cli']).default('manual'),
    /** Cooldown key: the same fingerprint on the same host starts one capture per window. */
    fingerprint: fingerprint.optional(),
    finding: z
      .object({
        rule: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$/, 'a rule name'),
        fingerprint,
        severity: z
          .string()
          .regex(/^[a-z]{1,16}$/, 'a lowercase word')
          .optional(),
        start: timestamp.optional(),
        end: timestamp.optional(),
      })
      .strict()
      .optional(),
  })
  // Unknown fields are refused, not dropped: a responder's typo ("duration": 60) must not
  // silently become a 300-second capture.
  .strict();

export type CaptureRequest = z.infer<typeof captureRequestSchema>;
export type CaptureRequestInput = z.input<typeof captureRequestSchema>;
export type TargetSelector = z.infer<typeof targetSelectorSchema>;
export type CaptureFilter = z.infer<typeof captureFilterSchema>;
export type StructuredFilter = z.infer<typeof structuredFilterSchema>;

/**
 * Validates a request. A raw BPF filter is checked first so its error is an InvalidFilterError
 * naming the bad token and its position; every other problem is an InvalidCaptureRequestError
 * listing each failing field. Either way nothing is started.
 */
export function parseCaptureRequest(input: unknown): CaptureRequest {
  const filter = (input as { filter?: { kind?: unknown; expression?: unknown } } | null)?.filter;
  if (filter && filter.kind === 'bpf' && typeof filter.expression === 'string') {
    try {
      checkBpfExpression(filter.expression);
    } catch (error) {
      if (error instanceof InvalidFilterError) {
        throw new InvalidFilterError(
          `Invalid capture request: filter.expression: ${error.message}`,
          {
            ...error.details,
            field: 'filter.expression',
          },
        );
      }
      throw error;
    }
  }
  const result = captureRequestSchema.safeParse(input);
  if (result.success) return result.data;
  const fields = result.error.issues.map((i) => ({
    field: i.path.join('.') || '(root)',
    problem: i.message,
  }));
  throw new InvalidCaptureRequestError(
    `Invalid capture request: ${fields.map((f) => `${f.field}: ${f.problem}`).join('; ')}`,
    { fields },
  );
}
