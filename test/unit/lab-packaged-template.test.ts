import { describe, expect, it } from 'vitest';
import {
  CAPTURE_DOCUMENT_LOGICAL_ID,
  captureDocumentResource,
  type PackagedTemplate,
  packagedCaptureDocument,
  resourceById,
} from '../../shared/lab/packaged-template.ts';

/** A packaged template in the shape `serverless package` writes, standby document first. */
function template(): PackagedTemplate {
  return {
    dir: '/nonexistent',
    template: {
      Resources: {
        StandbyDocument: {
          Type: 'AWS::SSM::Document',
          Properties: { Name: 'tapline-ci-standby', Content: { parameters: { Action: {} } } },
        },
        CaptureDocument: {
          Type: 'AWS::SSM::Document',
          Properties: { Name: 'tapline-ci-capture', Content: { parameters: { CaptureId: {} } } },
        },
        EvidenceBucket: { Type: 'AWS::S3::Bucket' },
      },
    },
  };
}

describe('selecting the capture document in a packaged template', () => {
  it('takes CaptureDocument by logical ID, whichever SSM document comes first', async () => {
    const pkg = template();
    expect(captureDocumentResource(pkg).Properties?.Name).toBe('tapline-ci-capture');
    const content = await packagedCaptureDocument(pkg);
    expect(Object.keys(content.parameters)).toEqual(['CaptureId']);
  });

  it('says what is missing or mistyped instead of picking another resource', async () => {
    const pkg = template();
    delete pkg.template.Resources[CAPTURE_DOCUMENT_LOGICAL_ID];
    expect(() => captureDocumentResource(pkg)).toThrow(/no CaptureDocument/);
    await expect(packagedCaptureDocument(pkg)).rejects.toThrow(/no CaptureDocument/);
    expect(() => resourceById(template(), 'EvidenceBucket', 'AWS::SSM::Document')).toThrow(
      /EvidenceBucket is a AWS::S3::Bucket/,
    );
    const noContent = template();
    delete noContent.template.Resources.CaptureDocument!.Properties!.Content;
    await expect(packagedCaptureDocument(noContent)).rejects.toThrow(/has no Content/);
  });
});
