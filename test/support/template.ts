// The tests use the same packaging helper as the lab: the real `serverless package` output.
export {
  type PackagedTemplate,
  packagedCaptureDocument,
  packagedTemplate,
  resourceOfType,
} from '../../shared/lab/packaged-template.ts';
