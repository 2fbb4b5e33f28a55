import { beforeAll, describe, expect, it } from 'vitest';
import { packagedCaptureDocument, packagedTemplate } from '../support/template.ts';

describe('packaged capture document', () => {
  // Packaging waits for the tree-wide packaging lock: do it in a hook with a generous timeout.
  beforeAll(() => packagedTemplate(), 600_000);

  it('is schema 2.2 and every String parameter has an allowedPattern and ENV_VAR interpolation', async () => {
    const doc = await packagedCaptureDocument();
    expect(doc.schemaVersion).toBe('2.2');
    const strings = Object.entries<any>(doc.parameters).filter(([, p]) => p.type === 'String');
    expect(strings.length).toBeGreaterThan(0);
    for (const [name, p] of strings) {
      expect(p.allowedPattern, name).toMatch(/^\^/);
      expect(p.interpolationType, name).toBe('ENV_VAR');
    }
  });

  it('is the capture document, not the standby document the stack also deploys', async () => {
    const pkg = await packagedTemplate();
    const ssmDocuments = Object.entries(pkg.template.Resources).filter(
      ([, r]) => r.Type === 'AWS::SSM::Document',
    );
    expect(ssmDocuments.map(([id]) => id).sort()).toEqual(['CaptureDocument', 'StandbyDocument']);
    const doc = await packagedCaptureDocument();
    expect(doc).toEqual(pkg.template.Resources.CaptureDocument!.Properties!.Content);
    expect(doc.parameters.CaptureId).toBeDefined();
    expect(doc.parameters.Action).toBeUndefined();
  });

  it('never interpolates a parameter into the script text', async () => {
    const doc = await packagedCaptureDocument();
    const script = JSON.stringify(doc.mainSteps);
    expect(script).not.toMatch(/\{\{\s*\w+\s*\}\}/);
  });
});
