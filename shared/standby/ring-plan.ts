import { InvalidRingSettingsError } from './errors.ts';

/**
 * The standby ring's size, computed exactly as ssm-documents/tapline-standby.yml computes it
 * (`Action=plan` prints the document's own numbers; test/lab/standby-document.test.ts checks
 * that the two agree). MB here are tcpdump's: 1,000,000 bytes.
 *
 * - needed = retention × expected rate (Mbit/s ÷ 8 = MB/s), plus 25% for bursts;
 * - budget = min(needed + 25%, cap), at least 3 MB;
 * - slots = files the retention spans at one file per rotation, plus the open one;
 * - file size (tcpdump -C) = budget ÷ (slots + 2): the supervisor prunes closed files so that
 *   closed + open + one more file stay within the budget; at least 2 s of the expected rate (so
 *   the 1 s prune loop keeps up), at most a third of the budget and 2000 MB;
 * - expected retention = what the budget holds at the expected rate, up to the retention asked.
 */
export interface RingSettings {
  retentionMinutes: number;
  rotateSeconds: number;
  expectedMbps: number;
  capMegabytes: number;
}

export interface RingPlan {
  retentionSeconds: number;
  rotateSeconds: number;
  expectedMbps: number;
  neededMegabytes: number;
  capMegabytes: number;
  budgetMegabytes: number;
  fileMegabytes: number;
  slots: number;
  maxFiles: number;
  expectedRetentionSeconds: number;
}

/** Bounds of the document's allowedPatterns. */
export const RING_SETTING_LIMITS = {
  retentionMinutes: [1, 9999],
  rotateSeconds: [1, 99_999],
  expectedMbps: [1, 999_999],
  capMegabytes: [3, 9_999_999],
} as const satisfies Record<keyof RingSettings, readonly [number, number]>;

const idiv = (a: number, b: number) => Math.trunc(a / b);

export function planRing(settings: RingSettings): RingPlan {
  for (const [name, [min, max]] of Object.entries(RING_SETTING_LIMITS)) {
    const value = settings[name as keyof RingSettings];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new InvalidRingSettingsError(`${name} must be an integer from ${min} to ${max}`, {
        field: name,
        value,
      });
    }
  }
  const { rotateSeconds, expectedMbps, capMegabytes } = settings;
  const retentionSeconds = settings.retentionMinutes * 60;
  const neededMegabytes = idiv(retentionSeconds * expectedMbps + 7, 8);
  const wanted = neededMegabytes + idiv(neededMegabytes + 3, 4);
  const budgetMegabytes = Math.max(3, Math.min(wanted, capMegabytes));
  const slots = idiv(retentionSeconds + rotateSeconds - 1, rotateSeconds) + 1;
  let fileMegabytes = idiv(budgetMegabytes, slots + 2);
  const rateFloor = idiv(expectedMbps * 2 + 7, 8);
  if (fileMegabytes < rateFloor) fileMegabytes = rateFloor;
  if (fileMegabytes > idiv(budgetMegabytes, 3)) fileMegabytes = idiv(budgetMegabytes, 3);
  if (fileMegabytes > 2000) fileMegabytes = 2000;
  if (fileMegabytes < 1) fileMegabytes = 1;
  const maxFiles = Math.min(slots + idiv(budgetMegabytes, fileMegabytes), 100_000);
  const expectedRetentionSeconds = Math.min(
    idiv((budgetMegabytes - 2 * fileMegabytes) * 8, expectedMbps),
    retentionSeconds,
  );
  return {
    retentionSeconds,
    rotateSeconds,
    expectedMbps,
    neededMegabytes,
    capMegabytes,
    budgetMegabytes,
    fileMegabytes,
    slots,
    maxFiles,
    expectedRetentionSeconds,
  };
}
