import { z } from 'zod';
import { ConfigError } from './errors.ts';

const bool = z
  .enum(['true', 'false', '1', '0', 'yes', 'no'])
  .transform((v) => v === 'true' || v === '1' || v === 'yes');
const int = (min: number, max: number) => z.coerce.number().int().min(min).max(max);

/** The largest MAX_DURATION_SECONDS and LOCK_TTL_SECONDS accepted (guards derive from them). */
export const MAX_DURATION_LIMIT_SECONDS = 86_400;
export const LOCK_TTL_LIMIT_SECONDS = 604_800;
/**
 * The one rule for optional text settings: empty or blank means "not set" (a stage param left
 * at ""). The config schema applies it; so does whatever reads such a setting from elsewhere
 * (the CLI's raw environment, a flag), so both read the same value the same way.
 */
export function unsetIfBlank<T>(value: T): T | undefined {
  return typeof value === 'string' && value.trim() === '' ? undefined : value;
}

/** An optional string where empty or blank means "not set" (unsetIfBlank). */
const optionalText = z.preprocess(unsetIfBlank, z.string().optional());

/**
 * Every environment variable Tapline reads, in one place. serverless.yml sets them for each
 * function (plain strings, so `serverless invoke local` needs no AWS lookups); the CLI and the
 * lab set them from their own flags.
 */
export const configSchema = z.object({
  STAGE: z.string().min(1),
  AWS_REGION: z.string().min(1),
  /** One endpoint for every SDK client (moto on loopback in tests and the lab); unset on AWS. */
  TAPLINE_AWS_ENDPOINT: z.url().optional(),
  EVIDENCE_BUCKET: z.string().min(3),
  /** Evidence KMS key: a key ARN, or an alias name (alias/…) resolved once at runtime. */
  EVIDENCE_KEY_ID: z
    .string()
    .regex(/^(arn:aws[a-z-]*:kms:\S+|alias\/[A-Za-z0-9/_-]+)$/, 'a KMS key ARN or alias/NAME'),
  CAPTURE_DOCUMENT_NAME: z.string().min(1),
  /** SNS topic for capture and finding notifications: an ARN, or a name resolved with STS. */
  NOTIFICATION_TOPIC: z
    .string()
    .regex(/^(arn:aws[a-z-]*:sns:\S+|[A-Za-z0-9_-]{1,256})$/, 'an SNS topic ARN or name'),
  EVENT_BUS_NAME: z.string().min(1).default('default'),
  /** Kill switch: "false" refuses every new capture. */
  CAPTURES_ENABLED: bool.default(true),
  MAX_DURATION_SECONDS: int(1, MAX_DURATION_LIMIT_SECONDS).default(3600),
  DEFAULT_DURATION_SECONDS: int(1, MAX_DURATION_LIMIT_SECONDS).default(300),
  MAX_CAPTURE_MEGABYTES: int(1, 1_000_000).default(2048),
  COOLDOWN_SECONDS: int(0, 604_800).default(900),
  /**
   * Object Lock retention of capture guard objects (locks/, cooldowns/, budget/, notice
   * markers): GOVERNANCE until this many hours after the guard expires, instead of the bucket's
   * evidence retention. 0 writes them with the bucket default (a bucket without Object Lock).
   */
  GUARD_RETENTION_HOURS: int(0, 8_760).default(0),
  HOURLY_CAPTURE_BUDGET: int(0, 100_000).default(20),
  LOCK_TTL_SECONDS: int(60, LOCK_TTL_LIMIT_SECONDS).default(7200),
  CAPTURE_TAG: z.string().min(1).default('tapline:capture=true'),
  SENSOR_TAG: z.string().min(1).default('tapline:sensor=true'),
  ROLLING_TAG: z.string().min(1).default('tapline:rolling=true'),
  ROLLING_INTERVAL_SECONDS: int(60, 86_400).default(3600),
  MIN_FREE_MEGABYTES: int(0, 10_000_000).default(1024),
  /**
   * Flow-log format string for CloudWatch Logs subscriptions (S3 objects carry their header).
   * Unset, empty or blank: the AWS default (v2) format.
   */
  FLOW_LOG_FORMAT: optionalText,
  /** Inline JSON rule overrides for this stage (merged over rules/default-rules.json); empty: none. */
  RULES_OVERRIDE: optionalText,
  /** Per-TCP-stream carving in process-pcap: off, all, or findings. */
  CARVE_MODE: z.enum(['off', 'all', 'findings']).default('off'),
});

export type TaplineConfig = z.infer<typeof configSchema>;

/** Parse an environment once; throws ConfigError naming every missing or bad variable. */
export function parseConfig(
  env: NodeJS.ProcessEnv | Record<string, string | undefined>,
): TaplineConfig {
  const result = configSchema.safeParse(env);
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => {
    const name = issue.path.join('.');
    const value = (env as Record<string, string | undefined>)[name];
    return value === undefined ? `${name} is missing` : `${name} is invalid (${issue.message})`;
  });
  throw new ConfigError(`Tapline configuration: ${problems.join('; ')}`, {
    variables: result.error.issues.map((i) => i.path.join('.')),
  });
}

let cached: TaplineConfig | undefined;

/** The process's configuration, parsed from process.env on first use and then reused. */
export function getConfig(): TaplineConfig {
  cached ??= parseConfig(process.env);
  return cached;
}
