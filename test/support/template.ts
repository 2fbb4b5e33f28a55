import { execFile } from 'node:child_process';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repoRoot = new URL('../../', import.meta.url).pathname;

export interface PackagedTemplate {
  /** The directory `serverless package --package` wrote into. */
  dir: string;
  template: {
    Resources: Record<string, { Type: string; Properties?: Record<string, any>; [k: string]: any }>;
    Outputs?: Record<string, any>;
    Conditions?: Record<string, any>;
    [k: string]: any;
  };
}

let packaged: Promise<PackagedTemplate> | undefined;

/**
 * Runs the real `serverless package` (osls, offline, no credentials) once per test process
 * into its own temp directory and returns the CloudFormation template it wrote.
 */
export function packagedTemplate(stage = 'ci'): Promise<PackagedTemplate> {
  packaged ??= (async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tapline-package-'));
    await run(
      'npx',
      ['serverless', 'package', '--stage', stage, '--region', 'us-east-1', '--package', dir],
      {
        cwd: repoRoot,
        timeout: 180_000,
        maxBuffer: 32 * 1024 * 1024,
      },
    );
    const template = JSON.parse(
      await readFile(join(dir, 'cloudformation-template-update-stack.json'), 'utf8'),
    );
    return { dir, template };
  })();
  return packaged;
}

/** The capture document's content exactly as the packaged template deploys it. */
export async function packagedCaptureDocument(): Promise<Record<string, any>> {
  const { template } = await packagedTemplate();
  const doc = Object.values(template.Resources).find((r) => r.Type === 'AWS::SSM::Document');
  if (!doc?.Properties?.Content) throw new Error('packaged template has no AWS::SSM::Document');
  return doc.Properties.Content as Record<string, any>;
}
