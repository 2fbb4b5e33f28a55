import { randomBytes } from 'node:crypto';

/** `cap-YYYYMMDDTHHMMSSZ-<8 hex>`, e.g. `cap-20261123T084000Z-1a2b3c4d`. */
export const CAPTURE_ID_PATTERN = /^cap-\d{8}T\d{6}Z-[0-9a-f]{8}$/;

export function captureIdFor(now: Date, hex8: string): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}Z$/, 'Z');
  return `cap-${stamp}-${hex8}`;
}

/** A new capture ID from the clock and 4 random bytes. */
export function newCaptureId(now: Date = new Date()): string {
  return captureIdFor(now, randomBytes(4).toString('hex'));
}

export function isCaptureId(value: string): boolean {
  return CAPTURE_ID_PATTERN.test(value);
}
