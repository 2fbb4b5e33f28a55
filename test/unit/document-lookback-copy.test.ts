import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import type { SsmCommandDocument } from '../../shared/lab/ssm-agent.ts';
import { LOOKBACK_STEP_URL, lookbackStepScript } from '../../shared/standby/document.ts';

const FIRST = '# ---- Tapline look-back step';
const LAST = '# ---- end of the look-back step';

describe('the capture document carries the look-back step', () => {
  it(`exactly as ${LOOKBACK_STEP_URL.pathname.split('/').slice(-2).join('/')}, which the lab tests run standalone`, async () => {
    const step = (await lookbackStepScript()).trimEnd();
    expect(step.startsWith(FIRST)).toBe(true);
    expect(step.split('\n').at(-1)).toMatch(new RegExp(`^${LAST}`));
    const capture = parseYaml(
      await readFile(new URL('../../ssm-documents/tapline-capture.yml', import.meta.url), 'utf8'),
    ) as SsmCommandDocument;
    const script = capture.mainSteps[0]!.inputs.runCommand.join('\n');
    const from = script.indexOf(FIRST);
    const to = script.indexOf('\n', script.indexOf(LAST, from));
    expect(from).toBeGreaterThanOrEqual(0);
    expect(script.indexOf(FIRST, from + 1), 'carried once').toBe(-1);
    expect(script.slice(from, to)).toBe(step);
  });
});
