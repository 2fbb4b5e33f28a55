import { TaplineError } from '../errors.ts';

/** Standby-ring settings that cannot give a bounded ring (e.g. a cap below three files). */
export class InvalidRingSettingsError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'STANDBY_SETTINGS_INVALID', details });
  }
}

/** A standby or look-back report line from a host is missing or malformed. */
export class StandbyReportError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'STANDBY_REPORT_MALFORMED', details });
  }
}

/** Look-back sizing inputs that make no sense (negative delays, an end before the start). */
export class InvalidLookbackInputError extends TaplineError {
  constructor(message: string, details: Record<string, unknown> = {}) {
    super(message, { code: 'LOOKBACK_INPUT_INVALID', details });
  }
}
