/**
 * The capture core sends nothing the capture document's allowedPatterns would refuse (moto does
 * not enforce them; real SSM refuses the whole command): its copy of the patterns is the
 * document's, a request filter the Filter pattern refuses is an InvalidFilterError naming the
 * token, and any other value (config, IDs) is a DocumentParameterError before anything starts.
 */
import { readFile } from 'node:fs/promises';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import {
  CAPTURE_DOCUMENT_PATTERNS,
  captureDocumentParameters,
  checkDocumentParameters,
  type DocumentParameterInput,
} from '../../shared/capture/document-parameters.ts';
import { DocumentParameterError } from '../../shared/capture/errors.ts';
import { parseCaptureRequest } from '../../shared/capture/request.ts';
import { InvalidFilterError } from '../../shared/errors.ts';

async function documentPatterns(): Promise<Record<string, string>> {
  const doc = parseYaml(
    await readFile(new URL('../../ssm-documents/tapline-capture.yml', import.meta.url), 'utf8'),
  ) as { parameters: Record<string, { type: string; allowedPattern?: string }> };
  return Object.fromEntries(
    Object.entries(doc.parameters)
      .filter(([, p]) => p.type === 'String' && p.allowedPattern !== undefined)
      .map(([name, p]) => [name, p.allowedPattern!]),
  );
}

function input(overrides: Partial<DocumentParameterInput> = {}): DocumentParameterInput {
  return {
    captureId: 'cap-20261123T084000Z-1a2b3c4d',
    request: parseCaptureRequest({
      targets: { kind: 'instances', instanceIds: ['i-0123456789abcdef0'] },
      reason: 'IR-77 parameters',
    }),
    bpf: 'tcp and port 0',
    durationSeconds: 300,
    maxMegabytes: 2048,
    bucket: 'tapline-prod-eu-west-1-evidence',
    keyArn: 'arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab',
    region: 'eu-west-1',
    minFreeMegabytes: 1024,
    ...overrides,
  };
}

describe('capture document parameters', () => {
  it("the core's patterns are the document's, for every parameter the core sends", async () => {
    const fromDocument = await documentPatterns();
    for (const [name, pattern] of Object.entries(CAPTURE_DOCUMENT_PATTERNS)) {
      expect(fromDocument[name], name).toBeDefined();
      expect(pattern.source, name).toBe(new RegExp(fromDocument[name]!).source);
    }
    const sent = Object.keys(
      captureDocumentParameters(
        input({
          hostS3Endpoint: 'http://127.0.0.1:4566',
          hostWorkDir: '/tmp/tapline-lab',
        }),
      ),
    );
    expect(sent.filter((name) => !(name in CAPTURE_DOCUMENT_PATTERNS))).toEqual([]);
  });

  it('a filter the schema took but the Filter pattern refuses (IPv6 shorthand first) is an InvalidFilterError', () => {
    for (const expression of ['::1', '::1 and tcp', '::ffff:10.0.0.1 or udp']) {
      const parse = () =>
        parseCaptureRequest({
          targets: { kind: 'instances', instanceIds: ['i-0123456789abcdef0'] },
          reason: 'IR-77 filter',
          filter: { kind: 'bpf', expression },
        });
      expect(parse, expression).toThrow(InvalidFilterError);
      expect(parse, expression).toThrow(/cannot start with/);
    }
    // the same address after a keyword is fine
    expect(
      parseCaptureRequest({
        targets: { kind: 'instances', instanceIds: ['i-0123456789abcdef0'] },
        reason: 'IR-77 filter',
        filter: { kind: 'bpf', expression: 'host ::1 and tcp' },
      }).filter,
    ).toMatchObject({ expression: 'host ::1 and tcp' });
  });

  it('any other value the document would refuse is a DocumentParameterError naming the parameter', () => {
    const cases: [string, Partial<DocumentParameterInput>][] = [
      ['CaptureId', { captureId: 'cap-manual-1' }],
      ['Region', { region: 'eu_west_1' }],
      ['Bucket', { bucket: 'Tapline_Evidence' }],
      ['KmsKeyId', { keyArn: 'alias/tapline-evidence' }],
      ['Filter', { bpf: '::1' }],
      ['WorkDir', { hostWorkDir: '/home/ops/tapline' }],
      ['EndpointUrl', { hostS3Endpoint: 'http://10.0.0.5:9000' }],
    ];
    for (const [parameter, overrides] of cases) {
      let caught: unknown;
      try {
        checkDocumentParameters(captureDocumentParameters(input(overrides)));
      } catch (error) {
        caught = error;
      }
      expect(caught, parameter).toBeInstanceOf(DocumentParameterError);
      expect((caught as DocumentParameterError).details, parameter).toMatchObject({ parameter });
    }
  });
});
