/**
 * Pcaps uploaded for the processing job, with where its results for them go, and the result
 * objects a capture ended up with (on the processing stack in moto).
 */
import { resultLayout } from '../../shared/processing/index.ts';
import { parsePcapKey } from '../../shared/processing/layout.ts';
import {
  captureId,
  hostUpload,
  INSTANCE,
  type ProcessingStack,
  versionsUnder,
} from '../fixtures/processing/stack.ts';

/**
 * Uploads `bytes` as the host does, as `pcaps/<new capture>/<INSTANCE>/<name>`: the upload,
 * its capture ID and bucket, and the result layout the job writes for that version.
 */
export async function uploadPcapForProcessing(stack: ProcessingStack, name: string, bytes: Buffer) {
  const cap = captureId();
  const key = `pcaps/${cap}/${INSTANCE}/${name}`;
  const up = await hostUpload(stack, key, bytes);
  return {
    cap,
    bucket: stack.bucket,
    ...up,
    layout: resultLayout(parsePcapKey(key), up.versionId),
  };
}

/** Every result object version of a capture (its home and its Athena table partitions). */
export async function captureResultVersions(
  stack: ProcessingStack,
  cap: string,
): Promise<Map<string, number>> {
  const home = await versionsUnder(stack, `results/${cap}/`);
  const tables = [...(await versionsUnder(stack, 'results/tables/')).entries()].filter(([k]) =>
    k.includes(`/capture=${cap}/`),
  );
  return new Map([...home.entries(), ...tables]);
}
