import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repoRoot = new URL('../../', import.meta.url).pathname;
/** Cross-process lock every `serverless package` in this tree takes (scripts/scan.ts too). */
export const PACKAGE_LOCK = join(tmpdir(), 'tapline-serverless-package.lock');

export interface TemplateResource {
  Type: string;
  Properties?: Record<string, any>;
  [key: string]: any;
}

export interface PackagedTemplate {
  /** The directory `serverless package --package` wrote into. */
  dir: string;
  template: {
    Resources: Record<string, TemplateResource>;
    Outputs?: Record<string, any>;
    Conditions?: Record<string, any>;
    [key: string]: any;
  };
}

const packaged = new Map<string, Promise<PackagedTemplate>>();

/**
 * Runs the real `serverless package` (osls, offline, no credentials) once per process and
 * stage, into its own temp directory, and returns the CloudFormation template it wrote. The
 * tests and the lab use what deploys, never the YAML source.
 */
export function packagedTemplate(
  stage = 'ci',
  params: Record<string, string> = {},
): Promise<PackagedTemplate> {
  const paramArgs = Object.entries(params).flatMap(([k, v]) => ['--param', `${k}=${v}`]);
  const cacheKey = JSON.stringify([stage, paramArgs]);
  let value = packaged.get(cacheKey);
  if (!value) {
    value = (async () => {
      // TAPLINE_PACKAGE_CACHE (set by the test run's global setup): one packaging per stage and
      // params for the whole run, shared by every test process, instead of one per test file
      const cacheRoot = process.env.TAPLINE_PACKAGE_CACHE;
      const dir = cacheRoot
        ? join(cacheRoot, createHash('sha256').update(cacheKey).digest('hex').slice(0, 16))
        : await mkdtemp(join(tmpdir(), 'tapline-package-'));
      if (cacheRoot) await mkdir(dir, { recursive: true });
      const serverless = join(repoRoot, 'node_modules', '.bin', 'serverless');
      // serverless-esbuild builds in the repo's .esbuild/ and .serverless/: two packagings at
      // once (parallel test files, the lab, npm run scan) clobber each other's zips, so every
      // packaging in this tree takes the same lock. Under the lock, a template already in a
      // shared cache directory is used as it is (positional arguments: no shell quoting).
      await run(
        'flock',
        [
          PACKAGE_LOCK,
          'sh',
          '-c',
          '[ -f "$1/cloudformation-template-update-stack.json" ] && exit 0; exec "$0" package --package "$@"',
          serverless,
          dir,
          '--stage',
          stage,
          '--region',
          'us-east-1',
          ...paramArgs,
        ],
        {
          cwd: repoRoot,
          timeout: 600_000,
          maxBuffer: 32 * 1024 * 1024,
        },
      );
      const template = JSON.parse(
        await readFile(join(dir, 'cloudformation-template-update-stack.json'), 'utf8'),
      );
      return { dir, template };
    })();
    packaged.set(cacheKey, value);
  }
  return value;
}

/**
 * The first resource of a type, or an error naming what is missing. Only for types the stack
 * has once: the stack has two AWS::SSM::Document (capture and standby), select those with
 * resourceById.
 */
export function resourceOfType(pkg: PackagedTemplate, type: string): [string, TemplateResource] {
  const found = Object.entries(pkg.template.Resources).find(([, r]) => r.Type === type);
  if (!found) throw new Error(`packaged template has no ${type}`);
  return found;
}

/** A resource by its logical ID, checked to be of the expected type. */
export function resourceById(
  pkg: PackagedTemplate,
  logicalId: string,
  type: string,
): TemplateResource {
  const resource = pkg.template.Resources[logicalId];
  if (!resource) throw new Error(`packaged template has no ${logicalId}`);
  if (resource.Type !== type) {
    throw new Error(`packaged ${logicalId} is a ${resource.Type}, expected ${type}`);
  }
  return resource;
}

/** Logical ID of the capture document (resources/ssm-document.yml). */
export const CAPTURE_DOCUMENT_LOGICAL_ID = 'CaptureDocument';

/** The capture document resource (not the standby document, the stack's other SSM document). */
export function captureDocumentResource(pkg: PackagedTemplate): TemplateResource {
  return resourceById(pkg, CAPTURE_DOCUMENT_LOGICAL_ID, 'AWS::SSM::Document');
}

/** The capture document's content exactly as the packaged template deploys it. */
export async function packagedCaptureDocument(
  pkg?: PackagedTemplate,
): Promise<Record<string, any>> {
  const doc = captureDocumentResource(pkg ?? (await packagedTemplate()));
  if (!doc.Properties?.Content) {
    throw new Error(`packaged ${CAPTURE_DOCUMENT_LOGICAL_ID} has no Content`);
  }
  return doc.Properties.Content as Record<string, any>;
}
