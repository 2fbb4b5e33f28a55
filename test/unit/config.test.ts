import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../shared/config.ts';
import { ConfigError, TaplineError } from '../../shared/errors.ts';
import { resolveFlowLogFormat } from '../../shared/flowlogs/format.ts';

const minimal = {
  STAGE: 'dev',
  AWS_REGION: 'eu-west-1',
  EVIDENCE_BUCKET: 'evidence',
  EVIDENCE_KEY_ID: 'arn:aws:kms:eu-west-1:111122223333:key/abc',
  CAPTURE_DOCUMENT_NAME: 'TaplineCapture-dev',
  NOTIFICATION_TOPIC: 'arn:aws:sns:eu-west-1:111122223333:tapline',
};

describe('parseConfig', () => {
  it('applies safe defaults to a minimal environment', () => {
    const config = parseConfig(minimal);
    expect(config.CAPTURES_ENABLED).toBe(true);
    expect(config.DEFAULT_DURATION_SECONDS).toBe(300);
    expect(config.CARVE_MODE).toBe('off');
  });

  it('names every missing variable in one typed error', () => {
    const { EVIDENCE_BUCKET: _b, STAGE: _s, ...rest } = minimal;
    let caught: unknown;
    try {
      parseConfig(rest);
    } catch (error) {
      caught = error;
    }
    expect(caught).toBeInstanceOf(ConfigError);
    expect(caught).toBeInstanceOf(TaplineError);
    expect((caught as Error).message).toContain('EVIDENCE_BUCKET is missing');
    expect((caught as Error).message).toContain('STAGE is missing');
  });

  it('rejects a malformed value and says which', () => {
    expect(() => parseConfig({ ...minimal, CAPTURES_ENABLED: 'maybe' })).toThrow(
      /CAPTURES_ENABLED is invalid/,
    );
    expect(() => parseConfig({ ...minimal, MAX_DURATION_SECONDS: '-5' })).toThrow(
      /MAX_DURATION_SECONDS is invalid/,
    );
  });

  it('turns the kill switch off only on an explicit false', () => {
    expect(parseConfig({ ...minimal, CAPTURES_ENABLED: 'false' }).CAPTURES_ENABLED).toBe(false);
  });

  it('takes an empty or blank FLOW_LOG_FORMAT / RULES_OVERRIDE (a stage param left "") as unset', () => {
    for (const blank of ['', '   ']) {
      const config = parseConfig({ ...minimal, FLOW_LOG_FORMAT: blank, RULES_OVERRIDE: blank });
      expect(config.FLOW_LOG_FORMAT).toBeUndefined();
      expect(config.RULES_OVERRIDE).toBeUndefined();
      // ... which the detector reads as the AWS default format.
      expect(resolveFlowLogFormat(config.FLOW_LOG_FORMAT).fields).toEqual(
        resolveFlowLogFormat(undefined).fields,
      );
    }
    const custom = 'version interface-id srcaddr dstaddr';
    expect(parseConfig({ ...minimal, FLOW_LOG_FORMAT: custom }).FLOW_LOG_FORMAT).toBe(custom);
    expect(parseConfig({ ...minimal, RULES_OVERRIDE: '{"a":1}' }).RULES_OVERRIDE).toBe('{"a":1}');
  });
});
