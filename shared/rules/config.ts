import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { z } from 'zod';
import { unsetIfBlank } from '../config.ts';
import { ConfigError } from '../errors.ts';
import defaults from './default-rules.json' with { type: 'json' };

/**
 * The detector's rules: declarative JSON in the repo (shared/rules/default-rules.json), with a
 * per-stage override (RULES_OVERRIDE, inline JSON) or a file (`tapline detect --rules FILE`)
 * deep-merged over it: objects merge key by key, arrays and scalars replace. Unknown keys are
 * rejected so a typo ("distinctPort") cannot silently disable a threshold.
 */

const cidr = z.string().refine((v) => {
  const [addr = '', bits, extra] = v.split('/');
  const family = isIP(addr);
  if (family === 0 || extra !== undefined) return false;
  return (
    bits === undefined || (/^\d{1,3}$/.test(bits) && Number(bits) <= (family === 4 ? 32 : 128))
  );
}, 'must be an IPv4/IPv6 address or CIDR block');

const severity = z.enum(['low', 'medium', 'high', 'critical']);

const capture = z
  .object({
    durationSeconds: z.number().int().min(1).max(86_400),
    /** Fixed look-back; when absent it is sized from the finding (see lookbackFor). */
    lookbackSeconds: z.number().int().min(0).max(86_400).optional(),
    /** Added to "now − finding start" to cover flow-log delivery delay and clock skew. */
    lookbackMarginSeconds: z.number().int().min(0).max(86_400),
    maxLookbackSeconds: z.number().int().min(0).max(86_400),
    snaplen: z.union([z.number().int().min(0).max(262_144), z.literal('headers')]).optional(),
  })
  .strict();

const base = {
  enabled: z.boolean(),
  severity,
  /** Turn findings of this rule into capture requests through the capture core. */
  autoCapture: z.boolean(),
  capture,
};
const window = z.number().int().min(1).max(86_400);

export const rulesConfigSchema = z
  .object({
    version: z.literal(1),
    internalCidrs: z.array(cidr).max(1000),
    /**
     * Finding notifications (EventBridge + SNS) are rate-limited per fingerprint: the first
     * occurrence in this many seconds is published, repeats in the same window are counted and
     * logged, not published. 0 publishes every finding.
     */
    notifyWindowSeconds: z.number().int().min(0).max(604_800),
    limits: z
      .object({
        maxEvidence: z.number().int().min(1).max(1000),
        maxFindings: z.number().int().min(1).max(100_000),
        maxTrackedKeys: z.number().int().min(1000).max(50_000_000),
      })
      .strict(),
    rules: z
      .object({
        'port-zero': z.object(base).strict(),
        'port-scan': z
          .object({
            ...base,
            distinctPorts: z.number().int().min(2).max(65_536),
            windowSeconds: window,
            ignoreReplies: z.boolean(),
          })
          .strict(),
        'host-sweep': z
          .object({
            ...base,
            distinctHosts: z.number().int().min(2).max(10_000_000),
            windowSeconds: window,
            ignoreReplies: z.boolean(),
          })
          .strict(),
        'reject-burst': z
          .object({ ...base, minRejects: z.number().int().min(1), windowSeconds: window })
          .strict(),
        'deny-list': z.object({ ...base, cidrs: z.array(cidr).max(100_000) }).strict(),
        'egress-volume': z
          .object({
            ...base,
            minBytes: z.number().int().min(1),
            windowSeconds: window,
            ignoreAwsServices: z.boolean(),
            allowDestinations: z.array(cidr).max(10_000),
          })
          .strict(),
        'rare-protocol': z
          .object({
            ...base,
            protocols: z.array(z.number().int().min(0).max(255)).max(256),
            allowCidrs: z.array(cidr).max(10_000),
          })
          .strict(),
      })
      .strict(),
  })
  .strict();

export type RulesConfig = z.infer<typeof rulesConfigSchema>;
export type RuleName = keyof RulesConfig['rules'];
export const RULE_NAMES = Object.keys(defaults.rules) as RuleName[];
export type RuleSettings = RulesConfig['rules'][RuleName];

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Objects merge key by key; arrays and scalars in the override replace. */
export function deepMerge(base: unknown, override: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(override)) return override;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(override)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') continue;
    out[k] = k in base ? deepMerge(base[k], v) : v;
  }
  return out;
}

/** Validates a complete rules document; ConfigError names every bad field. */
export function parseRulesConfig(value: unknown, origin = 'rules'): RulesConfig {
  const result = rulesConfigSchema.safeParse(value);
  if (result.success) return result.data;
  const problems = result.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`);
  throw new ConfigError(`${origin}: ${problems.join('; ')}`, { origin, problems });
}

export function defaultRules(): RulesConfig {
  return parseRulesConfig(structuredClone(defaults), 'shared/rules/default-rules.json');
}

/** Defaults with one or more overrides (JSON text or objects) merged over them, in order. */
export function loadRules(
  ...overrides: Array<string | Record<string, unknown> | undefined>
): RulesConfig {
  let merged: unknown = structuredClone(defaults);
  overrides.forEach((override, i) => {
    if (unsetIfBlank(override) === undefined) return;
    let value: unknown = override;
    if (typeof override === 'string') {
      try {
        value = JSON.parse(override);
      } catch (error) {
        throw new ConfigError(
          `Rules override ${i + 1} is not valid JSON: ${(error as Error).message}`,
        );
      }
    }
    if (!isPlainObject(value))
      throw new ConfigError(`Rules override ${i + 1} must be a JSON object`);
    merged = deepMerge(merged, value);
  });
  return parseRulesConfig(merged, 'rules (defaults + overrides)');
}

/** `--rules FILE`: the file is an override document merged over the defaults. */
export function loadRulesFile(path: string, extra?: string): RulesConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(`Cannot read rules file ${path}: ${(error as Error).message}`, { path });
  }
  return loadRules(extra, text);
}
