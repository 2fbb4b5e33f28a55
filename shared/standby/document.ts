import { readFile } from 'node:fs/promises';
import { type PackagedTemplate, packagedTemplate } from '../lab/packaged-template.ts';
import type { SsmCommandDocument } from '../lab/ssm-agent.ts';

/** Logical ID of the standby document in the stack (resources/ssm-standby-document.yml). */
export const STANDBY_DOCUMENT_LOGICAL_ID = 'StandbyDocument';

/** The standby ring's default directory on a host (the documents' RingDirectory default). */
export const DEFAULT_RING_DIRECTORY = '/var/lib/tapline/ring';

/** The look-back step's source: the capture document carries the same block. */
export const LOOKBACK_STEP_URL = new URL('../../ssm-documents/lookback-step.sh', import.meta.url);

/** The standby document's content exactly as the packaged template deploys it. */
export async function packagedStandbyDocument(pkg?: PackagedTemplate): Promise<SsmCommandDocument> {
  const template = pkg ?? (await packagedTemplate());
  const resource = template.template.Resources[STANDBY_DOCUMENT_LOGICAL_ID];
  if (resource?.Type !== 'AWS::SSM::Document' || !resource.Properties?.Content) {
    throw new Error(`packaged template has no ${STANDBY_DOCUMENT_LOGICAL_ID} with Content`);
  }
  return resource.Properties.Content as SsmCommandDocument;
}

export async function lookbackStepScript(): Promise<string> {
  return readFile(LOOKBACK_STEP_URL, 'utf8');
}
