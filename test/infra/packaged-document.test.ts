import { describe, expect, it } from 'vitest';
import { packagedCaptureDocument } from '../support/template.ts';

describe('packaged capture document', () => {
  it('is schema 2.2 with ENV_VAR interpolation and a pattern on every String parameter', async () => {
    const doc = await packagedCaptureDocument();
    expect(doc.schemaVersion).toBe('2.2');
    for (const [name, p] of Object.entries<any>(doc.parameters)) {
      if (p.type === 'String') expect(p.allowedPattern, name).toBeTruthy();
    }
    expect(doc.mainSteps[0].inputs.interpolationType).toBe('ENV_VAR');
  });
});
