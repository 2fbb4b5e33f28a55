import { describe, expect, it, vi } from 'vitest';

// The WebAssembly record slots are little-endian; a big-endian host must not read them through
// its own byte order. os.endianness() is what the loader asks: here it says big-endian.
vi.mock('node:os', async (importOriginal) => ({
  ...(await importOriginal<typeof import('node:os')>()),
  endianness: () => 'BE',
}));

const { flowLinesWasm, flowLinesWasmProblem } = await import(
  '../../shared/flowlogs/flow-lines-wasm.ts'
);
const { detectBatch } = await import('../../shared/detection/detect.ts');
const { defaultRules } = await import('../../shared/rules/config.ts');
const { flowLogFixture, LAB_REAL_FINGERPRINTS, textFlowBatch } = await import(
  '../support/flowlog-inputs.ts'
);

describe('the WebAssembly line parser on a big-endian host', () => {
  it('is not used; the JavaScript parser reads every line and says why', async () => {
    expect(flowLinesWasm()).toBeNull();
    expect(flowLinesWasmProblem()).toMatch(/big-endian/);
    const { findings, report } = await detectBatch(
      textFlowBatch(flowLogFixture('lab-real-v5.log')),
      { rules: defaultRules() },
    );
    expect(report.parser).toBe('js');
    expect(report.parserProblem).toMatch(/big-endian/);
    expect(findings.map((f) => f.fingerprint).sort()).toEqual(LAB_REAL_FINGERPRINTS);
  });
});
